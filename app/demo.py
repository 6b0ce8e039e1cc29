"""The loan approval model, deployed for the demo tenant the first time flowcore starts."""

from __future__ import annotations

import logging
from importlib import resources

from commands.definitions import CreateProcessDefinition
from handlers.bus import Bus, RequestContext
from handlers.ports import DefinitionFilter, Page

log = logging.getLogger("flowcore.demo")


def loan_approval_xml() -> str:
    return resources.files("app").joinpath("examples", "loan_approval.bpmn").read_text(encoding="utf-8")


async def deploy_demo(bus: Bus, tenant_id: str) -> bool:
    """Deploy the example unless the tenant already has any definition; True when deployed."""
    async with bus.deps.uow() as uow:
        _, total = await uow.definitions.list(tenant_id, DefinitionFilter(), Page(number=1, size=1))
    if total:
        return False
    command = CreateProcessDefinition(bpmn_xml=loan_approval_xml(), category="Examples")
    reply = await bus.dispatch(command, RequestContext(tenant_id=tenant_id, request_id="startup-demo"))
    log.info("deployed the loan approval example for tenant %s: %s", tenant_id, reply.message)
    return True
