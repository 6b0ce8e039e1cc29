"""Handlers driven through the bus with in-memory fakes: behaviour, messages, nothing changed on refusal."""

from __future__ import annotations

from typing import Any

import pytest

from commands.base import Command
from commands.definitions import (
    CreateProcessDefinition,
    DeleteProcessDefinition,
    GetProcessDefinitionById,
    GetProcessDefinitionList,
    UpdateProcessDefinition,
)
from commands.instances import (
    CancelProcessInstance,
    GetProcessInstanceHistory,
    GetProcessInstanceList,
    GetProcessInstanceState,
    InheritFrom,
    RetryFailedTask,
    SignalProcessInstance,
    SkipFailedTask,
    StartProcessInstance,
)
from domain.errors import (
    InvalidAction,
    InvalidDefinition,
    InvalidStateForCommand,
    MandatoryParamsMissing,
    MultipleStartNodes,
    StartNodeNotFound,
)
from handlers.bus import Bus, Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import BadCommandData, DefinitionNotFound, DuplicateInstanceGuid, InstanceNotFound
from handlers.table import HANDLERS
from tests.handlers import models
from tests.handlers.fakes import CountingIds, FakeUnitOfWork, FixedClock, Store

A = RequestContext(tenant_id="bank-a", request_id="r1", actor="alice")
B = RequestContext(tenant_id="bank-b", request_id="r2", actor="bob")


class Harness:
    def __init__(self) -> None:
        self.store = Store()
        self.clock = FixedClock()
        self.bus = Bus(HANDLERS, Deps(uow=lambda: FakeUnitOfWork(self.store), clock=self.clock, ids=CountingIds()))

    async def send(self, command: Command, ctx: RequestContext = A) -> Any:
        reply = await self.bus.dispatch(command, ctx)
        assert isinstance(reply, Reply)
        return reply.data

    async def deploy(self, xml: str, ctx: RequestContext = A) -> dict[str, Any]:
        data: dict[str, Any] = await self.send(CreateProcessDefinition(bpmn_xml=xml), ctx)
        return data

    async def start(self, ctx: RequestContext = A, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.send(StartProcessInstance(**fields), ctx)
        return data


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_deploy_assigns_versions_per_key(h: Harness) -> None:
    first = await h.deploy(models.approval())
    second = await h.deploy(models.approval())
    assert (first["processKey"], first["version"]) == ("Approval", 1)
    assert second["version"] == 2 and second["id"] != first["id"]
    assert first["processes"] == ["Approval"]
    assert first["elementCounts"]["userTask"] == 1


async def test_invalid_bpmn_is_refused_and_nothing_is_stored(h: Harness) -> None:
    with pytest.raises(InvalidDefinition):
        await h.deploy("<bpmn:definitions")
    doctype = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    with pytest.raises(InvalidDefinition):
        await h.deploy(doctype)
    assert h.store.definitions == {} and h.store.commits == 0


async def test_start_runs_to_the_user_task_and_offers_its_actions(h: Harness) -> None:
    await h.deploy(models.approval())
    state = await h.start(process_key="Approval", variables={"amount": 21}, business_key="LOAN-1")
    assert state["status"] == "waiting" and state["waiting"] is True
    assert state["currentTask"]["taskId"] == "Review"
    assert state["currentTask"]["assignedTo"] == "manager"
    assert state["state"]["variables"]["doubled"] == {"value": 42}
    assert [a["action"] for a in state["nextActions"]] == ["approve", "reject"]
    assert all(a["userAction"] for a in state["nextActions"])
    assert state["businessKey"] == "LOAN-1" and "completedAt" not in state


async def test_signal_with_an_action_completes_the_instance(h: Harness) -> None:
    await h.deploy(models.approval())
    started = await h.start(process_key="Approval", variables={"amount": 1})
    done = await h.send(SignalProcessInstance(instance_guid=started["instanceGuid"], action="approve",
                                              callback_data={"note": "fine"}, current_user="mgr"))
    assert done["status"] == "completed"
    assert done["summary"]["outcome"] == "success"
    assert done["summary"]["totalTasks"] == 2  # Double Amount, Manager Review
    result = done["state"]["variables"]["lastUserTaskResult"]
    assert result["action"] == "approve" and result["note"] == "fine" and result["currentUser"] == "mgr"
    assert "Approved" in [t["currentNodeId"] for t in done["tokens"]]


async def test_signal_with_an_undeclared_action_changes_nothing(h: Harness) -> None:
    await h.deploy(models.approval())
    guid = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    before = h.store.instances[("bank-a", guid)]
    with pytest.raises(InvalidAction) as caught:
        await h.send(SignalProcessInstance(instance_guid=guid, action="escalate"))
    assert "approve" in caught.value.message
    assert h.store.instances[("bank-a", guid)] == before


async def test_signal_by_an_unknown_correlation_key_names_the_key(h: Harness) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        await h.send(SignalProcessInstance(correlation_key="LOAN-404"))
    assert caught.value.message == "No process instance with correlation key 'LOAN-404' found."


async def test_signal_by_correlation_key_reaches_the_instance(h: Harness) -> None:
    await h.deploy(models.approval())
    await h.start(process_key="Approval", variables={"amount": 1}, business_key="LOAN-7")
    done = await h.send(SignalProcessInstance(correlation_key="LOAN-7", action="reject"))
    assert done["status"] == "completed" and done["businessKey"] == "LOAN-7"


async def test_signal_to_a_finished_instance_is_refused(h: Harness) -> None:
    await h.deploy(models.automatic())
    guid = (await h.start(process_key="Auto"))["instanceGuid"]
    with pytest.raises(InvalidStateForCommand):
        await h.send(SignalProcessInstance(instance_guid=guid))


async def test_automatic_process_completes_in_the_start_command(h: Harness) -> None:
    await h.deploy(models.automatic())
    state = await h.start(process_key="Auto", variables={"total": 41})
    assert state["status"] == "completed"
    assert state["state"]["variables"]["total"] == 42
    assert state["summary"]["totalTasks"] == 1  # the one script task; start and end events do not count


async def test_unknown_definition_uses_the_seed_message(h: Harness) -> None:
    with pytest.raises(DefinitionNotFound) as caught:
        await h.start(process_key="Nope")
    assert caught.value.message == "Process definition not found."


async def test_mandatory_params_are_named(h: Harness) -> None:
    await h.deploy(models.approval(mandatory="amount, applicantName"))
    with pytest.raises(MandatoryParamsMissing) as caught:
        await h.start(process_key="Approval", variables={"amount": 5})
    assert caught.value.message == "Some mandatory params are missing."
    assert caught.value.details == {"missingParams": ["applicantName"]}
    assert h.store.instances == {}


async def test_several_start_events_need_a_choice(h: Harness) -> None:
    await h.deploy(models.two_starts())
    with pytest.raises(MultipleStartNodes) as caught:
        await h.start(process_key="TwoStarts")
    assert caught.value.message == "Multiple start nodes found, but start condition not specified."
    by_id = await h.start(process_key="TwoStarts", start_node_id="BranchStart")
    by_condition = await h.start(process_key="TwoStarts", start_condition="web")
    first_node = [t["nodesActionStates"][0]["nodeId"] for t in (by_id["tokens"][0], by_condition["tokens"][0])]
    assert first_node == ["BranchStart", "WebStart"]
    with pytest.raises(StartNodeNotFound):
        await h.start(process_key="TwoStarts", start_condition="fax")


async def test_runtime_context_and_inherit_from(h: Harness) -> None:
    await h.deploy(models.approval())
    first = await h.start(process_key="Approval", runtime_context='{"amount": 3, "customer": "C-9"}')
    assert first["state"]["variables"]["customer"] == "C-9"
    second = await h.start(process_key="Approval", variables={"amount": 4},
                           inherit_from=InheritFrom(instance_guid=first["instanceGuid"], variables=["customer"]))
    assert second["state"]["variables"]["customer"] == "C-9"
    assert second["state"]["variables"]["amount"] == 4
    with pytest.raises(BadCommandData) as caught:
        await h.start(process_key="Approval", runtime_context="[1, 2]")
    assert caught.value.details == {"path": "$.data.runtimeContext"}


async def test_client_chosen_guid_must_be_unique(h: Harness) -> None:
    await h.deploy(models.approval())
    await h.start(process_key="Approval", variables={"amount": 1}, instance_guid="LOAN-42")
    with pytest.raises(DuplicateInstanceGuid):
        await h.start(process_key="Approval", variables={"amount": 1}, instance_guid="LOAN-42")


async def test_cancel_then_cancel_again_is_refused(h: Harness) -> None:
    await h.deploy(models.approval())
    guid = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    cancelled = await h.send(CancelProcessInstance(instance_guid=guid, reason="duplicate", cancelled_by="ops"))
    assert cancelled["status"] == "cancelled"
    assert {t["state"] for t in cancelled["tokens"]} <= {"DISMISSED", "INACTIVE"}
    with pytest.raises(InvalidStateForCommand):
        await h.send(CancelProcessInstance(instance_guid=guid))


async def test_tenants_never_see_each_other(h: Harness) -> None:
    deployed = await h.deploy(models.approval())
    guid = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    with pytest.raises(InstanceNotFound) as caught:
        await h.send(GetProcessInstanceState(instance_guid=guid), B)
    assert caught.value.message == f"Process instance '{guid}' not found."
    with pytest.raises(InstanceNotFound):
        await h.send(GetProcessInstanceHistory(instance_guid=guid), B)
    with pytest.raises(InstanceNotFound):
        await h.send(CancelProcessInstance(instance_guid=guid), B)
    with pytest.raises(DefinitionNotFound):
        await h.send(GetProcessDefinitionById(id=deployed["id"]), B)
    with pytest.raises(DefinitionNotFound):
        await h.start(B, process_key="Approval")
    assert (await h.send(GetProcessInstanceList(), B))["totalRecords"] == 0
    assert (await h.send(GetProcessDefinitionList(), B))["totalRecords"] == 0
    assert (await h.send(GetProcessInstanceList(), A))["totalRecords"] == 1


async def test_running_instances_stay_on_their_version(h: Harness) -> None:
    await h.deploy(models.approval())
    guid = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    await h.deploy(models.approval(name="Approval v2"))
    state = await h.send(GetProcessInstanceState(instance_guid=guid))
    assert state["version"] == 1
    newer = await h.start(process_key="Approval", variables={"amount": 1})
    assert newer["version"] == 2 and newer["processName"] == "Approval v2"
    pinned = await h.start(process_key="Approval", version=1, variables={"amount": 1})
    assert pinned["version"] == 1


async def test_a_called_process_from_another_deployment_is_shown_and_pinned(h: Harness) -> None:
    await h.deploy(models.approval())
    await h.deploy(models.caller())
    started = await h.start(process_key="Caller", variables={"amount": 2})
    assert started["currentTask"]["taskId"] == "Review"
    assert started["currentTask"]["taskType"] == "UserTask" and started["currentTask"]["assignedTo"] == "manager"
    assert [a["action"] for a in started["nextActions"]] == ["approve", "reject"]
    # a new version of the callee renames its task: the running call stays on the version it entered
    await h.deploy(models.approval().replace('"Review"', '"Check"'))
    state = await h.send(GetProcessInstanceState(instance_guid=started["instanceGuid"]))
    assert state["currentTask"]["taskId"] == "Review"
    done = await h.send(SignalProcessInstance(instance_guid=started["instanceGuid"], action="approve"))
    assert done["status"] == "completed"
    fresh = await h.start(process_key="Caller", variables={"amount": 2})
    assert fresh["currentTask"]["taskId"] == "Check"


async def test_history_is_newest_first(h: Harness) -> None:
    await h.deploy(models.approval())
    guid = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    await h.send(SignalProcessInstance(instance_guid=guid, action="reject"))
    page = await h.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    seqs = [item["seq"] for item in page["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == page["totalRecords"] >= 3
    assert page["items"][-1]["eventType"] == "InstanceStarted"


async def test_failed_script_offers_retry_and_skip(h: Harness) -> None:
    await h.deploy(models.failing())
    state = await h.start(process_key="Failing")
    assert state["status"] == "error"
    assert state["error"]["taskId"] == "Risky"
    assert "credit bureau unreachable" in state["error"]["errorMessage"]
    assert [a["command"] for a in state["nextActions"]] == [
        "RetryFailedTaskCommand", "SkipFailedTaskCommand", "CancelProcessInstanceCommand"]
    retried = await h.send(RetryFailedTask(instance_guid=state["instanceGuid"], updated_variables={"fixed": True}))
    assert retried["status"] == "completed" and "error" not in retried


async def test_skip_leaves_the_failed_task_without_running_it(h: Harness) -> None:
    await h.deploy(models.failing())
    guid = (await h.start(process_key="Failing"))["instanceGuid"]
    skipped = await h.send(SkipFailedTask(instance_guid=guid, additional_data={"manual": "yes"}, comment="ops"))
    assert skipped["status"] == "completed"
    assert skipped["state"]["variables"]["manual"] == "yes"
    assert "lastScriptResult" not in skipped["state"]["variables"]
    with pytest.raises(InvalidStateForCommand):
        await h.send(RetryFailedTask(instance_guid=guid))


async def test_definition_update_delete_and_statistics(h: Harness) -> None:
    deployed = await h.deploy(models.approval())
    await h.start(process_key="Approval", variables={"amount": 1})
    updated = await h.send(UpdateProcessDefinition(id=deployed["id"], bpmn_xml=models.approval(name="v2")))
    assert (updated["version"], updated["previousVersion"], updated["activeInstances"]) == (2, 1, 1)
    with pytest.raises(BadCommandData):
        await h.send(UpdateProcessDefinition(id=deployed["id"], bpmn_xml=models.automatic()))
    fetched = await h.send(GetProcessDefinitionById(id=deployed["id"], include_xml=True, include_statistics=True))
    assert fetched["bpmnXml"].startswith("<?xml") and fetched["statistics"]["activeInstances"] == 1
    with pytest.raises(InvalidStateForCommand):
        await h.send(DeleteProcessDefinition(id=deployed["id"]))
    assert (await h.send(DeleteProcessDefinition(id=updated["id"])))["cancelledInstances"] == 0


async def test_forced_delete_cancels_the_live_instances_with_it(h: Harness) -> None:
    deployed = await h.deploy(models.approval())
    waiting = (await h.start(process_key="Approval", variables={"amount": 1}))["instanceGuid"]
    deleted = await h.send(DeleteProcessDefinition(id=deployed["id"], force=True))
    assert deleted["cancelledInstances"] == 1
    record = h.store.instances[("bank-a", waiting)]
    assert record.status == "cancelled" and record.state.completed_at is not None
    events = [e.event_type for e in h.store.history[("bank-a", waiting)]]
    assert events[-1] == "InstanceCancelled"
    assert h.store.definitions == {}
