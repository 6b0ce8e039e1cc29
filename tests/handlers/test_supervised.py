"""Supervised mode through the bus with in-memory fakes: the loan-approval walk, refusals, mode
switches, a service step through the job mechanism, and step commands that never retry a race."""

from __future__ import annotations

import itertools
from typing import Any, cast

import msgspec
import pytest

from app.demo import loan_approval_xml
from commands.base import Command
from commands.definitions import CreateProcessDefinition
from commands.instances import (
    CancelProcessInstance,
    ExecutionModeName,
    GetProcessInstanceHistory,
    GetProcessInstanceState,
    SetExecutionMode,
    SignalProcessInstance,
    StartProcessInstance,
    StepBackward,
    StepForward,
)
from domain.errors import InvalidStateForCommand
from domain.service_outcome import Succeeded
from domain.transition import CallService, CancelJobs
from handlers.bus import Bus, Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import VersionConflict
from handlers.jobs import ClaimedJob, Settled, record_call_outcome
from handlers.ports import InstanceRecord, UnitOfWorkFactory
from handlers.table import HANDLERS
from tests.handlers.fakes import CountingIds, FakeUnitOfWork, FixedClock, Store
from tests.handlers.models import HEAD, props

A = RequestContext(tenant_id="bank-a", request_id="r1", actor="alice")
LOAN = "LoanApproval_v1"
STEP_ACTIONS = [
    ("stepForward", "StepForwardCommand"),
    ("stepBackward", "StepBackwardCommand"),
    ("cancel", "CancelProcessInstanceCommand"),
]


class Harness:
    def __init__(self) -> None:
        self.store = Store()
        self.clock = FixedClock()
        factory = cast(UnitOfWorkFactory, lambda: FakeUnitOfWork(self.store))
        ticks = itertools.count(0, 1.5)
        self.deps = Deps(uow=factory, clock=self.clock, ids=CountingIds(), stopwatch=lambda: float(next(ticks)))
        self.bus = Bus(HANDLERS, self.deps)

    async def send(self, command: Command) -> dict[str, Any]:
        reply = await self.bus.dispatch(command, A)
        assert isinstance(reply, Reply)
        data: dict[str, Any] = reply.data
        return data

    async def deploy(self, xml: str) -> None:
        await self.send(CreateProcessDefinition(bpmn_xml=xml))

    def record(self, guid: str) -> InstanceRecord:
        return self.store.instances[(A.tenant_id, guid)]


@pytest.fixture
def h() -> Harness:
    return Harness()


def _bytes(variables: dict[str, Any]) -> bytes:
    return msgspec.json.encode(variables)


def _pairs(actions: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(a["action"], a.get("command")) for a in actions]


def _where(state: dict[str, Any]) -> tuple[str, int, int, dict[str, Any]]:
    task = state["currentTask"]
    assert state["progress"]["current"] == task["position"]
    assert state["progress"]["total"] == task["totalTasks"]
    return task["taskId"], task["position"], task["totalTasks"], state["progress"]


async def _start_loan(h: Harness, amount: int, mode: ExecutionModeName = "Supervised") -> dict[str, Any]:
    return await h.send(StartProcessInstance(
        process_key=LOAN, variables={"applicantName": "Ada", "amount": amount}, execution_mode=mode))


# -- the loan-approval walk ---------------------------------------------------------------------------


async def test_loan_walk_forward_back_twice_and_forward_to_the_end(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    started = await _start_loan(h, 10_000)
    guid = started["instanceGuid"]
    assert started["status"] == "waiting" and started["executionMode"] == "Supervised"
    assert started["currentActivityId"] == "Task_CalculateRisk"
    assert started["currentTask"]["taskName"] == "Calculate Risk Score"
    assert started["currentTask"]["taskType"] == "ScriptTask"
    # riskScore is not known yet: the risk gateway counts its longest branch (3 tasks either way)
    assert _where(started) == ("Task_CalculateRisk", 1, 3, {"current": 1, "total": 3, "percentage": 33.33})
    assert _pairs(started["nextActions"]) == STEP_ACTIONS
    assert "previousTask" not in started
    seen = {1: _bytes(started["state"]["variables"])}

    second = await h.send(StepForward(instance_guid=guid))
    previous = second["previousTask"]
    assert (previous["taskId"], previous["taskName"], previous["taskType"], previous["success"]) == (
        "Task_CalculateRisk", "Calculate Risk Score", "ScriptTask", True)
    assert isinstance(previous["executionTime"], float) and previous["executionTime"] >= 0
    assert second["state"]["variables"]["riskScore"] == 30
    assert _where(second) == ("Task_AutoApprove", 2, 3, {"current": 2, "total": 3, "percentage": 66.67})
    seen[2] = _bytes(second["state"]["variables"])

    third = await h.send(StepForward(instance_guid=guid))
    assert third["previousTask"]["taskId"] == "Task_AutoApprove"
    assert third["state"]["variables"]["decision"] == "approved"
    assert third["state"]["variables"]["approvedBy"] == "system"
    assert _where(third) == ("Task_NotifyApplicant", 3, 3, {"current": 3, "total": 3, "percentage": 100.0})
    notify_token = next(t for t in third["tokens"] if t["currentNodeId"] == "Task_NotifyApplicant")

    back = await h.send(StepBackward(instance_guid=guid))
    assert back["movedFrom"] == {"taskId": "Task_NotifyApplicant", "taskName": "Notify Applicant"}
    assert _where(back)[:3] == ("Task_AutoApprove", 2, 3)
    assert _bytes(back["state"]["variables"]) == seen[2]
    execution = back["currentTask"]["previousExecution"]
    assert execution["success"] is True and execution["executedAt"] == h.clock.now()
    assert isinstance(execution["executionTime"], float)
    assert back["sideEffectsNotUndone"] == []
    aborted = next(t for t in back["tokens"] if t["id"] == notify_token["id"])
    assert aborted["state"] == "ABORTED"
    fresh = next(t for t in back["tokens"] if t["state"] == "ACTIVE")
    assert fresh["id"] > notify_token["id"] and fresh["currentNodeId"] == "Task_AutoApprove"
    assert fresh["backSeq"][-1] == "Task_AutoApprove" and "Task_NotifyApplicant" not in fresh["backSeq"]

    first = await h.send(StepBackward(instance_guid=guid))
    assert first["movedFrom"]["taskId"] == "Task_AutoApprove"
    assert _where(first)[:3] == ("Task_CalculateRisk", 1, 3)
    assert _bytes(first["state"]["variables"]) == seen[1]
    assert "riskScore" not in first["state"]["variables"]

    before = h.record(guid)
    with pytest.raises(InvalidStateForCommand) as caught:
        await h.send(StepBackward(instance_guid=guid))
    assert caught.value.message == "The instance is at its first task; there is no step to go back to."
    assert h.record(guid) == before

    again = await h.send(StepForward(instance_guid=guid))
    assert _bytes(again["state"]["variables"]) == seen[2]
    await h.send(StepForward(instance_guid=guid))
    done = await h.send(StepForward(instance_guid=guid))
    assert done["status"] == "completed"
    assert done["progress"] == {"current": 3, "total": 3, "percentage": 100.0}
    assert done["previousTask"]["taskId"] == "Task_NotifyApplicant"
    assert done["nextActions"] == []
    direct = await _start_loan(h, 10_000, mode="Unsupervised")
    assert direct["status"] == "completed"
    assert _bytes(done["state"]["variables"]) == _bytes(direct["state"]["variables"])


async def test_every_step_is_in_the_history(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 10_000))["instanceGuid"]
    h.clock.advance(60)
    await h.send(StepForward(instance_guid=guid))
    await h.send(StepBackward(instance_guid=guid))
    page = await h.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    events = {e["eventType"]: e for e in page["items"]}
    forward, completed = events["StepForward"], events["StepCompleted"]
    assert (forward["actor"], forward["nodeId"], forward["data"]) == ("alice", "Task_CalculateRisk", {"position": 1})
    assert completed["actor"] == "alice" and completed["nodeId"] == "Task_CalculateRisk"
    assert completed["data"]["variablesChanged"] == ["riskScore"]
    assert completed["data"]["success"] is True and completed["data"]["executionTime"] >= 0
    assert completed["at"] == forward["at"] == "2026-01-01T09:01:00Z"
    undone = events["StepUndone"]
    assert undone["actor"] == "alice" and undone["data"]["variablesChanged"] == ["riskScore"]
    assert events["StepBackward"]["data"]["movedFrom"]["taskId"] == "Task_AutoApprove"


async def test_high_risk_walk_waits_for_the_manager_within_the_step(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 100_000))["instanceGuid"]
    at_manager = await h.send(StepForward(instance_guid=guid))
    assert at_manager["state"]["variables"]["riskScore"] == 80
    assert _where(at_manager) == ("Task_ManagerApproval", 2, 3, {"current": 2, "total": 3, "percentage": 66.67})

    waiting = await h.send(StepForward(instance_guid=guid))
    assert waiting["status"] == "waiting"
    assert waiting["currentTask"]["taskType"] == "UserTask"
    assert _where(waiting)[:3] == ("Task_ManagerApproval", 2, 3)  # the step is under way
    assert waiting["previousTask"]["taskId"] == "Task_ManagerApproval"
    assert waiting["previousTask"]["success"] is None
    assert _pairs(waiting["nextActions"]) == [
        ("approve", None), ("reject", None), STEP_ACTIONS[1], STEP_ACTIONS[2]]
    with pytest.raises(InvalidStateForCommand, match="No task is paused"):
        await h.send(StepForward(instance_guid=guid))

    h.clock.advance(90)
    approved = await h.send(SignalProcessInstance(instance_guid=guid, action="approve", current_user="mgr"))
    assert approved["previousTask"] == {"taskId": "Task_ManagerApproval", "taskName": "Manager Approval",
                                        "taskType": "UserTask", "executionTime": 90000.0, "success": True}
    assert _where(approved)[:3] == ("Task_NotifyApplicant", 3, 3)
    done = await h.send(StepForward(instance_guid=guid))
    assert done["status"] == "completed"
    assert done["state"]["variables"]["notification"]["to"] == "Ada"


async def test_rejected_walk_ends_with_fewer_tasks_than_first_counted(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 100_000))["instanceGuid"]
    await h.send(StepForward(instance_guid=guid))
    await h.send(StepForward(instance_guid=guid))
    rejected = await h.send(SignalProcessInstance(instance_guid=guid, action="reject"))
    assert rejected["status"] == "completed"
    assert rejected["progress"] == {"current": 2, "total": 2, "percentage": 100.0}


# -- refusals -----------------------------------------------------------------------------------------


async def test_step_commands_on_an_unsupervised_instance_are_refused(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 100_000, mode="Unsupervised"))["instanceGuid"]
    before, commits = h.record(guid), h.store.commits
    for command in (StepForward(instance_guid=guid), StepBackward(instance_guid=guid)):
        with pytest.raises(InvalidStateForCommand) as caught:
            await h.send(command)
        assert caught.value.message == (
            f"Instance '{guid}' is not in supervised mode; switch it with SetExecutionModeCommand.")
    assert h.record(guid) == before and h.store.commits == commits
    state = await h.send(GetProcessInstanceState(instance_guid=guid))
    assert "progress" not in state and "position" not in state["currentTask"]


async def test_step_commands_on_a_finished_instance_are_refused(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 10_000))["instanceGuid"]
    await h.send(CancelProcessInstance(instance_guid=guid, reason="test"))
    for command in (StepForward(instance_guid=guid), StepBackward(instance_guid=guid)):
        with pytest.raises(InvalidStateForCommand) as caught:
            await h.send(command)
        assert caught.value.message == f"Instance '{guid}' is cancelled; it cannot step."
    with pytest.raises(InvalidStateForCommand, match="cancelled"):
        await h.send(SetExecutionMode(instance_guid=guid, execution_mode="Unsupervised"))


async def test_step_forward_names_a_token_that_is_not_paused(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 10_000))["instanceGuid"]
    with pytest.raises(InvalidStateForCommand, match=r"Token 999 is not paused before a task\."):
        await h.send(StepForward(instance_guid=guid, token_id=999))


# -- switching modes ------------------------------------------------------------------------------------


async def test_supervised_to_unsupervised_runs_on_to_the_next_wait(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 100_000))["instanceGuid"]
    await h.send(StepForward(instance_guid=guid))
    switched = await h.send(SetExecutionMode(instance_guid=guid, execution_mode="Unsupervised"))
    assert switched["executionMode"] == "Unsupervised" and h.record(guid).execution_mode == "Unsupervised"
    assert switched["currentTask"]["taskId"] == "Task_ManagerApproval"
    assert switched["currentTask"]["taskType"] == "UserTask"
    assert "progress" not in switched and "previousTask" not in switched
    assert _pairs(switched["nextActions"]) == [("approve", None), ("reject", None)]


async def test_unsupervised_to_supervised_pauses_before_the_next_task(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 100_000, mode="Unsupervised"))["instanceGuid"]
    switched = await h.send(SetExecutionMode(instance_guid=guid, execution_mode="Supervised"))
    assert switched["executionMode"] == "Supervised"
    assert _where(switched)[:3] == ("Task_ManagerApproval", 1, 2)  # steps count from the switch
    paused = await h.send(SignalProcessInstance(instance_guid=guid, action="approve"))
    assert paused["status"] == "waiting"
    assert _where(paused)[:3] == ("Task_NotifyApplicant", 1, 1)
    assert _pairs(paused["nextActions"]) == STEP_ACTIONS
    with pytest.raises(InvalidStateForCommand) as caught:
        await h.send(StepBackward(instance_guid=guid))
    assert "since supervised mode began" in caught.value.message
    done = await h.send(StepForward(instance_guid=guid))
    assert done["status"] == "completed" and done["state"]["variables"]["notification"]["to"] == "Ada"


# -- a service step goes through the job mechanism ---------------------------------------------------


def _bureau() -> str:
    return HEAD + f"""
  <bpmn:process id="Bureau" name="Bureau" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Score"/>
    <bpmn:serviceTask id="Score" name="Credit Score">
      {props(Endpoint="https://bureau.test/score", ResultVariable="score")}
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Score" targetRef="Judge"/>
    <bpmn:scriptTask id="Judge" name="Judge"><bpmn:script>return {{ ok: score.value &gt; 600 }}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="Judge" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>
"""


def _claim(h: Harness, call: CallService) -> ClaimedJob:
    """What the job store's claim hands the worker for the queued call of `call`'s token."""
    [row] = [r for r in h.store.job_rows.values() if r.token_id == call.token_id and r.status == "pending"]
    row.status, row.locked_by, row.attempts = "running", "w-1", row.attempts + 1
    return ClaimedJob(id=row.id, tenant_id=row.tenant_id, instance_guid=row.instance_guid, token_id=row.token_id,
                      node_id=row.node_id, kind=row.kind, attempt=row.attempts, max_attempts=row.max_attempts,
                      worker_id="w-1", attempt_group=call.attempt_group, retry_backoff_ms=call.retry_backoff_ms)


async def _complete_job(h: Harness, call: CallService, body: Any) -> None:
    """The worker's call returned 2xx: its outcome is fed back as the worker does it."""
    assert await record_call_outcome(h.deps, _claim(h, call), Succeeded(result=body)) is Settled.DONE


async def test_service_step_calls_out_through_a_job_and_completes_when_the_call_does(h: Harness) -> None:
    await h.deploy(_bureau())
    started = await h.send(StartProcessInstance(process_key="Bureau", execution_mode="Supervised",
                                                variables={"customer": 7}))
    guid = started["instanceGuid"]
    assert h.store.jobs == []
    stepping = await h.send(StepForward(instance_guid=guid))
    [(_, job_guid, call)] = h.store.jobs
    assert job_guid == guid and isinstance(call, CallService)
    assert (call.node_id, call.endpoint, call.payload) == ("Score", "https://bureau.test/score", {"customer": 7})
    assert stepping["status"] == "running"
    assert stepping["currentTask"]["taskId"] == "Score" and stepping["currentTask"]["taskType"] == "ServiceTask"
    assert stepping["previousTask"]["success"] is None
    assert _pairs(stepping["nextActions"]) == STEP_ACTIONS[1:]

    h.clock.advance(2)
    await _complete_job(h, call, {"value": 700})
    state = await h.send(GetProcessInstanceState(instance_guid=guid))
    assert state["status"] == "waiting" and state["currentTask"]["taskId"] == "Judge"
    assert state["previousTask"]["executionTime"] == 2000.0 and state["previousTask"]["success"] is True
    assert state["state"]["variables"]["score"] == {"value": 700}

    judged = await h.send(StepForward(instance_guid=guid))
    assert judged["status"] == "completed" and judged["state"]["variables"]["lastScriptResult"] == {"ok": True}


async def test_stepping_back_over_a_service_call_lists_it_as_not_undone(h: Harness) -> None:
    await h.deploy(_bureau())
    started = await h.send(StartProcessInstance(process_key="Bureau", execution_mode="Supervised",
                                                variables={"customer": 7}))
    guid = started["instanceGuid"]
    await h.send(StepForward(instance_guid=guid))
    [(_, _, call)] = h.store.jobs
    assert isinstance(call, CallService)
    await _complete_job(h, call, {"value": 500})

    back_to_score = await h.send(StepBackward(instance_guid=guid))
    assert back_to_score["currentTask"]["taskId"] == "Score"
    assert back_to_score["movedFrom"] == {"taskId": "Judge", "taskName": "Judge"}
    assert back_to_score["sideEffectsNotUndone"] == [
        {"taskId": "Score", "taskName": "Credit Score", "taskType": "ServiceTask",
         "effect": "POST https://bureau.test/score"}]
    assert _bytes(back_to_score["state"]["variables"]) == _bytes(started["state"]["variables"])
    assert len(h.store.jobs) == 1  # nothing in flight to cancel

    # in flight: stepping back cancels the queued call, and still says it may have gone out
    await h.send(StepForward(instance_guid=guid))
    retry_call = h.store.jobs[-1][2]
    assert isinstance(retry_call, CallService) and retry_call.token_id != call.token_id
    job = _claim(h, retry_call)  # the worker has it: the call may be out already
    undone = await h.send(StepBackward(instance_guid=guid))
    assert h.store.jobs[-1][2] == CancelJobs(token_id=retry_call.token_id, node_id="Score")
    assert [e["effect"] for e in undone["sideEffectsNotUndone"]] == ["POST https://bureau.test/score"]
    assert undone["currentTask"]["previousExecution"]["success"] is None
    assert undone["status"] == "waiting"
    # the reply arriving after the step back changes nothing: the token no longer waits on it
    before = h.record(guid)
    assert await record_call_outcome(h.deps, job, Succeeded(result={"value": 1})) is Settled.CANCELLED
    assert h.record(guid) == before


# -- races --------------------------------------------------------------------------------------------


class _LosingUnitOfWork(FakeUnitOfWork):
    """Loses the compare-and-set as if another command had saved the instance first."""

    async def __aenter__(self) -> _LosingUnitOfWork:
        await super().__aenter__()
        instances = self.instances

        async def save(record: InstanceRecord, expected_row_version: int) -> bool:
            return False

        instances.save = save  # type: ignore[method-assign]
        return self


async def test_a_step_that_loses_a_race_is_refused_not_retried(h: Harness) -> None:
    await h.deploy(loan_approval_xml())
    guid = (await _start_loan(h, 10_000))["instanceGuid"]
    await h.send(StepForward(instance_guid=guid))
    before, commits = h.record(guid), h.store.commits
    entered: list[int] = []

    def losing() -> FakeUnitOfWork:
        entered.append(1)
        return _LosingUnitOfWork(h.store)

    racing = Harness()
    racing.store = h.store
    racing.bus = Bus(HANDLERS, Deps(uow=cast(UnitOfWorkFactory, losing), clock=h.clock, ids=CountingIds()))
    for command in (StepForward(instance_guid=guid), StepBackward(instance_guid=guid)):
        entered.clear()
        with pytest.raises(VersionConflict, match="was not carried out"):
            await racing.send(command)
        assert len(entered) == 1
    assert h.record(guid) == before and h.store.commits == commits

    entered.clear()
    with pytest.raises(VersionConflict, match="try again"):
        await racing.send(SetExecutionMode(instance_guid=guid, execution_mode="Unsupervised"))
    assert len(entered) == h.deps.max_conflict_retries + 1  # a mode switch may retry on fresh state
