"""The bundled loan approval model: loads as flowcore reads it and opens in a modeler (BPMN DI)."""

from __future__ import annotations

import json

from lxml import etree

from app.demo import loan_approval_xml
from domain.definition_loader import load_definition
from domain.model import NodeKind

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"


def test_it_loads_with_the_promised_ids_and_properties() -> None:
    definition = load_definition(loan_approval_xml())
    process = definition.process()
    assert (process.id, process.name) == ("LoanApproval_v1", "Loan Approval Workflow")
    assert definition.executable_processes == ("LoanApproval_v1",)
    nodes = {node.name: node for node in process.nodes.values()}
    start = nodes["Loan Application Received"]
    assert start.kind is NodeKind.START_EVENT
    assert start.properties["mandatoryparams"] == "applicantName,amount"
    risk = nodes["Calculate Risk Score"]
    assert risk.kind is NodeKind.SCRIPT_TASK
    assert json.loads(risk.properties["outputmapping"]) == {"riskScore": "riskScore"}
    approval = nodes["Manager Approval"]
    assert approval.kind is NodeKind.USER_TASK
    assert approval.assignee == "manager"
    assert json.loads(approval.properties["useractions"]) == ["approve", "reject"]
    assert nodes["Notify Applicant"].kind is NodeKind.SCRIPT_TASK
    kinds = {node.kind for node in process.nodes.values()}
    assert kinds == {
        NodeKind.START_EVENT,
        NodeKind.SCRIPT_TASK,
        NodeKind.EXCLUSIVE_GATEWAY,
        NodeKind.USER_TASK,
        NodeKind.END_EVENT,
    }


def test_every_element_has_a_diagram_shape_or_edge() -> None:
    root = etree.fromstring(loan_approval_xml().encode())
    process = root.find(f"{{{BPMN}}}process")
    assert process is not None
    flows = {e.get("id") for e in process if etree.QName(e).localname == "sequenceFlow"}
    nodes = {
        e.get("id") for e in process if etree.QName(e).localname not in ("sequenceFlow", "extensionElements")
    }
    shapes = {e.get("bpmnElement") for e in root.iter(f"{{{BPMNDI}}}BPMNShape")}
    edges = {e.get("bpmnElement") for e in root.iter(f"{{{BPMNDI}}}BPMNEdge")}
    assert nodes and flows
    assert shapes == nodes
    assert edges == flows
    for edge in root.iter(f"{{{BPMNDI}}}BPMNEdge"):
        assert len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2
