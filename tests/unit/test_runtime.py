"""A gateway process collects young garbage on a clock, whatever the allocation count says."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import trio

from tidings.entrypoints.runtime import (
    FULL_EVERY,
    MIDDLE_EVERY,
    YOUNG_EVERY,
    collect_garbage_on_a_clock,
)


class Cycle:
    """Refers to itself: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def without_automatic_collections() -> Iterator[None]:
    """Only the clock collects (``gc.collect`` works while automatic collection is off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@pytest.mark.usefixtures("without_automatic_collections")
@pytest.mark.parametrize(
    ("survived", "beat"),
    [(0, 1), (1, MIDDLE_EVERY), (2, FULL_EVERY)],
    ids=["young", "middle", "old"],
)
async def test_a_cycle_is_freed_at_the_first_beat_that_collects_its_generation(
    survived: int, beat: int, autojump_clock: trio.testing.MockClock
) -> None:
    cycle = Cycle()
    freed = weakref.ref(cycle)
    for generation in range(survived):
        gc.collect(generation)  # it survives a collection, so it moves one generation up
    del cycle
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect_garbage_on_a_clock)
        await trio.sleep(YOUNG_EVERY * (beat - 1) + YOUNG_EVERY / 2)
        assert freed() is not None  # the beats before it leave its generation alone
        await trio.sleep(YOUNG_EVERY)
        assert freed() is None
        nursery.cancel_scope.cancel()
