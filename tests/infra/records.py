"""Builders for the rows repository tests store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.state import InstanceState, InstanceStatus, Token
from handlers.ports import InstanceRecord, NewDefinition

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new_definition(tenant: str = "acme", key: str = "loan", **changes: Any) -> NewDefinition:
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "process_key": key,
        "name": f"{key} process",
        "bpmn_xml": f"<definitions id='{key}'/>",
        "processes": [key],
        "element_counts": {"task": 2, "startEvent": 1},
        "created_at": T0,
    }
    fields.update(changes)
    return NewDefinition(**fields)


def instance(
    guid: str,
    *,
    tenant: str = "acme",
    definition_id: int = 1,
    key: str = "loan",
    status: str = InstanceStatus.RUNNING.value,
    started_at: datetime = T0,
    **changes: Any,
) -> InstanceRecord:
    state = InstanceState(
        instance_guid=guid,
        process_key=key,
        status=InstanceStatus(status),
        variables={"amount": 1200, "applicant": {"name": "Ada"}},
        tokens=[Token(id=1, uuid=f"{guid}-t1", current_node_id="review")],
        started_at=started_at,
    )
    fields: dict[str, Any] = {
        "instance_guid": guid,
        "tenant_id": tenant,
        "definition_id": definition_id,
        "process_key": key,
        "process_name": f"{key} process",
        "definition_version": 1,
        "status": status,
        "execution_mode": "Unsupervised",
        "state": state,
        "row_version": 1,
        "started_at": started_at,
        "updated_at": started_at,
    }
    fields.update(changes)
    return InstanceRecord(**fields)
