"""Why the gateway closes a connection, and what the client should do then: one table.

Every close the gateway sends has a code from this table; the close frame's reason starts with
the table's reason, ``docs/protocol.md`` lists the same rows, and the browser client
(``client.js``) reconnects as the table advises. Tests hold the three to this table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from .protocol import CloseCode


class Advice(enum.StrEnum):
    """What a client should do after a close."""

    STOP = "stop"
    """Do not reconnect on its own (it left, or something must change first)."""
    RESUME = "resume"
    """Reconnect (with back-off) and resubscribe with ``since``: nothing is lost."""
    BACK_OFF = "back-off"
    """Wait longer than usual, then reconnect and resume."""
    NEW_TOKEN = "new-token"
    """Get a fresh token, then reconnect and resume."""
    NO_RETRY = "no-retry"
    """Do not retry with the same token."""


@attrs.frozen
class Disconnect:
    code: int
    reason: str
    """The close frame's reason (a detail may follow it after a colon)."""
    advice: Advice
    meaning: str
    """One line for people: when the gateway sends it."""


DISCONNECTS: Mapping[int, Disconnect] = {
    row.code: row
    for row in (
        Disconnect(
            CloseCode.NORMAL,
            "normal close",
            Advice.RESUME,
            "an orderly close; the gateway sends it only in answer to the client's own",
        ),
        Disconnect(
            CloseCode.GOING_AWAY,
            "gateway shutting down",
            Advice.RESUME,
            "the gateway is stopping: another node takes over",
        ),
        Disconnect(
            CloseCode.PROTOCOL_ERROR,
            "protocol error",
            Advice.STOP,
            "the client broke RFC 6455 (unmasked frame, reserved bit or opcode, bad control frame)",
        ),
        Disconnect(
            CloseCode.INVALID_DATA,
            "invalid data",
            Advice.STOP,
            "a text frame or close reason that is not UTF-8",
        ),
        Disconnect(
            CloseCode.MESSAGE_TOO_BIG,
            "message too big",
            Advice.RESUME,
            "a message over four times REALTIME_MAX_FRAME_BYTES, or in over 1,024 fragments",
        ),
        Disconnect(
            CloseCode.INTERNAL_ERROR,
            "internal error",
            Advice.RESUME,
            "serving the connection failed on the gateway (logged with the connection id)",
        ),
        Disconnect(
            CloseCode.IDLE,
            "idle",
            Advice.RESUME,
            "no frame within REALTIME_IDLE_TIMEOUT: ping more often (every 25 s is safe)",
        ),
        Disconnect(
            CloseCode.TOKEN_EXPIRED,
            "token expired",
            Advice.NEW_TOKEN,
            "the connection token expired, at connect time or while connected",
        ),
        Disconnect(
            CloseCode.SLOW_CONSUMER,
            "slow consumer",
            Advice.RESUME,
            "the client did not read fast enough and its queue filled",
        ),
        Disconnect(
            CloseCode.FLOODING,
            "flooding",
            Advice.BACK_OFF,
            "the client kept sending over the rate limit after 429s",
        ),
        Disconnect(
            CloseCode.UNAUTHORIZED,
            "bad token",
            Advice.NO_RETRY,
            "the token given at connect time is invalid",
        ),
    )
}
"""Every close code the gateway sends, by code."""


ADVICE_TEXT: Mapping[Advice, str] = {
    Advice.STOP: "do not reconnect on its own: fix what the reason names",
    Advice.RESUME: "reconnect with back-off and resume with `since`",
    Advice.BACK_OFF: "wait longer than usual (client.js: `floodDelay`), then reconnect and resume",
    Advice.NEW_TOKEN: "get a fresh token, reconnect, resume",
    Advice.NO_RETRY: "do not retry with the same token",
}
"""The advice in words, for people (``docs/protocol.md``)."""


def close_reason(code: int, detail: str = "") -> str:
    """The close frame's reason for ``code``: the table's reason, then ``detail`` if any."""
    reason = DISCONNECTS[code].reason
    return f"{reason}: {detail}" if detail else reason
