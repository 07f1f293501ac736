"""Pusher's webhooks: the events, the body that carries a batch of them, and its signature.

A webhook is a ``POST`` of ``{"time_ms": T, "events": [...]}`` to the app's URL with headers
``X-Pusher-Key`` (the app key) and ``X-Pusher-Signature``, the hex HMAC-SHA256 of the body under
the app secret: the receiver checks it with its Pusher library (``validate_webhook``). Each
event is a JSON object named by ``name``: ``channel_occupied`` and ``channel_vacated`` (a
channel got its first subscriber or lost its last, counted across the cluster),
``member_added`` and ``member_removed`` (presence, with ``user_id``), ``client_event`` (a
client sent ``client-*`` on a private or presence channel).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ..message import JSON

WebhookEvent = dict[str, JSON]

SIGNATURE_HEADER = "X-Pusher-Signature"
KEY_HEADER = "X-Pusher-Key"


def channel_occupied(channel: str) -> WebhookEvent:
    return {"name": "channel_occupied", "channel": channel}


def channel_vacated(channel: str) -> WebhookEvent:
    return {"name": "channel_vacated", "channel": channel}


def member_added(channel: str, user_id: str) -> WebhookEvent:
    return {"name": "member_added", "channel": channel, "user_id": user_id}


def member_removed(channel: str, user_id: str) -> WebhookEvent:
    return {"name": "member_removed", "channel": channel, "user_id": user_id}


def client_event(
    channel: str, event: str, data: str, socket_id: str, user_id: str | None = None
) -> WebhookEvent:
    """A client event as Pusher reports it: ``data`` is the string the client sent
    (JSON-encode an object first); ``user_id`` on presence channels."""
    webhook: WebhookEvent = {
        "name": "client_event",
        "channel": channel,
        "event": event,
        "data": data,
        "socket_id": socket_id,
    }
    if user_id is not None:
        webhook["user_id"] = user_id
    return webhook


def body(events: list[WebhookEvent], time_ms: int) -> bytes:
    """The body of one webhook request carrying ``events``."""
    payload = {"time_ms": time_ms, "events": events}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(key: str, secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        KEY_HEADER: key,
        SIGNATURE_HEADER: signature(secret, body),
    }
