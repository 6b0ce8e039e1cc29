"""Dependencies point inward (ARCHITECTURE.md): every module's imports are read with `ast`
and checked against its package's rule, so a layer reaching outward fails the build."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "commands", "handlers", "infra", "app")
DRIVERS = frozenset({"asyncpg", "httpx", "starlette", "uvicorn", "punq"})
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Rule:
    forbidden: frozenset[str] = frozenset()
    # when set, only these top-level names (plus the standard library) may be imported
    allowed: frozenset[str] | None = None


# The clock, randomness, the environment and the network come in through ports, never from these.
IMPURE = frozenset({"time", "uuid", "random", "os", "socket", "subprocess"})

RULES: dict[str, Rule] = {
    # the functional core: ours reaches nothing, and no I/O library either
    "domain": Rule(forbidden=frozenset({"app", "handlers", "infra", "commands"}) | DRIVERS | IMPURE),
    # the wire contract: msgspec and the standard library only
    "commands": Rule(allowed=frozenset({"commands", "msgspec"})),
    # handlers see commands, domain and their own ports; no edge, no adapters, no drivers
    "handlers": Rule(forbidden=frozenset({"app", "infra"}) | DRIVERS | IMPURE),
    # adapters implement the ports; the edge wires them, never the other way round
    "infra": Rule(forbidden=frozenset({"app"})),
    "app": Rule(),
}


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of every module `source` imports, anywhere in the file (also inside
    functions and `if TYPE_CHECKING:` blocks, which are dependencies all the same)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            else:
                # `from .x import y` is relative to the module's package
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                found.add(".".join([*anchor, *([node.module] if node.module else [])]))
    return {name for name in found if name}


def violations(package: str, module: str, source: str, *, is_package: bool = False) -> list[str]:
    """What `module` (in `package`) imports against its package's rule, as readable lines."""
    rule = RULES[package]
    problems = []
    for name in sorted(imported_modules(source, module, is_package=is_package)):
        top = name.split(".")[0]
        if top in rule.forbidden:
            problems.append(f"{module} imports {name}")
        elif rule.allowed is not None and top not in rule.allowed and top not in STDLIB:
            problems.append(f"{module} imports {name} (only {', '.join(sorted(rule.allowed))} and stdlib)")
    return problems


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_its_layer(package: str) -> None:
    found = list(modules(package))
    assert found, f"no modules found in {package}/"
    problems = [
        problem
        for module, path in found
        for problem in violations(
            package, module, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py"
        )
    ]
    assert problems == []


# --- the checker itself can fail ------------------------------------------------------------


@pytest.mark.parametrize(
    ("package", "module", "source", "expected"),
    [
        ("domain", "domain.engine", "import asyncpg\n", ["domain.engine imports asyncpg"]),
        ("domain", "domain.engine", "from infra.sql import QUERY\n", ["domain.engine imports infra.sql"]),
        (
            "domain",
            "domain.engine",
            "def f():\n    from app import factory\n",
            ["domain.engine imports app"],
        ),
        (
            "domain",
            "domain.engine",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import handlers.ports\n",
            ["domain.engine imports handlers.ports"],
        ),
        ("domain", "domain.engine", "from ..commands import base\n", ["domain.engine imports commands"]),
        ("domain", "domain.engine", "import httpx.client as h\n", ["domain.engine imports httpx.client"]),
        (
            "commands",
            "commands.base",
            "import json\nimport msgspec\nimport pydantic\n",
            ["commands.base imports pydantic (only commands, msgspec and stdlib)"],
        ),
        ("commands", "commands.base", "from domain.model import Node\n", [
            "commands.base imports domain.model (only commands, msgspec and stdlib)"
        ]),
        ("handlers", "handlers.bus", "from starlette.requests import Request\n", [
            "handlers.bus imports starlette.requests"
        ]),
        ("handlers", "handlers.bus", "from infra import sql\n", ["handlers.bus imports infra"]),
        ("domain", "domain.runner", "import time\n", ["domain.runner imports time"]),
        ("handlers", "handlers.supervised", "from uuid import uuid4\n", ["handlers.supervised imports uuid"]),
        ("infra", "infra.database", "from app.container import build\n", [
            "infra.database imports app.container"
        ]),
    ],
)
def test_checker_reports_violations(package: str, module: str, source: str, expected: list[str]) -> None:
    assert violations(package, module, source) == expected


@pytest.mark.parametrize(
    ("package", "module", "source"),
    [
        ("domain", "domain.engine", "import msgspec, quickjs\nfrom lxml import etree\nfrom . import model\n"),
        ("commands", "commands.base", "from __future__ import annotations\nimport msgspec, typing\n"),
        ("handlers", "handlers.bus", "from commands.base import Command\nfrom domain.engine import start\n"),
        ("infra", "infra.database", "import asyncpg\nfrom handlers.ports import UnitOfWork\n"),
        ("app", "app.factory", "from infra import sql\nimport starlette\n"),
    ],
)
def test_checker_accepts_inward_imports(package: str, module: str, source: str) -> None:
    assert violations(package, module, source) == []


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_modules("from . import model", "domain.engine") == {"domain"}
    assert imported_modules("from .model import Node", "domain", is_package=True) == {"domain.model"}
    assert imported_modules("from ..infra import sql", "domain.engine") == {"infra"}
