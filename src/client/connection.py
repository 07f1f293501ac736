"""One client's connection to a gateway: connect, keep alive, reconnect, resume (trio).

The state machine of the browser client (``client.js``), in trio: a connection loop opens a
WebSocket (asking the token provider each time), reads frames until it closes, then follows the
gateway's table of close codes (``tidings.domain.disconnects``): reconnect with back-off and
resume every channel with ``since``, come back at once with a fresh token, wait longer after
flooding, or stop for good (a refused token, a protocol error, ``max_retries`` failed attempts).
Every wait is bounded (``connect_timeout``, ``close_timeout``, ``pong_timeout``) and every task
lives in the client's nursery, which ``connect`` owns.
"""

from __future__ import annotations

import inspect
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import trio
import trio_websocket

from ..domain.channel import Channel, ChannelKind
from ..domain.disconnects import DISCONNECTS, Advice
from ..domain.message import MAX_EVENT_LENGTH
from ..domain.position import Position
from ..domain.protocol import CLIENT_EVENT_PREFIX, ErrorCode
from .backoff import Backoff
from .errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    NotFound,
    RateLimited,
    TokenRefused,
    error_for,
)
from .events import State, StateChange
from .runner import Runner
from .subscription import Subscription

log = logging.getLogger("tidings.client")

TokenSource = str | Callable[[], "str | Awaitable[str | None] | None"] | None
"""A token, or a function (plain or async) asked before every connection attempt."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


def _count(minimum: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and attribute.name == "max_retries":
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{attribute.name} must be a whole number >= {minimum}, not {value!r}")

    return check


def _ssl_context(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise ValueError(f"ssl_context must be an ssl.SSLContext or None, not {value!r}")


@attrs.frozen(kw_only=True)
class Options:
    """How a client behaves; ``connect``'s keyword arguments, checked when it is called."""

    ping_interval: float = attrs.field(default=25.0, validator=_positive)
    """Seconds between pings (the gateway closes connections silent for its idle timeout)."""
    pong_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds to wait for any frame after a ping before the connection counts as dead."""
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds for the TCP connection, the handshake and the gateway's ``connected`` frame."""
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    """Seconds to wait for the gateway's answer to our close."""
    min_delay: float = 0.5
    max_delay: float = 10.0
    flood_delay: float = 30.0
    max_retries: int | None = attrs.field(default=None, validator=_count(0))
    """Failed attempts in a row before giving up (``ConnectionLost``); None: never give up."""
    buffer: int = attrs.field(default=1000, validator=_count(1))
    """Events each subscription holds until they are read."""
    max_message_size: int = attrs.field(default=16 * 2**20, validator=_count(1))
    on_state: Callable[[StateChange], object] | None = None
    """Called (synchronously) on every state change."""
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, validator=_ssl_context)
    """How ``wss://`` connections check the gateway's certificate (a private CA, a client
    certificate); None: the system's trusted CAs, as ``ssl.create_default_context()``."""

    backoff: Backoff = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        backoff = Backoff(self.min_delay, self.max_delay, self.flood_delay)
        object.__setattr__(self, "backoff", backoff)


def websocket_url(url: str) -> str:
    """``url`` as the gateway's WebSocket endpoint: ``http(s)`` becomes ``ws(s)``, and a URL
    without a path gets ``/ws``. Raises ``ValueError`` naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"the gateway's URL must be text like ws://127.0.0.1:6001/ws, not {url!r}")
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(
            f"the gateway's URL must be ws://, wss://, http:// or https:// with a host, not {url!r}"
        )
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _why(error: BaseException) -> str:
    """The most precise words for a failed connection: the OS's (``Connection refused``) where
    an error caused by one says less (``all attempts to connect to ... failed``)."""
    text = str(error) or type(error).__name__
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        strerror = getattr(error, "strerror", None)
        if strerror:
            return str(strerror)
        if isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        elif error.__cause__ is not None or error.__context__ is not None:
            error = error.__cause__ or error.__context__  # type: ignore[assignment]
        else:
            break
    return text


@attrs.frozen
class _Ended:
    """How one connection attempt ended."""

    code: int | None
    """The close code, or None when there was none (refused, unreachable, lost, dead)."""
    reason: str
    connected: bool
    """Whether the gateway had confirmed the connection."""


class Client:
    """A connection to a tidings gateway, with any number of subscriptions on it.

    Made by ``tidings.client.connect``; see ``docs/python-client.md``.
    """

    def __init__(self, url: str, token: TokenSource, runner: Runner, options: Options) -> None:
        if token is not None and not isinstance(token, str) and not callable(token):
            raise TypeError(f"token must be a string or a function returning one, not {token!r}")
        self.url = websocket_url(url)
        if options.ssl_context is not None and not self.url.startswith("wss://"):
            raise ValueError(
                f"ssl_context is for wss:// (or https://) URLs; {self.url!r} is not encrypted"
            )
        self.options = options
        self._token = token
        self._runner = runner
        self._state = State.CONNECTING
        self._info: dict[str, Any] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._changed = trio.Event()
        self._closing = trio.Event()
        self._finished = trio.Event()
        self._confirmed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._failure: ClientError | None = None
        self._refused_token: str | None = None
        self._auth_error: ClientError | None = None
        self._heard = 0.0
        self._busy = False
        self._resending = False
        self.attempts = 0
        """Connection attempts so far."""

    def __repr__(self) -> str:
        return f"<Client {self.url} {self._state}>"

    # -- What callers read -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def error(self) -> ClientError | None:
        """What stopped the client (state ``FAILED``), else None."""
        return self._failure

    @property
    def connection_id(self) -> str | None:
        """The gateway's id of the current connection (``exclude`` it when broadcasting)."""
        value = self._info.get("connection_id")
        return value if isinstance(value, str) else None

    @property
    def user_id(self) -> str | None:
        value = self._info.get("user_id")
        return value if isinstance(value, str) else None

    @property
    def node(self) -> str | None:
        value = self._info.get("node")
        return value if isinstance(value, str) else None

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return dict(self._subscriptions)

    # -- What callers do (the caller's library; run in trio by the runner) -----------------------

    async def subscribe(self, channel: str, since: str | None = None) -> Subscription:
        """Subscribe to ``channel`` and wait for the gateway's answer.

        ``since``: a position to resume from (what a previous subscription's ``position`` was);
        the gateway replays what followed it. Subscribing again to a channel returns the same
        subscription. While disconnected the subscription waits for the connection.

        Raises ``Unauthorized``, ``Forbidden``, ``RateLimited``... when the gateway refuses;
        ``InvalidChannel`` or ``InvalidPosition`` (``ValueError``) for a bad argument; the
        client's failure (``TokenRefused``, ``ConnectionLost``) or ``ClientClosed``.
        """
        Channel(channel)  # InvalidChannel names what is wrong
        if since is not None:
            Position.parse(since)  # InvalidPosition names what is wrong
        return await self._runner.call(self._subscribe, channel, since)

    async def trigger(self, channel: str, event: str, data: Any = None) -> bool:
        """Send a client event (``client-...``) to the channel's other subscribers.

        Only on private and presence channels this client holds. True when sent now, False when
        queued until the subscription is confirmed (after a reconnect). The gateway's refusal
        (403, 404, 429, 503) is raised by the subscription's iteration.
        """
        if not isinstance(event, str) or not event.startswith(CLIENT_EVENT_PREFIX):
            raise ValueError(
                f"client event names start with {CLIENT_EVENT_PREFIX!r}, got {event!r}"
            )
        if len(event) > MAX_EVENT_LENGTH or not event.isprintable():
            raise ValueError(f"event name {event[:40]!r} is too long or not printable")
        if Channel(channel).kind is ChannelKind.PUBLIC:
            raise ValueError(f"client events go on private or presence channels, not {channel!r}")
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"data of {event!r} is not JSON-serialisable: {exc}") from None
        return await self._runner.call(self._trigger, channel, event, data)

    async def unsubscribe(self, channel: str) -> None:
        """Leave ``channel`` (nothing happens if it is not held)."""
        subscription = self._subscriptions.get(channel)
        if subscription is not None:
            await subscription.unsubscribe()

    async def wait_connected(self) -> None:
        """Wait until the gateway has confirmed a connection (at once if it has). Raises the
        client's failure or ``ClientClosed``; bound it with the caller's own timeout."""
        await self._runner.call(self._wait_connected)

    # -- The trio side ---------------------------------------------------------------------------

    def _usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing.is_set():
            raise ClientClosed("the client was closed")

    async def _subscribe(self, channel: str, since: str | None) -> Subscription:
        self._usable()
        subscription = self._subscriptions.get(channel)
        if subscription is None:
            subscription = Subscription(self, channel, since, self.options.buffer)
            self._subscriptions[channel] = subscription
            if self._state is State.CONNECTED:
                await self._send(subscription._subscribe_frame())
        await subscription._settled.wait()
        if subscription._refusal is not None:
            raise subscription._refusal
        self._usable()
        return subscription

    async def _trigger(self, channel: str, event: str, data: Any) -> bool:
        self._usable()
        subscription = self._subscriptions.get(channel)
        if subscription is None or subscription.state in ("failed", "unsubscribed"):
            raise ValueError(f"subscribe to {channel!r} before triggering client events on it")
        frame = {"type": "event", "channel": channel, "event": event, "data": data}
        if subscription.state == "subscribed" and await self._send(frame):
            return True
        if len(subscription._queue) >= self.options.buffer:
            raise RateLimited(
                f"{len(subscription._queue)} client events already wait for the connection",
                channel=channel,
            )
        subscription._queue.append(frame)
        return False

    async def _unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.get(subscription.channel) is not subscription:
            subscription._end(None)
            return
        del self._subscriptions[subscription.channel]
        held = subscription.state in ("subscribed", "pending")
        subscription._end(None)
        if held:
            await self._send({"type": "unsubscribe", "channel": subscription.channel})

    async def _wait_connected(self) -> None:
        while True:
            self._usable()
            if self._state is State.CONNECTED:
                return
            await self._changed.wait()

    async def _send(self, frame: dict[str, Any]) -> bool:
        """Send ``frame`` on the current connection; False when there is none (it is resent or
        dropped by whoever called, as the frame requires)."""
        ws = self._ws
        if ws is None or self._state is not State.CONNECTED:
            return False
        try:
            await ws.send_message(json.dumps(frame, separators=(",", ":")))
        except trio_websocket.ConnectionClosed:
            return False
        return True

    def _set_state(self, state: State, reason: str | None = None, **extra: Any) -> None:
        if state is self._state and state is not State.RECONNECTING:
            return
        self._state = state
        self._changed.set()
        self._changed = trio.Event()
        if self.options.on_state is not None:
            try:
                self.options.on_state(StateChange(state, reason, **extra))
            except Exception:  # a callback's bug must not break the connection
                log.exception("on_state callback failed")

    # -- Lifetime ----------------------------------------------------------------------------

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the connection until ``_close``; what ``connect`` starts in its nursery."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._connection_loop)
                task_status.started()
                await self._closing.wait()
                ws = self._ws
                if ws is not None:
                    with trio.move_on_after(self.options.close_timeout):
                        await ws.aclose(1000, "client closed")
                nursery.cancel_scope.cancel()
        finally:
            self._ws = None
            if self._failure is None:
                self._set_state(State.CLOSED)
            for subscription in list(self._subscriptions.values()):
                subscription._end(None)
            self._subscriptions.clear()
            self._changed.set()
            self._finished.set()

    async def _close(self) -> None:
        self._closing.set()
        self._changed.set()
        with trio.move_on_after(self.options.close_timeout + 1):
            await self._finished.wait()

    def _fail(self, error: ClientError) -> None:
        """Stop for good: every waiter and every subscription's iteration gets ``error``."""
        self._failure = error
        log.warning("tidings client stopped: %s", error)
        for subscription in list(self._subscriptions.values()):
            subscription._end(error, "failed")
        self._subscriptions.clear()
        self._set_state(State.FAILED, str(error), error=error)

    async def _connection_loop(self) -> None:
        failures = 0
        while not self._closing.is_set():
            token: str | None = None
            try:
                token = await self._next_token()
            except ClientError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # the user's provider failed: try again later
                log.warning("token provider failed: %r", exc)
                ended = _Ended(None, f"token provider failed: {exc!r}", False)
            else:
                self.attempts += 1
                self._set_state(State.CONNECTING)
                ended = await self._attempt(token)
            if self._closing.is_set():
                return
            failures = 0 if ended.connected else failures + 1
            delay = self._after(ended, token, failures)
            if delay is None:
                return
            reason = ended.reason if ended.code is None else f"{ended.code} {ended.reason}".strip()
            log.info("tidings client disconnected (%s); reconnecting in %.1fs", reason, delay)
            self._set_state(State.RECONNECTING, reason, retry_in=delay)
            with trio.move_on_after(delay):
                await self._closing.wait()

    def _after(self, ended: _Ended, token: str | None, failures: int) -> float | None:
        """The delay before the next attempt, or None after failing the client."""
        options = self.options
        if options.max_retries is not None and failures > options.max_retries:
            self._fail(
                ConnectionLost(
                    f"gave up after {failures} failed attempt(s) in a row to reach {self.url}: "
                    f"{ended.reason}",
                    code=ended.code,
                )
            )
            return None
        row = DISCONNECTS.get(ended.code) if ended.code is not None else None
        advice = row.advice if row is not None else Advice.RESUME
        provider = callable(self._token)
        if advice is Advice.NO_RETRY:
            cause = self._auth_error.message if self._auth_error else ended.reason
            error = TokenRefused(f"token refused: {cause}", code=ended.code)
            if not provider:
                self._fail(error)
                return None
            self._refused_token = token
            return options.backoff.delay(failures)
        if advice is Advice.NEW_TOKEN:
            if not provider and token:
                self._fail(
                    TokenRefused(
                        "the token expired; give a token provider function to refresh it",
                        code=ended.code,
                    )
                )
                return None
            return 0.0 if ended.connected else options.backoff.delay(failures)
        if advice is Advice.BACK_OFF:
            return options.backoff.flooded()
        if advice is Advice.STOP:
            self._fail(
                ConnectionLost(
                    f"the gateway closed the connection: {ended.reason}", code=ended.code
                )
            )
            return None
        return options.backoff.delay(max(failures - 1, 0))

    async def _next_token(self) -> str | None:
        source = self._token
        if source is None or isinstance(source, str):
            return source
        result = source()
        if inspect.isawaitable(result):
            result = await self._runner.host(result)
        if result is not None and not isinstance(result, str):
            raise TypeError(f"the token provider returned {result!r}, not a string or None")
        if result and result == self._refused_token:
            raise TokenRefused(
                "the token was refused and the token provider returned it again; not retrying",
                code=4401,
            )
        return result or None

    def _url_with(self, token: str | None) -> str:
        if not token:
            return self.url
        parts = urlsplit(self.url)
        query = [(key, value) for key, value in parse_qsl(parts.query) if key != "token"]
        query.append(("token", token))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def _attempt(self, token: str | None) -> _Ended:
        """One connection, from opening it until it ends."""
        self._auth_error = None
        self._info = {}
        self._confirmed = trio.Event()
        options = self.options
        try:
            async with trio_websocket.open_websocket_url(
                self._url_with(token),
                connect_timeout=options.connect_timeout,
                disconnect_timeout=options.close_timeout,
                max_message_size=options.max_message_size,
                ssl_context=options.ssl_context,
            ) as ws:
                self._ws = ws
                try:
                    return await self._session(ws)
                finally:
                    self._ws = None
                    for subscription in self._subscriptions.values():
                        subscription._disconnected()
        except trio_websocket.ConnectionRejected as exc:
            return _Ended(
                None, f"the gateway refused the connection: HTTP {exc.status_code}", False
            )
        except trio_websocket.HandshakeError as exc:
            text = _why(exc)
            return _Ended(None, f"gateway unreachable at {self.url}: {text}", False)
        except (OSError, trio_websocket.ConnectionClosed) as exc:
            return _Ended(None, f"connection lost: {exc!r}", self._confirmed.is_set())

    async def _session(self, ws: trio_websocket.WebSocketConnection) -> _Ended:
        ended: _Ended | None = None
        dead: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keepalive, ws, nursery.cancel_scope, dead)
            try:
                while True:
                    text = await ws.get_message()
                    self._heard = trio.current_time()
                    await self._on_frame(text)
            except trio_websocket.ConnectionClosed as exc:
                reason = exc.reason
                ended = _Ended(
                    reason.code if reason is not None else None,
                    (reason.reason or reason.name) if reason is not None else "closed",
                    self._confirmed.is_set(),
                )
            nursery.cancel_scope.cancel()
        if ended is None:  # the keepalive gave up on this connection
            await trio.aclose_forcefully(ws)
            ended = _Ended(None, dead[0] if dead else "connection dead", self._confirmed.is_set())
        return ended

    async def _keepalive(
        self, ws: trio_websocket.WebSocketConnection, session: trio.CancelScope, dead: list[str]
    ) -> None:
        options = self.options
        with trio.move_on_after(options.connect_timeout) as waiting:
            await self._confirmed.wait()
        if waiting.cancelled_caught:
            dead.append(
                f"the gateway did not confirm the connection within {options.connect_timeout:g}s"
            )
            session.cancel()
            return
        while True:
            await trio.sleep(options.ping_interval)
            sent = trio.current_time()
            try:
                await ws.send_message('{"type":"ping"}')
            except trio_websocket.ConnectionClosed:
                return
            await trio.sleep(options.pong_timeout)
            if self._heard < sent and not self._busy:
                dead.append(f"no answer to a ping within {options.pong_timeout:g}s")
                session.cancel()
                return

    async def _on_frame(self, text: str | bytes) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return  # the gateway sends JSON only
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        channel = frame.get("channel")
        subscription = self._subscriptions.get(channel) if isinstance(channel, str) else None
        if kind == "connected":
            await self._on_connected(frame.get("data"))
        elif kind == "event" and subscription is not None:
            await subscription._event(frame)
        elif kind == "subscribed" and subscription is not None:
            for queued in await subscription._subscribed(frame.get("data")):
                if not await self._send(queued):
                    subscription._queue.append(queued)
        elif kind == "error":
            await self._on_error(frame)
        # "pong", "unsubscribed" and frame types newer than this client need nothing

    async def _on_connected(self, data: Any) -> None:
        self._info = data if isinstance(data, dict) else {}
        self._confirmed.set()
        self._set_state(State.CONNECTED)
        for subscription in list(self._subscriptions.values()):
            if subscription.state != "failed":
                await self._send(subscription._subscribe_frame())

    async def _on_error(self, frame: dict[str, Any]) -> None:
        data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
        assert isinstance(data, dict)
        code = data.get("code")
        message = str(data.get("message") or "error")
        channel = frame.get("channel") if isinstance(frame.get("channel"), str) else None
        error = error_for(code if isinstance(code, int) else 0, message, channel)
        if not self._confirmed.is_set() and code == ErrorCode.UNAUTHORIZED:
            self._auth_error = error  # told with the close that follows
            return
        subscription = self._subscriptions.get(channel) if channel else None
        if subscription is not None:
            if await subscription._error(error) == "failed":
                self._subscriptions.pop(subscription.channel, None)
        elif not (channel and isinstance(error, NotFound)):
            # (a 404 about a channel no longer held answers an unsubscribe: nothing to tell)
            log.warning("the gateway refused a frame: %s", error)
        if isinstance(error, RateLimited) and channel is None:
            self._resend_pending_later()

    def _resend_pending_later(self) -> None:
        """A rate-limit error does not say which frame it refused; if it was a subscribe, its
        subscription would wait for ever. Ask again for every one still waiting, a little later
        (asking for a channel already granted only confirms it again)."""
        if self._resending or self._nursery is None:
            return
        self._resending = True

        async def resend() -> None:
            try:
                await trio.sleep(max(1.0, self.options.min_delay))
                for subscription in list(self._subscriptions.values()):
                    if subscription.state == "pending":
                        await self._send(subscription._subscribe_frame())
            finally:
                self._resending = False

        self._nursery.start_soon(resend)
