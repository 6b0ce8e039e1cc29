"""Handlers that read an instance or move it on: state, list, history, signal, cancel, retry, skip."""

from __future__ import annotations

from typing import Any

import msgspec

from commands.instances import (
    CancelProcessInstance,
    EmbeddedJsonError,
    GetProcessInstanceHistory,
    GetProcessInstanceList,
    GetProcessInstanceState,
    RetryFailedTask,
    SignalProcessInstance,
    SkipFailedTask,
)
from domain import engine
from handlers.bus import Reply, RequestContext
from handlers.called_processes import preload_called_processes
from handlers.deps import Deps
from handlers.errors import BadCommandData, CorrelatedInstanceNotFound, InstanceNotFound
from handlers.instance_steps import Applied, apply_step, load_definition_of
from handlers.ports import InstanceFilter, Page
from handlers.views import applied_view, instance_summary, instance_view, paged


def _state_reply(message: str, applied: Applied, deps: Deps) -> Reply:
    return Reply(message, applied_view(applied, now=deps.clock.now()))


async def get_state(cmd: GetProcessInstanceState, ctx: RequestContext, deps: Deps) -> Reply:
    async with deps.uow() as uow:
        record = await uow.instances.get(ctx.tenant_id, cmd.instance_guid)
        if record is None:
            raise InstanceNotFound(cmd.instance_guid)
        _, definition = await load_definition_of(uow, deps, record)
        called = await preload_called_processes(uow, deps, ctx.tenant_id, definition, record.state.called_definitions)
    data = instance_view(record, definition, now=deps.clock.now(), lookup=called.lookup)
    return Reply("Process state retrieved successfully", data)


async def list_instances(cmd: GetProcessInstanceList, ctx: RequestContext, deps: Deps) -> Reply:
    filt = InstanceFilter(
        process_key=cmd.process_key,
        status=cmd.status,
        business_key=cmd.business_key,
        execution_mode=cmd.execution_mode,
        started_after=cmd.started_after,
        started_before=cmd.started_before,
    )
    async with deps.uow() as uow:
        items, total = await uow.instances.list(ctx.tenant_id, filt, Page(number=cmd.page_number, size=cmd.page_size))
    data = paged([instance_summary(r) for r in items], total, cmd.page_number, cmd.page_size)
    return Reply("Process instances retrieved successfully", data)


async def get_history(cmd: GetProcessInstanceHistory, ctx: RequestContext, deps: Deps) -> Reply:
    async with deps.uow() as uow:
        if await uow.instances.get(ctx.tenant_id, cmd.instance_guid) is None:
            raise InstanceNotFound(cmd.instance_guid)
        events, total = await uow.history.page(
            ctx.tenant_id, cmd.instance_guid, Page(number=cmd.page_number, size=cmd.page_size)
        )
    items = [msgspec.to_builtins(e) for e in events]
    return Reply("Process history retrieved successfully", paged(items, total, cmd.page_number, cmd.page_size))


def _signal_payload(cmd: SignalProcessInstance) -> dict[str, Any]:
    try:
        return cmd.payload()
    except EmbeddedJsonError as exc:
        raise BadCommandData(str(exc), path=exc.path) from None


async def _signal_target(cmd: SignalProcessInstance, ctx: RequestContext, deps: Deps) -> str:
    if cmd.instance_guid is not None:
        return cmd.instance_guid
    if cmd.correlation_key is None:
        raise BadCommandData("Either instanceGuid or correlationKey is required.", path="$.data.instanceGuid")
    async with deps.uow() as uow:
        record = await uow.instances.by_correlation_key(ctx.tenant_id, cmd.correlation_key)
    if record is None:
        raise CorrelatedInstanceNotFound(cmd.correlation_key)
    return record.instance_guid


async def signal_instance(cmd: SignalProcessInstance, ctx: RequestContext, deps: Deps) -> Reply:
    payload = _signal_payload(cmd)
    guid = await _signal_target(cmd, ctx, deps)
    actor = cmd.current_user or ctx.actor
    applied = await apply_step(
        deps, ctx, guid,
        lambda definition, state, now, lookup: engine.complete_task(
            definition, state, now=now, ids=deps.ids, result=payload, task_id=cmd.task_id,
            action=cmd.action, actor=actor, lookup=lookup, limits=deps.limits,
        ),
    )
    return _state_reply("Process instance signalled successfully", applied, deps)


async def cancel_instance(cmd: CancelProcessInstance, ctx: RequestContext, deps: Deps) -> Reply:
    actor = cmd.cancelled_by or ctx.actor
    applied = await apply_step(
        deps, ctx, cmd.instance_guid,
        lambda definition, state, now, lookup: engine.cancel(
            definition, state, reason=cmd.reason, actor=actor, now=now, ids=deps.ids
        ),
    )
    return _state_reply("Process instance cancelled successfully", applied, deps)


async def retry_failed_task(cmd: RetryFailedTask, ctx: RequestContext, deps: Deps) -> Reply:
    applied = await apply_step(
        deps, ctx, cmd.instance_guid,
        lambda definition, state, now, lookup: engine.retry_failed(
            definition, state, updated_variables=dict(cmd.updated_variables or {}), comment=cmd.comment,
            actor=ctx.actor, now=now, ids=deps.ids, lookup=lookup, limits=deps.limits,
        ),
    )
    return _state_reply("Failed task retried", applied, deps)


async def skip_failed_task(cmd: SkipFailedTask, ctx: RequestContext, deps: Deps) -> Reply:
    applied = await apply_step(
        deps, ctx, cmd.instance_guid,
        lambda definition, state, now, lookup: engine.skip_failed(
            definition, state, additional_data=dict(cmd.additional_data or {}), comment=cmd.comment,
            actor=ctx.actor, now=now, ids=deps.ids, lookup=lookup, limits=deps.limits,
        ),
    )
    return _state_reply("Failed task skipped", applied, deps)
