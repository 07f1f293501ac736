"""The ``tidings`` command: parse arguments, build the container, call one thing.

Bad arguments and bad configuration exit with status 2 and a message naming what was wrong;
broker failures exit with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from ..config import BROKERS
from ..domain.errors import ConfigurationError, TidingsError
from .common import container_for, fail, first_leaf, json_argument, load_settings

log = logging.getLogger("tidings")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging threshold (logs go to stderr).",
)
@click.version_option(package_name="tidings")
def cli(log_level: str) -> None:
    """tidings: realtime broadcasting over Kafka or an in-memory broker."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_level.upper() != "DEBUG":
        # kafka-python narrates every rebalance and connection at INFO.
        logging.getLogger("kafka").setLevel(logging.WARNING)
        logging.getLogger("kafka.coordinator.assignors").setLevel(logging.ERROR)


@cli.command()
@click.option("--host", help="Interface to listen on [REALTIME_WS_HOST, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [REALTIME_WS_PORT, 6001].")
@click.option("--broker", type=click.Choice(BROKERS), help="Broker [REALTIME_BROKER, memory].")
@click.option("--node-id", help="This gateway's stable identity [REALTIME_NODE_ID, HOST-PORT].")
@click.option(
    "--demo",
    is_flag=True,
    default=None,
    help="Demo mode for local development: the page can mint tokens and broadcast; "
    "the dashboard moves. Loopback addresses only, unless --demo-public.",
)
@click.option(
    "--demo-public",
    is_flag=True,
    help="Allow --demo on an address other than loopback: anyone who can reach it can then "
    "mint tokens for any user and publish to any channel.",
)
def serve(
    host: str | None,
    port: int | None,
    broker: str | None,
    node_id: str | None,
    demo: bool | None,
    demo_public: bool,
) -> None:
    """Run the gateway: WebSocket, HTTP and the broker consumer in one process."""
    import trio

    from ..bootstrap import Container
    from ..domain.origins import is_loopback_host
    from .serve import run_gateway

    settings = load_settings(
        realtime_ws_host=host,
        realtime_ws_port=port,
        realtime_broker=broker,
        realtime_node_id=node_id,
        realtime_demo=demo,
    )
    address = settings.realtime_ws_host
    if settings.realtime_demo and not demo_public and not is_loopback_host(address):
        fail(
            f"refusing --demo on {address or 'every interface'}: in demo mode anyone who can "
            "reach the gateway can mint tokens for any user and publish to any channel, and "
            "this address is reachable from other machines. Listen on 127.0.0.1 (the default), "
            "or add --demo-public if everyone who can reach it may do that."
        )
    container = Container.for_settings(settings)
    try:
        container.tokens()  # a short REALTIME_SECRET stops the start before anything listens
        container.subscriber()  # so does REALTIME_BROKER=gateway, which feeds no gateway
    except ConfigurationError as exc:
        fail(str(exc))
    failure: BaseException | None = None
    try:
        trio.run(run_gateway, container)
    except* (TidingsError, OSError) as group:  # trio raises a task's error inside a group
        failure = first_leaf(group)
    finally:
        container.shutdown_resources()
    if isinstance(failure, OSError):
        address = f"{settings.realtime_ws_host}:{settings.realtime_ws_port}"
        fail(f"cannot listen on {address}: {failure.strerror or failure}", 1)
    if failure is not None:
        fail(str(failure), 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def config(as_json: bool) -> None:
    """Show the effective configuration (environment over .env over defaults), secrets masked."""
    effective = load_settings().effective()
    if as_json:
        click.echo(json.dumps(effective, indent=2, default=str))
        return
    width = max(len(name) for name in effective)
    for name, value in effective.items():
        click.echo(f"{name.ljust(width)}  {value}")


@cli.command()
@click.argument("user_id")
@click.option("--info", help='User info as JSON, shown to presence members: \'{"name":"Ann"}\'.')
@click.option(
    "--ttl",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    help="Seconds until the token expires.",
)
@click.option("--channels", default="", help="Comma list of channel patterns the token grants.")
def token(user_id: str, info: str | None, ttl: float, channels: str) -> None:
    """Print a connection token for USER_ID, signed with REALTIME_SECRET."""
    from ..bootstrap import Container

    user_info = json_argument(info, "--info")
    grants = tuple(pattern.strip() for pattern in channels.split(",") if pattern.strip())
    try:
        tokens = Container.for_settings(load_settings()).tokens()
        click.echo(tokens.issue(user_id, info=user_info, ttl=ttl, channels=grants))
    except (TidingsError, ValueError) as exc:
        fail(str(exc))


@cli.command()
def secret() -> None:
    """Print a fresh random secret for REALTIME_SECRET (48 random bytes, URL-safe)."""
    from ..adapters.jwt_tokens import new_secret

    click.echo(new_secret())


@cli.command()
@click.argument("channel")
@click.argument("event")
@click.argument("data", required=False)
@click.option("--broker", type=click.Choice(BROKERS), help="Broker [REALTIME_BROKER].")
@click.option(
    "--url",
    help="Publish through a running gateway's HTTP API instead, e.g. "
    "http://127.0.0.1:6001 (uses REALTIME_API_KEY): REALTIME_BROKER=gateway with this "
    "REALTIME_GATEWAY_URL.",
)
@click.option("--exclude", help="Connection id that must not receive the message.")
def publish(
    channel: str,
    event: str,
    data: str | None,
    broker: str | None,
    url: str | None,
    exclude: str | None,
) -> None:
    """Publish one message: EVENT on CHANNEL with DATA (JSON)."""
    payload = json_argument(data, "DATA")
    settings = load_settings(realtime_broker="gateway" if url else broker, realtime_gateway_url=url)
    from ..bootstrap import Container

    container = Container.for_settings(settings)
    try:
        pending = container.realtime().broadcast_nowait(channel, event, payload, exclude=exclude)
        position = pending.result()
    except (TidingsError, ValueError) as exc:
        fail(str(exc), 2 if isinstance(exc, ValueError) else 1)
    finally:
        container.shutdown_resources()
    shown = None if position is None else str(position)  # None: queued in the outbox
    click.echo(json.dumps({**pending.message.to_dict(), "position": shown}))


@cli.group()
def outbox() -> None:
    """The durable outbox of Kafka broadcasts (REALTIME_OUTBOX)."""


@outbox.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def outbox_status(as_json: bool) -> None:
    """Messages waiting in the outbox: how many, the oldest's age, the last error."""
    settings = load_settings()
    if not settings.realtime_outbox:
        fail("no outbox configured: set REALTIME_OUTBOX to a file path")
    with container_for(settings) as container:
        store = container.outbox_store()
        assert store is not None  # REALTIME_OUTBOX is set
        status = store.status()
    if as_json:
        import attrs

        click.echo(json.dumps(attrs.asdict(status)))
        return
    age = "-" if status.oldest_age is None else f"{status.oldest_age:.1f}s"
    click.echo(f"outbox    {status.path}")
    click.echo(f"pending   {status.pending}")
    click.echo(f"oldest    {age}")
    click.echo(f"attempts  {status.attempts}")
    click.echo(f"error     {status.last_error or '-'}")


@outbox.command("flush")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True)
def outbox_flush(timeout: float) -> None:
    """Relay every stored message to Kafka now; exit 1 if some are still waiting after TIMEOUT."""
    settings = load_settings(realtime_broker="kafka")
    if not settings.realtime_outbox:
        fail("no outbox configured: set REALTIME_OUTBOX to a file path")
    with container_for(settings) as container:
        store = container.outbox_store()
        container.kafka_publisher().flush(timeout)
        assert store is not None  # REALTIME_OUTBOX is set
        status = store.status()
    click.echo(f"{status.pending} message(s) still waiting")
    if status.pending:
        sys.exit(1)


def _register_kafka_commands(group: click.Group) -> None:
    from .kafka_cli import kafka

    group.add_command(kafka)


_register_kafka_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run: Callable[..., Any] = cli.main
    run(args=argv, prog_name="tidings")
