"""Parsing BPMN text into the definition graph, and refusing hostile or broken XML."""

from __future__ import annotations

import pytest

from domain.errors import InvalidDefinition
from domain.model import EventKind, NodeKind
from domain.parser import parse_definition

NS = (
    'xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
    'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
    'xmlns:custom="http://banklingo.example/custom" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def doc(body: str, extra: str = "") -> str:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f'{head}<definitions {NS} id="D" targetNamespace="urn:t">{extra}\n{body}\n</definitions>'


SIMPLE = (
    doc(
        """<process id="P" name="Loan" isExecutable="true">
  <laneSet id="LS"><lane id="L1"><flowNodeRef>Task_A</flowNodeRef></lane></laneSet>
  <startEvent id="Start"/>
  <sequenceFlow id="F1" sourceRef="Start" targetRef="Task_A"/>
  <userTask id="Task_A" name="Approve" camunda:assignee="alice" camunda:candidateGroups="officers">
    <documentation>ignored</documentation>
    <extensionElements>
      <custom:properties>
        <custom:property name="UserActions" value='["approve","reject"]'/>
        <custom:property name="ResultVariable">decision</custom:property>
      </custom:properties>
      <camunda:properties><camunda:property name="ResponsibleTeam" value="Credit"/></camunda:properties>
      <camunda:inputOutput><camunda:inputParameter name="x">1</camunda:inputParameter></camunda:inputOutput>
      <vendor:unknown xmlns:vendor="urn:vendor"><vendor:deep/></vendor:unknown>
    </extensionElements>
  </userTask>
  <sequenceFlow id="F2" sourceRef="Task_A" targetRef="Gw"/>
  <exclusiveGateway id="Gw" default="F4"/>
  <sequenceFlow id="F3" sourceRef="Gw" targetRef="End">
    <conditionExpression xsi:type="tFormalExpression"><![CDATA[ amount > 10 ]]></conditionExpression>
  </sequenceFlow>
  <sequenceFlow id="F4" sourceRef="Gw" targetRef="End"/>
  <endEvent id="End"/>
  <textAnnotation id="Note"><text>hello</text></textAnnotation>
  <association id="A1" sourceRef="Note" targetRef="Task_A"/>
</process>""",
        """<collaboration id="C"><participant id="Pool" processRef="P"/></collaboration>""",
    )
    + "\n"
)


def test_simple_model_nodes_flows_and_lines() -> None:
    definition = parse_definition(SIMPLE)
    graph = definition.process()
    assert definition.main_process == "P"
    assert graph.name == "Loan"
    assert set(graph.nodes) == {"Start", "Task_A", "Gw", "End"}
    task = graph.nodes["Task_A"]
    assert task.kind is NodeKind.USER_TASK
    assert task.name == "Approve"
    assert task.incoming == ("F1",) and task.outgoing == ("F2",)
    assert graph.nodes["Gw"].outgoing == ("F3", "F4")
    assert graph.nodes["Gw"].default_flow == "F4"
    assert graph.nodes["End"].incoming == ("F3", "F4")
    assert graph.flows["F3"].condition == "amount > 10"
    assert graph.flows["F4"].condition is None
    assert graph.scope_starts[""] == ("Start",)
    lines = SIMPLE.splitlines()
    assert 'id="Task_A"' in lines[task.line - 1]
    assert 'id="F3"' in lines[graph.flows["F3"].line - 1]
    assert definition.element_counts == {
        "startEvent": 1,
        "userTask": 1,
        "exclusiveGateway": 1,
        "endEvent": 1,
        "sequenceFlow": 4,
    }


def test_extension_properties_any_prefix_and_case() -> None:
    task = parse_definition(SIMPLE).process().nodes["Task_A"]
    assert task.prop("useractions") == '["approve","reject"]'
    assert task.prop("USERACTIONS") == '["approve","reject"]'
    assert task.prop("ResultVariable") == "decision"  # value from element text
    assert task.prop("responsibleteam") == "Credit"
    assert "x" not in task.properties  # camunda:inputOutput is not a property
    assert set(task.properties) == {"useractions", "resultvariable", "responsibleteam"}
    assert task.assignee == "alice"
    assert task.candidate_groups == "officers"


def test_responsible_team_fills_candidate_groups_without_camunda_attribute() -> None:
    xml = SIMPLE.replace(' camunda:candidateGroups="officers"', "")
    assert parse_definition(xml).process().nodes["Task_A"].candidate_groups == "Credit"


def test_flows_are_derived_from_sequence_flows_not_incoming_children() -> None:
    xml = doc(
        """<process id="P" isExecutable="true">
  <startEvent id="S"><outgoing>WRONG</outgoing></startEvent>
  <task id="T"><incoming>ALSO_WRONG</incoming></task>
  <sequenceFlow id="F" sourceRef="S" targetRef="T"/>
</process>"""
    )
    graph = parse_definition(xml).process()
    assert graph.nodes["S"].outgoing == ("F",)
    assert graph.nodes["T"].incoming == ("F",)


NESTED = doc(
    """<process id="P" isExecutable="true">
  <startEvent id="S"/>
  <sequenceFlow id="F1" sourceRef="S" targetRef="Sub"/>
  <subProcess id="Sub">
    <startEvent id="SubStart"/>
    <sequenceFlow id="F2" sourceRef="SubStart" targetRef="Inner"/>
    <transaction id="Inner">
      <startEvent id="InnerStart"/>
      <sequenceFlow id="F3" sourceRef="InnerStart" targetRef="InnerEnd"/>
      <endEvent id="InnerEnd"/>
    </transaction>
    <sequenceFlow id="F4" sourceRef="Inner" targetRef="SubEnd"/>
    <endEvent id="SubEnd"/>
  </subProcess>
  <boundaryEvent id="B" attachedToRef="Sub" cancelActivity="false">
    <timerEventDefinition>
      <timeDuration xsi:type="tFormalExpression">PT5M</timeDuration>
    </timerEventDefinition>
  </boundaryEvent>
  <sequenceFlow id="F5" sourceRef="Sub" targetRef="E"/>
  <sequenceFlow id="F6" sourceRef="B" targetRef="E"/>
  <endEvent id="E"/>
  <subProcess id="Esp" triggeredByEvent="true">
    <startEvent id="EspStart"><errorEventDefinition errorRef="Err"/></startEvent>
    <sequenceFlow id="F7" sourceRef="EspStart" targetRef="EspEnd"/>
    <endEvent id="EspEnd"/>
  </subProcess>
</process>
<error id="Err" errorCode="E42"/>"""
)


def test_nested_subprocess_scopes_share_one_flat_table() -> None:
    graph = parse_definition(NESTED).process()
    assert graph.nodes["S"].scope is None
    assert graph.nodes["SubStart"].scope == "Sub"
    assert graph.nodes["Inner"].scope == "Sub"
    assert graph.nodes["InnerStart"].scope == "Inner"
    assert graph.nodes["Inner"].kind is NodeKind.TRANSACTION
    assert graph.flows["F3"].source == "InnerStart"
    assert graph.scope_starts[""] == ("S",)
    assert graph.scope_starts["Sub"] == ("SubStart",)
    assert graph.scope_starts["Inner"] == ("InnerStart",)
    assert graph.scope_starts["Esp"] == ("EspStart",)
    assert graph.nodes["Esp"].triggered_by_event
    assert graph.boundaries == {"Sub": ("B",)}
    boundary = graph.nodes["B"]
    assert boundary.attached_to == "Sub" and boundary.cancel_activity is False
    assert boundary.event is not None
    assert (boundary.event.kind, boundary.event.timer_type, boundary.event.timer_value) == (
        EventKind.TIMER,
        "timeDuration",
        "PT5M",
    )
    error = graph.nodes["EspStart"].event
    assert error is not None and (error.kind, error.code, error.ref) == (EventKind.ERROR, "E42", "Err")


def test_event_definition_refs_resolve_global_definitions() -> None:
    xml = doc(
        """<signal id="Sig" name="go"/>
<signalEventDefinition id="GlobalSig" signalRef="Sig"/>
<message id="Msg" name="paid"/>
<process id="P" isExecutable="true">
  <startEvent id="S"><messageEventDefinition messageRef="Msg"/></startEvent>
  <intermediateCatchEvent id="C"><eventDefinitionRef>GlobalSig</eventDefinitionRef></intermediateCatchEvent>
</process>"""
    )
    graph = parse_definition(xml).process()
    start_event, catch_event = graph.nodes["S"].event, graph.nodes["C"].event
    assert start_event is not None and (start_event.kind, start_event.code) == (EventKind.MESSAGE, "paid")
    assert catch_event is not None and (catch_event.kind, catch_event.code) == (EventKind.SIGNAL, "go")


def test_activity_details_loops_scripts_and_globals() -> None:
    xml = doc(
        """<globalScriptTask id="G" scriptFormat="javascript"><script>x = 1</script></globalScriptTask>
<process id="Other" isExecutable="false"/>
<process id="P">
  <scriptTask id="T" scriptFormat="javascript" startQuantity="2" isForCompensation="true">
    <script>return {a: 1};</script>
    <multiInstanceLoopCharacteristics isSequential="true" camunda:collection="items"
        camunda:elementVariable="item">
      <loopCardinality>3</loopCardinality>
    </multiInstanceLoopCharacteristics>
  </scriptTask>
  <task id="L">
    <standardLoopCharacteristics testBefore="true" loopMaximum="5">
      <loopCondition>n &lt; 3</loopCondition>
    </standardLoopCharacteristics>
  </task>
  <callActivity id="CA" calledElement="tns:Other"/>
</process>"""
    )
    definition = parse_definition(xml)
    assert definition.main_process == "P"  # no isExecutable attribute counts as executable
    assert definition.executable_processes == ("P",)
    graph = definition.process()
    task = graph.nodes["T"]
    assert task.script == "return {a: 1};" and task.script_format == "javascript"
    assert task.start_quantity == 2 and task.is_for_compensation
    assert task.loop is not None
    assert (task.loop.kind, task.loop.sequential, task.loop.cardinality) == ("multiInstance", True, "3")
    assert (task.loop.collection, task.loop.element_variable) == ("items", "item")
    loop = graph.nodes["L"].loop
    assert loop is not None and (loop.kind, loop.condition, loop.maximum, loop.test_before) == (
        "standard",
        "n < 3",
        5,
        True,
    )
    assert graph.nodes["CA"].called_element == "Other"
    assert definition.global_tasks["G"].kind is NodeKind.SCRIPT_TASK
    assert definition.global_tasks["G"].script == "x = 1"


def test_diagram_interchange_is_ignored() -> None:
    di = """<bpmndi:BPMNDiagram id="Di"><bpmndi:BPMNPlane id="Pl" bpmnElement="P">
  <bpmndi:BPMNShape id="Sh" bpmnElement="Start">
    <dc:Bounds x="1" y="2" width="3" height="4"/>
  </bpmndi:BPMNShape>
</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>"""
    plain = parse_definition(SIMPLE)
    with_di = parse_definition(SIMPLE.replace("</definitions>", di + "</definitions>"))
    assert with_di.element_counts == plain.element_counts
    assert set(with_di.process().nodes) == set(plain.process().nodes)


def test_text_with_encoding_declaration_and_bytes_both_work() -> None:
    latin = doc('<process id="P" name="Prüfung" isExecutable="true"><startEvent id="S"/></process>').replace(
        'encoding="UTF-8"', 'encoding="ISO-8859-1"'
    )
    assert parse_definition(latin).process().name == "Prüfung"
    assert parse_definition(latin.encode("iso-8859-1")).process().name == "Prüfung"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"><process id="&lol3;"/></definitions>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">
<process id="P" name="&secret;"/></definitions>"""


@pytest.mark.parametrize(
    "xml",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        BILLION_LAUGHS.encode(),
        EXTERNAL_ENTITY.replace('name="&secret;"/>', ">&secret;</process>"),
    ],
    ids=["laughs", "xxe-attribute", "bytes", "xxe-text"],
)
def test_doctype_and_entities_are_refused(xml: str | bytes) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(xml)
    assert "DOCTYPE" in caught.value.message
    assert caught.value.problems[0].line == 1


def test_undeclared_entity_is_refused() -> None:
    with pytest.raises(InvalidDefinition):
        parse_definition(doc('<process id="P" name="&nbsp;"/>'))


def test_malformed_xml_reports_the_line() -> None:
    broken = doc('<process id="P">\n<startEvent id="S">\n</process>')
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(broken)
    problem = caught.value.problems[0]
    assert problem.line is not None and problem.line >= 4
    assert f"line {problem.line}" in caught.value.message


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "   ",
        "not xml at all",
        b"\x89PNG\r\n\x1a\n",
        '<process xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"/>',
        '<definitions xmlns="urn:not-bpmn"/>',
    ],
)
def test_non_documents_are_refused(xml: str | bytes) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(xml)
    assert caught.value.problems and caught.value.problems[0].line


def test_empty_definitions_parse_with_no_main_process() -> None:
    definition = parse_definition(doc(""))
    assert definition.processes == {}
    assert definition.main_process == ""
