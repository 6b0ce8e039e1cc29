"""The service call itself, against respx-mocked services: what is sent, and what is reported back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from domain.service_calls import shown_url
from domain.service_outcome import BpmnErrorRaised, Permanent, Retryable, Succeeded, classify
from domain.transition import CallService
from infra.http_caller import HttpCaller, new_client
from infra.settings import ConnectorSettings

KEY = "inst-1:3:Score:1"
CONNECTORS = {
    "bureau": ConnectorSettings(base_url="https://bureau.test/api/", headers={"Authorization": "Bearer s3cr3t"})
}


def service(**changes: Any) -> CallService:
    fields: dict[str, Any] = {"token_id": 3, "node_id": "Score", "endpoint": "https://svc.test/score", **changes}
    return CallService(**fields)


@pytest_asyncio.fixture(loop_scope="session")
async def caller() -> AsyncIterator[HttpCaller]:
    client = new_client()
    try:
        yield HttpCaller(client, CONNECTORS, max_response_bytes=1000)
    finally:
        await client.aclose()


def outcome_of(result: Any) -> Any:
    return classify(result, bpmn_error_field="bpmnErrorCode")


@respx.mock
async def test_success_sends_payload_headers_and_idempotency_key(caller: HttpCaller) -> None:
    route = respx.put("https://svc.test/score").respond(200, json={"value": 710})
    call = service(method="PUT", headers={"X-Trace": "t-1"}, payload={"customerId": 7})
    result = await caller.call(call, idempotency_key=KEY)
    assert outcome_of(result) == Succeeded(result={"value": 710})
    assert (result.status, result.target) == (200, "PUT https://svc.test/score")
    request = route.calls.last.request
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["X-Trace"] == "t-1"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"customerId": 7}


@respx.mock
async def test_a_get_sends_no_body_and_a_text_answer_is_kept_as_text(caller: HttpCaller) -> None:
    route = respx.get("https://svc.test/score").respond(200, text="plain words")
    result = await caller.call(service(method="GET", payload={"ignored": True}), idempotency_key=KEY)
    assert result.body == "plain words"
    assert route.calls.last.request.content == b""
    empty = respx.post("https://svc.test/empty").respond(204)
    result = await caller.call(service(endpoint="https://svc.test/empty"), idempotency_key=KEY)
    assert (result.status, result.body) == (204, None) and empty.called


@respx.mock
async def test_a_connector_supplies_base_url_and_its_headers_win(caller: HttpCaller) -> None:
    route = respx.post("https://bureau.test/api/score/7").respond(200, json={})
    call = service(endpoint="/score/7", connector_key="bureau", headers={"Authorization": "from the model"})
    result = await caller.call(call, idempotency_key=KEY)
    assert result.status == 200
    assert route.calls.last.request.headers["Authorization"] == "Bearer s3cr3t"


async def test_an_unknown_connector_or_a_bad_url_is_a_permanent_failure(caller: HttpCaller) -> None:
    result = await caller.call(service(endpoint=None, connector_key="nope"), idempotency_key=KEY)
    assert outcome_of(result) == Permanent(message="Connector 'nope' is not configured (FLOWCORE_CONNECTORS).")
    result = await caller.call(service(endpoint="ftp://svc.test/x"), idempotency_key=KEY)
    assert outcome_of(result) == Permanent(message="'ftp://svc.test/x' is not an http(s) URL.")
    result = await caller.call(service(method="BREW"), idempotency_key=KEY)
    assert outcome_of(result) == Permanent(message="HTTP method 'BREW' is not supported.")


@respx.mock
async def test_a_slow_service_times_out_as_a_retryable_failure(caller: HttpCaller) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    respx.post("https://svc.test/score").mock(side_effect=slow)
    result = await caller.call(service(timeout_ms=50), idempotency_key=KEY)
    assert outcome_of(result) == Retryable(message="Timed out after 50 ms calling POST https://svc.test/score")
    assert result.elapsed_ms < 2000


@respx.mock
async def test_connection_errors_are_retryable(caller: HttpCaller) -> None:
    respx.post("https://svc.test/score").mock(side_effect=httpx.ConnectError("connection refused"))
    outcome = outcome_of(await caller.call(service(), idempotency_key=KEY))
    assert isinstance(outcome, Retryable)
    assert outcome.message == "ConnectError calling POST https://svc.test/score: connection refused"


@respx.mock
async def test_5xx_then_success(caller: HttpCaller) -> None:
    respx.post("https://svc.test/score").mock(
        side_effect=[httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "3"}),
                     httpx.Response(200, json={"value": 1})]
    )
    first = await caller.call(service(), idempotency_key=KEY)
    assert outcome_of(first) == Retryable(
        message="HTTP 503 from POST https://svc.test/score", details='{"error":"busy"}', retry_after_ms=3000
    )
    assert outcome_of(await caller.call(service(), idempotency_key=KEY)) == Succeeded(result={"value": 1})


@respx.mock
async def test_4xx_is_permanent_but_429_is_retryable(caller: HttpCaller) -> None:
    respx.post("https://svc.test/missing").respond(404, json={"message": "no such customer"})
    respx.post("https://svc.test/busy").respond(429)
    missing = outcome_of(await caller.call(service(endpoint="https://svc.test/missing"), idempotency_key=KEY))
    assert missing == Permanent(
        message="HTTP 404 from POST https://svc.test/missing", details='{"message":"no such customer"}'
    )
    busy = outcome_of(await caller.call(service(endpoint="https://svc.test/busy"), idempotency_key=KEY))
    assert busy == Retryable(message="HTTP 429 from POST https://svc.test/busy")


@respx.mock
async def test_a_bpmn_error_code_in_the_answer(caller: HttpCaller) -> None:
    respx.post("https://svc.test/score").respond(422, json={"bpmnErrorCode": "DENIED", "message": "blacklisted"})
    result = await caller.call(service(), idempotency_key=KEY)
    assert outcome_of(result) == BpmnErrorRaised(code="DENIED", message="blacklisted")


@respx.mock
async def test_an_oversized_answer_is_refused(caller: HttpCaller) -> None:
    respx.post("https://svc.test/score").respond(200, content=b"x" * 5000)
    result = await caller.call(service(), idempotency_key=KEY)
    assert outcome_of(result) == Permanent(message="The response of POST https://svc.test/score exceeds 1000 bytes.")


@respx.mock
async def test_logs_never_show_headers_query_or_credentials(
    caller: HttpCaller, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx.post("https://bureau.test/api/score?apikey=query-secret").respond(200, json={"t": "response-secret"})
    call = service(endpoint="/score?apikey=query-secret", connector_key="bureau", headers={"X-Api-Key": "hdr-secret"})
    with caplog.at_level(logging.DEBUG, logger="flowcore"):
        result = await caller.call(call, idempotency_key=KEY)
    assert result.status == 200 and route.called
    text = caplog.text
    assert "POST https://bureau.test/api/score" in text and KEY in text
    for secret in ("s3cr3t", "query-secret", "hdr-secret", "response-secret"):
        assert secret not in text
        assert secret not in result.target


def test_shown_url_drops_credentials_query_and_fragment() -> None:
    assert shown_url("https://user:pw@host.test:8443/a/b?x=1#f") == "https://host.test:8443/a/b"
    assert shown_url("http://[::1]:80/p") == "http://[::1]:80/p"
