"""The servers under test, started the way their users start them, and how to publish to each.

* ``tidings-memory``: ``tidings serve`` on the embedded broker; publisher ``POST /broadcast``.
  Started with ``pusher=True`` it also serves a Pusher app (``PUSHER_APP_*``): the same process
  seen as ``pusher-memory`` (``Server.speaking``) has its clients speak the Pusher protocol at
  ``/app/{key}``.
* ``tidings-kafka``: ``tidings serve --broker kafka``; publisher ``tidings.broadcast_nowait``.
* ``tidings-1w-kafka``, ``tidings-2w-kafka``: the same with ``--workers 1`` or ``2``, not pinned
  (the scaling scenario): the workers may use every core.
* ``socketio``: python-socketio's ``Server`` (gevent, gevent-websocket), its fastest mode in one
  process; publisher ``POST /emit``.
* ``socketio-asyncio``: python-socketio's ``AsyncServer`` on aiohttp; publisher ``POST /emit``.
* ``socketio-kafka``: ``socketio.Server`` (gevent) with ``KafkaManager``; publisher
  ``KafkaManager(write_only=True)``.
* ``centrifugo``: Centrifugo (the pinned v6 release, ``environment.ensure_centrifugo``) on its
  memory engine keeping 1,000 messages per channel like tidings' memory broker, ``GOMAXPROCS=1``
  on the gateway's core; publisher its HTTP API (``/api/publish``
  or ``/api/batch``). Fan-out clients connect anonymously to a public channel; many-channels
  clients carry an HS256 connection token for user N (the same tokens as tidings', the same
  secret) and subscribe to the user-limited channel ``user#N``, which only user N may join.
"""

from __future__ import annotations

import functools
import json
import secrets
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from .core import SUT_CORE, Context
from .environment import BENCH, CENTRIFUGO_VERSION, ensure_centrifugo
from .procs import Child, free_port, wait_http

WORKERS = {"tidings-1w-kafka": 1, "tidings-2w-kafka": 2}
"""Gateway processes of the scaling scenario's systems (``tidings serve --workers``)."""

QUEUE_SIZE = 1_000_000
"""REALTIME_QUEUE_SIZE: saturation runs queue far more per client than a real gateway should."""


@dataclass
class Server:
    system: str
    child: Child
    port: int
    publisher_kind: str
    publisher_env: dict[str, str]
    publisher_args: list[str] = field(default_factory=list)
    pusher_key: str | None = None
    """The key of the Pusher app the gateway serves (``PUSHER_APP_KEY``), if it serves one."""

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        if self.proto == "centrifugo":
            return f"ws://127.0.0.1:{self.port}/connection/websocket"
        if self.proto == "pusher":
            return f"ws://127.0.0.1:{self.port}/app/{self.pusher_key}"
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def proto(self) -> str:
        """What the load generator's clients speak (its ``-proto``)."""
        if self.system.startswith("socketio"):
            return "socketio"
        if self.system.startswith("centrifugo"):
            return "centrifugo"
        return "pusher" if self.system.startswith("pusher") else "tidings"

    def speaking(self, system: str) -> Server:
        """The same server process under another system name: ``pusher-...`` for Pusher clients."""
        if system.startswith("pusher") and self.pusher_key is None:
            raise ValueError(f"{self.system} was not started with a Pusher app")
        return replace(self, system=system)


def _tidings_command(python: str) -> list[str]:
    script = Path(python).with_name("tidings")
    if script.exists():
        return [str(script)]
    return [python, "-c", "from tidings.entrypoints.cli import main; main()"]


def start_server(
    ctx: Context, system: str, tag: str, *, strategy: str = "per-channel", pusher: bool = False
) -> Server:
    """Start ``system`` on core 0 and wait until it answers; ``tag`` names its logs and topics.

    ``pusher``: a tidings gateway also serves a Pusher app (``PUSHER_APP_ID``, ``_KEY``,
    ``_SECRET``), whose key the returned server holds.
    """
    if system.startswith("centrifugo"):
        return start_centrifugo(ctx, system, tag)
    port = free_port()
    name = f"{system}-{tag}"
    if system.startswith("tidings"):
        broker = "kafka" if system.endswith("kafka") else "memory"
        kafka_env = {} if broker == "memory" else {
            "KAFKA_BROKERS": ctx.brokers,
            "KAFKA_TOPIC_PREFIX": ctx.prefix(tag.replace("-", "")),
            "KAFKA_TOPIC_STRATEGY": strategy,
            "KAFKA_CONSUMER_GROUP": f"bench-{ctx.run_id}",
        }
        pusher_key = f"bench-{secrets.token_hex(4)}" if pusher else None
        pusher_env = {} if pusher_key is None else {
            "PUSHER_APP_ID": "1",
            "PUSHER_APP_KEY": pusher_key,
            "PUSHER_APP_SECRET": secrets.token_hex(32),
        }
        env = ctx.env(
            REALTIME_BROKER=broker,
            REALTIME_SECRET=ctx.secret,
            REALTIME_API_KEY=ctx.api_key,
            REALTIME_QUEUE_SIZE=str(QUEUE_SIZE),
            REALTIME_IDLE_TIMEOUT="3600",
            REALTIME_HANDSHAKE_TIMEOUT="60",
            # Every client of the load generator comes from 127.0.0.1, in their thousands.
            REALTIME_MAX_CONNECTIONS="0",
            REALTIME_MAX_CONNECTIONS_PER_IP="0",
            **kafka_env,
            **pusher_env,
        )
        argv = [*_tidings_command(ctx.python), "--log-level", "WARNING", "serve",
                "--port", str(port), "--node-id", f"bench-{ctx.run_id}-{tag}"]
        core: int | None = SUT_CORE
        if system in WORKERS:
            argv += ["--workers", str(WORKERS[system])]
            core = None
        child = ctx.procs.start(name, argv, core=core, env=env, cwd=ctx.work)
        wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout=90)
        if broker == "kafka":
            return Server(system, child, port, "tidings-kafka",
                          ctx.env(REALTIME_BROKER="kafka", **kafka_env), pusher_key=pusher_key)
        return Server(system, child, port, "tidings-http", ctx.env(),
                      ["--url", f"http://127.0.0.1:{port}", "--key", ctx.api_key],
                      pusher_key=pusher_key)
    if pusher:
        raise ValueError(f"{system} cannot serve a Pusher app")
    argv = [ctx.python, str(BENCH / "peers" / "socketio_server.py"), "--port", str(port)]
    publisher_args = ["--url", f"http://127.0.0.1:{port}"]
    kind = "socketio-http"
    if system == "socketio-asyncio":
        argv.append("--asyncio")
    if system == "socketio-kafka":
        topic = f"{ctx.prefix(tag.replace('-', ''))}-socketio"
        create_topic(ctx.brokers, topic)
        argv += ["--kafka", ctx.kafka_url, "--channel", topic]
        publisher_args = ["--kafka", ctx.kafka_url, "--topic", topic, "--parallel", "8"]
        kind = "socketio-kafka"
    child = ctx.procs.start(name, argv, core=SUT_CORE, env=ctx.env(), cwd=ctx.work)
    wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout=60)
    return Server(system, child, port, kind, ctx.env(), publisher_args)


CENTRIFUGO_QUEUE_BYTES = 1 << 30
"""client.queue_max_size: like tidings' REALTIME_QUEUE_SIZE, far more than a real server should
queue per client, so that a saturation run measures delivery, not slow-client disconnects."""


CENTRIFUGO_HISTORY = 1000
"""Messages kept per channel, as tidings' memory broker keeps (``history_size``)."""


@functools.cache
def centrifugo_binary() -> tuple[Path | None, str]:
    """The Centrifugo binary, or None and why not (built once per run, then cached)."""
    return ensure_centrifugo()


def centrifugo_skipped(ctx: Context, scenario: str) -> bool:
    """Whether Centrifugo is missing for ``scenario``: if so, printed and put in the report."""
    binary, reason = centrifugo_binary()
    if binary is not None:
        return False
    ctx.log(f"centrifugo skipped: {reason}")
    ctx.results.problem(f"{scenario}: centrifugo skipped: {reason}")
    return True


def centrifugo_config(ctx: Context, port: int) -> dict[str, object]:
    """Centrifugo's configuration for a run: memory engine, each channel's last 1,000 messages
    kept (as tidings' memory broker keeps them), no presence, the HTTP API behind a key,
    anonymous clients on public channels, token holders on their ``user#N``."""
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "warn"},
        "engine": {"type": "memory"},
        "http_api": {"key": ctx.api_key},
        "health": {"enabled": True},
        "usage_stats": {"disabled": True},
        "client": {
            "allowed_origins": ["*"],
            "allow_anonymous_connect_without_token": True,
            "token": {"hmac_secret_key": ctx.secret},
            "queue_max_size": CENTRIFUGO_QUEUE_BYTES,
        },
        # A slow reader (the one-core load generator at saturation) is waited for, as tidings'
        # gateway waits for it with its large queues, rather than cut off after 1 s.
        "websocket": {"write_timeout": "60s"},
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_anonymous": True,
                "allow_subscribe_for_client": True,
                "allow_user_limited_channels": True,
                # tidings' memory broker keeps each channel's last 1,000 messages for resume
                # (positions on every event): Centrifugo keeps the same (offsets on every push).
                "history_size": CENTRIFUGO_HISTORY,
                "history_ttl": "3600s",
            },
        },
    }


def start_centrifugo(ctx: Context, system: str, tag: str) -> Server:
    """Centrifugo on core 0 with ``GOMAXPROCS=1``, its config written for this run."""
    binary, reason = centrifugo_binary()
    if binary is None:
        raise RuntimeError(f"centrifugo skipped: {reason}")
    port = free_port()
    name = f"{system}-{tag}"
    config = ctx.work / f"{name}.json"
    config.write_text(json.dumps(centrifugo_config(ctx, port), indent=1) + "\n")
    child = ctx.procs.start(name, [str(binary), "--config", str(config)], core=SUT_CORE,
                            env=ctx.env(GOMAXPROCS="1"), cwd=ctx.work)
    wait_http(f"http://127.0.0.1:{port}/health", child, timeout=60)
    return Server(system, child, port, "centrifugo-http", ctx.env(),
                  ["--url", f"http://127.0.0.1:{port}", "--key", ctx.api_key])


CENTRIFUGO_ABOUT = (
    f"Centrifugo {CENTRIFUGO_VERSION} (built from its Go module with `go install`), memory "
    "engine keeping each channel's last 1,000 messages (history, as tidings' memory broker "
    "keeps them for resume; presence off), `GOMAXPROCS=1` on the gateway's core, JSON protocol "
    "over WebSocket (`/connection/websocket`), published to through its HTTP API "
    "(`/api/publish` per message, `/api/batch` for lists)."
)


def create_topic(brokers: str, topic: str, partitions: int = 1) -> None:
    """Create a topic up front (this Kafka does not create topics on first use)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=brokers.split(","))
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def delete_topics(brokers: str, prefixes: list[str]) -> int:
    """Delete every topic starting with one of ``prefixes``; how many were deleted."""
    if not prefixes:
        return 0
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=brokers.split(","))
    try:
        doomed = [topic for topic in admin.list_topics() if topic.startswith(tuple(prefixes))]
        if doomed:
            admin.delete_topics(doomed)
        return len(doomed)
    except Exception as exc:  # clean-up must not hide the run's own outcome
        print(f"bench: could not delete topics: {exc}", file=sys.stderr)
        return 0
    finally:
        admin.close()
