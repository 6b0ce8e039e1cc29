"""StartProcessInstanceCommand: find the definition, gather the variables, run to the first wait state."""

from __future__ import annotations

from typing import Any

from commands.instances import EmbeddedJsonError, StartProcessInstance
from domain import engine
from domain.model import Definition
from domain.state import ExecutionMode
from handlers.bus import Reply, RequestContext
from handlers.called_processes import CalledProcesses, preload_called_processes
from handlers.deps import Deps
from handlers.errors import BadCommandData, DefinitionNotFound, DuplicateInstanceGuid, InstanceNotFound
from handlers.latest_definitions import guard_for
from handlers.ports import (
    DefinitionRecord,
    DuplicateInstance,
    InstanceRecord,
    LatestGuard,
    StaleDefinition,
    UnitOfWork,
)
from handlers.views import instance_view


async def _find_definition(uow: UnitOfWork, ctx: RequestContext, cmd: StartProcessInstance) -> DefinitionRecord:
    record: DefinitionRecord | None = None
    if cmd.id is not None:
        record = await uow.definitions.get(ctx.tenant_id, cmd.id)
    elif cmd.process_key is not None:
        if cmd.version is not None:
            record = await uow.definitions.by_version(ctx.tenant_id, cmd.process_key, cmd.version)
        else:
            record = await uow.definitions.latest(ctx.tenant_id, cmd.process_key)
            if record is None:
                # A key may name a second executable process inside another deployed document.
                record = await uow.definitions.find_process(ctx.tenant_id, cmd.process_key)
    else:
        raise BadCommandData("Either processKey or id is required.", path="$.data.processKey")
    if record is None or not record.is_active:
        raise DefinitionNotFound()
    return record


def _start_variables(cmd: StartProcessInstance) -> dict[str, Any]:
    try:
        return cmd.start_variables()
    except EmbeddedJsonError as exc:
        raise BadCommandData(str(exc), path=exc.path) from None


async def _inherited(uow: UnitOfWork, ctx: RequestContext, cmd: StartProcessInstance) -> dict[str, Any]:
    if cmd.inherit_from is None:
        return {}
    source = await uow.instances.get(ctx.tenant_id, cmd.inherit_from.instance_guid)
    if source is None:
        raise InstanceNotFound(cmd.inherit_from.instance_guid)
    values = source.state.variables
    names = cmd.inherit_from.variables
    return dict(values) if names is None else {n: values[n] for n in names if n in values}


def _latest_key(cmd: StartProcessInstance) -> str | None:
    """The process key, when the command names the definition by it alone (its latest version)."""
    return cmd.process_key if cmd.id is None and cmd.version is None else None


async def start_instance(cmd: StartProcessInstance, ctx: RequestContext, deps: Deps) -> Reply:
    key = _latest_key(cmd)
    async with deps.uow() as uow:
        # Plain reads, then one atomic write (plus jobs, which open a transaction first): without
        # effects the start needs no BEGIN and COMMIT of its own.
        uow.autocommit()
        known = deps.latest_definitions.get(ctx.tenant_id, key) if key is not None else None
        started: _Started | None = None
        if key is not None and known is not None:
            try:
                started = await _start(uow, ctx, cmd, deps, known, guard_for(key, known))
            except StaleDefinition:
                deps.latest_definitions.forget(ctx.tenant_id, key)
        if started is None:
            stored = await _find_definition(uow, ctx, cmd)
            started = await _start(uow, ctx, cmd, deps, stored, None)
            if key is not None and stored.process_key == key:  # found as the latest version of key
                deps.latest_definitions.put(ctx.tenant_id, key, stored)
    record, definition, called = started
    data = instance_view(record, definition, now=record.started_at, lookup=called.lookup)
    return Reply("Process instance started successfully", data)


_Started = tuple[InstanceRecord, Definition, CalledProcesses]


async def _start(
    uow: UnitOfWork, ctx: RequestContext, cmd: StartProcessInstance, deps: Deps, stored: DefinitionRecord,
    latest: LatestGuard | None,
) -> _Started:
    """Run the new instance to its first wait state and store it; with `latest`, only if `stored` is
    still the latest version of its key (else StaleDefinition, having stored nothing)."""
    definition = deps.definitions.get(stored)
    process_key = cmd.process_key if cmd.process_key in definition.processes else None
    process_key = process_key or definition.main_process
    variables = {**await _inherited(uow, ctx, cmd), **_start_variables(cmd)}
    called = await preload_called_processes(uow, deps, ctx.tenant_id, definition)
    now = deps.clock.now()
    guid = cmd.instance_guid or deps.ids.new_id()
    transition = engine.start(
        definition,
        instance_guid=guid,
        variables=variables,
        now=now,
        ids=deps.ids,
        process_key=process_key,
        start_node_id=cmd.start_node_id,
        start_condition=cmd.start_condition,
        execution_mode=ExecutionMode(cmd.execution_mode),
        actor=ctx.actor,
        limits=deps.limits,
        lookup=called.lookup,
    )
    state = transition.state
    called.pin(state)
    record = InstanceRecord(
        instance_guid=guid,
        tenant_id=ctx.tenant_id,
        definition_id=stored.id,
        process_key=process_key,
        process_name=definition.processes[process_key].name or stored.name,
        definition_version=stored.version,
        status=str(state.status),
        execution_mode=str(state.execution_mode),
        state=state,
        row_version=1,
        business_key=cmd.business_key,
        correlation_key=cmd.business_key,
        context_type=cmd.context_type,
        context_id=cmd.context_id,
        started_at=now,
        updated_at=now,
        completed_at=state.completed_at,
    )
    if transition.effects:
        await uow.begin()  # the jobs commit with the instance, or neither does
    try:
        await uow.instances.add_with_history(record, transition.events, latest=latest)
    except DuplicateInstance:
        raise DuplicateInstanceGuid(
            f"Process instance '{guid}' already exists.", details={"instanceGuid": guid}
        ) from None
    if transition.effects:
        await uow.jobs.enqueue(ctx.tenant_id, guid, transition.effects, now)
    await uow.commit()
    return record, definition, called
