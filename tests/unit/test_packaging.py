"""The package as built for a regular install: the name, the layers, the data files, the script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_tidings_with_its_layers_data_and_console_script(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("tidings-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "tidings/__init__.py",
        "tidings/py.typed",
        "tidings/domain/channel.py",
        "tidings/ports/realtime.py",
        "tidings/application/gateway/gateway.py",
        "tidings/adapters/kafka/publisher.py",
        "tidings/adapters/web/static/client.js",
        "tidings/adapters/web/static/index.html",
        "tidings/entrypoints/cli.py",
        "tidings/testing/plugin.py",
        "tidings/bootstrap.py",
    ):
        assert expected in names, expected
    assert not any(name.startswith("src/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tidings = tidings.entrypoints.cli:main" in text
    assert "tidings = tidings.testing.plugin" in text


def test_every_subpackage_is_listed_for_setuptools() -> None:
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        "tidings" + ".".join(("", *path.parent.relative_to(ROOT / "src").parts))
        for path in (ROOT / "src").rglob("__init__.py")
    }
    found = {name.rstrip(".") for name in found}
    assert found == listed
