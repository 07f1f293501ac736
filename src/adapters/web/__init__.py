"""The WebSocket + HTTP server adapter and the files it serves."""

from .server import Admission, WebServer
from .static import bundled_file
from .websocket import WebSocketConnection

__all__ = ["Admission", "WebServer", "WebSocketConnection", "bundled_file"]
