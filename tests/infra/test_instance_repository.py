from __future__ import annotations

import asyncio

import msgspec
import pytest

from domain.state import HistoryEvent, InstanceStatus, Token
from handlers.ports import DuplicateInstance, InstanceFilter, InstanceRecord, LatestGuard, Page, StaleDefinition
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import at, instance, new_definition


async def add(uow_factory: PostgresUnitOfWorkFactory, *records: InstanceRecord) -> None:
    async with uow_factory() as uow:
        for record in records:
            await uow.instances.add(record)
        await uow.commit()


async def load(uow_factory: PostgresUnitOfWorkFactory, guid: str, tenant: str = "acme") -> InstanceRecord | None:
    async with uow_factory() as uow:
        return await uow.instances.get(tenant, guid)


async def test_add_and_get_round_trip_state_and_columns(uow_factory: PostgresUnitOfWorkFactory) -> None:
    record = instance(
        "i-1",
        business_key="LOAN-1",
        correlation_key="corr-1",
        context_type="customer",
        context_id={"id": 7, "kind": ["vip"]},
        completed_at=at(3),
    )
    await add(uow_factory, record)
    assert await load(uow_factory, "i-1") == record


async def test_duplicate_guid_raises_and_keeps_the_transaction_usable(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    await add(uow_factory, instance("i-1"))
    async with uow_factory() as uow:
        with pytest.raises(DuplicateInstance):
            await uow.instances.add(instance("i-1", business_key="second"))
        await uow.instances.add(instance("i-2"))
        await uow.commit()
    first = await load(uow_factory, "i-1")
    assert first is not None and first.business_key is None
    assert await load(uow_factory, "i-2") is not None
    # the same guid in another tenant is a different instance
    await add(uow_factory, instance("i-1", tenant="globex"))


async def test_save_is_compare_and_set_on_row_version(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(uow_factory, instance("i-1"))
    loaded = await load(uow_factory, "i-1")
    assert loaded is not None
    state = msgspec.structs.replace(
        loaded.state,
        status=InstanceStatus.COMPLETED,
        variables={"approved": True},
        tokens=[Token(id=1, uuid="x", current_node_id="end")],
    )
    winner = msgspec.structs.replace(
        loaded, state=state, status="completed", completed_at=at(9), updated_at=at(9), row_version=2
    )
    loser = msgspec.structs.replace(loaded, business_key="late", row_version=2)
    async with uow_factory() as uow:
        assert await uow.instances.save(winner, expected_row_version=1) is True
        assert await uow.instances.save(loser, expected_row_version=1) is False
        await uow.commit()
    stored = await load(uow_factory, "i-1")
    assert stored == winner
    assert stored is not None and stored.row_version == 2
    async with uow_factory() as uow:
        again = msgspec.structs.replace(winner, business_key="third", row_version=3)
        assert await uow.instances.save(again, expected_row_version=2) is True
        await uow.commit()
    third = await load(uow_factory, "i-1")
    assert third is not None and (third.row_version, third.business_key) == (3, "third")


async def test_racing_saves_only_one_wins(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(uow_factory, instance("i-1"))
    all_read = asyncio.Barrier(3)

    async def attempt(n: int) -> bool:
        async with uow_factory() as uow:
            record = await uow.instances.get("acme", "i-1")
            assert record is not None
            changed = msgspec.structs.replace(record, business_key=f"writer-{n}", row_version=record.row_version + 1)
            await all_read.wait()  # every writer has read row version 1
            won = await uow.instances.save(changed, record.row_version)
            await uow.commit()
            return won

    results = await asyncio.gather(*(attempt(n) for n in range(3)))
    assert results.count(True) == 1
    stored = await load(uow_factory, "i-1")
    assert stored is not None and stored.row_version == 2
    assert stored.business_key == f"writer-{results.index(True)}"


async def test_get_for_update_locks_the_row(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(uow_factory, instance("i-1"))
    async with uow_factory() as holder:
        assert await holder.instances.get("acme", "i-1", for_update=True) is not None
        async with uow_factory() as other:
            waiting = asyncio.ensure_future(other.instances.get("acme", "i-1", for_update=True))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await holder.commit()
            assert await asyncio.wait_for(waiting, 5) is not None


async def test_list_filters_and_pages_newest_first(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(
        uow_factory,
        instance("a", started_at=at(1), business_key="B-1"),
        instance("b", started_at=at(2), status="completed"),
        instance("c", started_at=at(3), key="claim", execution_mode="Supervised"),
        instance("d", started_at=at(4), status="error", business_key="B-1"),
        instance("e", started_at=at(5)),
    )

    async def guids(filt: InstanceFilter, page: Page | None = None) -> tuple[list[str], int]:
        async with uow_factory() as uow:
            items, total = await uow.instances.list("acme", filt, page or Page())
        return [r.instance_guid for r in items], total

    assert await guids(InstanceFilter()) == (["e", "d", "c", "b", "a"], 5)
    assert await guids(InstanceFilter(process_key="loan")) == (["e", "d", "b", "a"], 4)
    assert await guids(InstanceFilter(status="completed")) == (["b"], 1)
    assert await guids(InstanceFilter(business_key="B-1")) == (["d", "a"], 2)
    assert await guids(InstanceFilter(execution_mode="Supervised")) == (["c"], 1)
    assert await guids(InstanceFilter(started_after=at(2), started_before=at(4))) == (["c", "b"], 2)
    assert await guids(InstanceFilter(), Page(number=2, size=2)) == (["c", "b"], 5)
    assert await guids(InstanceFilter(), Page(number=9, size=2)) == ([], 5)


async def test_count_active_counts_live_instances_of_one_definition(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    await add(
        uow_factory,
        instance("a", definition_id=1, status="running"),
        instance("b", definition_id=1, status="waiting"),
        instance("c", definition_id=1, status="error"),
        instance("d", definition_id=1, status="completed"),
        instance("e", definition_id=1, status="cancelled"),
        instance("f", definition_id=2, status="running"),
        instance("g", definition_id=1, status="running", tenant="globex"),
    )
    async with uow_factory() as uow:
        assert await uow.instances.count_active("acme", 1) == 3
        assert await uow.instances.count_active("acme", 2) == 1
        assert await uow.instances.count_active("acme", 3) == 0
        live = await uow.instances.active_for_definition("acme", 1)
        assert sorted(r.instance_guid for r in live) == ["a", "b", "c"]
        assert [r.instance_guid for r in await uow.instances.active_for_definition("globex", 1)] == ["g"]


async def test_by_correlation_key_prefers_the_live_instance(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(
        uow_factory,
        instance("old-live", correlation_key="order-9", started_at=at(1)),
        instance("new-done", correlation_key="order-9", started_at=at(2), status="completed"),
        instance("other", correlation_key="order-10", started_at=at(3)),
    )
    async with uow_factory() as uow:
        found = await uow.instances.by_correlation_key("acme", "order-9")
        assert found is not None and found.instance_guid == "old-live"
        assert await uow.instances.by_correlation_key("acme", "order-11") is None


async def test_tenants_never_see_each_others_instances(uow_factory: PostgresUnitOfWorkFactory) -> None:
    mine = instance("i-1", correlation_key="c-1", business_key="B")
    await add(uow_factory, mine)
    async with uow_factory() as uow:
        assert await uow.instances.get("globex", "i-1") is None
        assert await uow.instances.get("globex", "i-1", for_update=True) is None
        assert await uow.instances.list("globex", InstanceFilter(), Page()) == ([], 0)
        assert await uow.instances.list("globex", InstanceFilter(business_key="B"), Page()) == ([], 0)
        assert await uow.instances.count_active("globex", 1) == 0
        assert await uow.instances.active_for_definition("globex", 1) == []
        assert await uow.instances.by_correlation_key("globex", "c-1") is None
        stolen = msgspec.structs.replace(mine, tenant_id="globex", business_key="stolen")
        assert await uow.instances.save(stolen, expected_row_version=1) is False
        await uow.commit()
    assert await load(uow_factory, "i-1") == mine


async def test_add_with_history_stores_the_instance_and_every_event_field(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    record = instance("i-1", context_id={"id": 7})
    events = [
        HistoryEvent(
            seq=1, event_type="TaskFailed", at=at(1), node_id="review", node_name="Review", node_type="userTask",
            token_id=3, actor="ada", comment="looks wrong", data={"error": {"code": "E1"}, "list": [1, None, "x"]},
        ),
        HistoryEvent(seq=2, event_type="InstanceStarted", at=at(2.5)),
    ]
    async with uow_factory() as uow:
        await uow.instances.add_with_history(record, events)
        await uow.commit()
    assert await load(uow_factory, "i-1") == record
    async with uow_factory() as uow:
        stored, total = await uow.history.page("acme", "i-1", Page())
        other_tenant, other_total = await uow.history.page("globex", "i-1", Page())
    assert total == 2 and stored == events[::-1]
    assert (other_tenant, other_total) == ([], 0)


async def test_add_with_history_of_a_duplicate_guid_writes_nothing(uow_factory: PostgresUnitOfWorkFactory) -> None:
    first = HistoryEvent(seq=1, event_type="InstanceStarted", at=at(1))
    async with uow_factory() as uow:
        await uow.instances.add_with_history(instance("i-1"), [first])
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(DuplicateInstance):
            await uow.instances.add_with_history(
                instance("i-1", business_key="second"),
                [HistoryEvent(seq=5, event_type="TaskCompleted", at=at(2))],
            )
        # the same guid in another tenant is a different instance, with its own history
        await uow.instances.add_with_history(instance("i-1", tenant="globex"), [first])
        await uow.commit()
    kept = await load(uow_factory, "i-1")
    assert kept is not None and kept.business_key is None
    async with uow_factory() as uow:
        acme, _ = await uow.history.page("acme", "i-1", Page())
        globex, _ = await uow.history.page("globex", "i-1", Page())
    assert acme == [first] and globex == [first]
    assert await load(uow_factory, "i-1", tenant="globex") is not None


async def test_a_write_guarded_on_the_latest_definition_happens_only_while_it_is(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    async with uow_factory() as uow:
        v1 = await uow.definitions.add(new_definition(name="Loan"))
        for _ in range(2):  # another tenant's newer versions never count
            await uow.definitions.add(new_definition(tenant="globex", name="Loan"))
        await uow.commit()
    started = HistoryEvent(seq=1, event_type="InstanceStarted", at=at(1))
    guard = LatestGuard(process_key="loan", definition_id=v1.id, name="Loan")
    refused = [
        LatestGuard(process_key="loan", definition_id=v1.id, name="Renamed"),
        LatestGuard(process_key="other", definition_id=v1.id, name="Loan"),
    ]
    async with uow_factory() as uow:
        await uow.instances.add_with_history(instance("i-1"), [started], latest=guard)
        for n, stale in enumerate(refused):
            with pytest.raises(StaleDefinition):
                await uow.instances.add_with_history(instance(f"x-{n}"), [started], latest=stale)
        v2 = await uow.definitions.add(new_definition(name="Loan"))
        with pytest.raises(StaleDefinition):
            await uow.instances.add_with_history(instance("i-2"), [started], latest=guard)
        await uow.definitions.update_meta(msgspec.structs.replace(v2, is_active=False))
        with pytest.raises(StaleDefinition):
            await uow.instances.add_with_history(
                instance("i-3"), [started], latest=LatestGuard(process_key="loan", definition_id=v2.id, name="Loan")
            )
        await uow.commit()
    assert await load(uow_factory, "i-1") is not None
    for guid in ("x-0", "x-1", "i-2", "i-3"):
        assert await load(uow_factory, guid) is None
    async with uow_factory() as uow:
        assert await uow.history.page("acme", "i-2", Page()) == ([], 0)
