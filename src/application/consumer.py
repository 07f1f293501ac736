"""The seed's consumer: read channels from the broker and hand each message on as a JSON line.

It never publishes what it reads (the original re-broadcast its input to Kafka, forever). A batch
is committed only after its lines are written and flushed, and with ``max_messages`` exactly the
messages written are committed, so a restart continues with the first one not written.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ..domain.protocol import encode_event
from ..ports import Feed


@attrs.frozen
class ConsumeReport:
    count: int
    seconds: float
    reason: str
    """Why it stopped: ``max-messages``, ``empty`` (caught up) or ``signal``."""


async def consume_lines(
    feed: Feed,
    write: Callable[[str], None],
    *,
    flush: Callable[[], None] = lambda: None,
    max_messages: int = 0,
    stop_when_empty: bool = False,
    stop: trio.Event | None = None,
    progress: Callable[[int, float], None] | None = None,
    progress_every: float = 5.0,
) -> ConsumeReport:
    """Write each message as one JSON line until a limit, the end, or ``stop`` is set.

    ``flush`` is called after each batch's lines and before its commit.
    """
    started = trio.current_time()
    last_report = started
    count = 0
    reason = "signal"
    async for batch in feed.batches():
        handed = batch if not max_messages else batch[: max_messages - count]
        for delivered in handed:
            write(encode_event(delivered.message, delivered.position))
        if handed:
            flush()  # the lines are out before their offsets are committed
            await feed.commit(handed)
            count += len(handed)
        now = trio.current_time()
        if progress is not None and now - last_report >= progress_every:
            progress(count, now - started)
            last_report = now
        if max_messages and count >= max_messages:
            reason = "max-messages"
            break
        if stop_when_empty and not batch and feed.caught_up():
            reason = "empty"
            break
        if stop is not None and stop.is_set():
            break
    return ConsumeReport(count, trio.current_time() - started, reason)
