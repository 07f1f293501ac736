"""The token bucket that rate-limits client frames, as a pure function of the times passed in."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.domain.ratelimit import TokenBucket

rates = st.sampled_from([0.5, 1.0, 2.0, 10.0, 100.0]) | st.floats(0.1, 1000.0)
bursts = st.integers(1, 20).map(float) | st.floats(1.0, 50.0)
# Times in milliseconds, so that sums of elapsed time stay exact enough to state bounds.
times = st.lists(st.integers(0, 20_000), min_size=1, max_size=60).map(
    lambda ms: [m / 1000 for m in sorted(ms)]
)


@given(rates, bursts, st.floats(0, 1e6))
def test_a_fresh_bucket_allows_a_full_burst_at_once(rate: float, burst: float, now: float) -> None:
    bucket = TokenBucket(rate, burst)
    allowed = [bucket.take(now) for _ in range(math.floor(burst) + 3)]
    assert allowed == [True] * math.floor(burst) + [False] * 3


@given(rates, bursts, times)
def test_no_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, moments: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    allowed = sum(bucket.take(now) for now in moments)
    elapsed = moments[-1] - moments[0]
    assert allowed <= burst + rate * elapsed + 1e-6


@given(rates, bursts, times)
def test_the_same_times_give_the_same_answers(
    rate: float, burst: float, moments: list[float]
) -> None:
    one, two = TokenBucket(rate, burst), TokenBucket(rate, burst)
    assert [one.take(now) for now in moments] == [two.take(now) for now in moments]


@given(rates, bursts, st.floats(0, 1e3))
def test_waiting_long_enough_refills_the_bucket(rate: float, burst: float, start: float) -> None:
    bucket = TokenBucket(rate, burst)
    while bucket.take(start):
        pass
    later = start + burst / rate + 1
    allowed = 0
    while bucket.take(later):
        allowed += 1
    assert allowed == math.floor(burst)


@given(rates, bursts, st.floats(1, 1e3), st.floats(0, 1))
def test_time_going_backwards_adds_no_tokens(
    rate: float, burst: float, now: float, back: float
) -> None:
    bucket = TokenBucket(rate, burst)
    while bucket.take(now):
        pass
    assert not bucket.take(now - back)
    assert not bucket.take(now)


def test_one_token_per_second_example() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    assert [bucket.take(0), bucket.take(0), bucket.take(0)] == [True, True, False]
    assert bucket.take(0.5) is False
    assert bucket.take(1.0) is True
    assert bucket.take(1.0) is False
    assert bucket.take(10.0) is True
    assert bucket.take(10.0) is True
    assert bucket.take(10.0) is False


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5), (1, 0)])
def test_bad_settings_are_refused_naming_them(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate, burst)
