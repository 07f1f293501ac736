"""The npm package of the browser client (js/): packing it and installing it as an app would.

npm and node come from the machine (Node 18 or newer); TypeScript from js/node_modules, which
``scripts/setup --test`` installs with ``npm ci``. Nothing here reaches a registry: the package
has no dependencies, so its tarball installs with ``--offline``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "js"
CLIENT_JS = ROOT / "src" / "adapters" / "web" / "static" / "client.js"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"
NAME = json.loads((PACKAGE / "package.json").read_text())["name"]
TIMEOUT = 180.0


def tool(name: str) -> str:
    """The path of ``name`` (npm, node), or a failure that says how to get it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"no {name} on PATH: the npm package's tests need Node.js 18+ and npm")
    return found


def tsc() -> str:
    """js/node_modules/.bin/tsc, or a failure that says how to install it."""
    if not TSC.exists():
        pytest.fail(f"no {TSC.relative_to(ROOT)}: run scripts/setup --test (npm ci in js/)")
    return str(TSC)


def run(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a Node tool without a terminal, prompts, update checks or audits; output captured."""
    env = {
        **os.environ,
        "CI": "true",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    return subprocess.run(
        list(args),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def checked(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``run``, failing the test with the tool's output when it exits non-zero."""
    result = run(args, cwd)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def pack(into: Path) -> Path:
    """``npm pack`` js/ into ``into`` (its prepack and postpack scripts run); the tarball.

    What npm said about it (``--json``: name, version, files) is saved beside it, as
    ``<tarball>.json``.
    """
    result = checked([tool("npm"), "pack", "--json", "--pack-destination", str(into)], PACKAGE)
    (entry,) = json.loads(result.stdout)
    tarball = into / entry["filename"]
    assert tarball.is_file(), f"npm pack said {tarball.name}, but it is not in {into}"
    tarball.with_name(tarball.name + ".json").write_text(json.dumps(entry))
    return tarball


def packed_files(tarball: Path) -> dict[str, bytes]:
    """The files in a tarball, by their path inside the package (npm puts them in package/)."""
    with tarfile.open(tarball) as archive:
        return {
            member.name.removeprefix("package/"): archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }


def install(tarball: Path, project: Path) -> Path:
    """A throwaway ESM app in ``project`` with the tarball installed, offline; the package dir."""
    project.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "throwaway-app", "version": "1.0.0", "private": True, "type": "module"}
    (project / "package.json").write_text(json.dumps(manifest))
    checked([tool("npm"), "install", "--offline", "--no-audit", "--no-fund", str(tarball)], project)
    installed = project / "node_modules" / NAME
    assert (installed / "package.json").is_file(), f"npm install left no {installed}"
    return installed
