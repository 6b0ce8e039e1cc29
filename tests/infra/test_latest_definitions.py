"""Starts by process key skip reading the definition they started from last time; on PostgreSQL the
write itself checks that it is still the latest, so another process's deploy, rename, deactivation
or delete shows at the very next start."""

from __future__ import annotations

from typing import Any

import pytest

from commands.base import Command
from commands.definitions import CreateProcessDefinition, DeleteProcessDefinition, UpdateProcessDefinition
from commands.instances import GetProcessInstanceHistory, StartProcessInstance
from handlers.bus import Bus, Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import DefinitionNotFound
from handlers.table import HANDLERS
from infra.clock import SystemClock
from infra.ids import UuidIds
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.handlers import models

A = RequestContext(tenant_id="bank-a", request_id="a", actor="ops")
B = RequestContext(tenant_id="bank-b", request_id="b", actor="ops")


def _server(uow_factory: PostgresUnitOfWorkFactory) -> Bus:
    """One flowcore process: its own caches, the shared database."""
    return Bus(HANDLERS, Deps(uow=uow_factory, clock=SystemClock(), ids=UuidIds()))


async def _send(bus: Bus, command: Command, ctx: RequestContext = A) -> dict[str, Any]:
    reply = await bus.dispatch(command, ctx)
    assert isinstance(reply, Reply)
    data: dict[str, Any] = reply.data
    return data


async def _start(bus: Bus, ctx: RequestContext = A) -> dict[str, Any]:
    return await _send(bus, StartProcessInstance(process_key="Approval", variables={"amount": 5}), ctx)


async def test_another_process_deploying_renaming_deactivating_or_deleting_shows_at_the_next_start(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    starter, admin = _server(uow_factory), _server(uow_factory)
    first = await _send(admin, CreateProcessDefinition(bpmn_xml=models.approval(name=""), name="First"))
    assert (await _start(starter))["version"] == 1
    assert (await _start(starter))["version"] == 1  # from what the starter remembered

    await _send(admin, CreateProcessDefinition(bpmn_xml=models.approval(name=""), name="Second"))
    second = await _start(starter)
    assert (second["version"], second["processName"]) == (2, "Second")

    await _send(admin, UpdateProcessDefinition(id=second["processDefinitionId"], name="Renamed"))
    assert (await _start(starter))["processName"] == "Renamed"

    await _send(admin, UpdateProcessDefinition(id=second["processDefinitionId"], is_active=False))
    with pytest.raises(DefinitionNotFound):
        await _start(starter)

    await _send(admin, DeleteProcessDefinition(id=second["processDefinitionId"], force=True))
    back = await _start(starter)
    assert (back["version"], back["processDefinitionId"]) == (1, first["id"])
    # a start from what was remembered writes the same history as one that looked the definition up
    remembered = await _start(starter)
    looked_up = await _start(_server(uow_factory))
    assert remembered["processDefinitionId"] == looked_up["processDefinitionId"] == first["id"]
    events = []
    for started in (remembered, looked_up):
        page = await _send(admin, GetProcessInstanceHistory(instance_guid=started["instanceGuid"], page_size=50))
        events.append([(e["eventType"], e["nodeId"]) for e in page["items"]])
    assert events[0] == events[1] and len(events[0]) > 2


async def test_what_one_tenant_deploys_never_changes_another_tenants_starts(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    starter, admin = _server(uow_factory), _server(uow_factory)
    await _send(admin, CreateProcessDefinition(bpmn_xml=models.approval()))
    assert (await _start(starter))["version"] == 1
    await _send(admin, CreateProcessDefinition(bpmn_xml=models.approval()), B)
    await _send(admin, CreateProcessDefinition(bpmn_xml=models.approval()), B)
    assert (await _start(starter))["version"] == 1
    assert (await _start(starter, B))["version"] == 2
    with pytest.raises(DefinitionNotFound):
        await _start(starter, RequestContext(tenant_id="bank-c", request_id="c"))
