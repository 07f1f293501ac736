"""The real Kafka brokers the tests talk to: the run's own, and disposable ones for fault tests.

The run's broker is described by the environment that ``scripts/kafka`` reads too:
``TIDINGS_KAFKA_PORT``, ``TIDINGS_KAFKA_CONTROLLER_PORT`` and ``TIDINGS_KAFKA_STATE``.
``scripts/test`` starts a broker of its own on free ports with a state directory of its own and
exports them, so that two runs on one host never share (nor stop) a broker. Run by hand, pytest
uses whatever they say, or ``scripts/kafka start``'s default of 127.0.0.1:9092 when they are unset,
and starts that broker when nothing listens there.

``scripts/test --fast`` sets ``TIDINGS_KAFKA=off``: no broker is started, and a test that asks
for one fails with the name of the marker it lacks instead of quietly starting one.

A ``KafkaNode`` is a further broker that a fault test may stop, kill and restart. It never takes
the run's settings: it picks its own free ports and state directory, and wipes them at the end.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka"
PORT = int(os.environ.get("TIDINGS_KAFKA_PORT", "9092"))
BOOTSTRAP = f"127.0.0.1:{PORT}"

BROKER_SETTINGS = ("TIDINGS_KAFKA_PORT", "TIDINGS_KAFKA_CONTROLLER_PORT", "TIDINGS_KAFKA_STATE")
"""The variables that say which broker ``scripts/kafka`` acts on."""

OFF = os.environ.get("TIDINGS_KAFKA", "").lower() == "off"

LOWEST_PORT = 20000
"""Ports are picked from here up to the kernel's ephemeral range, never inside it: a port handed
out for outgoing connections (or ``--port 0``) could otherwise take a stopped broker's port before
the broker comes back."""


class KafkaOff(RuntimeError):
    """A test reached for Kafka in a run that has none (``scripts/test --fast``)."""

    def __init__(self) -> None:
        super().__init__(
            "this run has no Kafka (TIDINGS_KAFKA=off, as set by scripts/test --fast), yet a test "
            "asked for a broker: mark it @pytest.mark.kafka, or reach Kafka through the "
            "kafka_bootstrap or kafka_node fixtures, which tests/conftest.py marks automatically"
        )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 elsewhere)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(avoid: frozenset[int] = frozenset()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and that can be bound right now.

    Another process may still take it before the broker binds it; ``scripts/kafka start`` then
    refuses with "already in use", and callers pick again.
    """
    high = _ephemeral_low()
    if high <= LOWEST_PORT + 100:
        raise RuntimeError(f"no room for test ports below the ephemeral range (from {high})")
    for _ in range(200):
        port = random.randrange(LOWEST_PORT, high)
        if port in avoid or _listening(port):
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port found between {LOWEST_PORT} and {high}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (a broker needs two: clients and its KRaft controller)."""
    ports: list[int] = []
    for _ in range(count):
        ports.append(free_port(frozenset(ports)))
    return ports


def ensure_kafka() -> str:
    """The run's broker address; starts it (idempotently) when nothing listens on its port."""
    if OFF:
        raise KafkaOff()
    if not _listening(PORT):
        result = kafka_command("start", timeout=600)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/kafka start failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
    return BOOTSTRAP


def kafka_command(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/kafka ARGS`` (start, stop, kill ...), its output captured.

    Without ``env`` it acts on the run's broker, as this process's environment describes it;
    with ``env`` on the broker those settings describe (see ``KafkaNode``).
    """
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ) if env is None else dict(env),
    )


class KafkaNode:
    """A further, disposable broker for fault tests: stopped, killed and restarted at will.

    Its ports are picked when it is made and kept for its life (a restart comes back where
    clients expect it); its state lives in a temporary directory that ``wipe`` deletes.
    """

    def __init__(self) -> None:
        if OFF:
            raise KafkaOff()
        self.port, self.controller_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.state = Path(tempfile.mkdtemp(prefix=f"tidings-kafka-node-{self.port}-"))

    def __repr__(self) -> str:
        return f"<KafkaNode {self.bootstrap} state {self.state}>"

    def env(self) -> dict[str, str]:
        """This process's environment with this node's broker settings instead of the run's."""
        env = {name: value for name, value in os.environ.items() if name not in BROKER_SETTINGS}
        env.update(
            TIDINGS_KAFKA_PORT=str(self.port),
            TIDINGS_KAFKA_CONTROLLER_PORT=str(self.controller_port),
            TIDINGS_KAFKA_STATE=str(self.state),
        )
        return env

    def _run(self, *args: str, timeout: float = 300) -> str:
        result = kafka_command(*args, env=self.env(), timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/kafka {' '.join(args)} for {self!r} failed "
                f"({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    @property
    def pid(self) -> int:
        """The running broker's process id (from the pid file ``scripts/kafka`` keeps)."""
        return int((self.state / "kafka.pid").read_text(encoding="ascii").strip())

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def kill(self) -> None:
        self._run("kill")

    def wipe(self) -> None:
        """Stop the broker and delete its state (a later ``start`` formats a fresh cluster)."""
        if (self.state / ".tidings-kafka-state").exists():  # scripts/kafka has used it
            self._run("stop", "--wipe")
        shutil.rmtree(self.state, ignore_errors=True)


if __name__ == "__main__":
    # scripts/test asks here for the ports of the run's broker: `python -m tests.support.kafka 2`.
    print(*free_ports(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
