"""How big each scenario is in each mode: ``smoke`` (CI), ``quick`` (a few minutes), ``full``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    fanout_connections: tuple[int, ...]
    """Connection counts of the fan-out scenarios (one channel)."""
    fixed_deliveries_per_s: int
    """Offered load of the fixed-rate phase: messages/s x connections, the same for every N."""
    fixed_seconds: float
    saturation_deliveries: int
    """Deliveries a saturation phase aims at: the publisher sends this / N messages flat out."""
    saturation_seconds: float
    """A saturation publisher stops after this long even if it has not sent everything."""
    channels_connections: int
    """Connections of the many-channels scenario, each on its own user.N channel."""
    channels_latency_rate: int
    """Messages/s of the latency phase, to random users among ``channels_latency_clients``."""
    channels_latency_clients: int
    channels_latency_seconds: float
    """How long the latency phase publishes: its p99 is the 1 % slowest of rate x seconds
    messages, so a single stall of the machine weighs less in a longer phase."""
    channels_saturation_messages: int
    scaling_fanout_connections: int
    """Connections of the scaling scenario's fan-out (1 and 2 gateway workers): where one
    gateway is bound by its core (10,000 in the full run); its many-channels case has
    ``channels_connections``."""
    publish_messages: int
    """Messages of the fire-and-forget publish runs (broadcast_nowait, producer.send)."""
    publish_sync_messages: int
    """Messages of the one-at-a-time publish runs (broadcast, send().get(), send_and_wait)."""
    consume_messages: int
    memory_connections: int
    repeats: int
    """Runs of each system in each case, interleaved with the other systems' (``interleave``);
    the report shows their median and spread, every run is kept."""


PLANS = {
    "smoke": Plan(
        name="smoke",
        fanout_connections=(50,),
        fixed_deliveries_per_s=2_000,
        fixed_seconds=2,
        saturation_deliveries=20_000,
        saturation_seconds=10,
        channels_connections=100,
        channels_latency_rate=200,
        channels_latency_clients=100,
        channels_latency_seconds=2,
        channels_saturation_messages=2_000,
        scaling_fanout_connections=50,
        publish_messages=2_000,
        publish_sync_messages=200,
        consume_messages=5_000,
        memory_connections=200,
        repeats=1,
    ),
    "quick": Plan(
        name="quick",
        fanout_connections=(100, 1_000),
        fixed_deliveries_per_s=10_000,
        fixed_seconds=5,
        saturation_deliveries=200_000,
        saturation_seconds=20,
        channels_connections=1_000,
        channels_latency_rate=1_000,
        channels_latency_clients=1_000,
        channels_latency_seconds=5,
        channels_saturation_messages=30_000,
        scaling_fanout_connections=1_000,
        publish_messages=30_000,
        publish_sync_messages=1_000,
        consume_messages=50_000,
        memory_connections=2_000,
        repeats=2,
    ),
    "full": Plan(
        name="full",
        fanout_connections=(100, 1_000, 10_000),
        fixed_deliveries_per_s=10_000,
        fixed_seconds=10,
        saturation_deliveries=600_000,
        saturation_seconds=30,
        channels_connections=10_000,
        channels_latency_rate=1_000,
        channels_latency_clients=1_000,
        channels_latency_seconds=30,
        channels_saturation_messages=100_000,
        scaling_fanout_connections=10_000,
        publish_messages=200_000,
        publish_sync_messages=5_000,
        consume_messages=200_000,
        memory_connections=10_000,
        repeats=3,
    ),
}
