"""Scenarios 7 and 8, scaling: the Kafka gateway as one process and as two (``--workers 2``).

The same fan-out and many-channels cases as scenarios 1 and 2 (``fanout._one``,
``channels._one``), run by ``tidings serve --workers 1`` and ``--workers 2``. Neither is pinned to
a core: the point is what a second process adds when the gateway may use the whole machine, so
both share it with the load generator and Kafka as they would in production on one box
(ADR 0032). The connections spread over the workers by the kernel (``SO_REUSEPORT``). The two
systems of a case run interleaved (``interleave``: 2w, 1w, then 1w, 2w...), ``plan.repeats``
times each, each run a fresh gateway on its own topics.
"""

from __future__ import annotations

from ..core import Context
from . import channels, fanout
from .common import interleave

FANOUT = "7-scaling-fanout"
CHANNELS = "8-scaling-channels"
SYSTEMS = ("tidings-2w-kafka", "tidings-1w-kafka")


def run(ctx: Context) -> None:
    plan = ctx.plan
    n = plan.scaling_fanout_connections
    ctx.results.scenarios[FANOUT] = {
        "title": "Scaling: fan-out through Kafka, 1 and 2 gateway workers",
        "about": (
            f"Scenario 1's case at {n:,} connections, run by `tidings serve --workers 2` and "
            "`--workers 1`, neither pinned to a core (both share the machine with the load "
            "generator and Kafka)."
        ),
    }
    ctx.results.scenarios[CHANNELS] = {
        "title": "Scaling: many channels through Kafka, 1 and 2 gateway workers",
        "about": (
            f"Scenario 2's case at {plan.channels_connections:,} connections, run by `tidings "
            "serve --workers 2` and `--workers 1`, neither pinned to a core."
        ),
    }
    for scenario in (FANOUT, CHANNELS):
        ctx.results.pair(scenario, *SYSTEMS)
    interleave(ctx, f"{FANOUT}/{n}", SYSTEMS, plan.repeats,
               lambda system, run: fanout._one(ctx, FANOUT, system, n, run))
    interleave(ctx, CHANNELS, SYSTEMS, plan.repeats,
               lambda system, run: channels._one(ctx, system, plan.channels_connections,
                                                 CHANNELS, run=run))
