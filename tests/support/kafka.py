"""The real Kafka broker the tests talk to, started by scripts/kafka when it is not running."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka"
PORT = int(os.environ.get("TIDINGS_KAFKA_PORT", "9092"))
BOOTSTRAP = f"127.0.0.1:{PORT}"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_kafka() -> str:
    """The broker's address; starts it (idempotently) when nothing listens on its port."""
    if not _listening(PORT):
        result = kafka_command("start", timeout=600)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/kafka start failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
    return BOOTSTRAP


def kafka_command(
    *args: str, port: int = PORT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/kafka ARGS --port PORT`` (start, stop, kill ...), its output captured."""
    return subprocess.run(
        [str(SCRIPT), *args, "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class KafkaNode:
    """A second, disposable broker for fault tests: stopped, killed and restarted at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"

    def _run(self, *args: str, timeout: float = 300) -> str:
        result = kafka_command(*args, port=self.port, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/kafka {' '.join(args)} --port {self.port} failed "
                f"({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def kill(self) -> None:
        self._run("kill")

    def wipe(self) -> None:
        self._run("stop", "--wipe")
