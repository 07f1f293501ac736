"""The hexagon as import contracts (pyproject's [tool.importlinter]), checked on every run.

Layers point inward (entrypoints and the test plugin -> composition root -> adapters ->
application -> ports -> domain), only the root reads configuration, the ports name no framework,
the application no adapter's library, and the domain imports nothing but the standard library
and attrs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
DOMAIN_MAY_IMPORT = {"attrs"}


def test_every_import_contract_is_kept() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_the_domain_imports_only_the_standard_library_and_attrs() -> None:
    graph = grimp.build_graph("tidings", include_external_packages=True)
    outside: dict[str, set[str]] = {}
    for module in graph.find_descendants("tidings.domain") | {"tidings.domain"}:
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            if imported.startswith("tidings.domain") or top in DOMAIN_MAY_IMPORT:
                continue
            if top in sys.stdlib_module_names:
                continue
            outside.setdefault(module, set()).add(imported)
    assert outside == {}, outside
    assert len(graph.find_descendants("tidings.domain")) >= 10  # the graph did see the domain
