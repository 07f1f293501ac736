"""Retention: what a bounded history keeps, and which channel gives up an entry when it is full.

A history keeps each channel's latest entries in order, numbered by offset in the channel's log,
within three bounds:

* ``per_channel`` entries per log (the oldest of that log goes);
* ``channels`` logs (the least recently appended-to log goes, whole);
* ``budget`` bytes on the whole, each log's own cost included. Over it, the log holding the
  most bytes of entries gives up its oldest entry, again and again until the whole fits. A
  flood on one channel so costs that channel its history, not every other channel theirs: a
  channel under its fair share never loses an entry while another is over it. When no log
  holds an entry any more and the logs alone are over the budget, the least recently used go.

A log whose entries are all gone stays (its next offset with it), so resuming from before them
is refused as too old, not mistaken for another log. A log that is dropped is forgotten; the
one made after it for the same channel gets another stream, so no earlier position can be
mistaken for one of it.

Costs come from the caller: an entry costs its length plus a fixed ``entry_overhead``, a log
``log_cost(channel)``, so that the budget can bound what the caller measures them to take.
Finding the largest log costs O(log n) with a lazy heap, never a scan of the logs; the heap is
built the first time the budget is reached, so a history that never fills pays nothing for it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sized
from typing import Generic, TypeVar

T = TypeVar("T", bound=Sized)

_SLACK = 64
"""Stale heap entries tolerated beyond one per log before the heap is rebuilt."""


class ChannelLog(Generic[T]):
    """One channel's kept entries: offsets ``first_offset`` to ``next_offset - 1``, in order."""

    __slots__ = ("entries", "entry_bytes", "next_offset", "overhead", "stream")

    def __init__(self, stream: str, overhead: int) -> None:
        self.stream = stream
        self.overhead = overhead
        """What the log costs with no entry (its structures and its channel's name)."""
        self.next_offset = 0
        self.entries: deque[T] = deque()
        self.entry_bytes = 0
        """The cost of ``entries``, all together."""

    @property
    def first_offset(self) -> int:
        """The offset of the oldest kept entry (``next_offset`` when none is kept)."""
        return self.next_offset - len(self.entries)

    def __repr__(self) -> str:
        return (
            f"ChannelLog({self.stream!r}, offsets {self.first_offset}..{self.next_offset - 1}, "
            f"{self.entry_bytes} bytes)"
        )


class Retention(Generic[T]):
    """Channel logs within the bounds of the module doc; not thread-safe (callers lock).

    An entry costs ``len(entry) + entry_overhead`` bytes and an empty log ``log_cost(channel)``;
    ``stream(channel, generation)`` names a new log, where ``generation`` (the number of logs
    dropped before it was made) tells the logs of one channel apart.
    """

    def __init__(
        self,
        *,
        per_channel: int,
        channels: int,
        budget: int,
        entry_overhead: int,
        log_cost: Callable[[str], int],
        stream: Callable[[str, int], str],
    ) -> None:
        if per_channel < 0:
            raise ValueError(f"entries per channel must be 0 or more, not {per_channel}")
        if channels < 1:
            raise ValueError(f"channels kept must be 1 or more, not {channels}")
        if budget < 0:
            raise ValueError(f"the byte budget must be 0 or more, not {budget}")
        if entry_overhead < 1:
            raise ValueError(f"an entry's overhead must be 1 byte or more, not {entry_overhead}")
        self.per_channel = per_channel
        self.channels = channels
        self.budget = budget
        self.entry_overhead = entry_overhead
        self._log_cost = log_cost
        self._stream = stream
        self._logs: OrderedDict[str, ChannelLog[T]] = OrderedDict()
        self._ranking: list[tuple[int, str]] = []
        """A max-heap of (-entry_bytes, channel); an entry whose log now holds another amount
        is stale and skipped. Once ``_ranked``, every log holding entries has one for its
        current amount."""
        self._ranked = False
        self._dropped = 0
        self.held = 0
        """Bytes held: every log's overhead and entries."""

    def __len__(self) -> int:
        return len(self._logs)

    def __iter__(self) -> Iterator[str]:
        """The channels that have a log, least recently appended-to first."""
        return iter(self._logs)

    def log(self, channel: str) -> ChannelLog[T] | None:
        """The channel's log, if it has one (reading it does not count as use)."""
        return self._logs.get(channel)

    def stream_of(self, channel: str) -> str:
        """The stream of the channel's log, or of the log its next entry will make."""
        log = self._logs.get(channel)
        return log.stream if log is not None else self._stream(channel, self._dropped)

    def append(self, channel: str, entry: T) -> tuple[str, int]:
        """Add ``entry`` at the end of the channel's log; its stream and offset.

        The entry takes an offset even when it is not kept (``per_channel`` is 0, or it alone is
        over the budget), so offsets number everything appended, kept or not.
        """
        logs = self._logs
        log = logs.get(channel)
        if log is None:
            log = self._open(channel)
        else:
            logs.move_to_end(channel)
        offset = log.next_offset
        log.next_offset = offset + 1
        grown = 0
        per_channel = self.per_channel
        if per_channel:
            entries = log.entries
            entries.append(entry)
            grown = len(entry)
            if len(entries) > per_channel:
                grown -= len(entries.popleft())  # the overheads cancel out
            else:
                grown += self.entry_overhead
            log.entry_bytes += grown
            self.held += grown
        if self.held > self.budget:
            # The log that grew is ranked once it is done shedding, not at each entry it sheds.
            self._shed(channel, log if grown else None)
        elif grown and self._ranked:
            self._rank(channel, log)
        return log.stream, offset

    def _open(self, channel: str) -> ChannelLog[T]:
        log: ChannelLog[T] = ChannelLog(
            self._stream(channel, self._dropped), self._log_cost(channel)
        )
        self._logs[channel] = log
        self.held += log.overhead
        while len(self._logs) > self.channels:
            self._drop(next(iter(self._logs)))
        return log

    def _drop(self, channel: str) -> None:
        log = self._logs.pop(channel)
        self.held -= log.overhead + log.entry_bytes
        self._dropped += 1

    def _rank(self, channel: str, log: ChannelLog[T]) -> None:
        ranking = self._ranking
        heapq.heappush(ranking, (-log.entry_bytes, channel))
        if len(ranking) > 2 * len(self._logs) + _SLACK:
            self._ranked = False  # rebuilt without its stale entries when next needed

    def _shed(self, grower: str, grown: ChannelLog[T] | None) -> None:
        """Give up entries, the largest log's oldest first, until the whole fits the budget.

        ``grown``, when given, is the log of ``grower``, which has no ranking for what it holds
        now: it competes from outside the heap, and is ranked once at the end.
        """
        ranking, logs, overhead = self._ranking, self._logs, self.entry_overhead
        if not self._ranked:
            ranking[:] = [(-kept.entry_bytes, name) for name, kept in logs.items() if kept.entries]
            heapq.heapify(ranking)
            self._ranked, grown = True, None
        while self.held > self.budget:
            top: ChannelLog[T] | None = None
            while ranking:
                amount, channel = ranking[0]
                top = logs.get(channel)
                if top is not None and top.entry_bytes == -amount:
                    break
                heapq.heappop(ranking)  # stale: the log holds another amount, or is gone
                top = None
            if (
                grown is not None
                and grown.entry_bytes
                and (top is None or (-grown.entry_bytes, grower) < ranking[0])
            ):
                size = len(grown.entries.popleft()) + overhead
                grown.entry_bytes -= size
                self.held -= size
                continue
            if top is None:  # no log holds an entry: the least recently used log goes
                self._drop(next(iter(logs)))
                continue
            size = len(top.entries.popleft()) + overhead
            top.entry_bytes -= size
            self.held -= size
            if top.entry_bytes:
                heapq.heapreplace(ranking, (-top.entry_bytes, channel))
            else:
                heapq.heappop(ranking)
        if grown is not None and grown.entry_bytes and logs.get(grower) is grown:
            self._rank(grower, grown)
