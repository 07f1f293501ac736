"""Fixtures of the unit tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """Click's runner for the ``tidings`` command, in an empty folder (no stray .env) and with
    none of tidings' variables from the environment the tests run in."""
    for name in list(os.environ):
        if name.startswith(("REALTIME_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CliRunner()
