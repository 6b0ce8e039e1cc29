"""Small BPMN documents for handler tests, written the way bpmn.io saves them (minus DI)."""

from __future__ import annotations

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs" targetNamespace="http://flowcore.test">\n'
)


def props(**values: str) -> str:
    inner = "".join(f'<camunda:property name="{k}" value=\'{v}\'/>' for k, v in values.items())
    return f"<bpmn:extensionElements><camunda:properties>{inner}</camunda:properties></bpmn:extensionElements>"


def approval(process_id: str = "Approval", *, name: str = "Approval", mandatory: str = "") -> str:
    """start → script (doubles amount) → user task with approve/reject → exclusive → end."""
    start_props = props(mandatoryParams=mandatory) if mandatory else ""
    return HEAD + f"""
  <bpmn:process id="{process_id}" name="{name}" isExecutable="true">
    <bpmn:startEvent id="Start">{start_props}</bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Double"/>
    <bpmn:scriptTask id="Double" name="Double Amount" scriptFormat="javascript">
      {props(ResultVariable="doubled")}
      <bpmn:script>return {{ value: amount * 2 }}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Double" targetRef="Review"/>
    <bpmn:userTask id="Review" name="Manager Review" camunda:assignee="manager">
      {props(UserActions='["approve","reject"]')}
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="Review" targetRef="Decide"/>
    <bpmn:exclusiveGateway id="Decide" default="f5"/>
    <bpmn:sequenceFlow id="f4" sourceRef="Decide" targetRef="Approved">
      <bpmn:conditionExpression>${{lastUserTaskResult.action == "approve"}}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f5" sourceRef="Decide" targetRef="Rejected"/>
    <bpmn:endEvent id="Approved" name="Approved"/>
    <bpmn:endEvent id="Rejected" name="Rejected"/>
  </bpmn:process>
</bpmn:definitions>
"""


def automatic(process_id: str = "Auto") -> str:
    """start → script → end: finishes within the start command."""
    return HEAD + f"""
  <bpmn:process id="{process_id}" name="Automatic" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Work"/>
    <bpmn:scriptTask id="Work" name="Work"><bpmn:script>total = (total || 0) + 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Work" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>
"""


def two_starts(process_id: str = "TwoStarts") -> str:
    return HEAD + f"""
  <bpmn:process id="{process_id}" name="Two starts" isExecutable="true">
    <bpmn:startEvent id="WebStart" name="web">{props(startCondition="web")}</bpmn:startEvent>
    <bpmn:startEvent id="BranchStart" name="branch">{props(startCondition="branch")}</bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="WebStart" targetRef="Wait"/>
    <bpmn:sequenceFlow id="f2" sourceRef="BranchStart" targetRef="Wait"/>
    <bpmn:userTask id="Wait" name="Wait"/>
    <bpmn:sequenceFlow id="f3" sourceRef="Wait" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>
"""


def failing(process_id: str = "Failing") -> str:
    """A script that throws until `fixed` is set: exercises error, retry and skip."""
    return HEAD + f"""
  <bpmn:process id="{process_id}" name="Failing" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Risky"/>
    <bpmn:scriptTask id="Risky" name="Risky Step">
      <bpmn:script>
        if (!context.fixed) {{ throw new Error("credit bureau unreachable"); }}
        return {{ ok: true }}
      </bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Risky" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>
"""


def caller(process_id: str = "Caller", called: str = "Approval") -> str:
    """start → call activity into a process deployed in another document → end."""
    return HEAD + f"""
  <bpmn:process id="{process_id}" name="Caller" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:callActivity id="Call" name="Call approval" calledElement="{called}"/>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>
"""
