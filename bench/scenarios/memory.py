"""Scenario 5, memory per idle connection: the server's resident memory (VmRSS of
/proc/PID/status) after N clients connected and subscribed, minus before, divided by N.

Each client holds its own ``user.N`` channel (tidings: with a token; Socket.IO: a room). The
systems run interleaved, ``plan.repeats`` times each (``interleave``). A first
batch of 20 clients connects and leaves before the "before" reading, so imports and caches that
the first connection pulls in are not charged to the N.
"""

from __future__ import annotations

import time

from ..clients import LoadGen
from ..core import Context
from ..systems import start_server
from .common import interleave, tokens_file

SCENARIO = "5-memory"
SYSTEMS = ("tidings-memory", "socketio", "socketio-asyncio")
CHANNEL = "user.{i}"
SETTLE_SECONDS = 3.0


def run(ctx: Context) -> None:
    n = ctx.plan.memory_connections
    case = f"{n:,} idle connections"
    ctx.results.scenarios[SCENARIO] = {
        "title": "Memory per idle connection",
        "about": f"(RSS with {n:,} connected, subscribed clients - RSS before) / {n:,}.",
    }

    def measure(system: str, attempt: int) -> None:
        tokens = tokens_file(ctx, n) if system.startswith("tidings") else None
        server = start_server(ctx, system, f"m{n}")
        try:
            LoadGen.connect(ctx, server, n=20, channel=CHANNEL, tokens=tokens,
                            name=f"{SCENARIO}-{system}-warm-{attempt}").close()
            time.sleep(SETTLE_SECONDS)
            before = server.child.rss_kib()
            loadgen = LoadGen.connect(ctx, server, n=n, channel=CHANNEL, tokens=tokens,
                                      name=f"{SCENARIO}-{system}-{attempt}")
            try:
                time.sleep(SETTLE_SECONDS)
                after = server.child.rss_kib()
            finally:
                loadgen.close()
        finally:
            ctx.procs.stop(server.child)
        per_connection = (after - before) / n
        ctx.results.figure(SCENARIO, case, system, "kib_per_connection", per_connection, "KiB")
        ctx.results.figure(SCENARIO, case, system, "rss_before_mib", before / 1024, "MiB")
        ctx.results.figure(SCENARIO, case, system, "rss_after_mib", after / 1024, "MiB")
        ctx.results.runs.append({"scenario": SCENARIO, "system": system, "connections": n,
                                 "run": attempt + 1, "rss_before_kib": before,
                                 "rss_after_kib": after})

    interleave(ctx, SCENARIO, SYSTEMS, ctx.plan.repeats, measure)
    ctx.results.row(SCENARIO, case, "KiB per connection", ("kib_per_connection",),
                    better="lower", unit="KiB")
    ctx.results.row(SCENARIO, case, "RSS before / after (MiB)",
                    ("rss_before_mib", "rss_after_mib"), ratio="rss_after_mib", better="lower",
                    unit="MiB")
    ctx.results.pair(SCENARIO, "tidings-memory", "socketio")
    ctx.results.pair(SCENARIO, "tidings-memory", "socketio-asyncio")
