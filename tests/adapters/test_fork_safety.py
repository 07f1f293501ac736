"""Publishing from a forked child (gunicorn ``--preload``, Celery's prefork pool, multiprocessing).

An app process publishes, forks, and parent and child both publish on: through Kafka, and through
a gateway's HTTP API (``REALTIME_BROKER=gateway``, the gateway on the memory broker). A WebSocket
client subscribed to the gateway must receive every message once; the child must neither hang nor
delay its exit; what the parent had in flight at the fork is the parent's to deliver.

The app is a script run in a process of its own (``FORKING_APP``), as a real app would be, not
this test process with its threads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

CHANNEL = "public.forks"

FORKING_APP = r"""
import json, os, sys
from tidings import broadcast, broadcast_nowait, realtime


def relayed():
    # With an outbox, wait until the process holding its relay lock has sent everything.
    if os.environ.get("REALTIME_OUTBOX"):
        realtime().broker().flush(60)

mode, run = sys.argv[1:]
# The parent's publisher is running before the fork.
broadcast("public.forks", "before", {"who": "parent", "run": run})
if mode == "warm":
    sys.exit(0)
in_flight = broadcast_nowait("public.forks", "in-flight", {"who": "parent", "run": run})
read, write = os.pipe()
child = os.fork()
if child == 0:
    report = {}
    try:
        inherited = in_flight.exception(timeout=20)
        report["inherited"] = None if inherited is None else str(inherited)
        for n in range(int(mode)):
            broadcast("public.forks", "child", {"who": "child", "n": n, "run": run})
        relayed()
        report["child"] = "ok"
    except BaseException as exc:
        report["child"] = repr(exc)
    os.write(write, json.dumps(report).encode())
    sys.exit(0)  # atexit hooks run, as in a gunicorn worker that stops
os.close(write)
for n in range(int(mode)):
    broadcast("public.forks", "after", {"who": "parent", "n": n, "run": run})
in_flight.result(timeout=20)
relayed()
report = json.loads(os.read(read, 65536))
_, status = os.waitpid(child, 0)
report["status"] = os.waitstatus_to_exitcode(status)
print(json.dumps(report))
"""


def _run_app(tmp_path: Path, env: dict[str, str], mode: str, run: str = "-") -> dict[str, Any]:
    script = tmp_path / "forking_app.py"
    script.write_text(FORKING_APP)
    done = subprocess.run(
        [sys.executable, str(script), mode, run],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout) if mode != "warm" else {}


async def _events_of(client: Client, run: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """The next ``count`` events of this run (an earlier run's may still be on their way)."""
    found: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        while len(found) < count:
            found += [e for e in await client.events(1, timeout) if e["data"]["run"] == run]
    return found


async def test_parent_and_forked_child_both_publish(
    live_gateway: Gateway, app_env: dict[str, str], tmp_path: Path
) -> None:
    count = 5
    await trio.to_thread.run_sync(_run_app, tmp_path, app_env, "warm")  # the channel's topic
    async with connect(live_gateway.ws_url) as client:
        await client.subscribe(CHANNEL)
        report = await trio.to_thread.run_sync(_run_app, tmp_path, app_env, str(count), "fork")
        assert report["child"] == "ok", report
        assert report["status"] == 0, report
        # Either Kafka answered before the fork (the child sees it acknowledged), or the child
        # was told the parent delivers it; never a wait for an answer that cannot come.
        assert report["inherited"] is None or "the process forked" in report["inherited"]
        events = await _events_of(client, "fork", 2 + 2 * count, timeout=30)
        await client.nothing_more()
    seen = Counter((e["event"], e["data"]["who"], e["data"].get("n")) for e in events)
    expected = Counter(
        [("before", "parent", None), ("in-flight", "parent", None)]
        + [("child", "child", n) for n in range(count)]
        + [("after", "parent", n) for n in range(count)]
    )
    assert seen == expected
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)


async def test_a_shared_outbox_is_relayed_once(
    live_gateway: Gateway, app_env: dict[str, str], tmp_path: Path
) -> None:
    """Parent and child store into one outbox file; one of them relays: nothing twice."""
    count = 20
    await trio.to_thread.run_sync(_run_app, tmp_path, app_env, "warm")
    env = {**app_env, "REALTIME_OUTBOX": str(tmp_path / "outbox.db")}
    async with connect(live_gateway.ws_url) as client:
        await client.subscribe(CHANNEL)
        report = await trio.to_thread.run_sync(_run_app, tmp_path, env, str(count), "fork")
        assert report["child"] == "ok" and report["status"] == 0, report
        events = await _events_of(client, "fork", 2 + 2 * count, timeout=60)
        await client.nothing_more(1.0)
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids), Counter(ids).most_common(3)
    children = [e["data"]["n"] for e in events if e["event"] == "child"]
    parents = [e["data"]["n"] for e in events if e["event"] == "after"]
    assert children == list(range(count))  # each process's messages in its order
    assert parents == list(range(count))
