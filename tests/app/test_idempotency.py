"""Idempotency-Key: the first definitive answer is replayed byte for byte and nothing runs again."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from app.idempotency import KeyLocks
from commands.instances import GetProcessInstanceState, StartProcessInstance
from handlers.bus import Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import InstanceNotFound, VersionConflict
from handlers.ports import StorageUnavailable
from tests.app.harness import JSON, build, envelope, running

URL = "/api/core/cmd"


class Counting:
    """A handler that answers with a fresh number each run, so a replay is recognisable."""

    def __init__(self, fail_first: BaseException | None = None, delay: float = 0) -> None:
        self.runs = 0
        self.keys: list[str | None] = []
        self.fail_first = fail_first
        self.delay = delay

    async def __call__(self, cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        self.runs += 1
        self.keys.append(ctx.idempotency_key)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_first is not None and self.runs == 1:
            raise self.fail_first
        return Reply("Started", {"run": self.runs})


def _start(key: str | None, tenant: str = "bank-a", **data: Any) -> dict[str, Any]:
    headers = {**JSON, "x-tenant-id": tenant}
    if key is not None:
        headers["idempotency-key"] = key
    body = envelope("StartProcessInstanceCommand", {"processKey": "P", **data})
    return {"content": json.dumps(body).encode(), "headers": headers}


async def test_same_key_replays_the_first_answer_byte_for_byte() -> None:
    handler = Counting()
    async with running(build({StartProcessInstance: handler}).app) as client:
        first = await client.post(URL, **_start("k-1"))
        second = await client.post(URL, **_start("k-1"))
    assert handler.runs == 1
    assert handler.keys == ["k-1"]
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.json()["data"] == {"run": 1}
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_same_key_with_a_different_body_is_refused() -> None:
    handler = Counting()
    async with running(build({StartProcessInstance: handler}).app) as client:
        await client.post(URL, **_start("k-1"))
        other = await client.post(URL, **_start("k-1", businessKey="B-2"))
    assert handler.runs == 1
    assert other.status_code == 422
    body = other.json()
    assert (body["statusCode"], body["errorCode"], body["message"]) == (
        "99", "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key reused with a different request.")


async def test_keys_are_per_tenant_and_absent_keys_always_run() -> None:
    handler = Counting()
    async with running(build({StartProcessInstance: handler}).app) as client:
        a = await client.post(URL, **_start("k-1", tenant="bank-a"))
        b = await client.post(URL, **_start("k-1", tenant="bank-b"))
        await client.post(URL, **_start(None))
        await client.post(URL, **_start(None))
    assert handler.runs == 4
    assert a.json()["data"] != b.json()["data"]


async def test_queries_ignore_the_key() -> None:
    handler = Counting()
    body = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})).encode()
    harness = build({GetProcessInstanceState: handler})
    async with running(harness.app) as client:
        for _ in range(3):
            await client.post(URL, content=body, headers={**JSON, "idempotency-key": "q"})
    assert handler.runs == 3
    assert harness.store.idempotency == {}


async def test_a_definitive_failure_is_stored_and_replayed() -> None:
    handler = Counting(fail_first=InstanceNotFound("g"))
    async with running(build({StartProcessInstance: handler}).app) as client:
        first = await client.post(URL, **_start("k-1"))
        second = await client.post(URL, **_start("k-1"))
    assert handler.runs == 1
    assert first.status_code == second.status_code == 404
    assert first.content == second.content


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom"), StorageUnavailable("down"), VersionConflict("changed by another command")]
)
async def test_retryable_answers_are_not_stored(exc: BaseException) -> None:
    handler = Counting(fail_first=exc)
    async with running(build({StartProcessInstance: handler}).app) as client:
        first = await client.post(URL, **_start("k-1"))
        second = await client.post(URL, **_start("k-1"))
        third = await client.post(URL, **_start("k-1"))
    assert first.status_code in (500, 503, 409)
    assert second.status_code == 200
    assert third.content == second.content
    assert handler.runs == 2


async def test_the_key_expires_after_24_hours() -> None:
    handler = Counting()
    harness = build({StartProcessInstance: handler})
    async with running(harness.app) as client:
        await client.post(URL, **_start("k-1"))
        harness.clock.advance(timedelta(hours=24, seconds=1).total_seconds())
        again = await client.post(URL, **_start("k-1"))
    assert handler.runs == 2
    assert again.json()["data"] == {"run": 2}


async def test_concurrent_copies_run_once() -> None:
    handler = Counting(delay=0.05)
    async with running(build({StartProcessInstance: handler}).app) as client:
        answers = await asyncio.gather(*(client.post(URL, **_start("k-1")) for _ in range(4)))
    assert handler.runs == 1
    assert len({a.content for a in answers}) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "tab\tkey"])
async def test_unusable_keys_are_refused(key: str) -> None:
    handler = Counting()
    async with running(build({StartProcessInstance: handler}).app) as client:
        response = await client.post(URL, **_start(key))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]
    assert handler.runs == 0


async def test_key_locks_are_dropped_when_released() -> None:
    locks = KeyLocks()
    async with locks.hold("t", "k"), locks.hold("t", "other"):
        assert len(locks._locks) == 2
    assert locks._locks == {}


async def test_an_answer_that_cannot_be_recorded_is_still_given(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from tests.handlers import fakes

    async def refuse(self: object, *args: object) -> None:
        raise StorageUnavailable("down")

    monkeypatch.setattr(fakes.FakeIdempotency, "put", refuse)
    handler = Counting()
    async with running(build({StartProcessInstance: handler}).app) as client:
        first = await client.post(URL, **_start("k-1"))
        second = await client.post(URL, **_start("k-1"))
    assert (first.status_code, second.status_code) == (200, 200)
    assert handler.runs == 2
    assert "could not record" in caplog.text
