"""Commands sent through a bus as one tenant: the steps the job tests on fakes and on PostgreSQL share."""

from __future__ import annotations

from typing import Any

from commands.base import Command
from commands.definitions import CreateProcessDefinition
from commands.instances import GetProcessInstanceState, StartProcessInstance
from handlers.bus import Bus, Reply, RequestContext


class BusDriver:
    bus: Bus
    ctx: RequestContext

    async def send(self, command: Command) -> Any:
        reply = await self.bus.dispatch(command, self.ctx)
        assert isinstance(reply, Reply)
        return reply.data

    async def start(self, xml: str, variables: dict[str, Any] | None = None) -> str:
        """Deploy `xml` and start it; the new instance's guid."""
        deployed = await self.send(CreateProcessDefinition(bpmn_xml=xml))
        started = await self.send(StartProcessInstance(id=deployed["id"], variables=variables or {}))
        return str(started["instanceGuid"])

    async def state(self, guid: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.send(GetProcessInstanceState(instance_guid=guid))
        return data
