"""The loan approval model, deployed for the demo tenant the first time flowcore starts."""

from __future__ import annotations

import logging
from importlib import resources

from commands.definitions import CreateProcessDefinition
from domain.errors import DomainError
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
    try:
        await bus.dispatch(command, RequestContext(tenant_id=tenant_id, request_id="startup-demo"))
    except DomainError as exc:
        # A demo that cannot be deployed must not keep real tenants from being served.
        log.error("the loan approval example was refused for tenant %s: %s %s", tenant_id, exc.message,
                  exc.details or "")
        return False
    log.info("deployed the loan approval example for tenant %s", tenant_id)
    return True
