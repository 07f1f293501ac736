"""Support for the reliability tests: gateways, /proc probes, figures, a well-behaved bystander.

Every gateway here is a real ``tidings serve`` process on the memory broker (design.md §6: the
memory broker is a product feature, and these tests are about the gateway, not Kafka). Waits are
conditions polled against a deadline, never fixed sleeps.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import pytest
import trio
from hypothesis import HealthCheck, Phase

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env
from tests.support.wsclient import Client, connect
from tidings.adapters.jwt_tokens import JwtTokens

LIVE_HYPOTHESIS: dict[str, Any] = {
    "deadline": None,
    # No shrinking: each example costs dozens of round trips to a live gateway, and the failure
    # message already names the input, the connection's state and the answers.
    "phases": (Phase.explicit, Phase.reuse, Phase.generate),
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
}
"""Hypothesis settings for fuzzing a running gateway."""

T = TypeVar("T")

LOG_ENV = "TIDINGS_RELIABILITY_LOG"
"""Where the tests append their figures, one JSON object a line (unset: nothing is written)."""

RULES = ";".join(
    [
        "private-team.*=authenticated",
        "private-admin.*=users:1",
        "presence-chat.*=authenticated",
    ]
)

DOCUMENTED_CODES = frozenset({400, 401, 403, 404, 410, 413, 429})
"""Error codes of docs/protocol.md that a client frame can earn (503 is a broker refusal)."""

SERVER_FRAME_TYPES = frozenset(
    {"connected", "subscribed", "unsubscribed", "event", "pong", "error"}
)

WAIT = 15.0


# -- Figures -------------------------------------------------------------------------------------


def record(test: str, **figures: Any) -> None:
    """Append one JSON line of figures to ``$TIDINGS_RELIABILITY_LOG``; a no-op when it is unset."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = {"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line, sort_keys=True, default=str) + "\n")


# -- Gateways ------------------------------------------------------------------------------------


def gateway_env(**settings: str) -> dict[str, str]:
    return process_env(
        REALTIME_BROKER="memory",
        REALTIME_SECRET=SECRET,
        REALTIME_API_KEY=API_KEY,
        REALTIME_NODE_ID=f"rel-{secrets.token_hex(3)}",
        REALTIME_CHANNEL_RULES=RULES,
        **settings,
    )


@contextmanager
def running_gateway(*args: str, **settings: str) -> Iterator[Gateway]:
    """A ``tidings serve`` process; on leaving it must still be alive and exit 0 on SIGTERM."""
    gateway = Gateway(gateway_env(**settings), *args)
    try:
        yield gateway
    finally:
        crashed = gateway.process.poll()
        code = gateway.stop()
        assert crashed is None and code == 0, (
            f"gateway {'had already exited ' + str(crashed) if crashed is not None else 'exited'}"
            f" {code}:\n{gateway.output()[-6000:]}"
        )


def port_of(gateway: Gateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def token(user: str, *, info: Any = None, ttl: float = 600, channels: tuple[str, ...] = ()) -> str:
    return JwtTokens(SECRET).issue(user, info=info, ttl=ttl, channels=channels)


def auth() -> dict[str, str]:
    return {"authorization": f"Bearer {API_KEY}"}


def healthz(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    response = httpx.get(gateway.url + "/healthz", timeout=WAIT)
    return response.status_code, response.json()


async def ahealthz(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    return await trio.to_thread.run_sync(healthz, gateway)


def metric(gateway: Gateway, name: str) -> float:
    """One unlabelled sample of ``/metrics``."""
    text = httpx.get(gateway.url + "/metrics", timeout=WAIT).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics:\n{text}")


def assert_serving(gateway: Gateway) -> dict[str, Any]:
    """The process is alive and ``/healthz`` answers 200; its payload."""
    assert gateway.process.poll() is None, f"gateway died:\n{gateway.output()[-6000:]}"
    status, payload = healthz(gateway)
    assert status == 200, payload
    return payload


# -- The process, from /proc ---------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_until(check: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = trio.current_time() + timeout
    while True:
        value = check()
        if value:
            return value
        if trio.current_time() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {value!r})")
        await trio.sleep(poll)


async def quiet_fd_count(pid: int, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """The gateway's fd count once it has not changed for ``quiet`` seconds (sockets of an
    earlier test, or of the /metrics request just made, may still be closing)."""
    deadline = trio.current_time() + timeout
    count, since = fd_count(pid), trio.current_time()
    while trio.current_time() - since < quiet:
        assert trio.current_time() < deadline, f"fd count of {pid} never settled"
        await trio.sleep(0.05)
        now = fd_count(pid)
        if now != count:
            count, since = now, trio.current_time()
    return count


@pytest.fixture(scope="session", autouse=True)
def _enough_file_descriptors() -> None:
    """Thousands of client sockets: lift this process's soft fd limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- A well-behaved client that must not notice what the others do ------------------------------


class Bystander:
    """A client on its own thread and trio loop: subscribed to a public channel, pinging every
    second, receiving a numbered broadcast that a publisher posts over HTTP every ``interval``.

    ``check()`` waits until everything published so far has arrived, in order, without a gap.
    """

    def __init__(self, gateway: Gateway, interval: float = 0.02) -> None:
        self.gateway = gateway
        self.channel = f"public.bystander.{secrets.token_hex(3)}"
        self.interval = interval
        self.published = 0
        self.received: list[int] = []
        self.pongs = 0
        self.max_event_delay = 0.0
        """Seconds from the broadcast's timestamp (set by the gateway) to its arrival here."""
        self.max_pong_delay = 0.0
        self._pinged = 0.0
        self.unexpected: list[Any] = []
        self.failure: BaseException | None = None
        self._ready = threading.Event()
        self._halt = threading.Event()
        """Publish no more: set by ``stop`` before it counts."""
        self._halted = threading.Event()
        """The publisher has stopped, so ``published`` is final (its last post has returned)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="bystander", daemon=True)

    def start(self) -> Bystander:
        self._thread.start()
        if not self._ready.wait(WAIT):
            raise AssertionError(f"bystander did not start: {self.failure!r}")
        return self

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # kept for check(), which reports it
            self.failure = exc
            self._ready.set()

    async def _run(self) -> None:
        async with connect(self.gateway.ws_url) as client:
            await client.subscribe(self.channel)
            self._ready.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._publish)
                nursery.start_soon(self._read, client)
                nursery.start_soon(self._ping, client)
                await trio.to_thread.run_sync(self._stop.wait, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()

    async def _publish(self) -> None:
        try:
            with httpx.Client(base_url=self.gateway.url, headers=auth(), timeout=WAIT) as http:
                while not self._halt.is_set():
                    body = {"channel": self.channel, "event": "tick", "data": {"n": self.published}}
                    response = await trio.to_thread.run_sync(
                        functools.partial(http.post, "/broadcast", json=body)
                    )
                    if response.status_code != 200:
                        raise AssertionError(f"bystander broadcast refused: {response.text}")
                    self.published += 1
                    await trio.sleep(self.interval)
        finally:
            self._halted.set()

    async def _read(self, client: Client) -> None:
        while True:
            frame = await client.recv(timeout=60)
            client.seen.clear()
            if frame.get("type") == "event" and frame.get("channel") == self.channel:
                self.received.append(frame["data"]["n"])
                delay = time.time() - frame["timestamp"]
                self.max_event_delay = max(self.max_event_delay, delay)
            elif frame == {"type": "pong"}:
                self.pongs += 1
                self.max_pong_delay = max(self.max_pong_delay, time.monotonic() - self._pinged)
            else:
                self.unexpected.append(frame)

    async def _ping(self, client: Client) -> None:
        while True:
            self._pinged = time.monotonic()
            await client.send(type="ping")
            await trio.sleep(1)

    def check(self, timeout: float = WAIT) -> dict[str, int]:
        """Everything published until now arrived, in order and once; raises otherwise."""
        target = self.published
        deadline = time.monotonic() + timeout
        while len(self.received) < target and self.failure is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert self.failure is None, f"bystander failed: {self.failure!r}"
        assert len(self.received) >= target, (
            f"bystander got {len(self.received)} of {target} broadcasts within {timeout} s"
        )
        assert self.received == list(range(len(self.received))), "bystander saw a gap or reorder"
        assert not self.unexpected, self.unexpected[:5]
        return {
            "published": self.published,
            "received": len(self.received),
            "pongs": self.pongs,
            "max_event_delay_ms": round(self.max_event_delay * 1000),
            "max_pong_delay_ms": round(self.max_pong_delay * 1000),
        }

    def stop(self) -> dict[str, int]:
        """Stop publishing, then check: a broadcast can arrive before its POST has returned, so
        counting while the publisher runs could see one more received than published."""
        self._halt.set()
        if not self._halted.wait(WAIT) and self.failure is None:
            raise AssertionError(f"the bystander's publisher did not stop within {WAIT} s")
        figures = self.check()
        self._stop.set()
        self._thread.join(WAIT)
        assert self.failure is None, f"bystander failed: {self.failure!r}"
        return figures
