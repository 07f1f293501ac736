"""The WebSocket, Server-Sent Events and HTTP server adapter, and the files it serves."""

from .server import Admission, WebServer
from .sse import EventStreamConnection
from .static import bundled_file
from .websocket import WebSocketConnection

__all__ = [
    "Admission",
    "EventStreamConnection",
    "WebServer",
    "WebSocketConnection",
    "bundled_file",
]
