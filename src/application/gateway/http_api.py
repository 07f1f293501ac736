"""The gateway's HTTP API, independent of the server that parses HTTP.

``GET /`` demo page, ``GET /client.js`` browser client, ``POST /broadcast`` (bearer API key),
``GET /healthz``, ``GET /metrics``; in demo mode (``tidings serve --demo``, for local development
only) also ``GET /demo/token`` so the demo page can act as any user, and ``POST /demo/broadcast``
which publishes without the API key. Every refusal is JSON ``{"error": ...}`` with a status that
says what went wrong.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from ...domain import JSON, Message
from ...domain.errors import BrokerError, InvalidChannel, InvalidMessage, MessageTooLarge
from ...ports import HttpRequest, HttpResponse, Pending, TokenIssuer
from .gateway import Gateway

StaticFiles = Callable[[str], tuple[bytes, str] | None]
"""Path -> (body, content type) for the bundled demo page and client, or None."""

_ROUTES = {
    "/": ("GET",),
    "/index.html": ("GET",),
    "/client.js": ("GET",),
    "/broadcast": ("POST",),
    "/healthz": ("GET",),
    "/metrics": ("GET",),
    "/demo/token": ("GET",),
    "/demo/broadcast": ("POST",),
}
_DEMO_ONLY = ("/demo/token", "/demo/broadcast")


def json_response(
    status: int, payload: JSON, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return HttpResponse(status, body, "application/json", headers or {})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    return json_response(status, {"error": message}, headers)


class GatewayHttp:
    """Implements ``HttpApi`` for one gateway."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        publish: Callable[[Message], Pending],
        api_key: str | None,
        static: StaticFiles,
        broker: str,
        demo_tokens: TokenIssuer | None = None,
    ) -> None:
        self._gateway = gateway
        self._publish = publish
        self._api_key = api_key
        self._static = static
        self._broker = broker
        self._demo_tokens = demo_tokens

    async def handle(self, request: HttpRequest) -> HttpResponse:
        methods = _ROUTES.get(request.path)
        if methods is None or (request.path in _DEMO_ONLY and self._demo_tokens is None):
            return _error(404, f"no such endpoint: {request.path}")
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            return _error(
                405,
                f"{request.method} is not allowed on {request.path}",
                {"allow": ", ".join(methods)},
            )
        if request.path == "/broadcast":
            return self._authorized(request) or await self._broadcast(request)
        if request.path == "/demo/broadcast":
            return await self._broadcast(request)
        if request.path == "/healthz":
            return self._healthz()
        if request.path == "/metrics":
            body, content_type = self._gateway.metrics.render()
            return HttpResponse(200, body, content_type)
        if request.path == "/demo/token":
            return self._demo_token(request)
        static = self._static("/index.html" if request.path == "/" else request.path)
        if static is None:
            return _error(404, f"no such file: {request.path}")
        body, content_type = static
        return HttpResponse(200, body, content_type, {"cache-control": "no-cache"})

    def _authorized(self, request: HttpRequest) -> HttpResponse | None:
        if not self._api_key:
            return _error(403, "HTTP publishing is disabled: set REALTIME_API_KEY on the gateway")
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return _error(
                401,
                "missing API key: send 'Authorization: Bearer <REALTIME_API_KEY>'",
                {"www-authenticate": "Bearer"},
            )
        if not hmac.compare_digest(key.strip().encode(), self._api_key.encode()):
            return _error(401, "wrong API key", {"www-authenticate": "Bearer"})
        return None

    async def _broadcast(self, request: HttpRequest) -> HttpResponse:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "body is nested too deeply")
        items = payload if isinstance(payload, list) else [payload]
        if not items or len(items) > 100:
            return _error(400, "send one message object, or a list of 1 to 100 of them")
        try:
            messages = [_message_from(item) for item in items]
            pendings = [self._publish(message) for message in messages]
        except MessageTooLarge as exc:
            return _error(413, str(exc))
        except (InvalidMessage, InvalidChannel) as exc:
            return _error(400, str(exc))
        except BrokerError as exc:
            return _error(503, f"broker did not take the message: {exc}")
        results: list[dict[str, Any]] = []
        for pending in pendings:
            try:
                position = await pending
            except BrokerError as exc:
                return _error(503, f"broker did not take message {pending.message.id}: {exc}")
            results.append(
                {
                    "id": pending.message.id,
                    "channel": pending.message.channel.name,
                    "position": None if position is None else str(position),
                }
            )
        return json_response(200, results if isinstance(payload, list) else results[0])

    def _healthz(self) -> HttpResponse:
        """200 while the gateway is serving and its broker feed is connected, 503 otherwise."""
        gateway = self._gateway
        status = gateway.feed_status()
        ok = status.connected and not gateway.stopping
        payload = {
            "status": "ok" if ok else ("stopping" if gateway.stopping else "degraded"),
            "node": gateway.node,
            "broker": {
                "name": self._broker,
                "connected": status.connected,
                "lag": status.lag,
                "error": status.error,
                "messages": gateway.health.messages,
            },
            "connections": gateway.hub.connection_count,
            "subscriptions": gateway.hub.subscription_count,
            "cluster": {
                node: round(seconds, 1) for node, seconds in gateway.cluster.nodes().items()
            },
        }
        return json_response(200 if ok else 503, payload)

    def _demo_token(self, request: HttpRequest) -> HttpResponse:
        assert self._demo_tokens is not None
        user = request.query.get("user", "").strip()
        if not user or len(user) > 64:
            return _error(400, "give ?user=NAME (1 to 64 characters)")
        name = request.query.get("name", user)[:64]
        token = self._demo_tokens.issue(
            user, info={"name": name}, ttl=3600, channels=("private-**", "presence-**")
        )
        return json_response(200, {"token": token, "user_id": user})


def _message_from(item: object) -> Message:
    if not isinstance(item, dict):
        raise InvalidMessage(
            f"a message is a JSON object with channel, event and data, not {item!r}"
        )
    missing = [key for key in ("channel", "event") if key not in item]
    if missing:
        raise InvalidMessage(f"message lacks {', '.join(missing)}")
    unknown = sorted(set(item) - {"channel", "event", "data", "exclude"})
    if unknown:
        raise InvalidMessage(
            f"unknown field(s) {', '.join(unknown)}; use channel, event, data, exclude"
        )
    exclude = item.get("exclude")
    if exclude is not None and not isinstance(exclude, str):
        raise InvalidMessage("exclude must be a connection id string")
    return Message.event(item["channel"], item["event"], item.get("data"), exclude=exclude)
