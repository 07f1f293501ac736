"""Scenario 9, the Pusher protocol: scenario 6's fan-out, one kind of gateway, two kinds of client.

One ``tidings serve`` on the memory broker, with a Pusher app configured (``PUSHER_APP_*``),
serves N clients on one channel, speaking either tidings' protocol at ``/ws`` or Pusher's at
``/app/{key}?protocol=7`` as pusher-js does (the load generator's ``-proto pusher``:
``pusher:subscribe`` to the public channel, ``pusher:pong`` to a ``pusher:ping``). The two run
interleaved (``interleave``: tidings', Pusher's, then Pusher's, tidings'...), ``plan.repeats``
times each, each run a fresh gateway started the same way (the same program, the same settings,
the Pusher app included). The same messages are published the same way (``POST /broadcast``
lists) and counted the same way (``fanout.measure``), so the ratio is what the protocol costs
the gateway.
"""

from __future__ import annotations

from ..core import Context
from ..systems import start_server
from . import fanout
from .common import interleave, server_tag

SCENARIO = "9-pusher-protocol"
SYSTEMS = ("tidings-ws", "pusher-ws")
"""The same gateway seen by tidings' clients (``/ws``) and by Pusher's (``/app/{key}``)."""


def run(ctx: Context) -> None:
    plan = ctx.plan
    ctx.results.scenarios[SCENARIO] = {
        "title": "Fan-out, tidings' protocol vs Pusher's on one kind of gateway",
        "about": (
            "One gateway (memory broker, a Pusher app configured) serves N clients on one "
            "public channel speaking tidings' protocol, or N speaking Pusher's (protocol 7, as "
            "pusher-js), each run a fresh gateway started the same way; the same messages "
            "published the same way (`POST /broadcast`). The "
            f"fixed-rate phase offers {plan.fixed_deliveries_per_s:,} deliveries/s for "
            f"{plan.fixed_seconds:g} s, the saturation phase publishes "
            f"{plan.saturation_deliveries:,} / N messages flat out."
        ),
    }
    ctx.results.pair(SCENARIO, *SYSTEMS)
    for n in plan.fanout_connections:
        interleave(ctx, f"{SCENARIO}/{n}", SYSTEMS, plan.repeats,
                   lambda system, run, n=n: _one(ctx, system, n, run))


def _one(ctx: Context, system: str, n: int, run: int = 0) -> None:
    ctx.log(f"{SCENARIO}: one gateway, {n:,} connections speaking {system}")
    # One system name (tidings-memory) for both: the tag says which clients it served.
    tag = server_tag(SCENARIO, system, f"n{n}{system.split('-')[0]}", run)
    server = start_server(ctx, "tidings-memory", tag, pusher=True)
    try:
        fanout.measure(ctx, SCENARIO, server.speaking(system), n)
    finally:
        ctx.procs.stop(server.child)
