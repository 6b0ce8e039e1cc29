"""The ASGI app wired to an in-memory bus: a container that brings its own Bus skips storage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import punq
from starlette.applications import Starlette

from app.factory import create_app
from app.lifecycle import ReadinessProbe
from commands.base import Command
from handlers.bus import Bus, Handler
from handlers.deps import Deps
from handlers.ports import UnitOfWorkFactory
from infra.settings import Settings
from tests.handlers.fakes import CountingIds, FakeUnitOfWork, FixedClock, Store

TENANT = "bank-a"
JSON = {"content-type": "application/json", "x-tenant-id": TENANT}


@dataclass
class Probe:
    answer: bool = True

    async def __call__(self) -> bool:
        return self.answer


@dataclass
class Harness:
    app: Starlette
    store: Store
    probe: Probe
    clock: FixedClock
    calls: list[tuple[Command, str]] = field(default_factory=list)


def build(
    table: Mapping[type[Command], Handler], *, max_body_bytes: int = 1024 * 1024,
    demo_tenant: str | None = None,
) -> Harness:
    store, clock, probe = Store(), FixedClock(), Probe()
    deps = Deps(uow=cast(UnitOfWorkFactory, lambda: FakeUnitOfWork(store)), clock=clock, ids=CountingIds())
    container = punq.Container()
    container.register(Bus, instance=Bus(table, deps))
    container.register(ReadinessProbe, instance=probe)
    settings = Settings(max_body_bytes=max_body_bytes)
    app = create_app(settings, container=container, demo_tenant=demo_tenant)
    return Harness(app=app, store=store, probe=probe, clock=clock)


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, and a client speaking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flowcore.test") as client:
            yield client


def envelope(cmd: str, data: Any = None) -> dict[str, Any]:
    return {"cmd": cmd, "data": {} if data is None else data}
