"""Models that deploy but use attachments the engine cannot trigger yet stop in error, never silently."""

from __future__ import annotations

from datetime import UTC, datetime

from domain import engine
from domain.definition_loader import load_definition
from domain.state import InstanceStatus
from tests.handlers.fakes import CountingIds

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HEAD = (
    '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">'
)


def _run(body: str) -> engine.Transition:
    definition = load_definition(f'{HEAD}<process id="p" isExecutable="true">{body}</process></definitions>')
    return engine.start(definition, instance_guid="i", variables={}, now=NOW, ids=CountingIds())


def test_a_timer_boundary_on_a_user_task_fails_the_task_instead_of_never_firing() -> None:
    done = _run(
        '<startEvent id="s"/><sequenceFlow id="f1" sourceRef="s" targetRef="approve"/>'
        '<userTask id="approve" name="Approve"/><sequenceFlow id="f2" sourceRef="approve" targetRef="e"/>'
        '<endEvent id="e"/>'
        '<boundaryEvent id="late" attachedToRef="approve"><timerEventDefinition>'
        '<timeDuration xsi:type="tFormalExpression">PT1H</timeDuration></timerEventDefinition></boundaryEvent>'
        '<sequenceFlow id="f3" sourceRef="late" targetRef="e2"/><endEvent id="e2"/>'
    )
    assert done.state.status is InstanceStatus.ERROR
    assert done.state.error is not None and done.state.error.task_id == "approve"
    assert "timer boundary event 'late' is not supported yet" in done.state.error.error_message


def test_an_error_boundary_is_run_and_does_not_block() -> None:
    done = _run(
        '<startEvent id="s"/><sequenceFlow id="f1" sourceRef="s" targetRef="work"/>'
        '<scriptTask id="work"><script>x = 1</script></scriptTask>'
        '<sequenceFlow id="f2" sourceRef="work" targetRef="e"/><endEvent id="e"/>'
        '<boundaryEvent id="oops" attachedToRef="work"><errorEventDefinition/></boundaryEvent>'
        '<sequenceFlow id="f3" sourceRef="oops" targetRef="e2"/><endEvent id="e2"/>'
    )
    assert done.state.status is InstanceStatus.COMPLETED


def test_an_event_subprocess_stops_the_instance_at_its_start() -> None:
    done = _run(
        '<startEvent id="s"/><sequenceFlow id="f1" sourceRef="s" targetRef="e"/><endEvent id="e"/>'
        '<subProcess id="onError" triggeredByEvent="true">'
        '<startEvent id="es"><errorEventDefinition/></startEvent>'
        '<sequenceFlow id="f2" sourceRef="es" targetRef="ee"/><endEvent id="ee"/></subProcess>'
    )
    assert done.state.status is InstanceStatus.ERROR
    assert done.state.error is not None
    assert "event subprocess 'onError' in its scope is not supported yet" in done.state.error.error_message
