"""What the harness needs before it runs: the peers installed, the Go load generator built, Kafka
answering; and a description of the machine for the report.

Only the standard library is imported here: this runs before the peers are installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REQUIREMENTS = BENCH / "requirements.txt"
LOADGEN_SRC = BENCH / "loadgen"
WORK = BENCH / ".work"
LOADGEN_BIN = WORK / "bin" / "loadgen"
CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6"
CENTRIFUGO_VERSION = "v6.9.1"
"""The Centrifugo release the harness measures, built from its Go module (``go install``)."""
CENTRIFUGO_BUILD_SECONDS = 900.0
"""How long a cold build may take (module download and compile, about 3 min on 2 cores)."""

_PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def pinned_requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def ensure_requirements() -> None:
    """pip-install bench/requirements.txt into this interpreter's venv if a pin is unmet.

    With constraints/ci.txt as constraints (ADR 0022): what the peers pull in gets the versions CI
    pinned, and installing them cannot move one of tidings' own dependencies.
    """
    missing = {
        name: version
        for name, version in pinned_requirements().items()
        if installed_version(name) != version
    }
    if not missing:
        return
    shown = ", ".join(f"{name}=={version}" for name, version in sorted(missing.items()))
    print(f"bench: installing {shown}", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--constraint", str(ROOT / "constraints" / "ci.txt"), "-r", str(REQUIREMENTS)],
        check=True,
    )


def _go() -> str | None:
    return shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                  else None)


def ensure_loadgen() -> Path:
    """Build bench/loadgen with ``go build`` when the binary is missing or older than its code."""
    go = _go()
    if go is None:
        raise SystemExit("bench: the load generator needs Go (https://go.dev/dl/); `go` not found")
    sources = [*LOADGEN_SRC.glob("*.go"), LOADGEN_SRC / "go.mod", LOADGEN_SRC / "go.sum"]
    newest = max(path.stat().st_mtime for path in sources)
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= newest:
        return LOADGEN_BIN
    print("bench: building the Go load generator (bench/loadgen)", file=sys.stderr, flush=True)
    LOADGEN_BIN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_SRC, check=True)
    return LOADGEN_BIN


def centrifugo_cache() -> Path:
    """Where the pinned Centrifugo is cached, outside the tree: shared by every checkout."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tidings" / "bench" / "centrifugo" / CENTRIFUGO_VERSION


def ensure_centrifugo() -> tuple[Path | None, str]:
    """The pinned Centrifugo binary, built with ``go install`` into the cache if missing.

    Returns ``(binary, "")``, or ``(None, reason)`` when it cannot be had (no Go, the module not
    reachable, the build failing or taking over ``CENTRIFUGO_BUILD_SECONDS``): the scenarios then
    run without it and say why.
    """
    target = centrifugo_cache()
    binary = target / "centrifugo"
    if binary.exists():
        return binary, ""
    go = _go()
    if go is None:
        return None, "Go is not installed (`go` not found), so Centrifugo cannot be built"
    print(f"bench: building Centrifugo {CENTRIFUGO_VERSION} with go install into {target} "
          "(once; a few minutes)", file=sys.stderr, flush=True)
    target.mkdir(parents=True, exist_ok=True)
    log = target / "build.log"
    try:
        with log.open("w") as handle:
            done = subprocess.run(
                [go, "install", f"{CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION}"],
                env={**os.environ, "GOBIN": str(target)}, stdout=handle, stderr=subprocess.STDOUT,
                timeout=CENTRIFUGO_BUILD_SECONDS, check=False,
            )
    except subprocess.TimeoutExpired:
        return None, (f"building Centrifugo took over {CENTRIFUGO_BUILD_SECONDS:g} s "
                      f"(log {log})")
    except OSError as exc:
        return None, f"could not run go install: {exc}"
    if done.returncode != 0 or not binary.exists():
        tail = " ".join(log.read_text(errors="replace").split()[-30:])
        return None, (f"go install {CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION} failed (exit "
                      f"{done.returncode}): {tail or 'no output'} (log {log})")
    return binary, ""


def snapshot_tidings(work: Path) -> Path:
    """Copy src/ (the tidings package) into ``work``; returns the folder to put on PYTHONPATH.

    Every process of a run imports this copy (it shadows the editable install), so one run
    measures one version of tidings even while src/ is being edited.
    """
    target = work / "snapshot"
    shutil.copytree(ROOT / "src", target / "tidings",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def source_digest(snapshot: Path) -> str:
    """A short hash of the measured source, to tell apart runs of uncommitted code."""
    digest = hashlib.sha256()
    for path in sorted((snapshot / "tidings").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(snapshot)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def kafka_reachable(brokers: str, timeout: float = 2.0) -> bool:
    host, _, port = brokers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def start_local_kafka() -> None:
    """``scripts/kafka start``: fetches Kafka with Maven once, starts it, waits until it answers."""
    print("bench: Kafka is not answering; starting it with scripts/kafka", file=sys.stderr)
    subprocess.run([str(ROOT / "scripts" / "kafka"), "start"], check=True)


def stop_local_kafka() -> None:
    subprocess.run([str(ROOT / "scripts" / "kafka"), "stop"], check=False)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def _kafka_version() -> str:
    script = ROOT / "scripts" / "kafka"
    with contextlib.suppress(OSError):
        match = re.search(r'KAFKA_VERSION="([^"]+)"', script.read_text())
        if match:
            return match.group(1)
    return "unknown"


def machine() -> dict[str, object]:
    """The machine and software the figures were measured on."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    packages = [
        "tidings", "kafka-python", "trio", "trio-websocket", "wsproto", "orjson",
        *pinned_requirements(),
    ]
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "go": _command_output([go, "version"]).replace("go version ", ""),
        "kafka": _kafka_version(),
        "open_files_limit": _command_output(["sh", "-c", "ulimit -n"]),
        "packages": {name: installed_version(name) for name in packages},
        "gorilla_websocket": _gorilla_version(),
        "centrifugo": _centrifugo_version(),
        "git_commit": _command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_command_output(["git", "-C", str(ROOT), "status", "--porcelain",
                                           "--", "src"])),
    }


def _centrifugo_version() -> str:
    if not (centrifugo_cache() / "centrifugo").exists():
        return "not built"
    return (f"{CENTRIFUGO_VERSION} (go install {CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION}; the "
            "binary calls itself a 0.0.0 development build: go install sets no version)")


def _gorilla_version() -> str:
    match = re.search(r"github.com/gorilla/websocket (\S+)", (LOADGEN_SRC / "go.mod").read_text())
    return match.group(1) if match else "unknown"
