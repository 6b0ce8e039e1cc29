"""The bus: an explicit table from command class to handler, read at a glance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from commands.base import Command
from handlers.deps import Deps
from handlers.errors import CommandNotAvailable


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking, on whose behalf, under which request id."""

    tenant_id: str
    request_id: str
    actor: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: the envelope's message and data (anything msgspec can encode)."""

    message: str
    data: Any = None


Handler = Callable[[Any, RequestContext, Deps], Awaitable[Reply]]


class Bus:
    def __init__(self, table: Mapping[type[Command], Handler], deps: Deps) -> None:
        self._table = dict(table)
        self._deps = deps

    @property
    def deps(self) -> Deps:
        return self._deps

    def handles(self, command_type: type[Command]) -> bool:
        return command_type in self._table

    async def dispatch(self, command: Command, ctx: RequestContext) -> Reply:
        handler = self._table.get(type(command))
        if handler is None:
            raise CommandNotAvailable(f"Command {type(command).__name__} is not available on this server.")
        return await handler(command, ctx, self._deps)
