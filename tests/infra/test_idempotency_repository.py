from __future__ import annotations

from datetime import datetime, timedelta

from handlers.ports import StoredResponse
from infra.idempotency_repository import PostgresIdempotencyRepository
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import T0

FIRST = StoredResponse(request_hash="h1", status_code="00", http_status=200, body=b'{"statusCode":"00","x":"\xc3\xa9"}')
SECOND = StoredResponse(request_hash="h2", status_code="99", http_status=409, body=b"\x00binary\xff")


async def put(
    uow_factory: PostgresUnitOfWorkFactory, tenant: str, key: str, response: StoredResponse, at: datetime
) -> None:
    async with uow_factory() as uow:
        await uow.idempotency.put(tenant, key, response, at)
        await uow.commit()


async def test_stored_response_is_returned_within_its_lifetime(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    await put(uow_factory, "acme", "k1", FIRST, T0)
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k1", T0) == FIRST
        assert await uow.idempotency.get("acme", "k1", T0 + timedelta(hours=23, minutes=59)) == FIRST
        assert await uow.idempotency.get("acme", "k1", T0 + timedelta(hours=24)) is None
        assert await uow.idempotency.get("acme", "k2", T0) is None


async def test_the_first_live_response_wins_and_an_expired_one_is_replaced(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    await put(uow_factory, "acme", "k1", FIRST, T0)
    await put(uow_factory, "acme", "k1", SECOND, T0 + timedelta(hours=1))
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k1", T0 + timedelta(hours=2)) == FIRST
    later = T0 + timedelta(hours=25)
    await put(uow_factory, "acme", "k1", SECOND, later)
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k1", later) == SECOND


async def test_keys_are_per_tenant(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await put(uow_factory, "acme", "k1", FIRST, T0)
    async with uow_factory() as uow:
        assert await uow.idempotency.get("globex", "k1", T0) is None
    await put(uow_factory, "globex", "k1", SECOND, T0)
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k1", T0) == FIRST
        assert await uow.idempotency.get("globex", "k1", T0) == SECOND


async def test_prune_deletes_only_expired_entries(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await put(uow_factory, "acme", "old", FIRST, T0)
    await put(uow_factory, "globex", "old", FIRST, T0)
    await put(uow_factory, "acme", "fresh", SECOND, T0 + timedelta(hours=20))
    now = T0 + timedelta(hours=30)
    async with uow_factory() as uow:
        assert isinstance(uow.idempotency, PostgresIdempotencyRepository)
        assert await uow.idempotency.prune(now) == 2
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "fresh", now) == SECOND
        # pruned rows are gone even when asked at a time they would have been alive
        assert await uow.idempotency.get("acme", "old", T0) is None
