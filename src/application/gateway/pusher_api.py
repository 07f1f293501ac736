"""Pusher's HTTP API on the gateway: what Pusher's server libraries call, signed with the app's
secret (``domain.pusher.signing``).

``POST /apps/{app_id}/events`` and ``/batch_events`` publish through tidings' own publishing, so
tidings clients and Pusher clients on the channel both receive the event (its ``data`` string as
it came, ``socket_id`` as the connection to skip); ``GET /apps/{app_id}/channels``,
``/channels/{name}`` and ``/channels/{name}/users`` answer from the cluster's counts and
presence (ADR 0037); ``POST /apps/{app_id}/users/{id}/terminate_connections`` closes the user's
connections on every node. The Python ``pusher`` library sends the last one to
``/users/{id}/terminate_connections``, without the app: that path is served too.

Success is JSON as Pusher answers it; every refusal is Pusher's status with a plain-text body
that names what was wrong.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from urllib.parse import unquote

from ...domain import Channel, Message
from ...domain.errors import BrokerError, InvalidMessage, MessageTooLarge
from ...domain.pusher import PusherApp, PusherApps, api, signing
from ...domain.pusher.signing import RequestRefused
from ...ports import HttpRequest, HttpResponse, Pending
from .gateway import Gateway

_APP = r"/apps/(?P<app>[^/]+)"
_ROUTES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(rf"{_APP}/events"), "POST", "events"),
    (re.compile(rf"{_APP}/batch_events"), "POST", "batch_events"),
    (re.compile(rf"{_APP}/channels"), "GET", "channels"),
    (re.compile(rf"{_APP}/channels/(?P<channel>[^/]+)"), "GET", "channel"),
    (re.compile(rf"{_APP}/channels/(?P<channel>[^/]+)/users"), "GET", "users"),
    (re.compile(rf"{_APP}/users/(?P<user>[^/]+)/terminate_connections"), "POST", "terminate"),
    (re.compile(r"/users/(?P<user>[^/]+)/terminate_connections"), "POST", "terminate"),
)
MAX_USER_ID = 200


def handles(path: str) -> bool:
    """Whether ``path`` is one of the Pusher API's (so the gateway hands the request here)."""
    return path.startswith("/apps/") or (
        path.startswith("/users/") and path.endswith("/terminate_connections")
    )


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, message.encode(), "text/plain; charset=utf-8")


def _json(payload: object) -> HttpResponse:
    return HttpResponse(200, json.dumps(payload, separators=(",", ":")).encode())


class PusherHttp:
    """The Pusher HTTP API of the gateway's apps (``apps``, not empty; ADR 0036), each at
    ``/apps/{its id}/...`` and checked against its own key and secret.

    ``publish`` is tidings' publishing (``RealtimeService.publish``); ``max_data_bytes`` bounds
    an event's ``data``; ``clock`` is the wall clock the request timestamps are checked against.
    """

    def __init__(
        self,
        *,
        apps: PusherApps,
        gateway: Gateway,
        publish: Callable[[Message], Pending],
        max_data_bytes: int = api.MAX_DATA_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._apps = apps
        self._gateway = gateway
        self._publish = publish
        self._max_data_bytes = max_data_bytes
        self._clock = clock

    async def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return await self._answer(request)
        except RequestRefused as refused:
            return _text(refused.status, refused.message)

    async def _answer(self, request: HttpRequest) -> HttpResponse:
        route, method, parts = _route(request.path)
        if route is None:
            raise RequestRefused(404, f"Not found: {request.path[:200]}")
        app = self._app(parts.get("app"), request.query.get("auth_key", ""))
        if request.method != method:
            raise RequestRefused(405, f"{request.method[:16]} is not allowed here: use {method}")
        signing.verify(
            request.method,
            request.path,
            request.query,
            request.body,
            key=app.key,
            secret=app.secret,
            now=self._clock(),
        )
        if route == "events":
            return await self._events(request)
        if route == "batch_events":
            return await self._batch(request)
        if route == "channels":
            return self._channels(request)
        if route == "terminate":
            return self._terminate(unquote(parts["user"]))
        channel = api.parse_channel(unquote(parts["channel"]))
        if route == "users":
            return self._users(channel)
        return self._channel(channel, request)

    def _app(self, app_id: str | None, auth_key: str) -> PusherApp:
        """The app a request is for: the one of its path's ``app_id`` (404 for another), or, on
        a path without one (``/users/{id}/terminate_connections``, as the ``pusher`` library
        sends it), the one whose key signed it (another key is refused by the signature check,
        against the first app)."""
        if app_id is not None:
            app = self._apps.by_id(unquote(app_id))
            if app is None:
                raise RequestRefused(404, f"Unknown app_id {unquote(app_id)[:64]!r}")
            return app
        return self._apps.by_key(auth_key) or self._apps.apps[0]

    # -- Publishing --------------------------------------------------------------------------

    async def _events(self, request: HttpRequest) -> HttpResponse:
        event = api.parse_event(_body(request), max_data_bytes=self._max_data_bytes)
        await self._publish_all([event])
        if not event.info:
            return _json({})
        return _json({"channels": {c.name: self._info(c, event.info) for c in event.channels}})

    async def _batch(self, request: HttpRequest) -> HttpResponse:
        events = api.parse_batch(_body(request), max_data_bytes=self._max_data_bytes)
        await self._publish_all(events)
        if not any(event.info for event in events):
            return _json({})
        return _json({"batch": [self._info(e.channels[0], e.info) for e in events]})

    async def _publish_all(self, events: list[api.Event]) -> None:
        """Publish every event to every channel it names; all are handed to the broker before
        any is awaited, and all were checked before any was handed on."""
        try:
            messages = [
                Message(channel=channel, event=event.name, data=event.data, exclude=event.socket_id)
                for event in events
                for channel in event.channels
            ]
            pendings = [self._publish(message) for message in messages]
        except MessageTooLarge as exc:
            raise RequestRefused(413, f"Payload too large: {exc}") from None
        except InvalidMessage as exc:
            raise RequestRefused(400, f"Invalid event: {exc}") from None
        except BrokerError as exc:
            raise RequestRefused(503, f"The broker did not take the event: {exc}") from None
        for pending in pendings:
            try:
                await pending
            except BrokerError as exc:
                raise RequestRefused(503, f"The broker did not take the event: {exc}") from None

    # -- Channels ----------------------------------------------------------------------------

    def _info(self, channel: Channel, info: frozenset[str]) -> dict[str, int]:
        answer: dict[str, int] = {}
        if "subscription_count" in info:
            answer["subscription_count"] = self._gateway.occupancy.count(channel.name)
        if "user_count" in info:
            answer["user_count"] = len(self._gateway.hub.presence.view(channel.name).members)
        return answer

    def _channels(self, request: HttpRequest) -> HttpResponse:
        prefix = request.query.get("filter_by_prefix", "")
        info = api.parse_info(request.query.get("info"))
        if "subscription_count" in info:
            raise RequestRefused(400, "info=subscription_count is given per channel only")
        if "user_count" in info and not prefix.startswith("presence-"):
            raise RequestRefused(
                400, "info=user_count needs filter_by_prefix=presence- (presence channels only)"
            )
        occupied = sorted(
            name for name in self._gateway.occupancy.occupied() if name.startswith(prefix)
        )
        return _json({"channels": {name: self._info(Channel(name), info) for name in occupied}})

    def _channel(self, channel: Channel, request: HttpRequest) -> HttpResponse:
        info = api.parse_info(request.query.get("info"))
        api.check_info(channel, info)
        count = self._gateway.occupancy.count(channel.name)
        return _json({"occupied": count > 0, **self._info(channel, info)})

    def _users(self, channel: Channel) -> HttpResponse:
        if not channel.is_presence:
            raise RequestRefused(
                400, f"Users are known for presence channels only, not {channel.name!r}"
            )
        members = self._gateway.hub.presence.members(channel)
        return _json({"users": [{"id": member.user_id} for member in members]})

    def _terminate(self, user_id: str) -> HttpResponse:
        if not user_id or len(user_id) > MAX_USER_ID or not user_id.isprintable():
            raise RequestRefused(400, f"Invalid user id {user_id[:64]!r}")
        self._gateway.terminate_user(user_id)
        return _json({})


def _route(path: str) -> tuple[str | None, str, dict[str, str]]:
    for pattern, method, route in _ROUTES:
        found = pattern.fullmatch(path)
        if found:
            return route, method, found.groupdict()
    return None, "", {}


def _body(request: HttpRequest) -> object:
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRefused(400, f"The body is not JSON: {exc}") from None
    except RecursionError:
        raise RequestRefused(400, "The body is nested too deeply") from None
