"""Every branch of a service task, one attempt at a time, against respx-mocked services: the real
HTTP caller and classification, the feed-back handler, the engine, and in-memory storage.

Each attempt does what a worker does with a claimed job: call (infra.http_caller), classify
(domain.service_outcome), feed the outcome back (handlers.jobs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import respx

from commands.instances import GetProcessInstanceHistory, RetryFailedTask, SkipFailedTask
from domain.service_outcome import classify
from domain.transition import CallService
from handlers.jobs import Settled, record_call_outcome
from infra.http_caller import HttpCaller, new_client
from infra.job_repository import idempotency_key
from tests.handlers.job_harness import FAST, Harness, service_model

SCORE = "https://bureau.test/score"


@pytest_asyncio.fixture(loop_scope="session")
async def caller() -> AsyncIterator[HttpCaller]:
    client = new_client()
    try:
        yield HttpCaller(client)
    finally:
        await client.aclose()


@pytest.fixture
def h() -> Harness:
    return Harness()


async def attempt(h: Harness, caller: HttpCaller) -> Settled:
    """Claim the next due job, call its service, feed the outcome back."""
    job = h.claim()
    effect = h.row(job).effect
    assert isinstance(effect, CallService)
    result = await caller.call(effect, idempotency_key=idempotency_key(job.instance_guid, effect))
    return await record_call_outcome(h.deps, job, classify(result, bpmn_error_field="bpmnErrorCode"), FAST)


def keys(route: respx.Route) -> list[str]:
    return [call.request.headers["Idempotency-Key"] for call in route.calls]


@respx.mock
async def test_success(h: Harness, caller: HttpCaller) -> None:
    route = respx.post(f"{SCORE}/7").respond(200, json={"value": 710})
    guid = await h.start(service_model(), {"customerId": 7})
    assert await attempt(h, caller) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "completed" and state["state"]["variables"]["score"] == {"value": 710}
    assert json.loads(route.calls.last.request.content) == {"customerId": 7}
    assert keys(route) == [f"{guid}:1:Score:1"]


@respx.mock
async def test_timeout_is_retried_and_shown_on_the_token(h: Harness, caller: HttpCaller) -> None:
    route = respx.post(f"{SCORE}/7").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={})])
    guid = await h.start(service_model(), {"customerId": 7})
    assert await attempt(h, caller) is Settled.RESCHEDULED
    [token] = [t for t in (await h.state(guid))["tokens"] if t["currentNodeId"] == "Score"]
    assert token["blockedOn"]["lastError"] == f"ReadTimeout calling POST {SCORE}/7: slow"
    assert token["blockedOn"]["jobAttempt"] == 1
    h.clock.advance(1)
    assert await attempt(h, caller) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"
    assert keys(route) == [f"{guid}:1:Score:1"] * 2  # one key for every attempt of the call


@respx.mock
async def test_5xx_then_success(h: Harness, caller: HttpCaller) -> None:
    respx.post(f"{SCORE}/7").mock(side_effect=[httpx.Response(502), httpx.Response(503),
                                              httpx.Response(200, json={"value": 650})])
    guid = await h.start(service_model(), {"customerId": 7})
    assert await attempt(h, caller) is Settled.RESCHEDULED
    h.clock.advance(1)
    assert await attempt(h, caller) is Settled.RESCHEDULED
    h.clock.advance(2)
    assert await attempt(h, caller) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "completed" and state["state"]["variables"]["approved"] is True


@respx.mock
async def test_4xx_puts_the_instance_in_error(h: Harness, caller: HttpCaller) -> None:
    respx.post(f"{SCORE}/7").respond(404, json={"message": "unknown customer"})
    guid = await h.start(service_model(), {"customerId": 7})
    assert await attempt(h, caller) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "error"
    assert state["error"]["errorMessage"] == f"Service task 'Score' (Credit Score) failed: HTTP 404 from POST {SCORE}/7"
    assert state["error"]["errorDetails"] == '{"message":"unknown customer"}'


@respx.mock
async def test_retries_spent(h: Harness, caller: HttpCaller) -> None:
    route = respx.post(f"{SCORE}/7").respond(503)
    guid = await h.start(service_model(retries=2), {"customerId": 7})
    assert await attempt(h, caller) is Settled.RESCHEDULED
    h.clock.advance(1)
    assert await attempt(h, caller) is Settled.RESCHEDULED
    h.clock.advance(2)
    assert await attempt(h, caller) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "error" and state["error"]["errorMessage"].endswith("(gave up after 3 attempts)")
    assert route.call_count == 3
    assert [a["action"] for a in state["nextActions"]] == ["retry", "skip", "cancel"]


@respx.mock
async def test_a_bpmn_error_is_caught_by_the_boundary_event(h: Harness, caller: HttpCaller) -> None:
    respx.post(f"{SCORE}/7").respond(422, json={"bpmnErrorCode": "DENIED", "message": "blacklisted"})
    guid = await h.start(service_model(boundary=True), {"customerId": 7})
    assert await attempt(h, caller) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "completed"
    assert state["state"]["variables"]["_lastError"] == {"errorCode": "DENIED", "errorMessage": "blacklisted"}
    assert "approved" not in state["state"]["variables"]


@respx.mock
async def test_retry_after_fixing_variables(h: Harness, caller: HttpCaller) -> None:
    wrong = respx.post(f"{SCORE}/0").respond(400, json={"message": "bad id"})
    right = respx.post(f"{SCORE}/9").respond(200, json={"value": 700})
    guid = await h.start(service_model(), {"customerId": 0})
    assert await attempt(h, caller) is Settled.FAILED
    await h.send(RetryFailedTask(instance_guid=guid, updated_variables={"customerId": 9}, comment="typo"))
    assert await attempt(h, caller) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "completed" and state["state"]["variables"]["score"] == {"value": 700}
    assert keys(wrong) == [f"{guid}:1:Score:1"] and keys(right) == [f"{guid}:1:Score:2"]  # a new attempt group


@respx.mock
async def test_skip(h: Harness, caller: HttpCaller) -> None:
    route = respx.post(f"{SCORE}/7").respond(403)
    guid = await h.start(service_model(), {"customerId": 7})
    assert await attempt(h, caller) is Settled.FAILED
    state = await h.send(SkipFailedTask(instance_guid=guid, additional_data={"score": {"value": 601}},
                                        comment="scored by hand"))
    assert state["status"] == "completed" and state["state"]["variables"]["approved"] is True
    assert route.call_count == 1
    history = await h.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    [skipped] = [e for e in history["items"] if e["eventType"] == "TaskSkipped"]
    assert skipped["data"] == {"variablesChanged": {"score": {"value": 601}}} and skipped["actor"] == "ops-anna"
