"""The systemd units of ``deploy/systemd`` pass ``systemd-analyze verify`` (docs/deploy.md).

``verify`` needs the program of ``ExecStart`` to exist: each unit is checked in a temporary copy
whose ``tidings`` is this virtualenv's, nothing else changed. It exits 0 on an unknown key or a
bad value (it only warns), so a unit passes when verify says nothing at all.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import TIDINGS

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SHIPPED_TIDINGS = "/opt/tidings/venv/bin/tidings"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this host)"
)

# The instance of a template unit is the gateway's port.
UNIT_FILES = {
    "tidings-gateway@.service": "tidings-gateway@6001.service",
    "tidings-consume.service": "tidings-consume.service",
}


def verify(directory: Path, name: str, text: str) -> str:
    """What ``systemd-analyze verify`` says of ``text`` installed as ``name`` (empty: clean)."""
    unit = directory / name
    unit.write_text(text.replace(SHIPPED_TIDINGS, TIDINGS))
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    said = (result.stdout + result.stderr).strip()
    return said if said or result.returncode == 0 else f"exit {result.returncode}"


def test_every_unit_is_checked() -> None:
    assert sorted(path.name for path in UNITS.glob("*.service")) == sorted(UNIT_FILES)


@pytest.mark.parametrize("shipped", sorted(UNIT_FILES))
def test_the_shipped_unit_verifies_clean(shipped: str, tmp_path: Path) -> None:
    text = (UNITS / shipped).read_text()
    assert SHIPPED_TIDINGS in text
    assert verify(tmp_path, UNIT_FILES[shipped], text) == ""


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("Restart=on-failure", "Restart=sometimes"), "restart specifier"),
        (("KillSignal=SIGTERM", "KillSignal=SIGTERM\nDrainTimeout=10"), "Unknown key"),
        ((SHIPPED_TIDINGS, "/nonexistent/tidings"), "/nonexistent/tidings"),
    ],
)
def test_a_broken_unit_is_caught(change: tuple[str, str], said: str, tmp_path: Path) -> None:
    """The check above would see these: verify reports them (on stderr, some with exit 0)."""
    text = (UNITS / "tidings-gateway@.service").read_text()
    old, new = change
    assert old in text
    broken = text.replace(SHIPPED_TIDINGS, TIDINGS) if old != SHIPPED_TIDINGS else text
    output = verify(tmp_path, "tidings-gateway@6001.service", broken.replace(old, new, 1))
    assert said in output


def test_the_units_stop_gracefully_and_are_hardened() -> None:
    """What docs/deploy.md promises of both units, and the gateway's drain fits in the stop."""
    from tidings.entrypoints.serve import DRAIN_TIMEOUT

    for shipped in UNIT_FILES:
        lines = set((UNITS / shipped).read_text().splitlines())
        for setting in (
            "KillSignal=SIGTERM",
            "Restart=on-failure",
            "EnvironmentFile=/etc/tidings/tidings.env",
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        ):
            assert setting in lines, f"{shipped}: no {setting}"
    gateway = (UNITS / "tidings-gateway@.service").read_text()
    stop = int(gateway.split("TimeoutStopSec=", 1)[1].split()[0])
    files = int(gateway.split("LimitNOFILE=", 1)[1].split()[0])
    assert stop > DRAIN_TIMEOUT
    assert files > 20_000  # REALTIME_MAX_CONNECTIONS's default
