"""Reconnect delays: exponential, jittered, bounded (``tidings.client.backoff``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.client import Backoff

delays = st.floats(0.01, 100)


@given(delays, delays, st.integers(0, 10_000), st.floats(0, 1))
def test_a_delay_is_between_half_and_all_of_the_capped_exponential(
    low: float, high: float, failures: int, rand: float
) -> None:
    backoff = Backoff(min(low, high), max(low, high))
    base = min(backoff.max_delay, backoff.min_delay * 2 ** min(failures, 30))
    delay = backoff.delay(failures, lambda: rand)
    assert base / 2 <= delay <= base <= backoff.max_delay


def test_delays_double_until_the_cap() -> None:
    backoff = Backoff(0.5, 4)
    assert [backoff.delay(n, lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert backoff.flooded(lambda: 0.0) == 15


def test_bad_delays_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="min_delay"):
        Backoff(0)
    with pytest.raises(ValueError, match="max_delay"):
        Backoff(2, 1)
