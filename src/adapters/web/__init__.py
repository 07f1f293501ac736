"""The WebSocket + HTTP server adapter and the files it serves."""

from .server import WebServer, WebSocketClient
from .static import bundled_file

__all__ = ["WebServer", "WebSocketClient", "bundled_file"]
