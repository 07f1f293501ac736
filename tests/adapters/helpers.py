"""Helpers for the Kafka adapter tests: settings, publishing, the CLI as a process, broker state.

Everything here talks to the real broker; nothing stands in for Kafka.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from tidings.adapters.kafka.admin import KafkaAdmin
from tidings.adapters.kafka.publisher import KafkaPublisher
from tidings.adapters.kafka.settings import KafkaClientConfig
from tidings.bootstrap import kafka_client_config
from tidings.config import Settings
from tidings.domain import Message, Position

from ..support.processes import TidingsProcess, process_env

JSONValue = Any


def container_class() -> Any:
    """The DI container class (``tidings.bootstrap``; ``tidings.container`` in older trees)."""
    for name in ("tidings.bootstrap", "tidings.container"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found = getattr(module, "Container", None)
        if found is not None:
            return found
    raise ImportError("no Container in tidings.bootstrap or tidings.container")


def load_settings(env: Mapping[str, str], **extra: Any) -> Settings:
    """``Settings`` for ``env`` (environment-variable names), without any ``.env`` file."""
    values: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    values.update(extra)
    return Settings.load(env_file=None, **values)


def kafka_config(settings: Settings) -> KafkaClientConfig:
    """The Kafka client config the composition root builds from ``settings``."""
    return kafka_client_config(settings)


def publisher_for(settings: Settings) -> KafkaPublisher:
    """A ``KafkaPublisher`` as the composition root builds it (the caller closes it)."""
    return KafkaPublisher(kafka_config(settings), client_id="tidings-test-publisher")


def publish_all(
    settings: Settings, items: Iterable[tuple[str, str, JSONValue]], *, timeout: float = 30
) -> list[tuple[Message, Position]]:
    """Publish ``(channel, event, data)`` items in order with ``KafkaPublisher``; wait for acks."""
    publisher = publisher_for(settings)
    try:
        pending = []
        for channel, event, data in items:
            message = Message.event(channel, event, data)
            pending.append((message, publisher.publish(channel, message)))
        return [(message, future.result(timeout=timeout)) for message, future in pending]
    finally:
        publisher.close()


def numbered(
    channel: str, count: int, *, start: int = 0, event: str = "tick"
) -> list[tuple[str, str, JSONValue]]:
    return [(channel, event, {"seq": index}) for index in range(start, start + count)]


@dataclass
class Run:
    """A finished ``tidings`` process."""

    args: Sequence[str]
    code: int
    stdout: list[str]
    stderr: list[str]
    seconds: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Stdout as JSON lines (what ``publish`` and ``kafka consume`` print)."""
        return [json.loads(line) for line in self.stdout if line.strip()]

    @property
    def err(self) -> str:
        return "\n".join(self.stderr)

    @property
    def out(self) -> str:
        return "\n".join(self.stdout)

    def ids(self) -> list[str]:
        return [message["id"] for message in self.messages]

    def describe(self) -> str:
        return (
            f"tidings {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"
        )


class Cli:
    """Runs ``tidings`` as a real process, in an empty directory (so no stray ``.env`` is read)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def start(
        self, args: Sequence[str], env: Mapping[str, str], *, unbuffered: bool = True
    ) -> TidingsProcess:
        full = process_env(**env)
        if not unbuffered:
            full.pop("PYTHONUNBUFFERED", None)
        return TidingsProcess(list(args), full, cwd=str(self.cwd))

    def run(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        timeout: float = 60,
        unbuffered: bool = True,
    ) -> Run:
        started = time.monotonic()
        process = self.start(args, env, unbuffered=unbuffered)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(
                f"tidings {' '.join(args)} did not exit within {timeout}s:\n{process.output()}"
            ) from None
        return finished(process, code, started)


def finished(process: TidingsProcess, code: int, started: float) -> Run:
    return Run(
        process.args[1:],
        code,
        list(process.stdout.lines),
        list(process.stderr.lines),
        time.monotonic() - started,
    )


def stop_process(process: TidingsProcess, started: float, timeout: float = 20) -> Run:
    code = process.stop(timeout)
    return finished(process, code, started)


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it is truthy; after ``timeout``, fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    admin = KafkaAdmin([bootstrap], timeout=10)
    try:
        return {(row.topic, row.partition): row.end for row in admin.offsets(list(topics))}
    finally:
        admin.close()


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int | None]:
    admin = KafkaAdmin([bootstrap], timeout=10)
    try:
        return {(row.topic, row.partition): row.committed for row in admin.lag(group)}
    finally:
        admin.close()


def topics_with_prefix(client: KafkaAdminClient, prefix: str) -> set[str]:
    return {topic for topic in client.list_topics() if topic.startswith(prefix)}


def seqs(messages: Iterable[Mapping[str, Any]]) -> list[int]:
    return [message["data"]["seq"] for message in messages]
