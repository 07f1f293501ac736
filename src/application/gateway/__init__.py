"""The gateway application: sessions, the hub that fans out to them, presence, the HTTP API."""

from .gateway import IDLE_CLOSE, FeedHealth, Gateway
from .hub import Hub
from .limits import Limits
from .presence import PresenceTracker
from .session import Session, Subscription

__all__ = [
    "IDLE_CLOSE",
    "FeedHealth",
    "Gateway",
    "Hub",
    "Limits",
    "PresenceTracker",
    "Session",
    "Subscription",
]
