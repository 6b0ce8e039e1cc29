"""Deploy-time validation against the betsy BPMN conformance models.

Every model under `betsy_constraints/EXT*/` and `REF/` breaks one static BPMN rule on purpose
and must be refused with a located problem. The feature models under `features/` must load,
except the ones whose expected outcome is a deployment or runtime error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from domain.definition_loader import default_compile_check, load_definition
from domain.errors import InvalidDefinition

HERE = Path(__file__).parent / "betsy_constraints"
INVALID = sorted(p for p in HERE.glob("*/*.bpmn") if p.parent.name.startswith(("EXT", "REF")))
FEATURES = sorted(HERE.glob("features/*/*.bpmn"))
TRACES = {t["file"]: t for t in json.loads((HERE / "expected_traces.json").read_text())["tests"]}


def _quickjs_check(kind: str, source: str) -> str | None:
    """Stand-in syntax check (compile only, never run) for when the sandbox module is absent."""
    import quickjs

    body = source.strip()
    if body.startswith("${") and body.endswith("}"):
        body = body[2:-1]
    wrapped = f"(function(){{ return ({body}\n); }})" if kind == "condition" else f"(function(){{ {body}\n}})"
    try:
        quickjs.Context().eval(wrapped)
    except Exception as exc:  # quickjs raises its own JSException for syntax errors
        return str(exc)
    return None


COMPILE: Callable[[str, str], str | None] = default_compile_check() or _quickjs_check


def test_all_constraint_models_are_present() -> None:
    assert len(INVALID) == 301


@pytest.mark.parametrize("path", INVALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_constraint_model_is_refused_with_a_located_problem(path: Path) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        load_definition(path.read_bytes(), compile_check=COMPILE)
    problems = caught.value.problems
    assert problems, "refused without naming a problem"
    lines = path.read_text(encoding="utf-8").count("\n") + 1
    located = [p for p in problems if p.element_id or (p.line and 0 < p.line <= lines)]
    assert located, f"no problem names an element or a line: {problems}"
    assert all(p.message and p.message[0].isupper() for p in problems)


def _must_fail(path: Path) -> bool:
    test = TRACES.get(f"{path.parent.name}/{path.name}")
    if test is None:
        return False
    lines = [line for case in test["test_cases"] for line in case["expected_trace"]]
    return any(line in ("ERROR", "ERROR_deployment") for line in lines)


def _no_compile_check(kind: str, source: str) -> None:
    # betsy expressions are Java/JUEL-flavoured placeholders that a test adapter rewrites before
    # deploying, so only the model's structure is judged here.
    return None


@pytest.mark.parametrize("path", FEATURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_feature_model_loads_unless_an_error_is_expected(path: Path) -> None:
    xml = path.read_bytes()
    if _must_fail(path):
        with pytest.raises(InvalidDefinition) as caught:
            load_definition(xml, compile_check=_no_compile_check)
        assert caught.value.problems
    else:
        definition = load_definition(xml, compile_check=_no_compile_check)
        assert definition.executable_processes
        assert definition.main_process in definition.processes


def test_some_feature_models_are_expected_to_fail() -> None:
    failing = [p for p in FEATURES if _must_fail(p)]
    assert len(failing) == 4
    assert len(FEATURES) - len(failing) > 100
