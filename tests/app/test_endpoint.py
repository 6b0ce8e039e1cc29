"""POST /api/core/cmd through the ASGI app with fake handlers: decoding, headers, envelopes."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from commands.base import Command
from commands.instances import GetProcessInstanceState, StartProcessInstance
from handlers.bus import Handler, Reply, RequestContext
from handlers.deps import Deps
from tests.app.harness import JSON, TENANT, build, envelope, running

URL = "/api/core/cmd"
STATE = envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})


def recording(calls: list[tuple[Command, RequestContext]], reply: Reply | None = None) -> Handler:
    async def handle(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        calls.append((cmd, ctx))
        return reply or Reply("Done", {"echo": type(cmd).__name__})

    return handle


@pytest.fixture
def calls() -> list[tuple[Command, RequestContext]]:
    return []


@pytest.fixture
def table(calls: list[tuple[Command, RequestContext]]) -> dict[type[Command], Handler]:
    return {StartProcessInstance: recording(calls), GetProcessInstanceState: recording(calls)}


async def test_success_is_the_envelope_with_the_handlers_message_and_data(
    table: dict[type[Command], Handler], calls: list[tuple[Command, RequestContext]]
) -> None:
    async with running(build(table).app) as client:
        body = envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g1"})
        response = await client.post(URL, json=body, headers=JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"isSuccessful": True, "message": "Done", "statusCode": "00",
                               "data": {"echo": "GetProcessInstanceState"}}
    [(command, ctx)] = calls
    assert command == GetProcessInstanceState(instance_guid="g1")
    assert ctx.tenant_id == TENANT
    assert ctx.request_id == response.headers["x-request-id"]


async def test_aliases_reach_the_same_handler(table: dict[type[Command], Handler],
                                              calls: list[tuple[Command, RequestContext]]) -> None:
    table = {**table}
    from commands.definitions import CreateProcessDefinition

    table[CreateProcessDefinition] = recording(calls)
    async with running(build(table).app) as client:
        for name in ("CreateProcessDefinitionCommand", "CreateProcessDefinitiionCommand",
                     "DeployProcessDefinitionCommand"):
            response = await client.post(URL, json=envelope(name, {"bpmnXml": "<x/>"}), headers=JSON)
            assert response.json()["statusCode"] == "00", name
    assert [type(c) for c, _ in calls] == [CreateProcessDefinition] * 3


def _failure(response: Any, status: int, status_code: str = "40") -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["isSuccessful"] is False
    assert body["statusCode"] == status_code
    assert body["requestId"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    ("body", "fragment", "path"),
    [
        (b"{not json", "not valid JSON", "$"),
        (b"", "not valid JSON", "$"),
        (b"[1, 2]", "Expected `object`, got `array` - at `$`", "$"),
        (b'{"data": {}}', "Object missing required field `cmd` - at `$`", "$"),
        (b'{"cmd": 7}', "Expected `str`, got `int` - at `$.cmd`", "$.cmd"),
        (b'{"cmd": "GetProcessInstanceStateCommand", "data": {}, "extra": 1}',
         "Object contains unknown field `extra` - at `$`", "$"),
        (b'{"cmd": "Nope", "data": {}}', "Unknown command 'Nope'.", "$.cmd"),
        (b'{"cmd": "GetProcessInstanceStateCommand", "data": {}}',
         "Object missing required field `instanceGuid` - at `$.data`", "$.data"),
        (b'{"cmd": "GetProcessInstanceStateCommand", "data": {"instanceGuid": "g", "bogus": 1}}',
         "Object contains unknown field `bogus` - at `$.data`", "$.data"),
        (b'{"cmd": "GetProcessInstanceStateCommand", "data": {"instanceGuid": 5}}',
         "Expected `str`, got `int` - at `$.data.instanceGuid`", "$.data.instanceGuid"),
        (b'{"cmd": "StartProcessInstanceCommand", "data": {"inheritFrom": {"instanceGuid": 1}}}',
         "Expected `str`, got `int` - at `$.data.inheritFrom.instanceGuid`",
         "$.data.inheritFrom.instanceGuid"),
        (b'{"cmd": "StartProcessInstanceCommand", "data": {"variables": []}}',
         "Expected `object | null`, got `array` - at `$.data.variables`", "$.data.variables"),
        (b'{"cmd": "StartProcessInstanceCommand", "data": [1]}',
         "Expected `object`, got `array` - at `$.data`", "$.data"),
        (b'{"cmd": "StartProcessInstanceCommand", "data": {"executionMode": "Fast"}}',
         "- at `$.data.executionMode`", "$.data.executionMode"),
    ],
)
async def test_malformed_requests_are_40_naming_the_json_path(
    table: dict[type[Command], Handler], calls: list[tuple[Command, RequestContext]],
    body: bytes, fragment: str, path: str,
) -> None:
    async with running(build(table).app) as client:
        response = await client.post(URL, content=body, headers=JSON)
    failure = _failure(response, 400)
    assert fragment in failure["message"]
    assert failure["errorCode"] in ("BAD_REQUEST",)
    assert failure["data"] == {"path": path}
    assert calls == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1", "application/jsonx"])
async def test_content_type_must_be_json(table: dict[type[Command], Handler], content_type: str | None,
                                         calls: list[tuple[Command, RequestContext]]) -> None:
    headers = {"x-tenant-id": TENANT}
    if content_type is not None:
        headers["content-type"] = content_type
    body = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})).encode()
    async with running(build(table).app) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert "Content-Type" in _failure(response, 400)["message"]
    assert calls == []


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8"])
async def test_json_content_type_with_charset_is_accepted(table: dict[type[Command], Handler],
                                                          content_type: str) -> None:
    body = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})).encode()
    async with running(build(table).app) as client:
        response = await client.post(URL, content=body, headers={"content-type": content_type,
                                                                  "x-tenant-id": TENANT})
    assert response.json()["statusCode"] == "00"


async def test_tenant_header_is_required(table: dict[type[Command], Handler],
                                         calls: list[tuple[Command, RequestContext]]) -> None:
    async with running(build(table).app) as client:
        response = await client.post(URL, json=STATE)
    assert _failure(response, 400)["message"] == "Header X-Tenant-ID is required."
    assert calls == []


@pytest.mark.parametrize("tenant", [" ", "a b", "x" * 65, "bank/a", "bänk", "a;b"])
async def test_tenant_header_is_validated(table: dict[type[Command], Handler], tenant: str,
                                          calls: list[tuple[Command, RequestContext]]) -> None:
    body = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})).encode()
    headers = {b"content-type": b"application/json", b"x-tenant-id": tenant.encode("utf-8")}
    async with running(build(table).app) as client:
        response = await client.post(URL, content=body, headers=headers)
    assert "X-Tenant-ID" in _failure(response, 400)["message"]
    assert calls == []


@pytest.mark.parametrize("tenant", ["a", "x" * 64, "Bank_A-1.eu"])
async def test_valid_tenants_are_passed_to_the_handler(table: dict[type[Command], Handler], tenant: str,
                                                       calls: list[tuple[Command, RequestContext]]) -> None:
    async with running(build(table).app) as client:
        response = await client.post(URL, json=STATE,
                                     headers={"x-tenant-id": tenant})
    assert response.json()["statusCode"] == "00"
    assert calls[0][1].tenant_id == tenant


async def test_a_sane_request_id_is_echoed(table: dict[type[Command], Handler],
                                           calls: list[tuple[Command, RequestContext]]) -> None:
    async with running(build(table).app) as client:
        ok = await client.post(URL, json=STATE,
                               headers={**JSON, "x-request-id": "req-123.abc"})
        bad = await client.post(URL, content=b"{", headers={**JSON, "x-request-id": "req-456"})
    assert ok.headers["x-request-id"] == "req-123.abc"
    assert calls[0][1].request_id == "req-123.abc"
    assert "requestId" not in ok.json()
    assert bad.headers["x-request-id"] == "req-456"
    assert bad.json()["requestId"] == "req-456"


@pytest.mark.parametrize("offered", ["has space", "x" * 101, "semi;colon", ""])
async def test_an_unusable_request_id_is_replaced(table: dict[type[Command], Handler], offered: str) -> None:
    async with running(build(table).app) as client:
        response = await client.post(URL, content=b"{", headers={**JSON, "x-request-id": offered})
    generated = response.headers["x-request-id"]
    assert generated != offered
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert response.json()["requestId"] == generated


async def test_a_known_command_without_a_handler_is_refused(
    calls: list[tuple[Command, RequestContext]],
) -> None:
    async with running(build({GetProcessInstanceState: recording(calls)}).app) as client:
        cancel = envelope("CancelProcessInstanceCommand", {"instanceGuid": "g"})
        response = await client.post(URL, json=cancel, headers=JSON)
    failure = _failure(response, 400)
    assert failure["errorCode"] == "UNSUPPORTED_COMMAND"
    assert "CancelProcessInstanceCommand" in failure["message"]


async def test_an_unexpected_exception_is_50_with_the_traceback_only_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def explode(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        raise RuntimeError("password=hunter2 leaked from a driver")

    caplog.set_level(logging.INFO)
    async with running(build({GetProcessInstanceState: explode}).app) as client:
        response = await client.post(URL, json=STATE,
                                     headers=JSON)
    failure = _failure(response, 500, "50")
    rid = response.headers["x-request-id"]
    assert failure == {"isSuccessful": False, "message": f"Internal error; quote request id {rid}.",
                       "statusCode": "50", "data": None, "errorCode": "INTERNAL_ERROR", "requestId": rid}
    assert "hunter2" not in response.text
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert logged, "the traceback must be logged"
    assert "Traceback" in caplog.text and "hunter2" in caplog.text


async def test_a_reply_that_cannot_be_encoded_is_an_internal_error() -> None:
    async def odd(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        return Reply("ok", object())

    async with running(build({GetProcessInstanceState: odd}).app) as client:
        response = await client.post(URL, json=STATE,
                                     headers=JSON)
    _failure(response, 500, "50")


async def test_access_log_names_request_but_not_body(table: dict[type[Command], Handler],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowcore.access")
    async with running(build(table).app) as client:
        response = await client.post(
            URL, json=envelope("GetProcessInstanceStateCommand", {"instanceGuid": "secret-guid-77"}),
            headers={**JSON, "x-request-id": "rid-1", "authorization": "Bearer tok-99"},
        )
    assert response.status_code == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "flowcore.access"]
    for part in ("POST", "/api/core/cmd", "cmd=GetProcessInstanceStateCommand", f"tenant={TENANT}",
                 "status=200", "rid=rid-1", "ms="):
        assert part in line
    assert "secret-guid-77" not in caplog.text
    assert "tok-99" not in caplog.text


async def test_unknown_command_text_is_not_logged(table: dict[type[Command], Handler],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowcore.access")
    async with running(build(table).app) as client:
        await client.post(URL, json=envelope("Evil\nINJECTED line"), headers=JSON)
    assert "INJECTED" not in caplog.text
    assert "cmd=-" in caplog.text


async def test_unknown_routes_and_methods_answer_with_the_envelope(
    table: dict[type[Command], Handler],
) -> None:
    async with running(build(table).app) as client:
        missing = await client.post("/api/core/nothing", json={}, headers=JSON)
        wrong = await client.get(URL)
    assert _failure(missing, 404)["errorCode"] == "ROUTE_NOT_FOUND"
    assert _failure(wrong, 405)["errorCode"] == "METHOD_NOT_ALLOWED"
    assert "POST" in wrong.headers["allow"]


async def test_health_and_ready(table: dict[type[Command], Handler]) -> None:
    harness = build(table)
    async with running(harness.app) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
        harness.probe.answer = False
        not_ready = await client.get("/ready")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert not_ready.status_code == 503


async def test_outside_the_lifespan_commands_get_53_but_liveness_answers(
    table: dict[type[Command], Handler], calls: list[tuple[Command, RequestContext]],
) -> None:
    import httpx

    app = build(table).app
    body = envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://flowcore.test") as client:
        before = await client.post(URL, json=body, headers=JSON)
        async with app.router.lifespan_context(app):
            during = await client.post(URL, json=body, headers=JSON)
        after = await client.post(URL, json=body, headers=JSON)
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert during.json()["statusCode"] == "00"
    for refused in (before, after):
        assert _failure(refused, 503, "53")["errorCode"] == "SERVICE_UNAVAILABLE"
    assert ready.status_code == 503
    assert health.status_code == 200
    assert len(calls) == 1


async def _call_raw(app: Any, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drive the ASGI app with the given receive messages; returns what it sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": URL, "raw_path": URL.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"X-Tenant-ID", TENANT.encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {}}
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_body_in_several_chunks_is_read_whole(
    table: dict[type[Command], Handler], calls: list[tuple[Command, RequestContext]]
) -> None:
    raw = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g-chunked"})).encode()
    parts = [raw[:7], raw[7:20], raw[20:]]
    app = build(table).app
    async with app.router.lifespan_context(app):
        sent = await _call_raw(app, [{"type": "http.request", "body": p, "more_body": i < 2}
                                     for i, p in enumerate(parts)])
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["isSuccessful"] is True
    assert [cmd for cmd, _ in calls] == [GetProcessInstanceState(instance_guid="g-chunked")]


async def test_a_client_gone_before_its_body_ends_gets_no_answer_and_runs_nothing(
    table: dict[type[Command], Handler], calls: list[tuple[Command, RequestContext]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = build(table).app
    async with app.router.lifespan_context(app):
        sent = await _call_raw(app, [{"type": "http.request", "body": b'{"cmd": "GetProc', "more_body": True},
                                     {"type": "http.disconnect"}])
    assert sent == []
    assert calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "status=0" in "\n".join(r.getMessage() for r in caplog.records if r.name == "flowcore.access")
