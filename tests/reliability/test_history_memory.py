"""The memory broker's history stays within ``REALTIME_HISTORY_BYTES`` as the process measures it.

README: the memory broker keeps at most ``REALTIME_HISTORY_BYTES`` of history for resume, all
channels together. That bound is a promise about memory, so it is checked where memory is real:
the resident set of a ``tidings serve`` process, read from ``/proc/<pid>/status``. A gateway
takes three times its budget in broadcasts: of three sizes over 200 channels while one more
channel floods it with big messages (half of the bytes), or small ones over 2,000 channels,
where what Python adds to each message and channel weighs most. Its RSS may grow by at most 1.5
times the budget (the rest is the allocator's own slack). The history it keeps must still be
worth having: every channel can resume its recent messages (at least half of its fair share of
the budget), and nobody can resume from a channel's first message, which the flood pushed out
(410). The flooder gives up its own history first: it must not push out everyone else's.
"""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .conftest import WAIT, auth, healthz, record, rss_kb, running_gateway, wait_until

ALLOWED_GROWTH = 1.5
"""RSS growth over the baseline, as a multiple of the budget."""
ENVELOPE_EXTRA = 150
"""More than what the envelope adds to its data (id, type, channel, event, timestamp): so the
retention check below asks for less than the channel's share, never more."""
PER_REQUEST = 100
FLOODER = "public.history.flood"
FLOODER_SIZE = 30_000
"""Big enough that the flooder's ``REALTIME_HISTORY_SIZE`` (1,000) messages would be the
whole budget."""
CHECKED = 20
"""Channels whose resumes are checked after the flood, spread over all of them."""


@attrs.frozen
class Scenario:
    name: str
    budget: int
    """``REALTIME_HISTORY_BYTES`` of the gateway under test."""
    channels: int
    data_sizes: tuple[int, ...]
    """Characters of padding per message, in turn: every channel gets each size."""
    flooder_per_request: int
    """Big messages to ``FLOODER`` after each request of ``PER_REQUEST`` to the channels."""

    @property
    def flood(self) -> int:
        return 3 * self.budget


SCENARIOS = [
    # Three sizes and a flooder taking half of the bytes.
    Scenario("mixed", 32_000_000, 200, (40, 400, 4_000), 5),
    # Small messages over many channels: what Python adds to each message and channel counts.
    Scenario("small", 16_000_000, 2_000, (10, 60, 200), 0),
]


def _channel(index: int) -> str:
    return f"public.history.{index}"


def _warm_up(url: str) -> None:
    body = [{"channel": "public.warmup", "event": "e", "data": "x" * 4_000}] * PER_REQUEST
    response = httpx.post(url + "/broadcast", json=body, headers=auth(), timeout=WAIT)
    assert response.status_code == 200, response.text


def _flood(url: str, scenario: Scenario) -> dict[str, list[tuple[str, int]]]:
    """POST about ``scenario.flood`` bytes of broadcasts: round robin over the channels, and
    after each request of those one request of big messages to the flooding channel.

    Returns, per channel, each acknowledged message's position and envelope-size estimate."""
    channels, sizes = scenario.channels, scenario.data_sizes
    sent: dict[str, list[tuple[str, int]]] = {_channel(i): [] for i in range(channels)}
    sent[FLOODER] = []
    total, number = 0, 0
    flood = [{"channel": FLOODER, "event": "e", "data": {"pad": "x" * FLOODER_SIZE}}]
    with httpx.Client(base_url=url, headers=auth(), timeout=WAIT) as http:
        while total < scenario.flood:
            batch: list[dict[str, Any]] = []
            for _ in range(PER_REQUEST):
                data = {"n": number, "pad": "x" * sizes[(number // channels) % len(sizes)]}
                batch.append({"channel": _channel(number % channels), "event": "e", "data": data})
                number += 1
            for body in (batch, flood * scenario.flooder_per_request):
                if not body:
                    continue
                response = http.post("/broadcast", json=body)
                assert response.status_code == 200, response.text
                for item, answer in zip(body, response.json(), strict=True):
                    size = len(item["data"]["pad"]) + ENVELOPE_EXTRA
                    sent[answer["channel"]].append((answer["position"], size))
                    total += size
    return sent


async def _replayed(client: Client, count: int) -> list[str]:
    """The positions of the next ``count`` events; fails at once on an error frame."""
    positions: list[str] = []
    while len(positions) < count:
        frame = await client.recv(WAIT)
        assert frame["type"] != "error", f"{frame} after {len(positions)} of {count} events"
        if frame["type"] == "event":
            positions.append(frame["position"])
    return positions


def _drained(gateway: Gateway) -> bool:
    """Whether the gateway's feed has taken every published message (none waits in memory)."""
    status, payload = healthz(gateway)
    return status == 200 and payload["broker"]["lag"] == 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
async def test_history_rss_stays_within_its_budget_and_every_channel_keeps_its_share(
    scenario: Scenario,
) -> None:
    budget = scenario.budget
    with running_gateway(REALTIME_HISTORY_BYTES=str(budget)) as gateway:
        pid = gateway.process.pid
        # Warm up the HTTP and broadcast paths with a full request, then take the baseline.
        await trio.to_thread.run_sync(_warm_up, gateway.url)
        await wait_until(lambda: _drained(gateway), WAIT, "the gateway's feed drained")
        baseline = rss_kb(pid)

        peak = baseline
        flooded = False

        async def sample_peak() -> None:
            nonlocal peak
            while not flooded:
                peak = max(peak, rss_kb(pid))
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_peak)
            sent = await trio.to_thread.run_sync(_flood, gateway.url, scenario)
            flooded = True
        await wait_until(lambda: _drained(gateway), WAIT, "the gateway's feed drained")
        after = rss_kb(pid)
        growth = after - baseline
        record(
            f"history.rss.{scenario.name}",
            budget_bytes=budget,
            flood_bytes=scenario.flood,
            channels=scenario.channels,
            data_sizes=scenario.data_sizes,
            flooder_bytes=sum(size for _, size in sent[FLOODER]),
            messages=sum(len(positions) for positions in sent.values()),
            rss_baseline_kb=baseline,
            rss_after_kb=after,
            rss_peak_kb=peak,
            rss_growth_kb=growth,
            growth_over_budget=round(growth * 1024 / budget, 2),
        )
        assert growth * 1024 <= ALLOWED_GROWTH * budget, (
            f"RSS grew {growth} kB ({growth * 1024 / budget:.2f}x the {budget} byte budget) "
            f"from {baseline} kB; peak {peak} kB"
        )

        share = budget / (scenario.channels + 2)  # the flooder's and the warm-up channel's too
        async with connect(gateway.ws_url) as client:
            for index in range(0, scenario.channels, scenario.channels // CHECKED):
                name = _channel(index)
                kept = sent[name]
                # The newest messages whose envelopes make up half the channel's fair share.
                wanted, size = 0, 0
                while size + kept[-1 - wanted][1] <= share / 2:
                    size += kept[-1 - wanted][1]
                    wanted += 1
                since = kept[-1 - wanted][0]
                await client.subscribe(name, since=since)
                replayed = await _replayed(client, wanted)
                assert replayed == [position for position, _ in kept[-wanted:]], (
                    f"{name} did not replay its last {wanted} messages"
                )
                await client.send(type="unsubscribe", channel=name)
                await client.expect(WAIT, type="unsubscribed", channel=name)

                # Having the first message means wanting the second: long gone.
                await client.subscribe(name, since=kept[0][0])
                gone = await client.expect(WAIT, type="error", channel=name)
                assert gone["data"]["code"] == 410, gone
                await client.send(type="unsubscribe", channel=name)
                await client.expect(WAIT, type="unsubscribed", channel=name)
                client.seen.clear()
        assert healthz(gateway)[0] == 200
