"""The ports: what the application needs from the outside world, as small protocols.

Adapters implement them; the container wires one adapter to each; services depend only on these.
"""

from .metrics import GatewayMetrics
from .presence import PresenceBus, PresenceSink
from .publisher import Pending, Publisher
from .realtime import RealtimePort
from .subscriber import (
    Delivered,
    Feed,
    FeedOptions,
    FeedStatus,
    GroupMode,
    History,
    Subscriber,
)
from .tokens import TokenIssuer, TokenVerifier
from .transport import (
    ClientConnection,
    ConnectionClosed,
    ConnectionHandler,
    EventStream,
    FrameTooLarge,
    HttpApi,
    HttpRequest,
    HttpResponse,
    RoutedConnection,
    RoutedHandler,
    SendOutcome,
    StreamHandler,
    Transport,
)
from .webhooks import WebhookFailed, Webhooks, WebhookTransport

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "ConnectionHandler",
    "Delivered",
    "EventStream",
    "Feed",
    "FeedOptions",
    "FeedStatus",
    "FrameTooLarge",
    "GatewayMetrics",
    "GroupMode",
    "History",
    "HttpApi",
    "HttpRequest",
    "HttpResponse",
    "Pending",
    "PresenceBus",
    "PresenceSink",
    "Publisher",
    "RealtimePort",
    "RoutedConnection",
    "RoutedHandler",
    "SendOutcome",
    "StreamHandler",
    "Subscriber",
    "TokenIssuer",
    "TokenVerifier",
    "Transport",
    "WebhookFailed",
    "WebhookTransport",
    "Webhooks",
]
