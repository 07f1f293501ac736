"""The package as built and installed: its files, what it needs, its version, its types."""

from __future__ import annotations

import email
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel a regular install gets, built once for this module's tests."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("tidings-*.whl")
    return built


def test_the_wheel_holds_tidings_with_its_layers_data_and_console_script(wheel: Path) -> None:
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
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        "tidings" + ".".join(("", *path.parent.relative_to(ROOT / "src").parts))
        for path in (ROOT / "src").rglob("__init__.py")
    }
    found = {name.rstrip(".") for name in found}
    assert found == listed


# --- How tidings declares what it needs (ADR 0022) ---------------------------------------------

PYPROJECT = ROOT / "pyproject.toml"
TEST_TOOLS = {"pytest", "mypy", "ruff", "playwright", "hypothesis", "import-linter"}


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())
    return project


def _runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in _project()["project"]["dependencies"]]


def _group(name: str) -> list[Requirement]:
    """A dependency group's requirements, with the groups it includes (PEP 735)."""
    found: list[Requirement] = []
    for item in _project()["dependency-groups"][name]:
        if isinstance(item, dict):
            found += _group(item["include-group"])
        else:
            found.append(Requirement(item))
    return found


def _constraints(name: str) -> dict[str, Version]:
    """``constraints/NAME.txt`` as canonical name -> exact version; every line must be a pin."""
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints" / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"constraints/{name}:{number} is not a pin: {line}"
        pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _lower_bound(requirement: Requirement) -> Version:
    (low,) = (Version(s.version) for s in requirement.specifier if s.operator == ">=")
    return low


def test_the_wheel_metadata_is_what_an_index_shows_and_a_resolver_reads(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = email.message_from_bytes(archive.read(name))
    assert headers["Version"] == _project()["project"]["version"]
    assert headers["License-Expression"] == "MIT"
    requires = [Requirement(text) for text in headers.get_all("Requires-Dist") or []]
    # What users install: the runtime ranges and nothing else, no extra that brings test tools.
    assert {canonicalize_name(r.name) for r in requires} == {
        canonicalize_name(r.name) for r in _runtime_requirements()
    }
    assert not any(r.marker and "extra" in str(r.marker) for r in requires), requires
    assert not headers.get_all("Provides-Extra")
    urls = dict(
        (label.strip(), url.strip())
        for label, _, url in (text.partition(",") for text in headers.get_all("Project-URL") or [])
    )
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith("https://github.com/tidings-dev/tidings") for url in urls.values())
    classifiers = set(headers.get_all("Classifier") or [])
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: Trio",
        "Typing :: Typed",
        "Intended Audience :: Developers",
    } <= classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)


def test_every_runtime_dependency_is_a_range_with_a_lower_and_an_upper_bound() -> None:
    for requirement in _runtime_requirements():
        operators = sorted(s.operator for s in requirement.specifier)
        assert operators == ["<", ">="], f"{requirement}: want >=LOW,<NEXT (ADR 0022)"


def test_what_the_package_imports_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in _runtime_requirements()}
    # src/config.py imports pydantic itself, not only through pydantic-settings.
    assert "pydantic" in declared
    assert "pydantic-settings" in declared


def test_test_tools_are_dependency_groups_not_extras_users_could_install() -> None:
    extras = _project()["project"].get("optional-dependencies", {})
    published = {canonicalize_name(Requirement(t).name) for ts in extras.values() for t in ts}
    assert not published & TEST_TOOLS
    grouped = {canonicalize_name(r.name) for r in _group("test") + _group("lint")}
    assert grouped >= TEST_TOOLS


def test_ci_constraints_pin_every_dependency_inside_its_declared_range() -> None:
    ci = _constraints("ci.txt")
    assert "tidings" not in ci
    for requirement in _runtime_requirements() + _group("test") + _group("lint"):
        name = canonicalize_name(requirement.name)
        assert name in ci, f"{name} is not pinned in constraints/ci.txt: run scripts/constraints"
        assert requirement.specifier.contains(ci[name], prereleases=True), (
            f"constraints/ci.txt pins {name}=={ci[name]} outside {requirement}"
        )


def test_ci_constraints_hold_the_benchmark_peers_at_their_pins() -> None:
    """bench/run.py installs its peers with constraints/ci.txt: the two must not disagree."""
    ci = _constraints("ci.txt")
    for line in (ROOT / "bench" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in ci, f"{name} is not in constraints/ci.txt: run scripts/constraints"
            assert requirement.specifier.contains(ci[name]), (
                f"bench/requirements.txt wants {requirement}, constraints/ci.txt pins {ci[name]}"
            )


def test_lowest_constraints_hold_each_dependency_at_its_lower_bound_and_tools_at_most_ci() -> None:
    ci, lowest = _constraints("ci.txt"), _constraints("lowest.txt")
    assert "tidings" not in lowest
    runtime = set()
    for requirement in _runtime_requirements():
        name = canonicalize_name(requirement.name)
        runtime.add(name)
        assert lowest.get(name) == _lower_bound(requirement), (
            f"constraints/lowest.txt holds {name}=={lowest.get(name)}, pyproject.toml's lower "
            f"bound is {_lower_bound(requirement)}: run scripts/constraints"
        )
    # A tool at its ci.txt version, or older where that one needs more than a lower bound admits
    # (import-linter 2.17 needs click >= 8.2): never a version CI has not vetted as newer.
    for requirement in _group("test"):
        name = canonicalize_name(requirement.name)
        if name not in runtime:
            assert name in lowest, f"{name} is not pinned in constraints/lowest.txt"
            assert lowest[name] <= ci[name], f"{name}: lowest.txt is newer than ci.txt"


# --- One version ---------------------------------------------------------------------------------


def test_the_version_has_one_source() -> None:
    import tidings

    declared = _project()["project"]["version"]
    assert tidings.__version__ == metadata.version("tidings") == declared
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("tidings")), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shown.split()[-1] == declared, shown


# --- Type checkers see the installed package -----------------------------------------------------


def test_mypy_in_an_app_finds_tidings_and_its_types(tmp_path: Path) -> None:
    """What a user's CI does: mypy on an app that imports tidings, outside this checkout.

    A plain editable install (``pip install -e .``) maps ``src/`` to ``tidings`` with an import
    hook that type checkers cannot see (``import-not-found``); scripts/setup installs in
    setuptools' strict mode, a tree of links they follow like any installed package.
    """
    (tmp_path / "app.py").write_text(
        "from tidings import realtime\n"
        "from tidings.ports import RealtimePort\n"
        "\n"
        "\n"
        "def port() -> RealtimePort:\n"
        "    return realtime()\n"
        "\n"
        "\n"
        "reveal_type(port().broadcast)\n"
    )
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental", "app.py"],
        cwd=tmp_path,  # not this checkout: src/ must not be found by being next door
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "import-not-found" not in output, output
    assert result.returncode == 0, output
    # The method's real signature, so tidings was read, not taken as Any.
    assert 'Revealed type is "def (channel: ' in output, output
    assert "tidings.domain.message.Message" in output, output
