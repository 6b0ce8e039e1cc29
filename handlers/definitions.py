"""Handlers for deploying, reading, listing, updating and deleting process definitions."""

from __future__ import annotations

import msgspec

from commands.definitions import (
    CreateProcessDefinition,
    DeleteProcessDefinition,
    GetProcessDefinitionById,
    GetProcessDefinitionList,
    UpdateProcessDefinition,
)
from domain import engine
from domain.definition_loader import load_definition
from domain.errors import InvalidStateForCommand
from domain.model import Definition
from handlers.bus import Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import BadCommandData, DefinitionNotFound, VersionConflict
from handlers.instance_steps import persist_side_records, record_from
from handlers.ports import DefinitionFilter, DefinitionRecord, NewDefinition, Page, UnitOfWork
from handlers.views import definition_view, paged


def _deployed(record: DefinitionRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "processKey": record.process_key,
        "name": record.name,
        "version": record.version,
        "processes": record.processes,
        "elementCounts": record.element_counts,
    }


def _new_definition(
    ctx: RequestContext, deps: Deps, definition: Definition, xml: str, *, name: str | None,
    description: str | None, category: str | None, is_active: bool, metadata: dict[str, object] | None,
) -> NewDefinition:
    main = definition.process()
    return NewDefinition(
        tenant_id=ctx.tenant_id,
        process_key=main.id,
        name=name or main.name or main.id,
        bpmn_xml=xml,
        processes=list(definition.executable_processes),
        element_counts=dict(definition.element_counts),
        description=description,
        category=category,
        is_active=is_active,
        metadata=metadata,
        created_at=deps.clock.now(),
    )


async def _get(uow: UnitOfWork, ctx: RequestContext, definition_id: int) -> DefinitionRecord:
    record = await uow.definitions.get(ctx.tenant_id, definition_id)
    if record is None:
        raise DefinitionNotFound()
    return record


async def create_definition(cmd: CreateProcessDefinition, ctx: RequestContext, deps: Deps) -> Reply:
    definition = load_definition(cmd.bpmn_xml)  # validates before anything is stored
    new = _new_definition(ctx, deps, definition, cmd.bpmn_xml, name=cmd.name, description=cmd.description,
                          category=cmd.category, is_active=cmd.is_active, metadata=cmd.metadata)
    async with deps.uow() as uow:
        record = await uow.definitions.add(new)
        await uow.commit()
    deps.definitions.put(record.id, definition)
    return Reply("Process definition deployed successfully", _deployed(record))


async def update_definition(cmd: UpdateProcessDefinition, ctx: RequestContext, deps: Deps) -> Reply:
    async with deps.uow() as uow:
        current = await _get(uow, ctx, cmd.id)
        active = await uow.instances.count_active(ctx.tenant_id, current.id)
        if cmd.bpmn_xml is None:
            changed = _with_meta(current, cmd, deps)
            await uow.definitions.update_meta(changed)
            await uow.commit()
            data = {**_deployed(changed), "previousVersion": current.version, "activeInstances": active}
            return Reply("Process definition updated successfully", data)
        definition = load_definition(cmd.bpmn_xml)
        if definition.main_process != current.process_key:
            raise BadCommandData(
                f"The document's process '{definition.main_process}' does not match the definition's "
                f"process key '{current.process_key}'; deploy it as a new definition instead.",
                path="$.data.bpmnXml",
            )
        new = _new_definition(
            ctx, deps, definition, cmd.bpmn_xml,
            name=cmd.name or current.name,
            description=cmd.description if cmd.description is not None else current.description,
            category=cmd.category if cmd.category is not None else current.category,
            is_active=cmd.is_active if cmd.is_active is not None else current.is_active,
            metadata=current.metadata,
        )
        record = await uow.definitions.add(new)
        await uow.commit()
    deps.definitions.put(record.id, definition)
    data = {**_deployed(record), "previousVersion": current.version, "activeInstances": active}
    return Reply("Process definition updated successfully", data)


def _with_meta(current: DefinitionRecord, cmd: UpdateProcessDefinition, deps: Deps) -> DefinitionRecord:
    return msgspec.structs.replace(
        current,
        name=cmd.name or current.name,
        description=cmd.description if cmd.description is not None else current.description,
        category=cmd.category if cmd.category is not None else current.category,
        is_active=cmd.is_active if cmd.is_active is not None else current.is_active,
        updated_at=deps.clock.now(),
    )


async def get_definition(cmd: GetProcessDefinitionById, ctx: RequestContext, deps: Deps) -> Reply:
    async with deps.uow() as uow:
        record = await _get(uow, ctx, cmd.id)
        data = definition_view(record, include_xml=cmd.include_xml)
        if cmd.include_statistics:
            data["statistics"] = {"activeInstances": await uow.instances.count_active(ctx.tenant_id, record.id)}
    return Reply("Process definition retrieved successfully", data)


async def list_definitions(cmd: GetProcessDefinitionList, ctx: RequestContext, deps: Deps) -> Reply:
    filt = DefinitionFilter(
        search_text=cmd.search_text,
        category=cmd.category,
        is_active=cmd.is_active,
        sort_by=cmd.sort_by,
        sort_descending=cmd.sort_direction.lower() == "desc",
    )
    async with deps.uow() as uow:
        items, total = await uow.definitions.list(ctx.tenant_id, filt, Page(number=cmd.page_number, size=cmd.page_size))
    data = paged([definition_view(r) for r in items], total, cmd.page_number, cmd.page_size)
    return Reply("Process definitions retrieved successfully", data)


async def delete_definition(cmd: DeleteProcessDefinition, ctx: RequestContext, deps: Deps) -> Reply:
    async with deps.uow() as uow:
        record = await _get(uow, ctx, cmd.id)
        active = await uow.instances.count_active(ctx.tenant_id, record.id)
        if active and not cmd.force:
            raise InvalidStateForCommand(
                f"Process definition {record.id} has {active} active instance(s); "
                "cancel them first or delete with force=true.",
                details={"activeInstances": active},
            )
        if active:
            await _cancel_instances_of(uow, ctx, deps, record)
        await uow.definitions.delete(ctx.tenant_id, record.id)
        await uow.commit()
    return Reply("Process definition deleted successfully", {"id": record.id, "cancelledInstances": active})


async def _cancel_instances_of(uow: UnitOfWork, ctx: RequestContext, deps: Deps, record: DefinitionRecord) -> None:
    """A forced delete cancels the definition's live instances in the same transaction, so none is
    left running on a definition that no longer exists."""
    definition = deps.definitions.get(record)
    now = deps.clock.now()
    reason = f"Process definition {record.id} was deleted."
    for instance in await uow.instances.active_for_definition(ctx.tenant_id, record.id):
        transition = engine.cancel(definition, instance.state, reason=reason, actor=ctx.actor, now=now, ids=deps.ids)
        if not await uow.instances.save(record_from(instance, transition, now), instance.row_version):
            raise VersionConflict(
                f"Instance '{instance.instance_guid}' changed while its definition was being deleted; try again."
            )
        await persist_side_records(uow, ctx.tenant_id, instance.instance_guid, transition, now)
