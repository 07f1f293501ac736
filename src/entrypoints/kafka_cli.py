"""``tidings kafka ...``: the seed's consumer, topic creation, and monitoring without Kafka's
shell tools."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import click
import trio

from ..config import ASSIGNORS, BROKERS
from ..domain import Channel
from ..domain.errors import InvalidChannel, InvalidTopicName
from ..domain.topics import presence_topic
from ..ports import FeedOptions, GroupMode
from .common import container_for, load_settings

if TYPE_CHECKING:
    from ..application.consumer import ConsumeReport
    from ..bootstrap import Container


def _channels(values: tuple[str, ...], hint: str = "--channels") -> tuple[Channel, ...]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one channel", param_hint=hint)
    try:
        return tuple(dict.fromkeys(Channel(name) for name in names))
    except InvalidChannel as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _err(text: str) -> None:
    click.echo(text, err=True)


@click.group()
def kafka() -> None:
    """The seed's consumer, Kafka topics (listed or created) and consumer lag."""


@kafka.command()
@click.option(
    "--channels",
    "channel_values",
    multiple=True,
    required=True,
    help="Channels to consume: a comma list, or the option repeated. Required.",
)
@click.option("--broker", type=click.Choice(BROKERS), default="kafka", show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="Messages per batch (and per poll).",
)
@click.option(
    "--timeout",
    type=click.IntRange(1, 600_000),
    default=1000,
    show_default=True,
    help="Poll timeout in milliseconds.",
)
@click.option(
    "--max-messages",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Exit after exactly this many messages (0: no limit).",
)
@click.option(
    "--stop-when-empty",
    is_flag=True,
    help="Exit 0 once caught up with the end and nothing new arrives within --timeout.",
)
@click.option(
    "--group-mode",
    type=click.Choice([mode.value for mode in GroupMode]),
    default=GroupMode.SHARED.value,
    show_default=True,
    help="shared: the processes of KAFKA_CONSUMER_GROUP split the messages; "
    "fanout: this process (REALTIME_NODE_ID) sees them all.",
)
@click.option(
    "--assignor",
    type=click.Choice(ASSIGNORS),
    default=None,
    help="How the processes of a shared group split the channels' partitions "
    f"[default: KAFKA_CONSUMER_ASSIGNOR, else {ASSIGNORS[0]}]. All processes of a group "
    "must use the same one.",
)
@click.option(
    "--from-end",
    is_flag=True,
    help="A group that has committed nothing starts at the end, not the beginning.",
)
def consume(
    channel_values: tuple[str, ...],
    broker: str,
    batch_size: int,
    timeout: int,
    max_messages: int,
    stop_when_empty: bool,
    group_mode: str,
    assignor: str | None,
    from_end: bool,
) -> None:
    """Consume channels: each message as one JSON line on stdout; progress on stderr.

    Offsets are committed only after a batch's lines are written. In a shared group, when a
    rebalance moves partitions to another process, what this one printed of them is committed
    first, and what it read but did not print is left to the next owner: each message is printed
    once across the group (ADR 0025). SIGTERM or Ctrl+C: the batch in hand is finished and
    committed, then it exits 0. It never publishes what it reads.
    """
    channels = _channels(channel_values)
    settings = load_settings(realtime_broker=broker, kafka_consumer_assignor=assignor)
    options = FeedOptions(
        channels=channels,
        group_mode=GroupMode(group_mode),
        batch_size=batch_size,
        timeout=timeout / 1000,
        group=settings.kafka_consumer_group,
        node_id=settings.node_id(),
        start_at_end=from_end,
    )
    with container_for(settings) as container:
        report = trio.run(_consume, container, options, max_messages, stop_when_empty)
    _err(f"consumed {report.count} message(s) in {report.seconds:.1f}s ({report.reason})")


async def _consume(
    container: Container, options: FeedOptions, max_messages: int, stop_when_empty: bool
) -> ConsumeReport:
    from ..application.consumer import consume_lines

    subscriber = container.subscriber()
    names = ", ".join(channel.name for channel in options.channels or ())
    stop = trio.Event()

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")

    def flush_and_report(count: int, seconds: float) -> None:
        _err(f"consumed {count} message(s), {count / max(seconds, 1e-9):.0f}/s")

    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    _err("stopping: finishing the batch in hand")
                    stop.set()
                    return

        nursery.start_soon(watch_signals)
        async with subscriber.open_feed(options) as feed:
            group = getattr(feed, "group_id", options.group_id())
            _err(f"consuming {names} ({options.group_mode} group {group})")
            report = await consume_lines(
                feed,
                write,
                flush=sys.stdout.flush,
                max_messages=max_messages,
                stop_when_empty=stop_when_empty,
                stop=stop,
                progress=flush_and_report,
            )
            sys.stdout.flush()
            misplaced = feed.status().misplaced
            if misplaced:
                _err(
                    f"dropped {misplaced} record(s) whose envelope names a channel their topic "
                    "does not carry (ADR 0016)"
                )
        nursery.cancel_scope.cancel()
    return report


@kafka.command("create-topics")
@click.argument("channel_names", nargs=-1, required=True, metavar="CHANNEL...")
def create_topics(channel_names: tuple[str, ...]) -> None:
    """Create the topics of CHANNELs now (existing ones are left as they are).

    Only the server creates topics (ADR 0016): a client's subscribe or client event never does,
    and a client event on a channel without a topic is refused (404). A broadcast creates its
    channel's topic; this command creates topics ahead of any broadcast, for channels that carry
    client events only (a presence room, say). Channels of the shared strategy (KAFKA_TOPIC_STRATEGY
    =shared) live in its fixed topics, which every gateway creates when it starts.
    """
    channels = _channels(channel_names, "CHANNEL")
    settings = load_settings()
    strategy = settings.topic_strategy()
    try:
        wanted = {channel: strategy.topic_for(channel) for channel in channels}
    except InvalidTopicName as exc:
        raise click.BadParameter(str(exc), param_hint="CHANNEL") from None
    created = 0
    with container_for(settings) as container:
        admin = container.kafka_admin()
        for channel, topic in wanted.items():
            made = admin.ensure_topic(topic)
            created += made
            click.echo(f"{'created' if made else 'exists':8} {topic:40} {channel.name}")
    _err(f"{created} topic(s) created, {len(wanted) - created} existed already")


@kafka.command()
def topics() -> None:
    """The realtime topics: partitions, start and end offsets, channel."""
    settings = load_settings()
    strategy = settings.topic_strategy()
    with container_for(settings) as container:
        admin = container.kafka_admin()
        names = [
            topic
            for topic in admin.topics()
            if strategy.owns(topic) or topic == presence_topic(settings.kafka_topic_prefix)
        ]
        rows = admin.offsets(names)
    click.echo(f"{'TOPIC':40} {'PARTITION':>9} {'START':>10} {'END':>10} {'MESSAGES':>10}  CHANNEL")
    for row in rows:
        channel = ""
        channel_for = getattr(strategy, "channel_for", None)
        if channel_for is not None:
            try:
                channel = channel_for(row.topic).name
            except ValueError:
                channel = "(presence)" if "presence" in row.topic else ""
        click.echo(
            f"{row.topic:40} {row.partition:>9} {row.start:>10} {row.end:>10} "
            f"{row.end - row.start:>10}  {channel}"
        )
    _err(f"{len({row.topic for row in rows})} topic(s)")


@kafka.command()
@click.option(
    "--group",
    help="A consumer group; default: KAFKA_CONSUMER_GROUP and every "
    "fan-out group derived from it (KAFKA_CONSUMER_GROUP.NODE).",
)
def lag(group: str | None) -> None:
    """Consumer-group lag per partition: committed offset, end offset, lag."""
    settings = load_settings()
    base = settings.kafka_consumer_group
    with container_for(settings) as container:
        admin = container.kafka_admin()
        groups = (
            [group]
            if group
            else [name for name in admin.groups() if name == base or name.startswith(base + ".")]
        )
        rows = [(name, row) for name in groups for row in admin.lag(name)]
    click.echo(
        f"{'GROUP':32} {'TOPIC':36} {'PARTITION':>9} {'COMMITTED':>10} {'END':>10} {'LAG':>8}"
    )
    for name, row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        click.echo(
            f"{name:32} {row.topic:36} {row.partition:>9} {committed:>10} {row.end:>10} "
            f"{row.lag:>8}"
        )
    if not rows:
        _err("no committed offsets for " + (group or f"{base} or {base}.*"))
