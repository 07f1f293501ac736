"""The errors tidings raises, as one small hierarchy.

Every error names the value that was wrong, so a message in a log is enough to find the culprit.
They live in the domain because they are part of the contract with users: services catch
``BrokerUnavailable`` whatever broker is configured, tests match on ``InvalidChannel``.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Base class of every error tidings raises on purpose.

    Every one survives pickling with its type, message and attributes: Celery sends a task's
    exception to its result backend and its logs that way, and ``multiprocessing`` across
    processes. The default pickling calls ``cls(*args)``, which fails for the errors below
    whose constructors take the parts of their message (``BrokerUnavailable(brokers,
    detail)``): Celery would then report a bare ``BrokerError`` in its place.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args), self.__dict__)


def _restore(cls: type[TidingsError], args: tuple[object, ...]) -> TidingsError:
    """An error of ``cls`` with ``args``, without calling its ``__init__``; pickle then sets
    its attributes from the state ``__reduce__`` gave."""
    return cls.__new__(cls, *args)


class InvalidChannel(TidingsError, ValueError):
    """A channel name that breaks the channel grammar."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid channel {name!r}: {reason}")


class InvalidPattern(TidingsError, ValueError):
    """A channel pattern (``user.*``) that breaks the pattern grammar."""

    def __init__(self, pattern: object, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"invalid channel pattern {pattern!r}: {reason}")


class InvalidMessage(TidingsError, ValueError):
    """A message envelope that cannot be built or decoded."""


class MessageTooLarge(InvalidMessage):
    """An encoded message over the configured size limit."""

    def __init__(self, channel: str, size: int, limit: int) -> None:
        self.channel = channel
        self.size = size
        self.limit = limit
        super().__init__(
            f"message for channel {channel!r} is {size} bytes encoded, over the limit of {limit}"
        )


class InvalidPosition(TidingsError, ValueError):
    """A resume position that is malformed, or that belongs to another stream."""


class PositionExpired(TidingsError):
    """A resume position older than what the broker still retains."""

    def __init__(self, position: str, oldest: str | None) -> None:
        self.position = position
        self.oldest = oldest
        detail = f"; the oldest retained position is {oldest}" if oldest else ""
        super().__init__(f"position {position} is too old to resume from{detail}")


class InvalidTopicName(TidingsError, ValueError):
    """A channel whose topic under the chosen strategy would break Kafka's topic rules."""


class InvalidAccessRule(TidingsError, ValueError):
    """An authorization rule from configuration that cannot be parsed."""


class ConfigurationError(TidingsError, ValueError):
    """A configuration value that cannot be used; the message names the setting."""


class UnknownBroker(ConfigurationError):
    """A broker name no adapter serves."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown broker {name!r}; known brokers: {', '.join(known)}")


class BrokerError(TidingsError):
    """A broker could not take or deliver a message."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached; the message was not published.

    ``brokers`` lists the addresses that were tried.
    """

    def __init__(self, brokers: list[str], detail: str) -> None:
        self.brokers = brokers
        self.detail = detail
        super().__init__(f"no broker reachable at {', '.join(brokers)}: {detail}")


class BrokerOverloaded(BrokerError):
    """A bounded buffer on the way to the broker is full; the message was not published."""


class ChannelHasNoTopic(BrokerError):
    """A publish that may not create a topic (a client event) on a channel whose topic does not
    exist yet; the message was not published. Only the server creates topics (ADR 0016)."""

    def __init__(self, channel: str, topic: str) -> None:
        self.channel = channel
        self.topic = topic
        super().__init__(
            f"channel {channel!r} has no topic yet ({topic}): clients cannot create one; the "
            f"server's first broadcast on it or `tidings kafka create-topics {channel}` does"
        )


class InvalidToken(TidingsError):
    """A connection token that is missing, malformed, forged or expired."""


class TokenExpired(InvalidToken):
    """A connection token past its expiry: the client should fetch a fresh one and reconnect.

    A type of its own because the gateway answers it with another close code than a forged or
    malformed token, which must not be retried.
    """


class TokenSecretMissing(ConfigurationError):
    """Tokens cannot be signed or verified because ``REALTIME_SECRET`` is not set."""

    def __init__(self) -> None:
        super().__init__(
            "REALTIME_SECRET is not set: set it in the environment or .env to sign "
            "and verify connection tokens"
        )


class SecretTooShort(ConfigurationError):
    """A token secret too short to resist an offline search from one captured token."""

    def __init__(self, variable: str, length: int, minimum: int) -> None:
        self.variable = variable
        self.length = length
        self.minimum = minimum
        super().__init__(
            f"{variable} is {length} bytes long; it must be at least {minimum} bytes, or anyone "
            "holding one token can recover it and forge tokens for any user. Make one with "
            "`tidings secret` or "
            '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
        )


class InvalidOrigin(TidingsError, ValueError):
    """A web origin (``https://app.example.com``) that cannot be parsed."""

    def __init__(self, origin: object, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"invalid origin {origin!r}: {reason}")


class InvalidProxy(TidingsError, ValueError):
    """An entry of ``REALTIME_TRUSTED_PROXIES`` that is not an address or a network."""

    def __init__(self, entry: object, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        super().__init__(f"invalid trusted proxy {entry!r}: {reason}")
