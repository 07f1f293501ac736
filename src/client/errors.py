"""What can go wrong for a client, as types: one class per thing the caller would act on.

The gateway reports refusals with error frames (``docs/protocol.md``: 400, 401, 403, 404, 410,
413, 429, 503) and ends connections with close codes (4401 bad token, 4001 expired, ...).
``error_for`` turns an error frame into the class of its code, so callers write
``except Forbidden`` rather than compare numbers; ``code`` keeps the number all the same.
"""

from __future__ import annotations

from ..domain.errors import TidingsError
from ..domain.protocol import CloseCode, ErrorCode


class ClientError(TidingsError):
    """Base class of what ``tidings.client`` raises about the gateway's answers.

    ``code`` is the protocol error code (400-503) or, for what ended a connection, the WebSocket
    close code (4401, 4001, ...); ``channel`` the channel concerned, when there is one.
    """

    def __init__(self, message: str, *, code: int | None = None, channel: str | None = None):
        self.message = message
        self.code = code
        self.channel = channel
        where = f" on {channel}" if channel else ""
        number = f" ({code})" if code is not None else ""
        super().__init__(f"{message}{where}{number}")


class TokenRefused(ClientError):
    """The gateway refused the connection token (close 4401, or 4001 when it expired and no
    token provider can give a fresh one). Never retried with the same token: the client stops."""


class Unauthorized(ClientError):
    """401: the channel needs a token (private and presence channels)."""


class Forbidden(ClientError):
    """403: this user may not use the channel (someone else's ``user.N``, no rule or grant), or a
    client event on a public channel."""


class NotFound(ClientError):
    """404: unknown; on Kafka, a client event on a channel that has no topic yet (ADR 0016)."""


class BadRequest(ClientError):
    """400: the gateway did not understand a frame (a bad channel name, a bad position)."""


class Gap(ClientError):
    """410: the subscription could not resume where it left off; messages were missed.

    Raised once by the subscription's iteration at the place of the gap; the subscription stays
    live and iterating again continues with the messages that follow. Reload the channel's state
    from its source of truth.
    """


class TooLarge(ClientError):
    """413: a frame or a client event over the gateway's size limits."""


class RateLimited(ClientError):
    """429: over the gateway's rate limit, or over its channels per connection."""


class Unavailable(ClientError):
    """503: the gateway's broker did not take a client event."""


class ConnectionLost(ClientError):
    """The client gave up: ``max_retries`` attempts in a row failed, or the gateway closed with a
    code that says not to reconnect (1002, 1007: a client bug)."""


class ClientClosed(ClientError):
    """The client was closed (its ``async with`` block ended): nothing more can be done with it."""


_BY_CODE: dict[int, type[ClientError]] = {
    ErrorCode.BAD_FRAME: BadRequest,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.GONE: Gap,
    ErrorCode.TOO_LARGE: TooLarge,
    ErrorCode.RATE_LIMITED: RateLimited,
    503: Unavailable,
    CloseCode.UNAUTHORIZED: TokenRefused,
    CloseCode.TOKEN_EXPIRED: TokenRefused,
}


def error_for(code: int, message: str, channel: str | None = None) -> ClientError:
    """The error of an error frame (or a close code), as the class of its code."""
    kind = _BY_CODE.get(code, ClientError)
    return kind(message, code=code, channel=channel)
