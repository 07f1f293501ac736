"""Fixtures for the adapter tests: Kafka's against the real broker, the gateway publisher's
against a real gateway."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from .helpers import Cli


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``Settings`` see only what a test passes, never the shell's REALTIME_/KAFKA_."""
    for name in list(os.environ):
        if name.startswith(("REALTIME_", "KAFKA_")):
            monkeypatch.delenv(name)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """Runs the ``tidings`` console script in an empty directory."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    return Cli(workdir)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """kafka-python's own admin client: an independent view of the broker's state."""
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        yield client
    finally:
        client.close()
