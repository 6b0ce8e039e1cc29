from __future__ import annotations

import asyncio

import msgspec

from handlers.ports import DefinitionFilter, DefinitionRecord, NewDefinition, Page
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import at, new_definition


async def add(uow_factory: PostgresUnitOfWorkFactory, new: NewDefinition) -> DefinitionRecord:
    async with uow_factory() as uow:
        record = await uow.definitions.add(new)
        await uow.commit()
    return record


async def test_add_round_trips_every_field(uow_factory: PostgresUnitOfWorkFactory) -> None:
    new = new_definition(
        description="Approves loans",
        category="finance",
        is_active=False,
        metadata={"owner": "risk", "tags": ["a", "b"], "nested": {"n": 1.5}},
        processes=["loan", "loan_sub"],
    )
    added = await add(uow_factory, new)
    async with uow_factory() as uow:
        loaded = await uow.definitions.get("acme", added.id)
    expected = DefinitionRecord(id=added.id, version=1, updated_at=new.created_at, **msgspec.structs.asdict(new))
    assert added == expected
    assert loaded == expected


async def test_versions_count_per_tenant_and_key(uow_factory: PostgresUnitOfWorkFactory) -> None:
    versions = [
        (await add(uow_factory, new_definition(tenant=tenant, key=key))).version
        for tenant, key in [
            ("acme", "loan"),
            ("acme", "loan"),
            ("acme", "claim"),
            ("globex", "loan"),
            ("acme", "loan"),
        ]
    ]
    assert versions == [1, 2, 1, 1, 3]
    async with uow_factory() as uow:
        latest = await uow.definitions.latest("acme", "loan")
        second = await uow.definitions.by_version("acme", "loan", 2)
        missing = await uow.definitions.by_version("acme", "loan", 4)
    assert latest is not None and latest.version == 3
    assert second is not None and second.version == 2 and second.process_key == "loan"
    assert missing is None


async def test_concurrent_deploys_of_one_key_get_distinct_versions(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    records = await asyncio.gather(*(add(uow_factory, new_definition(name=f"n{i}")) for i in range(8)))
    assert sorted(r.version for r in records) == list(range(1, 9))


async def test_find_process_takes_latest_active_document_holding_the_process(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    old = await add(uow_factory, new_definition(key="bundle", processes=["billing", "shipping"], created_at=at(0)))
    newer = await add(uow_factory, new_definition(key="billing", processes=["billing"], created_at=at(5)))
    await add(uow_factory, new_definition(key="billing", processes=["billing"], is_active=False, created_at=at(9)))
    async with uow_factory() as uow:
        billing = await uow.definitions.find_process("acme", "billing")
        shipping = await uow.definitions.find_process("acme", "shipping")
        none = await uow.definitions.find_process("acme", "ship")
        other_tenant = await uow.definitions.find_process("globex", "billing")
    assert billing is not None and billing.id == newer.id
    assert shipping is not None and shipping.id == old.id
    assert none is None and other_tenant is None


async def test_update_meta_changes_only_descriptive_fields(uow_factory: PostgresUnitOfWorkFactory) -> None:
    added = await add(uow_factory, new_definition())
    changed = msgspec.structs.replace(
        added,
        name="Renamed",
        description="now described",
        category="ops",
        is_active=False,
        metadata={"k": "v"},
        updated_at=at(30),
        bpmn_xml="<ignored/>",
        version=99,
    )
    async with uow_factory() as uow:
        await uow.definitions.update_meta(changed)
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.definitions.get("acme", added.id)
    assert loaded is not None
    assert (loaded.name, loaded.description, loaded.category, loaded.is_active, loaded.metadata) == (
        "Renamed",
        "now described",
        "ops",
        False,
        {"k": "v"},
    )
    assert loaded.updated_at == at(30)
    assert (loaded.bpmn_xml, loaded.version, loaded.created_at) == (added.bpmn_xml, 1, added.created_at)


async def test_list_filters_sorts_and_pages(uow_factory: PostgresUnitOfWorkFactory) -> None:
    await add(uow_factory, new_definition(key="alpha", name="Alpha 100% sure", category="finance", created_at=at(1)))
    await add(uow_factory, new_definition(key="beta", name="Beta", category="finance", created_at=at(2)))
    await add(uow_factory, new_definition(key="gamma", name="Gamma", description="about alpha", created_at=at(3)))
    await add(uow_factory, new_definition(key="delta", name="Delta", is_active=False, created_at=at(4)))
    await add(uow_factory, new_definition(key="beta", name="Beta v2", category="finance", created_at=at(5)))

    async def keys(filt: DefinitionFilter, page: Page | None = None) -> tuple[list[tuple[str, int]], int]:
        async with uow_factory() as uow:
            items, total = await uow.definitions.list("acme", filt, page or Page(number=1, size=20))
        return [(d.process_key, d.version) for d in items], total

    assert await keys(DefinitionFilter()) == (
        [("beta", 2), ("delta", 1), ("gamma", 1), ("beta", 1), ("alpha", 1)],
        5,
    )
    assert await keys(DefinitionFilter(search_text="ALPHA")) == ([("gamma", 1), ("alpha", 1)], 2)
    assert await keys(DefinitionFilter(search_text="100%")) == ([("alpha", 1)], 1)
    assert await keys(DefinitionFilter(search_text="0%s")) == ([], 0)  # % is literal, not a wildcard
    assert await keys(DefinitionFilter(category="finance", sort_by="name", sort_descending=False)) == (
        [("alpha", 1), ("beta", 1), ("beta", 2)],
        3,
    )
    assert await keys(DefinitionFilter(is_active=False)) == ([("delta", 1)], 1)
    assert await keys(DefinitionFilter(process_key="beta", sort_by="version")) == (
        [("beta", 2), ("beta", 1)],
        2,
    )
    assert await keys(DefinitionFilter(sort_by="processKey", sort_descending=False), Page(number=2, size=2)) == (
        [("beta", 2), ("delta", 1)],
        5,
    )
    assert await keys(DefinitionFilter(), Page(number=4, size=2)) == ([], 5)


async def test_tenants_never_see_each_others_definitions(uow_factory: PostgresUnitOfWorkFactory) -> None:
    mine = await add(uow_factory, new_definition(tenant="acme", key="loan"))
    async with uow_factory() as uow:
        assert await uow.definitions.get("globex", mine.id) is None
        assert await uow.definitions.latest("globex", "loan") is None
        assert await uow.definitions.by_version("globex", "loan", 1) is None
        assert await uow.definitions.find_process("globex", "loan") is None
        assert await uow.definitions.list("globex", DefinitionFilter(), Page()) == ([], 0)
        assert await uow.definitions.delete("globex", mine.id) is False
        await uow.definitions.update_meta(msgspec.structs.replace(mine, tenant_id="globex", name="hijacked"))
        await uow.commit()
    async with uow_factory() as uow:
        still = await uow.definitions.get("acme", mine.id)
    assert still == mine


async def test_delete_removes_one_definition(uow_factory: PostgresUnitOfWorkFactory) -> None:
    first = await add(uow_factory, new_definition())
    second = await add(uow_factory, new_definition())
    async with uow_factory() as uow:
        assert await uow.definitions.delete("acme", first.id) is True
        assert await uow.definitions.delete("acme", first.id) is False
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.definitions.get("acme", first.id) is None
        assert await uow.definitions.get("acme", second.id) == second
