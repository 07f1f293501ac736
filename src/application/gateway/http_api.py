"""The gateway's HTTP API, independent of the server that parses HTTP.

``GET /`` demo page, ``GET /client.js`` browser client, ``POST /broadcast`` (bearer API key; one
message or a list of 1 to 100, each given as channel, event, data or as a whole envelope),
``GET /healthz`` (ready: the broker feed is connected and the gateway accepts clients),
``GET /livez`` (alive: the process' event loop answers, whatever the broker), ``GET /metrics``;
in demo mode (``tidings serve --demo``, for local development only) also ``GET /demo/token`` so
the demo page can act as any user, and ``POST /demo/broadcast`` which publishes without the API
key; with a Pusher app configured, Pusher's HTTP API (``/apps/{app_id}/...``, see
``pusher_api``). Every refusal (but Pusher's, plain text as Pusher's) is JSON ``{"error": ...}``
with a status that says what went wrong.

CORS follows the origin policy (``REALTIME_ALLOWED_ORIGINS``, the list that also guards WebSocket
upgrades): a request from an allowed origin is answered with ``Access-Control-Allow-Origin`` set
to it, a preflight ``OPTIONS`` with 204 and what may be sent; any other origin gets no CORS
header, so browsers keep its page from reading the answer. The demo endpoints go further and
refuse outright what a page of another site sends, since minting a token or publishing is done
by the request itself, whether or not its answer can be read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from ...domain import JSON, Channel, Message, MessageType
from ...domain.errors import BrokerError, InvalidChannel, InvalidMessage, MessageTooLarge
from ...domain.origins import OriginPolicy
from ...ports import HttpApi, HttpRequest, HttpResponse, Pending, TokenIssuer
from .. import plain_json
from . import pusher_api
from .gateway import Gateway

StaticFiles = Callable[[str], tuple[bytes, str] | None]
"""Path -> (body, content type) for the bundled demo page and client, or None."""

_ROUTES = {
    "/": ("GET",),
    "/index.html": ("GET",),
    "/client.js": ("GET",),
    "/broadcast": ("POST",),
    "/sse": ("GET",),
    "/healthz": ("GET",),
    "/livez": ("GET",),
    "/metrics": ("GET",),
    "/demo/token": ("GET",),
    "/demo/broadcast": ("POST",),
}
_DEMO_ONLY = ("/demo/token", "/demo/broadcast")
_CORS_REQUEST_HEADERS = "Authorization, Content-Type"
_CORS_MAX_AGE = "600"
"""Seconds a browser may reuse a preflight answer (Chromium caps it at 7200)."""


def json_response(
    status: int, payload: JSON, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return HttpResponse(status, body, "application/json", headers or {})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    return json_response(status, {"error": message}, headers)


def _bad_parameter(name: str, message: str) -> HttpResponse:
    return json_response(400, {"error": f"parameter {name!r}: {message}", "parameter": name})


def _methods(route: tuple[str, ...]) -> str:
    """What ``Allow`` and a preflight answer list: the route's methods, HEAD with GET, OPTIONS."""
    return ", ".join([*route, *(["HEAD"] if "GET" in route else []), "OPTIONS"])


class GatewayHttp:
    """Implements ``HttpApi`` for one gateway.

    ``origins`` is the origin policy, ``listening_host`` the address the gateway listens on (a
    loopback gateway's demo endpoints refuse other ``Host`` names: DNS rebinding).
    ``demo_tokens`` issues the demo page's tokens (demo mode only), valid ``demo_token_ttl`` s.
    ``max_message_bytes`` is checked for every message of a ``POST /broadcast`` list before any
    of them is published (``publish`` checks it again): a refused list published none of its
    messages, so a publisher may send them again one by one (ADR 0024).
    """

    def __init__(
        self,
        *,
        gateway: Gateway,
        publish: Callable[[Message], Pending],
        api_key: str | None,
        static: StaticFiles,
        broker: str,
        origins: OriginPolicy | None = None,
        listening_host: str = "127.0.0.1",
        demo_tokens: TokenIssuer | None = None,
        demo_token_ttl: float = 3600,
        max_message_bytes: int | None = None,
        pusher: HttpApi | None = None,
    ) -> None:
        self._gateway = gateway
        self._pusher = pusher
        """Pusher's HTTP API (``/apps/...``), when a Pusher app is configured."""
        self._publish = publish
        self._api_key = api_key
        self._static = static
        self._broker = broker
        self._origins = origins if origins is not None else OriginPolicy()
        self._listening_host = listening_host
        self._demo_tokens = demo_tokens
        self._demo_token_ttl = demo_token_ttl
        self._max_message_bytes = max_message_bytes

    async def handle(self, request: HttpRequest) -> HttpResponse:
        response = await self._answer(request)
        return self._with_cors(request, response)

    def _with_cors(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """``response`` with ``Vary: Origin``, and the CORS grant when the origin is allowed."""
        headers = dict(response.headers)
        headers["vary"] = ", ".join(filter(None, [headers.get("vary"), "Origin"]))
        origin = request.headers.get("origin")
        if origin is not None and self._origins.allows(origin, request.headers.get("host")):
            headers["access-control-allow-origin"] = origin
        return HttpResponse(response.status, response.body, response.content_type, headers)

    async def _answer(self, request: HttpRequest) -> HttpResponse:
        if self._pusher is not None and pusher_api.handles(request.path):
            return await self._pusher.handle(request)
        methods = _ROUTES.get(request.path)
        if methods is None or (request.path in _DEMO_ONLY and self._demo_tokens is None):
            return _error(404, f"no such endpoint: {request.path}")
        if request.method == "OPTIONS":
            return self._preflight(request, methods)
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            return _error(
                405,
                f"{request.method} is not allowed on {request.path}",
                {"allow": _methods(methods)},
            )
        if request.path == "/broadcast":
            return self._authorized(request) or await self._broadcast(request)
        if request.path in _DEMO_ONLY:
            refusal = self._demo_refusal(request)
            if refusal is not None:
                return refusal
        if request.path == "/demo/broadcast":
            return await self._broadcast(request)
        if request.path == "/healthz":
            return self._healthz()
        if request.path == "/livez":
            # Answered by the event loop itself: 200 while it runs, even with the broker down
            # or the gateway draining (a restart would not help then; /healthz says "not ready").
            return json_response(200, {"status": "alive", "node": self._gateway.node})
        if request.path == "/metrics":
            status = self._gateway.feed_status()  # as of now, whether batches flow or not
            self._gateway.metrics.broker_status(status.connected, status.lag)
            body, content_type = self._gateway.metrics.render()
            return HttpResponse(200, body, content_type)
        if request.path == "/demo/token":
            return self._demo_token(request)
        static = self._static("/index.html" if request.path == "/" else request.path)
        if static is None:
            return _error(404, f"no such file: {request.path}")
        body, content_type = static
        return HttpResponse(200, body, content_type, {"cache-control": "no-cache"})

    def _preflight(self, request: HttpRequest, methods: tuple[str, ...]) -> HttpResponse:
        """204 with what a page of an allowed origin may send; 403 for another origin."""
        allowed = _methods(methods)
        origin = request.headers.get("origin")
        if origin is None:
            return HttpResponse(204, b"", "text/plain", {"allow": allowed})
        if not self._origins.allows(origin, request.headers.get("host")):
            return _error(
                403,
                f"origin {origin!r} is not allowed: list it in REALTIME_ALLOWED_ORIGINS",
            )
        return HttpResponse(
            204,
            b"",
            "text/plain",
            {
                "allow": allowed,
                "access-control-allow-methods": allowed,
                "access-control-allow-headers": _CORS_REQUEST_HEADERS,
                "access-control-max-age": _CORS_MAX_AGE,
            },
        )

    def _demo_refusal(self, request: HttpRequest) -> HttpResponse | None:
        """403 for what another site's page sends, 415 for a demo broadcast that is not JSON.

        A cross-site ``POST`` with ``Content-Type: text/plain`` needs no preflight, so the
        content type is checked as well as the origin: JSON from another origin always asks
        the browser's permission first. ``Sec-Fetch-Site`` covers requests without ``Origin``.
        """
        host = request.headers.get("host")
        origin = request.headers.get("origin")
        if not self._origins.host_allowed(host, self._listening_host):
            return _error(
                403,
                f"Host {host!r} does not name this gateway, which listens on "
                f"{self._listening_host}: refused against DNS rebinding (list the origin in "
                "REALTIME_ALLOWED_ORIGINS if the name is yours)",
            )
        if origin is not None and not self._origins.allows(origin, host):
            return _error(
                403,
                f"origin {origin!r} may not use the demo endpoints: only pages of this gateway "
                "or of REALTIME_ALLOWED_ORIGINS may",
            )
        if origin is None and request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return _error(403, "a cross-site request may not use the demo endpoints")
        if request.method == "POST":
            media_type = request.headers.get("content-type", "").partition(";")[0]
            if media_type.strip().lower() != "application/json":
                return _error(
                    415,
                    "send the message as Content-Type: application/json, "
                    f"not {media_type.strip() or 'no content type'!r}",
                )
        return None

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
            payload, plain = plain_json.loads(request.body), True
        except plain_json.NotPlain:
            try:
                payload, plain = json.loads(request.body), False
            except (ValueError, UnicodeDecodeError) as exc:
                return _error(400, f"body is not valid JSON: {exc}")
            except RecursionError:
                return _error(400, "body is nested too deeply")
        items = payload if isinstance(payload, list) else [payload]
        if not items or len(items) > 100:
            return _error(400, "send one message object, or a list of 1 to 100 of them")
        try:
            messages = [_message_from(item, plain) for item in items]
            if self._max_message_bytes is not None:
                for message in messages:
                    message.check_size(self._max_message_bytes)
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
        payload: dict[str, JSON] = {
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
        if gateway.webhooks is not None:
            hooks = gateway.webhooks
            payload["webhooks"] = {
                "queued": hooks.queued,
                "sent": hooks.sent,
                "failed_requests": hooks.failures,
                "dropped": hooks.dropped,
            }
        return json_response(200 if ok else 503, payload)

    def _demo_token(self, request: HttpRequest) -> HttpResponse:
        assert self._demo_tokens is not None
        user = request.query.get("user", "").strip()
        if not user or len(user) > 64:
            return _bad_parameter("user", "give ?user=NAME (1 to 64 characters)")
        name = request.query.get("name", user)[:64]
        try:
            token = self._demo_tokens.issue(
                user,
                info={"name": name},
                ttl=self._demo_token_ttl,
                channels=("private-**", "presence-**"),
            )
        except ValueError as exc:
            return _bad_parameter("user", str(exc))
        return json_response(200, {"token": token, "user_id": user})


_KEPT = ("id", "timestamp")
"""Envelope fields a publisher may give and the message keeps (else: a new id, the time now)."""


def _message_from(item: object, plain: bool = False) -> Message:
    """A message from one object of a ``POST /broadcast`` body: ``channel``, ``event``,
    ``data``, ``exclude``, or a whole envelope (``id``, ``type``, ``timestamp`` too), as the
    gateway publisher sends it. A given id is kept, so that what clients receive carries the id
    the publisher's caller holds, and a message sent twice can be recognised (ADR 0024).
    ``plain``: the body came from ``plain_json.loads``, so its data is JSON already and is
    written by orjson instead of checked by encoding it with ``json``."""
    if not isinstance(item, dict):
        raise InvalidMessage(
            f"a message is a JSON object with channel, event and data, not {item!r}"
        )
    missing = [key for key in ("channel", "event") if key not in item]
    if missing:
        raise InvalidMessage(f"message lacks {', '.join(missing)}")
    unknown = sorted(set(item) - {"channel", "event", "data", "exclude", "type", *_KEPT})
    if unknown:
        raise InvalidMessage(
            f"unknown field(s) {', '.join(unknown)}; use channel, event, data, exclude "
            "(and id, type, timestamp of an envelope)"
        )
    exclude = item.get("exclude")
    if exclude is not None and not isinstance(exclude, str):
        raise InvalidMessage("exclude must be a connection id string")
    kind = item.get("type", MessageType.EVENT.value)
    if kind != MessageType.EVENT.value:
        raise InvalidMessage(f"type must be {MessageType.EVENT.value!r}, not {kind!r}")
    kept = {name: item[name] for name in _KEPT if name in item}
    data = item.get("data")
    return Message(
        channel=Channel.of(item["channel"]),
        event=item["event"],
        data=data,
        exclude=exclude,
        data_json=(plain_json.dumps(data) or "") if plain else "",
        **kept,
    )
