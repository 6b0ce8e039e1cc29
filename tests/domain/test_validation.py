"""Deploy-time validation of small models: each check finds its problem, and a sound model passes."""

from __future__ import annotations

import pytest

from domain.definition_loader import load_definition
from domain.errors import InvalidDefinition, ValidationProblem
from domain.parser import parse_document
from domain.validation import advisories

HEAD = (
    '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="D" targetNamespace="urn:t">'
)


def doc(process: str, extra: str = "", executable: str = "true") -> str:
    return f'{HEAD}{extra}<process id="P" isExecutable="{executable}">{process}</process></definitions>'


SOUND = """
<startEvent id="S"/>
<sequenceFlow id="F1" sourceRef="S" targetRef="T"/>
<scriptTask id="T" scriptFormat="javascript"><script>x = 1;</script></scriptTask>
<sequenceFlow id="F2" sourceRef="T" targetRef="G"/>
<exclusiveGateway id="G" default="F4"/>
<sequenceFlow id="F3" sourceRef="G" targetRef="E">
  <conditionExpression xsi:type="tFormalExpression">x &gt; 1</conditionExpression>
</sequenceFlow>
<sequenceFlow id="F4" sourceRef="G" targetRef="E"/>
<endEvent id="E"/>
"""


def accept_all(kind: str, source: str) -> None:
    return None


def problems(xml: str, compile_check: object = accept_all) -> list[ValidationProblem]:
    try:
        load_definition(xml, compile_check=compile_check)  # type: ignore[arg-type]
    except InvalidDefinition as exc:
        assert exc.problems
        return exc.problems
    return []


def messages(xml: str) -> str:
    return "\n".join(p.message for p in problems(xml))


def test_sound_model_loads() -> None:
    definition = load_definition(doc(SOUND), compile_check=accept_all)
    assert definition.main_process == "P"
    assert set(definition.process().nodes) == {"S", "T", "G", "E"}


def test_flow_to_missing_node_is_located() -> None:
    xml = doc(SOUND.replace('targetRef="E"/>\n<endEvent', 'targetRef="Task_9"/>\n<endEvent'))
    found = problems(xml)
    flow = [p for p in found if p.element_id == "F4"]
    assert flow and flow[0].message == "Sequence flow 'F4' points to 'Task_9', which does not exist."
    assert flow[0].tag == "sequenceFlow" and flow[0].line is not None
    assert 'id="F4"' in xml.splitlines()[flow[0].line - 1]


def test_every_problem_is_reported_at_once() -> None:
    xml = doc(SOUND.replace('default="F4"', 'default="F1"') + '<task id="Orphan"/>')
    found = problems(xml)
    ids = {p.element_id for p in found}
    assert {"G", "Orphan"} <= ids
    assert any("default flow" in p.message for p in found if p.element_id == "G")
    assert any("cannot be reached" in p.message for p in found if p.element_id == "Orphan")


def test_no_executable_process() -> None:
    found = problems(doc(SOUND, executable="false"))
    assert [p.element_id for p in found] == ["P"]
    assert "isExecutable" in found[0].message


def test_empty_document_has_no_process() -> None:
    assert "no process" in messages(f"{HEAD}</definitions>")


def test_duplicate_ids() -> None:
    xml = doc(SOUND.replace('<endEvent id="E"/>', '<endEvent id="E"/><task id="T"/>'))
    assert "used more than once" in messages(xml)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            (
                '<startEvent id="S"/>',
                '<startEvent id="S"/><sequenceFlow id="X" sourceRef="E" targetRef="S"/>',
            ),
            "start event cannot have",
        ),
        (
            ('<exclusiveGateway id="G" default="F4"/>', '<exclusiveGateway id="G" default="F9"/>'),
            "default flow",
        ),
        (('<endEvent id="E"/>', '<endEvent id="E"/><task id="Lost"/>'), "cannot be reached"),
        (('<endEvent id="E"/>', '<endEvent id="E"/><choreographyTask id="Ch"/>'), "cannot execute"),
        (('scriptFormat="javascript"', 'scriptFormat="groovy"'), "JavaScript"),
        (('<endEvent id="E"/>', '<endEvent id="E"/><callActivity id="CA"/>'), "calledElement"),
        (('<scriptTask id="T"', '<scriptTask id="T" startQuantity="0"'), "startQuantity"),
    ],
)
def test_single_defect(change: tuple[str, str], needle: str) -> None:
    old, new = change
    assert old in SOUND
    assert needle in messages(doc(SOUND.replace(old, new)))


def test_gateway_without_outgoing_flow() -> None:
    xml = doc("""<startEvent id="S"/><sequenceFlow id="F1" sourceRef="S" targetRef="G"/>
<parallelGateway id="G"/>""")
    found = [p for p in problems(xml) if p.element_id == "G"]
    assert any("no outgoing sequence flow" in p.message for p in found)


def test_boundary_event_rules() -> None:
    base = (
        SOUND
        + """<boundaryEvent id="B" attachedToRef="{host}">
  <timerEventDefinition><timeDuration xsi:type="tFormalExpression">PT1M</timeDuration></timerEventDefinition>
</boundaryEvent>{flow}"""
    )
    attached = base.format(host="T", flow='<sequenceFlow id="FB" sourceRef="B" targetRef="E"/>')
    assert problems(doc(attached)) == []
    missing_host = messages(
        doc(base.format(host="Nope", flow='<sequenceFlow id="FB" sourceRef="B" targetRef="E"/>'))
    )
    assert "attached to 'Nope', which does not exist" in missing_host
    assert "no outgoing sequence flow" in messages(doc(base.format(host="T", flow="")))


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("timeDuration", "PT5M", True),
        ("timeDuration", "P1DT2H30M", True),
        ("timeDuration", "PT0.5S", True),
        ("timeDuration", "${delay}", True),
        ("timeDuration", "5 minutes", False),
        ("timeDuration", "P", False),
        ("timeDate", "2025-01-31T09:00:00Z", True),
        ("timeDate", "2025-13-31T09:00:00Z", False),
        ("timeCycle", "R3/PT10M", True),
        ("timeCycle", "R/2025-01-01T00:00:00Z/P1D", True),
        ("timeCycle", "0 0/5 * * * ?", True),
        ("timeCycle", "every day", False),
    ],
)
def test_timer_expressions(kind: str, value: str, ok: bool) -> None:
    process = f"""<startEvent id="S"/><sequenceFlow id="F1" sourceRef="S" targetRef="W"/>
<intermediateCatchEvent id="W"><timerEventDefinition>
  <{kind} xsi:type="tFormalExpression">{value}</{kind}>
</timerEventDefinition></intermediateCatchEvent>
<sequenceFlow id="F2" sourceRef="W" targetRef="E"/><endEvent id="E"/>"""
    found = problems(doc(process))
    assert (found == []) is ok, found
    if not ok:
        assert found[0].element_id == "W"


def test_event_references_must_resolve() -> None:
    process = """<startEvent id="S"/><sequenceFlow id="F1" sourceRef="S" targetRef="E"/>
<endEvent id="E"><errorEventDefinition errorRef="Missing"/></endEvent>"""
    assert "error 'Missing', which does not exist" in messages(doc(process))
    resolved = doc(process.replace("Missing", "Err"), extra='<error id="Err" errorCode="E1"/>')
    assert problems(resolved) == []


def test_compile_check_sees_conditions_and_scripts() -> None:
    seen: list[tuple[str, str]] = []

    def check(kind: str, source: str) -> str | None:
        seen.append((kind, source))
        return "broken" if source == "x > 1" else None

    found = problems(doc(SOUND), compile_check=check)
    assert ("script", "x = 1;") in seen and ("condition", "x > 1") in seen
    assert [(p.element_id, p.tag) for p in found] == [("F3", "sequenceFlow")]
    assert "broken" in found[0].message


def test_conditions_out_of_parallel_gateway_are_advised_not_refused() -> None:
    process = """<startEvent id="S"/><sequenceFlow id="F1" sourceRef="S" targetRef="G"/>
<parallelGateway id="G"/>
<sequenceFlow id="F2" sourceRef="G" targetRef="J">
  <conditionExpression xsi:type="tFormalExpression">a</conditionExpression></sequenceFlow>
<sequenceFlow id="F3" sourceRef="G" targetRef="J"/>
<parallelGateway id="J"/><sequenceFlow id="F4" sourceRef="J" targetRef="E"/><endEvent id="E"/>"""
    xml = doc(process)
    assert problems(xml) == []
    advice = advisories(parse_document(xml))
    assert [(p.element_id, p.tag) for p in advice] == [("F2", "sequenceFlow")]


def test_invalid_definition_summarises_first_problem() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        load_definition(doc(SOUND.replace('default="F4"', 'default="F9"')), compile_check=accept_all)
    assert caught.value.message.startswith("The BPMN document cannot be deployed: ")
    assert caught.value.details == {"problems": [p.as_dict() for p in caught.value.problems]}
