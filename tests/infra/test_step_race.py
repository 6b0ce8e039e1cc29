"""Step commands racing on one instance, on real PostgreSQL: exactly one step between them.

The commands go through the bus and the real unit of work. To make the race certain, each
command waits after loading the instance until the other has loaded it too; then both save
compare-and-set on the same row version, and the loser must be refused, not re-run.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from app.demo import loan_approval_xml
from commands.base import Command
from commands.definitions import CreateProcessDefinition
from commands.instances import GetProcessInstanceHistory, StartProcessInstance, StepBackward, StepForward
from domain.errors import InvalidStateForCommand
from handlers.bus import Bus, Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import VersionConflict
from handlers.ports import InstanceRecord, InstanceRepository, UnitOfWorkFactory
from handlers.table import HANDLERS
from infra.clock import SystemClock
from infra.ids import UuidIds
from infra.unit_of_work import PostgresUnitOfWork, PostgresUnitOfWorkFactory

CTX = RequestContext(tenant_id="bank-a", request_id="race", actor="ops")


class _MeetAfterLoad:
    """An instance repository whose reads wait for `parties` readers before answering."""

    def __init__(self, inner: InstanceRepository, barrier: asyncio.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier

    async def get(self, tenant_id: str, instance_guid: str, *, for_update: bool = False) -> InstanceRecord | None:
        found = await self._inner.get(tenant_id, instance_guid, for_update=for_update)
        await asyncio.wait_for(self._barrier.wait(), timeout=10)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _MeetingUnitOfWork:
    """The real unit of work, its instance reads made to meet the other racer's."""

    def __init__(self, inner: PostgresUnitOfWork, barrier: asyncio.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier

    async def __aenter__(self) -> PostgresUnitOfWork:
        entered = await self._inner.__aenter__()
        entered.instances = _MeetAfterLoad(entered.instances, self._barrier)
        return entered

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)


class _Racing:
    def __init__(self, factory: PostgresUnitOfWorkFactory) -> None:
        self._factory = factory
        self.barrier: asyncio.Barrier | None = None

    def __call__(self) -> PostgresUnitOfWork | _MeetingUnitOfWork:
        uow = self._factory()
        return uow if self.barrier is None else _MeetingUnitOfWork(uow, self.barrier)


async def _send(bus: Bus, command: Command) -> dict[str, Any]:
    reply = await bus.dispatch(command, CTX)
    assert isinstance(reply, Reply)
    data: dict[str, Any] = reply.data
    return data


async def _supervised_loan(bus: Bus) -> str:
    await _send(bus, CreateProcessDefinition(bpmn_xml=loan_approval_xml()))
    started = await _send(bus, StartProcessInstance(
        process_key="LoanApproval_v1", variables={"applicantName": "Ada", "amount": 10_000},
        execution_mode="Supervised"))
    guid: str = started["instanceGuid"]
    return guid


async def _stored(factory: PostgresUnitOfWorkFactory, guid: str) -> InstanceRecord:
    async with factory() as uow:
        record = await uow.instances.get(CTX.tenant_id, guid)
    assert record is not None
    return record


async def _step_events(bus: Bus, guid: str) -> list[str]:
    page = await _send(bus, GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    return [e["eventType"] for e in page["items"] if e["eventType"] in ("StepForward", "StepBackward")]


@pytest.mark.parametrize("command", [StepForward, StepBackward])
async def test_two_racing_step_commands_take_exactly_one_step(
    uow_factory: PostgresUnitOfWorkFactory, command: type[StepForward] | type[StepBackward]
) -> None:
    racing = _Racing(uow_factory)
    bus = Bus(HANDLERS, Deps(uow=cast(UnitOfWorkFactory, racing), clock=SystemClock(), ids=UuidIds()))
    guid = await _supervised_loan(bus)
    await _send(bus, StepForward(instance_guid=guid))
    await _send(bus, StepForward(instance_guid=guid))
    before = await _stored(uow_factory, guid)
    assert len(before.state.snapshots) == 2

    racing.barrier = asyncio.Barrier(2)
    outcomes = await asyncio.gather(
        _send(bus, command(instance_guid=guid)), _send(bus, command(instance_guid=guid)), return_exceptions=True
    )
    racing.barrier = None
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], VersionConflict)
    assert "was not carried out" in lost[0].message

    after = await _stored(uow_factory, guid)
    assert after.row_version == before.row_version + 1
    expected = 3 if command is StepForward else 1
    assert len(after.state.snapshots) == expected
    # forward: Notify ran and the instance completed (3 of 3); backward: paused before Auto Approve again
    assert won[0]["progress"]["current"] == (3 if command is StepForward else 2)
    steps = await _step_events(bus, guid)
    kind = "StepForward" if command is StepForward else "StepBackward"
    assert steps.count(kind) == (3 if command is StepForward else 1)


async def test_a_burst_of_step_forwards_takes_one_step_per_success(uow_factory: PostgresUnitOfWorkFactory) -> None:
    bus = Bus(HANDLERS, Deps(uow=uow_factory, clock=SystemClock(), ids=UuidIds()))
    guid = await _supervised_loan(bus)
    outcomes = await asyncio.gather(*[_send(bus, StepForward(instance_guid=guid)) for _ in range(4)],
                                    return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, dict)]
    assert won, outcomes
    # a loser is refused: it lost the race, or came after the instance had finished
    assert all(isinstance(o, dict | VersionConflict | InvalidStateForCommand) for o in outcomes), outcomes
    after = await _stored(uow_factory, guid)
    assert len(after.state.snapshots) == len(won)
    assert sorted(w["previousTask"]["taskId"] for w in won) == sorted(
        s.task_id for s in after.state.snapshots)
    assert (await _step_events(bus, guid)).count("StepForward") == len(won)
