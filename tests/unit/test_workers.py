"""``tidings serve --workers``: its argument, refusals, node ids and restart back-off (ADR 0032).

What needs Kafka (workers serving, restarted, drained) is in ``tests/cluster/test_workers.py``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.support.processes import TIDINGS, process_env
from tidings.config import worker_count
from tidings.entrypoints import workers
from tidings.entrypoints.cli import WorkersParam
from tidings.entrypoints.workers import (
    RESTART_BACKOFF,
    STABLE_AFTER,
    Plan,
    Supervisor,
    available_cores,
    failures_after,
    reserve_port,
    worker_node,
)


def tidings(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDINGS, *args],
        env=process_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- The argument ---------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=1, max_value=4096))
def test_a_number_of_workers_is_itself(count: int, cores: int) -> None:
    assert worker_count(str(count), cores) == count
    assert worker_count(f" {count} ", cores) == count


@given(st.sampled_from(["auto", "AUTO", " Auto "]), st.integers(min_value=1, max_value=4096))
def test_auto_is_the_cores(text: str, cores: int) -> None:
    assert worker_count(text, cores) == cores


@given(
    st.one_of(
        st.integers(max_value=0).map(str),
        st.text().filter(lambda t: t.strip().lower() != "auto" and not t.strip().isdigit()),
        st.just("٣"),  # a digit, but not one a person types for a count
    )
)
def test_anything_else_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number of workers") as refused:
        worker_count(text, 2)
    assert repr(text) in str(refused.value)


def test_auto_resolves_to_the_cores_this_process_may_use() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))
    assert WorkersParam().convert("auto", None, None) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("given_value", ["0", "-1", "abc", "1.5", ""])
def test_a_bad_workers_argument_is_a_usage_error_naming_the_option(given_value: str) -> None:
    result = tidings("serve", "--workers", given_value, REALTIME_BROKER="kafka")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'--workers'" in lines[0] and repr(given_value) in lines[0], lines


def test_a_bad_realtime_workers_is_refused_naming_the_variable() -> None:
    result = tidings("config", REALTIME_WORKERS="many")
    assert result.returncode == 2, result
    assert "REALTIME_WORKERS" in result.stderr and "'many'" in result.stderr, result.stderr


def test_config_shows_the_workers_setting() -> None:
    result = tidings("config", REALTIME_WORKERS="auto")
    assert result.returncode == 0, result
    assert any(line.split() == ["REALTIME_WORKERS", "auto"] for line in result.stdout.splitlines())


def test_config_check_resolves_the_workers_and_refuses_them_on_the_memory_broker() -> None:
    kafka = tidings(
        "config",
        "--check",
        REALTIME_WORKERS="2",
        REALTIME_BROKER="kafka",
        KAFKA_BROKERS="127.0.0.1:1",
        KAFKA_TIMEOUT="1",
    )
    assert "ok    REALTIME_WORKERS: 2 gateway process(es)" in kafka.stdout, kafka
    memory = tidings("config", "--check", REALTIME_WORKERS="2", REALTIME_BROKER="memory")
    assert memory.returncode == 1, memory
    line = next(line for line in memory.stdout.splitlines() if "REALTIME_WORKERS" in line)
    assert line.startswith("FAIL  REALTIME_WORKERS: refusing REALTIME_WORKERS=2 with the memory")


# -- Refusals at start ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--workers", "2"], {"REALTIME_BROKER": "memory"}),
        (["--workers", "2", "--broker", "memory"], {}),
        ([], {"REALTIME_BROKER": "memory", "REALTIME_WORKERS": "2"}),
    ],
)
def test_several_workers_on_the_memory_broker_are_refused(
    args: list[str], env: dict[str, str]
) -> None:
    result = tidings("serve", "--port", "0", *args, **env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "memory broker" in lines[0]
    assert "reach one worker's clients only" in lines[0]  # why
    assert "use Kafka" in lines[0] and "one worker" in lines[0]  # what to do
    assert result.stdout == ""  # nothing started, nothing announced


def test_a_busy_port_is_told_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tidings("serve", "--workers", "2", "--port", str(port), REALTIME_BROKER="kafka")
    assert result.returncode == 1, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert result.stdout == ""


def test_the_reserved_port_is_shared_by_listeners_with_reuse_port() -> None:
    """The supervisor's socket learns port 0 and keeps it without taking connections; workers
    listen beside it (``SO_REUSEPORT``), and a listener without the option is refused."""
    with reserve_port("127.0.0.1", 0) as reserved:
        port = reserved.getsockname()[1]
        assert port != 0
        with reserve_port("127.0.0.1", port) as worker:
            worker.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = worker.accept()
                accepted.close()
        with socket.socket() as intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))


# -- Node ids and restarts ------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40), st.integers(1, 512), st.integers(1, 512))
def test_each_worker_is_its_own_stable_node(base: str, one: int, other: int) -> None:
    assert worker_node(base, one) == f"{base}-w{one}"
    assert worker_node(base, one) == worker_node(base, one)  # the same after a restart
    assert (worker_node(base, one) == worker_node(base, other)) == (one == other)


@given(st.integers(0, 1000), st.floats(0, 10 * STABLE_AFTER, allow_nan=False))
def test_a_stable_run_starts_the_count_again(failures: int, ran: float) -> None:
    after = failures_after(failures, ran)
    assert after == (0 if ran >= STABLE_AFTER else failures + 1)


@given(st.integers(0, 200), st.floats(0, 1, exclude_max=True))
def test_restart_delays_double_with_jitter_up_to_the_cap(failures: int, rand: float) -> None:
    base = min(RESTART_BACKOFF.max_delay, RESTART_BACKOFF.min_delay * 2**failures)
    delay = RESTART_BACKOFF.delay(failures, lambda: rand)
    assert base / 2 <= delay <= base
    assert delay <= RESTART_BACKOFF.max_delay
    assert RESTART_BACKOFF.delay(failures + 1, lambda: rand) >= delay


# -- The supervisor, with stand-in workers ---------------------------------------------------------

STAND_IN = """
import os, signal, sys, time
args = sys.argv[1:]
node, fd = args[args.index("--node-id") + 1], int(args[args.index("--supervisor-fd") + 1])
with open(os.environ["STARTS"], "a") as starts:
    starts.write(f"{node} {os.getpid()}\\n")
mode = os.environ["MODE"]
if mode == "refused":
    sys.exit(2)
marker = os.path.join(os.path.dirname(os.environ["STARTS"]), node)
if mode == "crash-once" and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(3)
stop = signal.SIG_IGN if mode == "stubborn" else lambda *_: sys.exit(0)
signal.signal(signal.SIGTERM, stop)
os.write(fd, b"ready\\n")
os.close(fd)
time.sleep(3600)
"""


def supervisor_of(tmp_path: Path, mode: str, on_ready: Callable[[], None]) -> Supervisor:
    env = {**os.environ, "MODE": mode, "STARTS": str(tmp_path / "starts")}
    plan = Plan((sys.executable, "-c", STAND_IN), env, str(tmp_path))
    return Supervisor(plan, ["n-w1", "n-w2"], on_ready)


def starts(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "starts"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(node, int(pid)) for node, pid in (line.split() for line in lines)]


async def test_sigterm_stops_every_worker_and_the_supervisor_exits_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tidings.workers")
    supervisor = supervisor_of(tmp_path, "serve", lambda: os.kill(os.getpid(), signal.SIGTERM))
    with trio.fail_after(30):
        assert await supervisor.run() == 0
    assert sorted(node for node, _ in starts(tmp_path)) == ["n-w1", "n-w2"]
    assert [w.process and w.process.returncode for w in supervisor.workers] == [0, 0]
    assert "every worker stopped" in caplog.text


async def test_a_worker_that_will_not_stop_is_killed_and_the_exit_is_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "STOP_TIMEOUT", 0.5)
    supervisor = supervisor_of(tmp_path, "stubborn", lambda: os.kill(os.getpid(), signal.SIGTERM))
    with trio.fail_after(30):
        assert await supervisor.run() == 1
    assert all(w.process is not None and w.process.returncode == -9 for w in supervisor.workers)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert lines == ["workers still running 0.5s after SIGTERM, killed: n-w1, n-w2"], lines


async def test_a_worker_refused_its_configuration_stops_them_all_with_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = supervisor_of(tmp_path, "refused", lambda: None)
    with trio.fail_after(30):
        assert await supervisor.run() == 2
    assert "its configuration was refused" in caplog.text
    assert len(starts(tmp_path)) <= 2  # never started again


async def test_a_worker_that_exits_is_started_again_as_the_same_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = supervisor_of(tmp_path, "crash-once", lambda: os.kill(os.getpid(), signal.SIGTERM))
    with trio.fail_after(30):
        assert await supervisor.run() == 0
    started = starts(tmp_path)
    for node in ("n-w1", "n-w2"):
        pids = [pid for each, pid in started if each == node]
        assert len(pids) == 2 and pids[0] != pids[1], started  # the same node id, a new process
    restarts = [r.getMessage() for r in caplog.records if "starting it again" in r.getMessage()]
    assert len(restarts) == 2, restarts
    for line in restarts:
        assert re.fullmatch(
            r"worker n-w[12] exited with status 3 after [\d.]+s; starting it again in [\d.]+s", line
        ), line


def test_a_worker_stops_when_its_supervisor_is_gone() -> None:
    """A worker says ``ready`` on its end of the socket pair once it listens, and drains and
    exits 0 when the other end closes: what the kernel does when a supervisor dies, even by
    SIGKILL, so that no worker outlives it holding the port."""
    ours, theirs = socket.socketpair()
    worker = subprocess.Popen(
        [
            TIDINGS,
            "serve",
            "--port",
            "0",
            "--node-id",
            "n-w1",
            "--supervisor-fd",
            str(theirs.fileno()),
        ],
        env=process_env(REALTIME_BROKER="memory"),
        pass_fds=(theirs.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    theirs.close()
    try:
        ours.settimeout(60)
        assert ours.recv(64) == b"ready\n"
        ours.close()
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "the supervisor is gone: shutting down" in err, err
    assert "worker n-w1 listening on http://127.0.0.1:" in err, err
    assert "demo page" not in out  # the supervisor announces, not its workers


# -- One /metrics over every worker ---------------------------------------------------------------

METRICS_OF_A_WORKER = """
import sys
from tidings.adapters.prometheus import PrometheusMetrics
node, opened, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
metrics = PrometheusMetrics(node, directory)
for _ in range(opened):
    metrics.connection_opened()
metrics.messages_out(10 * opened)
if node == "n-w2":
    sys.stdout.buffer.write(metrics.render()[0])
"""


def test_any_worker_renders_the_sum_of_every_worker(tmp_path: Path) -> None:
    """Each worker writes its figures to the shared directory; whichever renders shows the sum
    of the counters, the connections of the live workers, and one node_info per live worker."""
    from prometheus_client.parser import text_string_to_metric_families

    from tidings.adapters.prometheus import forget_process

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first = subprocess.run(
        [sys.executable, "-c", METRICS_OF_A_WORKER, "n-w1", "3", str(tmp_path)],
        env=env,
        capture_output=True,
        check=True,
    )
    assert first.stdout == b""
    second = subprocess.run(
        [sys.executable, "-c", METRICS_OF_A_WORKER, "n-w2", "4", str(tmp_path)],
        env=env,
        capture_output=True,
        check=True,
    )
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(second.stdout.decode())
        for sample in family.samples
    }
    assert samples[("tidings_messages_out_total", ())] == 70
    assert samples[("tidings_connections_opened_total", ())] == 7
    assert samples[("tidings_connections", ())] == 7  # livesum: both processes' files are there
    nodes = sorted(dict(labels)["node"] for name, labels in samples if name == "tidings_node_info")
    assert nodes == ["n-w1", "n-w2"]
    # Each live worker's own process figures, told apart by node; n-w1 has exited: none of its.
    memory = {
        dict(labels)["node"] for name, labels in samples if name == "process_resident_memory_bytes"
    }
    assert memory == {"n-w2"}
    assert samples[("process_open_fds", (("node", "n-w2"),))] > 0

    # The supervisor forgets a worker that exited: its live gauges go, its counters stay.
    for pid_file in tmp_path.glob("gauge_livesum_*.db"):
        forget_process(str(tmp_path), int(pid_file.stem.rsplit("_", 1)[1]))
    assert not list(tmp_path.glob("gauge_live*_*.db"))
    assert list(tmp_path.glob("counter_*.db"))


def test_one_worker_alone_runs_the_demo_feed() -> None:
    """Every worker of a ``--demo`` gateway serves the demo page, but the demo feed is the
    gateway's, not each process's: only worker 1 publishes it (the others get --no-demo-feed)."""
    from tidings.entrypoints.workers import Worker, worker_arguments

    first, second = Worker(1, "n-w1"), Worker(2, "n-w2")
    assert worker_arguments(first) == ["--node-id", "n-w1", "--supervisor-fd"]
    assert worker_arguments(second) == ["--node-id", "n-w2", "--no-demo-feed", "--supervisor-fd"]
