"""Pusher's signatures of channel authorizations and user sign-ins.

An app's auth endpoint answers ``auth = "<key>:<hex HMAC-SHA256(secret, text)>"`` where the text
is ``socket_id:channel`` (private), ``socket_id:channel:channel_data`` (presence) or
``socket_id::user::user_data`` (``pusher:signin``). The gateway recomputes the signature and
compares it in constant time: the signature is the only thing that proves the app's server
authorized this socket.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, text: str) -> str:
    """The hex HMAC-SHA256 of ``text`` under ``secret``."""
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def channel_text(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """What a channel authorization signs."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def user_text(socket_id: str, user_data: str) -> str:
    """What a user sign-in signs."""
    return f"{socket_id}::user::{user_data}"


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` an app's server gives for ``socket_id`` on ``channel``."""
    return f"{key}:{sign(secret, channel_text(socket_id, channel, channel_data))}"


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` an app's server gives for a user sign-in."""
    return f"{key}:{sign(secret, user_text(socket_id, user_data))}"


def check_auth(auth: str, key: str, secret: str, text: str) -> bool:
    """Whether ``auth`` is ``key:signature-of-text``; constant time in the signature."""
    given_key, sep, signature = auth.partition(":")
    expected = sign(secret, text)
    # compare_digest on both parts; the key is not secret, but one comparison keeps it simple.
    same_key = hmac.compare_digest(given_key.encode(), key.encode())
    same_signature = hmac.compare_digest(signature.encode(), expected.encode())
    return bool(sep) and same_key and same_signature
