"""How a gateway process runs the interpreter: garbage collection and thread switching.

These settings are process-wide, so only a command that owns its process applies them
(``tidings serve``); the library never does. ADR 0014 (switch interval), ADR 0015 (collector).
"""

from __future__ import annotations

import gc
import sys

import trio

SWITCH_INTERVAL = 0.0002
"""Seconds a thread may keep the GIL while another waits for it (CPython's default: 0.005)."""

YOUNG_EVERY = 0.05
"""Seconds between collections of the youngest generation."""

MIDDLE_EVERY = 5
"""Every this many young collections, the middle generation is collected instead (every 250 ms:
a second's survivors, ~30,000 objects at 10,000 connections, took 10-13 ms to walk)."""

FULL_EVERY = 1_200
"""Every this many young collections (every 60 s), all generations are collected instead.
Without it nothing ever collects the oldest generation: the clock's calls do not count towards
CPython's own full collections, and a connection that lived long enough to reach it leaves its
reference cycles there for good (wsproto's frame parser and its generator refer to each other:
about 1 kB per connection, found by the soak test). A full collection walks every connection's
objects (100-200 ms at 10,000 connections, ADR 0015), so it comes once a minute."""


def tune_interpreter(nursery: trio.Nursery) -> None:
    """Apply the process-wide settings a gateway runs with, once it has started, and run
    ``collect_garbage_on_a_clock`` in ``nursery`` for as long as it lives."""
    tune_garbage_collector()
    shorten_switch_interval()
    nursery.start_soon(collect_garbage_on_a_clock)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the delivery path.

    A gateway holds ~200 tracked objects per connection, so with thousands of connections a
    full collection scans millions of objects and stalls every client for 100-200 ms; the
    default thresholds trigger one every few seconds under load. Everything allocated while
    starting up is frozen out of collections, and collections run much less often (measured
    with 1,000 clients on their own channels: gateway CPU 5.9 s -> 3.4 s, p99 250 -> 21 ms).
    The young generations are collected on a clock instead (``collect_garbage_on_a_clock``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def shorten_switch_interval() -> None:
    """Give the Kafka client's threads the GIL soon after they ask for it (ADR 0014).

    kafka-python does its network I/O on a thread of its own, which the feed's consumer thread
    drives through events. Each time either thread returns from a system call, it waits for the
    GIL, and a busy trio thread gives it up only after the switch interval: at the default 5 ms,
    one poll under load took 50-150 ms. Measured with 10,000 clients on their own
    channels, 1,000 msg/s to 1,000 of them, four 10 s phases: p99 143, 122, 30, 96 ms ->
    13, 11, 12, 15 ms; fan-out saturation unchanged (1.47-1.59 M deliveries/s both ways).
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


async def collect_garbage_on_a_clock() -> None:
    """Collect the young generations every ``YOUNG_EVERY`` seconds, not by allocation count
    (and everything once a minute, ``FULL_EVERY``).

    CPython collects when tracked objects allocated minus those freed pass a threshold. A
    gateway frees about as much as it allocates: each frame a client sends replaces the
    suspended coroutines and cancel scopes that waited for it, so the count hardly moves while
    the youngest generation fills with every connection's new waiters, and each collection,
    when it comes, walks all of them (ADR 0015). With 10,000 clients pinging every 20 s, young
    collections came every few seconds and took ~100 ms. On a clock, each sees 50 ms of
    survivors. Memory broker, 1,000 msg/s to 1,000 of 10,000 clients, 10 s phases: p99
    4.1-11.6 ms -> 1.7-2.1 ms, max 108-122 ms -> 17-21 ms; fan-out saturation unchanged.
    """
    beat = 0
    while True:
        await trio.sleep(YOUNG_EVERY)
        beat += 1
        if beat % FULL_EVERY == 0:
            gc.collect(2)
        else:
            gc.collect(1 if beat % MIDDLE_EVERY == 0 else 0)
