"""tidings: realtime broadcasting for Python, over Apache Kafka or an in-memory broker.

    from tidings import broadcast
    broadcast("user.42", "notification", {"title": "Hello"})

Services should take a ``tidings.ports.RealtimePort`` by injection; ``realtime()`` returns the
process-wide one, built from the environment and ``.env`` on first use.
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import TYPE_CHECKING

from .domain import JSON, Channel, ChannelKind, ChannelPattern, Message, Position
from .domain.errors import (
    BrokerError,
    BrokerOverloaded,
    BrokerUnavailable,
    ConfigurationError,
    InvalidChannel,
    InvalidMessage,
    InvalidPosition,
    InvalidToken,
    MessageTooLarge,
    PositionExpired,
    SecretTooShort,
    TidingsError,
    TokenExpired,
    TokenSecretMissing,
    UnknownBroker,
)

if TYPE_CHECKING:
    from .bootstrap import Container
    from .ports import Pending, RealtimePort

try:
    # One source for the version: pyproject.toml, read back from the installed package's metadata
    # (what `tidings --version` and pip show too).
    __version__ = metadata.version("tidings")
except metadata.PackageNotFoundError:  # a copy of src/ imported without being installed
    __version__ = "0+unknown"

__all__ = [
    "JSON",
    "BrokerError",
    "BrokerOverloaded",
    "BrokerUnavailable",
    "Channel",
    "ChannelKind",
    "ChannelPattern",
    "ConfigurationError",
    "InvalidChannel",
    "InvalidMessage",
    "InvalidPosition",
    "InvalidToken",
    "Message",
    "MessageTooLarge",
    "Position",
    "PositionExpired",
    "SecretTooShort",
    "TidingsError",
    "TokenExpired",
    "TokenSecretMissing",
    "UnknownBroker",
    "abroadcast",
    "broadcast",
    "broadcast_nowait",
    "container",
    "issue_token",
    "realtime",
]

_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    """The process-wide container, built from the environment on first use."""
    global _container
    if _container is not None:
        return _container  # built already: no lock on the path of every broadcast
    with _lock:
        if _container is None:
            from .bootstrap import Container

            _container = Container()
        return _container


def realtime() -> RealtimePort:
    """The process-wide ``RealtimePort`` (the seed's ``realtime()`` helper)."""
    service: RealtimePort = container().realtime()
    return service


def broadcast(
    channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
) -> Message:
    """``realtime().broadcast(...)``: publish and wait for the broker's acknowledgement."""
    return realtime().broadcast(channel, event, data, exclude=exclude)


async def abroadcast(
    channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
) -> Message:
    """``await realtime().abroadcast(...)``, for asyncio and trio code."""
    return await realtime().abroadcast(channel, event, data, exclude=exclude)


def broadcast_nowait(
    channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
) -> Pending:
    """``realtime().broadcast_nowait(...)``: hand the message over and return at once."""
    return realtime().broadcast_nowait(channel, event, data, exclude=exclude)


def issue_token(
    user_id: str | int, *, info: JSON = None, ttl: float = 3600, channels: tuple[str, ...] = ()
) -> str:
    """A connection token for ``user_id``, signed with ``REALTIME_SECRET``, for your login code."""
    issued: str = container().tokens().issue(str(user_id), info=info, ttl=ttl, channels=channels)
    return issued
