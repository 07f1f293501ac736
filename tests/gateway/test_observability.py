"""What an operator watches (docs/observability.md): ``/metrics`` by Prometheus' conventions,
the publish-to-send histogram, disconnects by close code, ``/livez``, and the Grafana dashboard
of docs/grafana, whose every metric must exist in a real ``/metrics``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, aget, broadcast, close_code, unique

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "tidings.json"

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
OTHER_UNITS = re.compile(
    r"_(milliseconds|microseconds|nanoseconds|ms|us|minutes|hours|days|kilobytes|megabytes|"
    r"gigabytes|kb|mb|gb|percent|ratio_percent)(_|$)"
)
"""Units that are not base units: Prometheus wants seconds and bytes (and ratios 0..1)."""
UNITS = ("_seconds", "_bytes")
PREFIXES = ("tidings_", "process_", "python_")
"""Ours, and those of prometheus-client's process, platform and GC collectors."""


class Scrape:
    """One ``GET /metrics``, parsed by prometheus-client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def samples(self) -> Iterator[Sample]:
        for family in self.families.values():
            yield from family.samples

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with (at least) ``labels``; 0 when it is not there yet."""
        for sample in self.samples():
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
        return 0.0

    def names(self) -> set[str]:
        """Every name a PromQL expression may use: the samples', and the series a counter or a
        histogram has even before its first labelled sample."""
        names = {sample.name for sample in self.samples()}
        for family in self.families.values():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
            else:
                names.add(family.name)
        return names


async def scrape(gateway: Gateway) -> Scrape:
    response = await aget(gateway, "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def wait_for(gateway: Gateway, name: str, above: float, **labels: str) -> Scrape:
    """Scrape until sample ``name`` (with ``labels``) is above ``above``; bounded by ``WAIT``."""
    with trio.fail_after(WAIT):
        while True:
            metrics = await scrape(gateway)
            if metrics.value(name, **labels) > above:
                return metrics
            await trio.sleep(0.1)


def _convention_problems(metrics: Scrape) -> list[str]:
    problems = []
    created = {f"{f.name}_created" for f in metrics.families.values() if f.type != "gauge"}
    for name, family in metrics.families.items():
        if name in created:  # prometheus-client's creation time of a counter or histogram
            continue
        where = f"{name} ({family.type})"
        if not NAME.match(name) or not name.startswith(PREFIXES):
            problems.append(f"{where}: not lower snake case with a tidings_ (or collector) prefix")
        if not family.documentation.strip():
            problems.append(f"{where}: no HELP text")
        if OTHER_UNITS.search(name):
            problems.append(f"{where}: not in a base unit (seconds, bytes)")
        if family.type == "counter":
            if any(not s.name.endswith(("_total", "_created")) for s in family.samples):
                problems.append(f"{where}: a counter's samples end in _total")
        elif family.type == "histogram":
            if not name.endswith(UNITS):
                problems.append(f"{where}: a histogram names its unit (_seconds, _bytes)")
            if not any(s.labels.get("le") == "+Inf" for s in family.samples):
                problems.append(f"{where}: no +Inf bucket")
        elif family.type == "gauge":
            if name.endswith(("_total", "_count", "_sum", "_bucket", "_created")):
                problems.append(f"{where}: a gauge with a counter's or histogram's suffix")
            if name.endswith("_info") and any(s.value != 1 for s in family.samples):
                problems.append(f"{where}: an _info gauge is 1")
        else:
            problems.append(f"{where}: unexpected type")
        for sample in family.samples:
            if "le" in sample.labels and family.type != "histogram":
                problems.append(f"{where}: label le is reserved for histograms")
    return problems


async def test_metrics_follow_the_prometheus_conventions(gateway: Gateway) -> None:
    async with connect(gateway.ws_url) as client:
        await client.send(type="subscribe", channel="private-team.x")  # 401: a refusal
        await client.recv(WAIT)
        metrics = await scrape(gateway)
    assert _convention_problems(metrics) == [], metrics.text
    expected = {
        "tidings_connections": "gauge",
        "tidings_subscriptions": "gauge",
        "tidings_messages_out": "counter",
        "tidings_publish_to_send_seconds": "histogram",
        "tidings_broker_lag_messages": "gauge",
        "tidings_broker_connected": "gauge",
        "tidings_disconnects": "counter",
        "tidings_refusals": "counter",
        "tidings_connections_refused": "counter",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
    }
    found = {name: metrics.families[name].type for name in expected if name in metrics.families}
    assert found == expected, metrics.text
    assert metrics.value("tidings_connections") >= 1
    assert metrics.value("tidings_broker_connected") == 1
    assert metrics.value("tidings_refusals_total", code="401") >= 1
    assert metrics.value("process_open_fds") > 0


async def test_a_delivered_message_is_timed_from_publish_to_send(gateway: Gateway) -> None:
    channel = unique("public.latency")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        before = (await scrape(gateway)).value("tidings_publish_to_send_seconds_count")
        await broadcast(gateway, channel, data="timed")
        [event] = await client.events(1, WAIT)
        assert event["data"] == "timed"
        metrics = await wait_for(gateway, "tidings_publish_to_send_seconds_count", before)
    assert metrics.value("tidings_publish_to_send_seconds_sum") >= 0
    everything = metrics.value("tidings_publish_to_send_seconds_bucket", le="+Inf")
    assert everything == metrics.value("tidings_publish_to_send_seconds_count")


async def test_disconnects_are_counted_by_close_code(gateway: Gateway) -> None:
    before = await scrape(gateway)
    normal = before.value("tidings_disconnects_total", code="1000")
    unauthorized = before.value("tidings_disconnects_total", code="4401")
    async with connect(gateway.ws_url):
        pass  # the client closes with 1000
    await wait_for(gateway, "tidings_disconnects_total", normal, code="1000")
    async with connect(gateway.ws_url, token="not-a-token") as refused:
        assert refused.connected["type"] == "error"
        assert await close_code(refused) == 4401
    await wait_for(gateway, "tidings_disconnects_total", unauthorized, code="4401")


async def test_livez_answers_beside_healthz(gateway: Gateway) -> None:
    response = await aget(gateway, "/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "alive", "node": gateway.env["REALTIME_NODE_ID"]}
    assert (await aget(gateway, "/healthz")).status_code == 200


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


async def test_every_metric_of_the_dashboard_exists(gateway: Gateway) -> None:
    """The dashboard cannot drift from the metrics: each name its queries use is in /metrics."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = list(_expressions(dashboard))
    assert len(expressions) >= 8, "the dashboard has lost its panels"
    used = {
        name
        for expression in expressions
        for name in re.findall(r"\b(?:tidings|process|python)_[a-z0-9_]+", expression)
    }
    assert "tidings_publish_to_send_seconds_bucket" in used
    missing = used - (await scrape(gateway)).names()
    assert not missing, f"the dashboard uses metrics /metrics does not have: {sorted(missing)}"


async def test_a_malformed_upgrade_is_a_refused_connection(gateway: Gateway) -> None:
    name, labels = "tidings_connections_refused_total", {"reason": "bad_request"}
    before = (await scrape(gateway)).value(name, **labels)
    headers = {"connection": "Upgrade", "upgrade": "websocket"}  # no key, no version

    def upgrade() -> int:
        return httpx.get(gateway.ws_url.replace("ws://", "http://"), headers=headers).status_code

    assert await trio.to_thread.run_sync(upgrade) == 400
    await wait_for(gateway, name, before, **labels)
