"""The single way a deploy turns BPMN text into a checked `Definition`."""

from __future__ import annotations

import importlib
from typing import cast

from domain.errors import InvalidDefinition, ValidationProblem
from domain.model import Definition
from domain.parser import parse_document
from domain.validation import CompileCheck, validate


def default_compile_check() -> CompileCheck | None:
    """The JavaScript sandbox's syntax check, when the sandbox module is available."""
    try:
        scripting = importlib.import_module("domain.scripting")
    except ImportError:
        return None
    check_syntax = getattr(scripting, "check_syntax", None)
    if check_syntax is None:
        return None
    syntax = cast(CompileCheck, check_syntax)  # check_syntax(source, kind) -> message | None

    def compile_check(kind: str, source: str) -> str | None:
        return syntax(source, kind)

    return compile_check


def _summary(problems: list[ValidationProblem]) -> str:
    first = problems[0]
    where = f" (line {first.line})" if first.line else ""
    more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"The BPMN document cannot be deployed: {first.message}{where}{more}."


def load_definition(xml: str | bytes, *, compile_check: CompileCheck | None = None) -> Definition:
    """Parse and validate; raise `InvalidDefinition` listing every problem found."""
    document = parse_document(xml)
    check = compile_check if compile_check is not None else default_compile_check()
    problems = validate(document, compile_check=check)
    if problems:
        raise InvalidDefinition(_summary(problems), problems)
    return document.definition
