"""Helpers for the client tests: tokens, channel names, publishing through the gateway."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway
from tidings.adapters.jwt_tokens import JwtTokens

FAST = {"min_delay": 0.05, "max_delay": 0.2, "connect_timeout": 2.0}
"""Reconnect at once: the tests cut connections on purpose. A proxy that resets a connection
during the handshake can leave it waiting for the whole connect_timeout."""

WAIT = 20.0
"""Seconds to wait for an event: the first message of a new Kafka channel takes a few seconds."""


def token(user: str, *, info: Any = None, ttl: float = 120, channels: Sequence[str] = ()) -> str:
    return JwtTokens(SECRET).issue(user, info=info, ttl=ttl, channels=tuple(channels))


def unique(prefix: str) -> str:
    """A channel name no other test uses."""
    return f"{prefix}.{secrets.token_hex(4)}"


def port_of(gateway: Gateway) -> int:
    port = urlsplit(gateway.url).port
    assert port is not None
    return port


def publish(
    gateway: Gateway, channel: str, *data: Any, event: str = "note"
) -> list[dict[str, Any]]:
    """``POST /broadcast`` one message per ``data``, in order (blocking: run it in a thread
    from async code); the gateway's answers (id, position)."""
    body = [{"channel": channel, "event": event, "data": each} for each in data]
    response = httpx.post(
        gateway.url + "/broadcast",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=WAIT,
    )
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()
    return answers
