"""The Pusher Channels protocol (version 7), as pure rules: apps, socket ids, channel kinds,
signatures, codes and frames. The gateway's ``PusherProtocol`` speaks it (ADR 0035)."""

from . import frames
from .apps import InvalidPusherApps, PusherApp, PusherApps, parse_apps
from .channels import PusherChannelKind, is_cache, needs_auth, pusher_kind, takes_client_events
from .codes import MESSAGES, CloseAction, PusherCode, close_action, pusher_close_code
from .frames import PusherFrameError, decode_pusher_frame
from .signatures import channel_auth, channel_text, check_auth, user_auth, user_text
from .socket_ids import is_socket_id, socket_id

__all__ = [
    "MESSAGES",
    "CloseAction",
    "InvalidPusherApps",
    "PusherApp",
    "PusherApps",
    "PusherChannelKind",
    "PusherCode",
    "PusherFrameError",
    "channel_auth",
    "channel_text",
    "check_auth",
    "close_action",
    "decode_pusher_frame",
    "frames",
    "is_cache",
    "is_socket_id",
    "needs_auth",
    "parse_apps",
    "pusher_close_code",
    "pusher_kind",
    "socket_id",
    "takes_client_events",
    "user_auth",
    "user_text",
]
