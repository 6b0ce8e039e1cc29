"""Commands and queries on process definitions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from commands.base import Command, NonEmpty, PageNumber, PageSize

BpmnXml = Annotated[str, msgspec.Meta(min_length=1)]
DefinitionId = Annotated[int, msgspec.Meta(ge=1)]


class CreateProcessDefinition(Command, frozen=True):
    bpmn_xml: BpmnXml
    name: NonEmpty | None = None
    description: str | None = None
    category: str | None = None
    is_active: bool = True
    metadata: dict[str, Any] | None = None


class UpdateProcessDefinition(Command, frozen=True):
    id: DefinitionId
    bpmn_xml: BpmnXml | None = None
    name: NonEmpty | None = None
    description: str | None = None
    category: str | None = None
    is_active: bool | None = None


class GetProcessDefinitionById(Command, frozen=True):
    id: DefinitionId
    include_xml: bool = False
    include_statistics: bool = False


class GetProcessDefinitionList(Command, frozen=True):
    page_number: PageNumber = 1
    page_size: PageSize = 20
    search_text: str | None = None
    category: str | None = None
    is_active: bool | None = None
    sort_by: Literal["createdAt", "updatedAt", "name", "processKey", "version"] = "createdAt"
    sort_direction: Literal["asc", "desc", "ASC", "DESC"] = "desc"


class DeleteProcessDefinition(Command, frozen=True):
    id: DefinitionId
    force: bool = False
