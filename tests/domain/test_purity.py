"""The domain imports only the standard library and attrs: no I/O, framework or outer layer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tidings.domain

DOMAIN = Path(tidings.domain.__file__).parent
FILES = sorted(DOMAIN.rglob("*.py"))
ALLOWED_THIRD_PARTY = {"attrs"}
FORBIDDEN = {
    "trio",
    "kafka",
    "trio_websocket",
    "wsproto",
    "dependency_injector",
    "pydantic",
    "pydantic_settings",
    "jwt",
}
OUTER_LAYERS = {"ports", "adapters", "entrypoints", "application", "container", "config", "testing"}
DYNAMIC_IMPORTERS = {"__import__", "import_module"}


def import_problems(source: str) -> list[str]:
    """Every import in ``source`` that a pure domain module must not have."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                problems += _absolute_problems(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                problems += _absolute_problems(node.module or "", node.lineno)
            elif node.level > 1:
                problems.append(f"line {node.lineno}: relative import reaches outside the domain")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in DYNAMIC_IMPORTERS:
                problems.append(f"line {node.lineno}: dynamic import via {name}")
    return problems


def _absolute_problems(module: str, line: int) -> list[str]:
    parts = module.split(".")
    top = parts[0]
    if top in FORBIDDEN:
        return [f"line {line}: imports {module}, a framework or I/O library"]
    if top == "tidings":
        if len(parts) > 1 and parts[1] == "domain":
            return []
        return [f"line {line}: imports {module}, outside the domain"]
    if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
        return []
    return [f"line {line}: imports {module}, neither the standard library nor attrs"]


def test_the_domain_has_modules() -> None:
    names = {path.name for path in FILES}
    assert {"channel.py", "message.py", "topics.py", "presence.py", "routing.py"} <= names
    assert {"position.py", "access.py", "protocol.py", "errors.py"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_domain_module_imports_only_stdlib_and_attrs(path: Path) -> None:
    assert import_problems(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import trio_websocket",
        "from wsproto.events import Message",
        "import kafka.errors",
        "from dependency_injector import providers",
        "from pydantic import BaseModel",
        "import jwt",
        "from tidings.ports import Broker",
        "from tidings.adapters.memory import MemoryBroker",
        "import tidings.entrypoints.cli",
        "from ..ports import Broker",
        "from .. import config",
        "from ...adapters import x",
        "import requests",
        "import importlib\nimportlib.import_module('trio')",
        "def f():\n    import trio",
    ],
)
def test_the_checker_catches_forbidden_imports(source: str) -> None:
    assert import_problems(source)


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import json, re, zlib",
        "import attrs",
        "from collections.abc import Iterable",
        "from .channel import Channel",
        "from . import errors",
        "from tidings.domain.channel import Channel",
    ],
)
def test_the_checker_allows_stdlib_attrs_and_the_domain(source: str) -> None:
    assert import_problems(source) == []
