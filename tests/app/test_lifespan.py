"""The lifespan on a real database: storage opened, demo deployed once, everything closed after."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import punq

from app.container import build_container
from app.factory import create_app
from infra.settings import Settings

LIST = {"cmd": "GetProcessDefinitionListQuery", "data": {}}


async def _demo_versions(settings: Settings, demo_tenant: str | None) -> tuple[list[int], punq.Container]:
    container = build_container(settings)
    app = create_app(settings, container=container, demo_tenant=demo_tenant)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flowcore.test") as client:
            assert (await client.get("/ready")).status_code == 200
            listed = (await client.post("/api/core/cmd", json=LIST, headers={"x-tenant-id": "demo"})).json()
    return [item["version"] for item in listed["data"]["items"]], container


async def test_demo_is_deployed_on_first_start_only_and_storage_is_closed(
    db_dsn: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=db_dsn, data_dir=tmp_path)
    first, container = await _demo_versions(settings, "demo")
    second, _ = await _demo_versions(settings, "demo")
    assert first == [1]
    assert second == [1]
    pool = container.resolve(asyncpg.Pool)
    assert pool.is_closing()


async def test_no_demo_tenant_deploys_nothing(db_dsn: str, tmp_path: Path) -> None:
    versions, _ = await _demo_versions(Settings(database_url=db_dsn, data_dir=tmp_path), None)
    assert versions == []
