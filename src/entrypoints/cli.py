"""The ``tidings`` command: parse arguments, build the container, call one thing.

Every failure is one line on stderr, ``tidings: <cause>; <what to do>`` (``TidingsGroup``; the
table of causes is ``common.explain``); with ``--log-level debug`` the traceback comes first.
Exit status 2: bad arguments or bad configuration (the line names the argument or variable).
Exit status 1: anything else that stopped the command, such as an unreachable broker or a busy
port (``tidings config --check`` also exits 1 when a check fails).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..config import BROKERS, Settings, worker_count
from ..domain.errors import TidingsError
from .common import (
    BROKER_HINT,
    container_for,
    fail,
    fail_with,
    first_leaf,
    json_argument,
    load_settings,
)
from .logs import setup_logging, told_by_the_command

log = logging.getLogger("tidings")

LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
"""Why a gateway cannot listen where it was told to: the port is taken, the address is not this
host's, or the port needs privileges."""


# What click >= 8.2 raises for a group called without a command (`tidings kafka` alone), a
# UsageError that is really a request for help; click 8.1 printed the help itself and exited 0.
_HELP_ASKED: tuple[type[Exception], ...] = tuple(
    error for error in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if error is not None
)


class TidingsGroup(click.Group):
    """The command group, whose failures are one line each (see the module doc).

    Click prints a usage error as the usage, a hint and the error, on four lines, and lets any
    other exception out as a traceback (trio's as an exception group of 120 lines); here a usage
    error is one line that points at the command's help, and anything a command raises is told
    by ``common.explain``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:  # every failure of a command, told in one line
            fail_with(exc, _command_path(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _HELP_ASKED as exc:
            assert isinstance(exc, click.UsageError)
            exc.show()  # `tidings kafka` alone: the help, as click prints it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "tidings"
            fail(f"{exc.format_message().rstrip('.')}; see `{where} --help`", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("stopped", 1)
        except BrokenPipeError:
            sys.exit(1)  # the reader went away (`| head`): nothing to tell it
        sys.exit(result if isinstance(result, int) else 0)


def _command_path(ctx: click.Context) -> str:
    """``tidings publish`` for the subcommand being invoked under ``ctx``."""
    sub = ctx.invoked_subcommand
    return f"{ctx.command_path} {sub}" if sub else ctx.command_path


@click.group(cls=TidingsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging threshold (logs go to stderr). debug: also the traceback of a failure, "
    "and every record of the Kafka client as it is.",
)
@click.version_option(package_name="tidings")
def cli(log_level: str) -> None:
    """tidings: realtime broadcasting over Kafka or an in-memory broker."""
    setup_logging(log_level)


class WorkersParam(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.2
    """``--workers``: a whole number from 1, or ``auto`` (``config.worker_count``)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from .workers import available_cores

        if isinstance(value, int):
            return value
        try:
            return worker_count(str(value), available_cores())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
@click.option(
    "--workers",
    type=WorkersParam(),
    help="Gateway processes on the port, each its own node HOST-PORT-wI (or "
    "REALTIME_NODE_ID-wI), restarted when one dies: a number, or auto for one per core "
    "this process may use. Needs the Kafka broker [REALTIME_WORKERS, 1].",
)
@click.option("--supervisor-fd", type=int, hidden=True)  # a worker of --workers (serve.py)
@click.option("--no-demo-feed", is_flag=True, hidden=True)  # every worker of --workers but one
def serve(
    host: str | None,
    port: int | None,
    broker: str | None,
    node_id: str | None,
    demo: bool | None,
    demo_public: bool,
    workers: int | None,
    supervisor_fd: int | None,
    no_demo_feed: bool,
) -> None:
    """Run the gateway: WebSocket, HTTP and the broker consumer in one process (or --workers)."""
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
        realtime_reuse_port=True if supervisor_fd is not None else None,
    )
    address = settings.realtime_ws_host
    if settings.realtime_demo and not demo_public and not is_loopback_host(address):
        fail(
            f"refusing --demo on {address or 'every interface'}: in demo mode anyone who can "
            "reach the gateway can mint tokens for any user and publish to any channel, and "
            "this address is reachable from other machines. Listen on 127.0.0.1 (the default), "
            "or add --demo-public if everyone who can reach it may do that."
        )
    count = workers or _worker_count(settings)
    given = f"--workers {count}" if workers else f"REALTIME_WORKERS={settings.realtime_workers}"
    refusal = _broker_refusal(given, count, settings.realtime_broker)
    if refusal is not None:
        fail(refusal, 2)
    container = Container.for_settings(settings)
    container.tokens()  # a short REALTIME_SECRET stops the start before anything listens
    container.subscriber()  # so does REALTIME_BROKER=gateway, which feeds no gateway
    try:
        if count > 1:
            container.shutdown_resources()
            sys.exit(_serve_workers(settings, count, demo_public))
        trio.run(
            functools.partial(
                run_gateway, container, supervisor_fd=supervisor_fd, demo_feed=not no_demo_feed
            )
        )
    except Exception as exc:  # trio raises a task's error inside an exception group
        _fail_to_listen(exc, settings)
        raise  # told by TidingsGroup in one line
    finally:
        container.shutdown_resources()


def _worker_count(settings: Settings) -> int:
    from .workers import available_cores

    return worker_count(settings.realtime_workers, available_cores())


def _broker_refusal(given: str, count: int, broker: str) -> str | None:
    from .workers import broker_refusal

    return broker_refusal(given, count, broker)


def _serve_workers(settings: Settings, count: int, demo_public: bool) -> int:
    """``tidings serve --workers COUNT`` (``workers.py``): the exit status."""
    from .serve import announce
    from .workers import reserve_port, supervise, worker_command, worker_node

    reserved = reserve_port(settings.realtime_ws_host, settings.realtime_ws_port)
    with reserved:
        port = reserved.getsockname()[1]
        nodes = [worker_node(settings.node_id(port), index) for index in range(1, count + 1)]
        command = worker_command(
            log_level=logging.getLevelName(logging.getLogger("tidings").getEffectiveLevel()),
            host=settings.realtime_ws_host,
            port=port,
            broker=settings.realtime_broker,
            demo=settings.realtime_demo,
            demo_public=demo_public,
        )
        url = f"http://{settings.realtime_ws_host}:{port}"
        return supervise(
            command,
            nodes,
            functools.partial(
                announce,
                url,
                ", ".join(nodes),
                settings.realtime_broker,
                settings.realtime_demo,
                http_publishing=settings.api_key() is not None,
                workers=count,
            ),
        )


def _fail_to_listen(exc: BaseException, settings: Settings) -> None:
    """Exit 1 with one line if ``exc`` says the gateway cannot listen where it was told to."""
    failure = first_leaf(exc)
    if isinstance(failure, OSError) and failure.errno in LISTEN_ERRORS:
        where = f"{settings.realtime_ws_host}:{settings.realtime_ws_port}"
        fail(
            f"cannot listen on {where}: {failure.strerror}; stop what listens there, or "
            "choose another --port (REALTIME_WS_PORT) or --host (REALTIME_WS_HOST)",
            1,
            error=exc,
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--check",
    is_flag=True,
    help="Check every value instead, and when REALTIME_BROKER=kafka ask each of KAFKA_BROKERS "
    "(within KAFKA_TIMEOUT): one line per check, exit 1 if one fails.",
)
def config(as_json: bool, check: bool) -> None:
    """Show the effective configuration (environment over .env over defaults), secrets masked."""
    if check:
        if as_json:
            raise click.UsageError("--check prints lines, not JSON: give one of --check, --json")
        _check_configuration()
        return
    effective = load_settings().effective()
    if as_json:
        click.echo(json.dumps(effective, indent=2, default=str))
        return
    width = max(len(name) for name in effective)
    for name, value in effective.items():
        click.echo(f"{name.ljust(width)}  {value}")


def _check_configuration() -> None:
    """``tidings config --check`` (``check.py``): a bad value is a failed check, exit 1."""
    from . import check

    settings, checks = check.loading(Settings.load)
    if settings is not None:
        with told_by_the_command("kafka", below=logging.CRITICAL + 1):  # a line per broker
            checks = check.value_checks(settings) + check.kafka_checks(settings, _cluster_answer)
    lines, status = check.report(checks)
    for line in lines:
        click.echo(line)
    if status:
        failed = sum(line.startswith("FAIL") for line in lines)
        fail(f"{failed} check(s) failed; see the FAIL line(s) above", status)


def _cluster_answer(settings: Settings) -> str:
    """What the Kafka of ``settings`` says it is (raises ``BrokerUnavailable`` if it is silent)."""
    with container_for(settings) as container:
        return f"cluster {container.kafka_admin().cluster_id()}"


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
    except (TidingsError, ValueError) as exc:  # no secret, a short one, a TTL over the maximum
        fail(str(exc), 2, error=exc)  # each of these says what to do


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
    with container_for(settings) as container:  # a bad channel exits 2, a broker down 1
        pending = container.realtime().broadcast_nowait(channel, event, payload, exclude=exclude)
        position = pending.result()
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
    with told_by_the_command("tidings.outbox"), container_for(settings) as container:
        store = container.outbox_store()
        container.kafka_publisher().flush(timeout)
        assert store is not None  # REALTIME_OUTBOX is set
        status = store.status()
    click.echo(f"{status.pending} message(s) still waiting")
    if status.pending:
        why = status.last_error or f"Kafka did not acknowledge them within {timeout:g}s"
        fail(
            f"{status.pending} message(s) still in the outbox after {timeout:g}s: {why}; "
            f"{BROKER_HINT}, then flush again",
            1,
        )


def _register_command_modules(group: click.Group) -> None:
    from .kafka_cli import kafka
    from .subscribe_cli import subscribe

    group.add_command(kafka)
    group.add_command(subscribe)


_register_command_modules(cli)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run: Callable[..., Any] = cli.main
    run(args=argv, prog_name="tidings")
