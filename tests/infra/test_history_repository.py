from __future__ import annotations

from typing import Any

from domain.state import HistoryEvent
from handlers.ports import Page
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import at


def event(seq: int, **changes: Any) -> HistoryEvent:
    fields: dict[str, Any] = {"seq": seq, "event_type": "TaskCompleted", "at": at(seq)}
    fields.update(changes)
    return HistoryEvent(**fields)


async def test_append_round_trips_every_field(uow_factory: PostgresUnitOfWorkFactory) -> None:
    full = event(
        1,
        event_type="TaskFailed",
        node_id="review",
        node_name="Review",
        node_type="userTask",
        token_id=3,
        actor="ada",
        comment="looks wrong",
        data={"error": {"code": "E1"}, "attempt": 2, "list": [1, None, "x"]},
    )
    bare = event(2)
    async with uow_factory() as uow:
        await uow.history.append("acme", "i-1", [full, bare])
        await uow.history.append("acme", "i-1", [])
        await uow.commit()
    async with uow_factory() as uow:
        events, total = await uow.history.page("acme", "i-1", Page())
    assert total == 2
    assert events == [bare, full]


async def test_pages_run_newest_first(uow_factory: PostgresUnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        await uow.history.append("acme", "i-1", [event(n) for n in range(1, 6)])
        await uow.history.append("acme", "i-1", [event(n) for n in range(6, 8)])
        await uow.history.append("acme", "i-2", [event(1)])
        await uow.commit()

    async def seqs(number: int, size: int) -> tuple[list[int], int]:
        async with uow_factory() as uow:
            events, total = await uow.history.page("acme", "i-1", Page(number=number, size=size))
        return [e.seq for e in events], total

    assert await seqs(1, 3) == ([7, 6, 5], 7)
    assert await seqs(2, 3) == ([4, 3, 2], 7)
    assert await seqs(3, 3) == ([1], 7)
    assert await seqs(4, 3) == ([], 7)


async def test_tenants_never_see_each_others_history(uow_factory: PostgresUnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        await uow.history.append("acme", "i-1", [event(1, comment="acme only")])
        await uow.history.append("globex", "i-1", [event(1, comment="globex only"), event(2)])
        await uow.commit()
    async with uow_factory() as uow:
        acme, acme_total = await uow.history.page("acme", "i-1", Page())
        globex, globex_total = await uow.history.page("globex", "i-1", Page())
        nobody = await uow.history.page("initech", "i-1", Page())
    assert (acme_total, [e.comment for e in acme]) == (1, ["acme only"])
    assert (globex_total, [e.comment for e in globex]) == (2, [None, "globex only"])
    assert nobody == ([], 0)
