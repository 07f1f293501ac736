"""Fixtures of the unit tier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result


class _StdoutThenStderr(Result):
    """A click 8.1 result whose ``output`` holds stderr too, as click >= 8.2 gives it."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CommandRunner(CliRunner):
    """Click's runner with the same result on click 8.1 (the lowest tested) and 8.2+:
    ``output`` is everything the command wrote, ``stdout`` and ``stderr`` each stream alone.
    Click 8.1 keeps stderr apart only with ``mix_stderr=False``, which 8.2 no longer takes."""

    def __init__(self) -> None:
        try:
            super().__init__(mix_stderr=False)  # type: ignore[call-arg]
            self._joined = True
        except TypeError:
            super().__init__()
            self._joined = False

    def invoke(self, *args: Any, **kwargs: Any) -> Result:
        result = super().invoke(*args, **kwargs)
        if self._joined:
            result.__class__ = _StdoutThenStderr
        return result


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The runner for the ``tidings`` command, in an empty folder (no stray .env) and with none
    of tidings' variables from the environment the tests run in."""
    for name in list(os.environ):
        if name.startswith(("REALTIME_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CommandRunner()
