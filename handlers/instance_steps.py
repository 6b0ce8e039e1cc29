"""Load an instance, run one engine transition, save it compare-and-set, retrying lost races."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from domain.engine import ProcessLookup
from domain.model import Definition
from domain.state import InstanceState
from domain.transition import Transition
from handlers.bus import RequestContext
from handlers.called_processes import CalledProcesses, preload_called_processes
from handlers.deps import Deps
from handlers.errors import InstanceNotFound, VersionConflict
from handlers.ports import DefinitionRecord, InstanceRecord, UnitOfWork

# (definition, current state, now, lookup) -> transition; raises a DomainError to refuse.
Step = Callable[[Definition, InstanceState, datetime, ProcessLookup], Transition]


@dataclass(frozen=True, slots=True)
class Applied:
    record: InstanceRecord
    definition: Definition
    transition: Transition
    called: CalledProcesses


def record_from(previous: InstanceRecord, transition: Transition, now: datetime) -> InstanceRecord:
    state = transition.state
    return msgspec.structs.replace(
        previous,
        state=state,
        status=str(state.status),
        execution_mode=str(state.execution_mode),
        updated_at=now,
        completed_at=state.completed_at,
        row_version=previous.row_version + 1,
    )


async def load_definition_of(
    uow: UnitOfWork, deps: Deps, record: InstanceRecord
) -> tuple[DefinitionRecord, Definition]:
    stored = await uow.definitions.get(record.tenant_id, record.definition_id)
    if stored is None:
        # The instance outlived its definition (deleted with force): nothing can run it any more.
        raise InstanceNotFound(record.instance_guid)
    return stored, deps.definitions.get(stored)


async def apply_step(
    deps: Deps, ctx: RequestContext, instance_guid: str, step: Step, *, retry_on_conflict: bool = True
) -> Applied:
    """Run `step` on fresh state; a lost compare-and-set retries on the state that won.

    Without `retry_on_conflict` a lost race is answered with VersionConflict at once: a supervised
    step run again on the winner's state would be a second step the operator never asked for."""
    attempts = deps.max_conflict_retries + 1 if retry_on_conflict else 1
    for _ in range(attempts):
        async with deps.uow() as uow:
            record = await uow.instances.get(ctx.tenant_id, instance_guid)
            if record is None:
                raise InstanceNotFound(instance_guid)
            _, definition = await load_definition_of(uow, deps, record)
            called = await preload_called_processes(
                uow, deps, ctx.tenant_id, definition, record.state.called_definitions
            )
            now = deps.clock.now()
            transition = step(definition, record.state, now, called.lookup)
            called.pin(transition.state)
            updated = record_from(record, transition, now)
            if not await uow.instances.save(updated, record.row_version):
                continue  # leaving the block without commit rolls back
            await persist_side_records(uow, ctx.tenant_id, instance_guid, transition, now)
            await uow.commit()
            return Applied(updated, definition, transition, called)
    if not retry_on_conflict:
        raise VersionConflict(
            f"Process instance '{instance_guid}' was changed by another command meanwhile; this command "
            "was not carried out. Read the new state before sending it again.",
            details={"instanceGuid": instance_guid},
        )
    raise VersionConflict(
        f"Process instance '{instance_guid}' was changed by another command; try again.",
        details={"instanceGuid": instance_guid},
    )


async def persist_side_records(
    uow: UnitOfWork, tenant_id: str, instance_guid: str, transition: Transition, now: datetime
) -> None:
    if transition.events:
        await uow.history.append(tenant_id, instance_guid, transition.events)
    if transition.effects:
        await uow.jobs.enqueue(tenant_id, instance_guid, transition.effects, now)
