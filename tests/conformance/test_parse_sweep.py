"""The parser reads every MIWG reference model and every bpmn-moddle fixture without crashing.

Whole documents must parse; fragments (`*.part.bpmn`), deliberately broken inputs (`error/`,
`attrs.bpmn`) and non-BPMN files may instead be refused, but only with a located
`InvalidDefinition` — never with any other exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import InvalidDefinition
from domain.model import Definition
from domain.parser import parse_definition

HERE = Path(__file__).parent
MIWG = sorted((HERE / "miwg").glob("*.bpmn"))
MODDLE_ROOT = HERE / "bpmn_moddle" / "fixtures"
MODDLE = sorted(p for p in MODDLE_ROOT.rglob("*") if p.is_file())


def _may_be_refused(path: Path) -> bool:
    rel = path.relative_to(MODDLE_ROOT).as_posix()
    return (
        ".part." in path.name
        or "/error/" in f"/{rel}"
        or path.name == "attrs.bpmn"
        or path.suffix not in (".bpmn", ".xml")
    )


def test_fixture_counts() -> None:
    assert len(MIWG) == 21
    assert len(MODDLE) >= 80


def _assert_consistent(definition: Definition) -> None:
    for graph in definition.processes.values():
        for node in graph.nodes.values():
            assert node.line > 0
            for flow_id in node.incoming:
                assert graph.flows[flow_id].target == node.id
            for flow_id in node.outgoing:
                assert graph.flows[flow_id].source == node.id


@pytest.mark.parametrize("path", MIWG, ids=lambda p: p.name)
def test_miwg_reference_model_parses(path: Path) -> None:
    definition = parse_definition(path.read_bytes())
    assert definition.processes
    _assert_consistent(definition)


@pytest.mark.parametrize("path", MODDLE, ids=lambda p: p.relative_to(MODDLE_ROOT).as_posix())
def test_moddle_fixture_parses_or_is_refused_with_a_location(path: Path) -> None:
    data = path.read_bytes()
    if not _may_be_refused(path):
        _assert_consistent(parse_definition(data))
        return
    try:
        parse_definition(data)
    except InvalidDefinition as exc:
        assert exc.problems
        assert all(p.line for p in exc.problems), exc.problems
