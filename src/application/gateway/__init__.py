"""The gateway application: the broker side, each client's protocol and outbox, the hub that fans
out to them, presence, admission and the HTTP API."""

from .client import ClientProtocol
from .gateway import FeedHealth, Gateway
from .hub import Hub
from .limits import Limits
from .presence import PresenceTracker
from .session import Session, Subscription
from .writer import Outbox

__all__ = [
    "ClientProtocol",
    "FeedHealth",
    "Gateway",
    "Hub",
    "Limits",
    "Outbox",
    "PresenceTracker",
    "Session",
    "Subscription",
]
