"""The benchmark harness fails a phase whose clients did not each get every message once, in order
(bench/clients.check_deliveries, over the load generator's per-client check)."""

from __future__ import annotations

from typing import Any

import pytest
from bench.clients import DeliveryCheckFailed, check_deliveries
from hypothesis import given
from hypothesis import strategies as st

RUN = 1_764_950_000_000_000


def phase_result(counts: list[int], per_channel: dict[str, int], **check: Any) -> dict[str, Any]:
    return {
        "check": {"run": RUN, "counts": counts, "gaps": 0, "backwards": 0, "bad_clients": 0,
                  "first": "", "unchecked": 0, **check},
        "published": {"run": RUN, "sent": sum(per_channel.values()), "per_channel": per_channel},
    }


users = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40)


@given(users)
def test_every_client_with_its_channels_count_passes(sent: list[int]) -> None:
    per_channel = {f"user.{i}": n for i, n in enumerate(sent) if n}
    result = phase_result(list(sent), per_channel)
    check_deliveries(result, channel="user.{i}", what="case")
    assert "counts" not in result["check"]
    assert "per_channel" not in result["published"]


@given(users, st.data())
def test_a_client_off_by_any_count_fails_naming_it(sent: list[int], data: st.DataObject) -> None:
    per_channel = {f"user.{i}": n for i, n in enumerate(sent) if n}
    client = data.draw(st.integers(min_value=0, max_value=len(sent) - 1))
    got = data.draw(st.integers(min_value=0, max_value=60).filter(lambda n: n != sent[client]))
    counts = list(sent)
    counts[client] = got
    first = min(i for i, n in enumerate(counts) if n != sent[i])
    with pytest.raises(DeliveryCheckFailed, match=rf"first: client {first} \(user\.{first}\)"):
        check_deliveries(phase_result(counts, per_channel), channel="user.{i}", what="case")


def test_clients_that_never_connected_are_not_counted() -> None:
    check_deliveries(phase_result([3, -1, 3], {"bench.fanout": 3}), channel="bench.fanout",
                     what="case")


def test_a_gap_or_repeat_fails_with_the_load_generators_words() -> None:
    result = phase_result([2, 2], {"bench.fanout": 2}, bad_clients=1, gaps=1,
                          first="client 1: worker 0: seq 1 missing, got 2 next")
    with pytest.raises(DeliveryCheckFailed, match="client 1: worker 0: seq 1 missing, got 2 next"):
        check_deliveries(result, channel="bench.fanout", what="6-fanout-memory/x")


def test_no_delivery_of_the_publishers_run_fails() -> None:
    result = phase_result([0, 0], {"bench.fanout": 5})
    result["check"]["run"] = RUN - 1
    with pytest.raises(DeliveryCheckFailed, match="no client got a message of this publisher"):
        check_deliveries(result, channel="bench.fanout", what="case")


def test_a_phase_without_the_check_fails() -> None:
    with pytest.raises(DeliveryCheckFailed, match="no per-client check"):
        check_deliveries({"published": {"sent": 1}}, channel="c", what="case")
