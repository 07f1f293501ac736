"""Scenario 9, the Pusher protocol: scenario 6's fan-out, one gateway, two kinds of client.

One ``tidings serve`` on the memory broker, with a Pusher app configured (``PUSHER_APP_*``),
serves N clients on one channel twice over: first N speaking tidings' protocol at ``/ws``, then,
once they have left, N speaking Pusher's at ``/app/{key}?protocol=7`` as pusher-js does (the load
generator's ``-proto pusher``: ``pusher:subscribe`` to the public channel, ``pusher:pong`` to a
``pusher:ping``). The same messages are published the same way (``POST /broadcast`` lists) and
counted the same way (``fanout.measure``), so the ratio is what the protocol costs the gateway.
"""

from __future__ import annotations

from functools import partial

from ..core import Context
from ..systems import start_server
from . import fanout
from .common import twice

SCENARIO = "9-pusher-protocol"
SYSTEMS = ("tidings-ws", "pusher-ws")
"""The same gateway process seen by tidings' clients (``/ws``) and by Pusher's (``/app/{key}``)."""


def run(ctx: Context) -> None:
    plan = ctx.plan
    ctx.results.scenarios[SCENARIO] = {
        "title": "Fan-out, tidings' protocol vs Pusher's on the same gateway",
        "about": (
            "One gateway (memory broker, a Pusher app configured) serves N clients on one "
            "public channel speaking tidings' protocol, then N speaking Pusher's (protocol 7, as "
            "pusher-js); the same messages published the same way (`POST /broadcast`). The "
            f"fixed-rate phase offers {plan.fixed_deliveries_per_s:,} deliveries/s for "
            f"{plan.fixed_seconds:g} s, the saturation phase publishes "
            f"{plan.saturation_deliveries:,} / N messages flat out."
        ),
    }
    ctx.results.pair(SCENARIO, *SYSTEMS)
    for n in plan.fanout_connections:
        twice(ctx, f"{SCENARIO}/{n}", partial(_one, ctx, n))


def _one(ctx: Context, n: int) -> None:
    ctx.log(f"{SCENARIO}: one gateway, {n:,} connections of each protocol in turn")
    server = start_server(ctx, "tidings-memory", f"9n{n}", pusher=True)
    try:
        for system in SYSTEMS:
            fanout.measure(ctx, SCENARIO, server.speaking(system), n)
    finally:
        ctx.procs.stop(server.child)
