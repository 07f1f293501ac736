"""``tidings subscribe``: print a running gateway's events as JSON lines, through reconnects.

The debugging tool a user reaches for first: it is a ``tidings.client`` client, so it sees what
any client sees (authorization, positions, presence events, client events), and it follows the
gateway through restarts and network cuts, resuming each channel where it stood. Each event is
one line on stdout, the shape of ``tidings kafka consume`` (``encode_event``); everything else is
on stderr. It exits 0 after ``--max-messages`` lines, after ``--timeout`` seconds, or on
SIGINT/SIGTERM, saying which; 1, in one line, when the gateway refuses the token or a channel.
An unreachable gateway is not a failure: it says so on stderr and keeps trying (ADR 0030).
"""

from __future__ import annotations

import math
import signal
import sys

import click
import trio

from ..client import Event, Gap, State, StateChange, Subscription, connect, websocket_url
from ..domain import Channel
from ..domain.errors import InvalidChannel, InvalidPosition, TidingsError
from ..domain.position import Position
from .common import fail, json_argument, load_settings
from .logs import told_by_the_command


def _err(text: str) -> None:
    click.echo(text, err=True)


def _since(values: tuple[str, ...], channels: tuple[str, ...]) -> dict[str, str]:
    """``--since`` values: ``POSITION`` (one channel only) or ``CHANNEL=POSITION``."""
    found: dict[str, str] = {}
    for value in values:
        channel, _, position = value.rpartition("=")  # positions hold no "=", channels may
        if not channel:
            if len(channels) != 1:
                raise click.BadParameter(
                    f"{value!r} does not say which channel it is for; give CHANNEL=POSITION",
                    param_hint="--since",
                )
            channel = channels[0]
        if channel not in channels:
            raise click.BadParameter(
                f"{channel!r} is not one of the channels to subscribe to", param_hint="--since"
            )
        try:
            Position.parse(position)
        except InvalidPosition as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        found[channel] = position
    return found


@click.command()
@click.argument("channel_names", nargs=-1, required=True, metavar="CHANNEL...")
@click.option(
    "--url",
    help="The gateway: ws://HOST:PORT/ws or http://HOST:PORT "
    "[http://REALTIME_WS_HOST:REALTIME_WS_PORT, http://127.0.0.1:6001].",
)
@click.option("--token", help="A connection token (`tidings token USER` makes one).")
@click.option(
    "--user",
    help="Connect as this user with a token signed here with REALTIME_SECRET, granting the "
    "CHANNELs (instead of --token).",
)
@click.option("--info", help='With --user: user info as JSON for presence, \'{"name":"Ann"}\'.')
@click.option(
    "--since",
    "since_values",
    multiple=True,
    help="Resume from a position (an event's `position`): POSITION with one CHANNEL, else "
    "CHANNEL=POSITION, repeated.",
)
@click.option(
    "--max-messages",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Exit 0 after this many events (0: no limit).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Exit 0 after this many seconds, connected or not (default: run until stopped).",
)
def subscribe(
    channel_names: tuple[str, ...],
    url: str | None,
    token: str | None,
    user: str | None,
    info: str | None,
    since_values: tuple[str, ...],
    max_messages: int,
    timeout: float | None,
) -> None:
    """Print the events of CHANNELs on a running gateway, one JSON line each.

    The lines have the shape of `tidings kafka consume` (presence events included, without a
    position); connection changes and gaps go to stderr. It follows reconnects, resuming every
    channel without a gap. SIGINT or SIGTERM: exit 0.
    """
    try:
        channels = tuple(dict.fromkeys(Channel(name).name for name in channel_names))
    except InvalidChannel as exc:
        raise click.BadParameter(str(exc), param_hint="CHANNEL") from None
    since = _since(since_values, channels)
    if token and user:
        raise click.UsageError("give --token or --user, not both")
    if info is not None and not user:
        raise click.UsageError("--info goes with --user")
    settings = load_settings()
    if user:
        from ..bootstrap import Container

        try:
            tokens = Container.for_settings(settings).tokens()
            token = tokens.issue(user, info=json_argument(info, "--info"), channels=channels)
        except (TidingsError, ValueError) as exc:  # no secret, a short one, a bad user id
            fail(str(exc), 2, error=exc)
    if url is None:
        host = settings.realtime_ws_host
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        url = f"http://{host}:{settings.realtime_ws_port}"
    try:
        url = websocket_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    # The command tells each reconnect and the failure itself; the client's log would repeat it.
    with told_by_the_command("tidings.client"):
        count, seconds, reason = trio.run(
            _subscribe, url, token, channels, since, max_messages, timeout
        )
    _err(f"received {count} event(s) in {seconds:.1f}s ({reason})")


async def _subscribe(
    url: str,
    token: str | None,
    channels: tuple[str, ...],
    since: dict[str, str],
    max_messages: int,
    timeout: float | None,
) -> tuple[int, float, str]:
    started = trio.current_time()
    count = 0
    reason = "timeout"
    sender, receiver = trio.open_memory_channel[Event](0)

    def report(change: StateChange) -> None:
        if change.state is State.RECONNECTING:
            _err(f"{change.reason}; retrying in {change.retry_in or 0:.1f}s")
        elif change.state is State.CONNECTED:
            _err(f"connected to {url}")

    async def pump(sub: Subscription, events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            while True:
                try:
                    async for event in sub:
                        await events.send(event)
                    return
                except Gap as gap:
                    _err(f"gap on {sub.channel}: {gap.message}; events were missed")

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    nonlocal reason
                    async for _ in signals:
                        reason = "signal"
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch_signals)
                async with connect(url, token=token, on_state=report) as client:
                    subscriptions = [
                        await client.subscribe(channel, since.get(channel)) for channel in channels
                    ]
                    _err(f"subscribed to {', '.join(channels)}")
                    async with trio.open_nursery() as readers:
                        for subscription in subscriptions:
                            readers.start_soon(pump, subscription, sender.clone())
                        sender.close()  # the pumps hold clones: the loop ends when they all end
                        async for event in receiver:
                            sys.stdout.write(event.to_json() + "\n")
                            sys.stdout.flush()
                            count += 1
                            if max_messages and count >= max_messages:
                                reason = "max-messages"
                                readers.cancel_scope.cancel()
                                break
                nursery.cancel_scope.cancel()
    return count, trio.current_time() - started, reason
