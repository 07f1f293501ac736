"""The kinds of Pusher channels, from their prefixes, and what each allows.

``private-encrypted-`` channels carry what the clients encrypted (the gateway passes it through
untouched); ``cache-`` channels (and ``private-cache-``, ``presence-cache-``,
``private-encrypted-cache-``) replay their last event to a new subscriber. Private, presence and
encrypted channels need the app's ``auth``; private and presence channels take client events.
"""

from __future__ import annotations

import enum


class PusherChannelKind(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    PRESENCE = "presence"
    PRIVATE_ENCRYPTED = "private-encrypted"


_PREFIXES: tuple[tuple[str, PusherChannelKind, bool], ...] = (
    # Longest first: "private-encrypted-" before "private-".
    ("private-encrypted-cache-", PusherChannelKind.PRIVATE_ENCRYPTED, True),
    ("private-encrypted-", PusherChannelKind.PRIVATE_ENCRYPTED, False),
    ("private-cache-", PusherChannelKind.PRIVATE, True),
    ("presence-cache-", PusherChannelKind.PRESENCE, True),
    ("private-", PusherChannelKind.PRIVATE, False),
    ("presence-", PusherChannelKind.PRESENCE, False),
    ("cache-", PusherChannelKind.PUBLIC, True),
)


def pusher_kind(name: str) -> PusherChannelKind:
    """The kind of the channel ``name`` for a Pusher client."""
    for prefix, kind, _ in _PREFIXES:
        if name.startswith(prefix):
            return kind
    return PusherChannelKind.PUBLIC


def is_cache(name: str) -> bool:
    """Whether ``name`` is a cache channel (its last event replays on subscribe)."""
    return any(name.startswith(prefix) for prefix, _, cache in _PREFIXES if cache)


def needs_auth(name: str) -> bool:
    """Whether subscribing to ``name`` needs the app's signature."""
    return pusher_kind(name) is not PusherChannelKind.PUBLIC


def takes_client_events(name: str) -> bool:
    """Whether clients may send ``client-*`` events on ``name``: private and presence channels
    only, not encrypted ones (as Pusher: the gateway cannot tell what they carry)."""
    return pusher_kind(name) in (PusherChannelKind.PRIVATE, PusherChannelKind.PRESENCE)
