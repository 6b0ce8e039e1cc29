"""The HTTP call of a service task, made with the httpx client the lifespan opened.

A call goes to the task's endpoint, or to a connector from the configuration (its base URL
joined with the task's endpoint path, its headers added: that is where credentials live). It
always carries `Idempotency-Key` so the receiver can tell a repeated call from a new one. The
whole call (connect, send, receive) is bounded by the task's TimeoutMs, and a response body
is read up to a size limit. Nothing here decides what an answer means (domain.service_outcome
does); this only reports what happened. Logs name the method, the URL without its query and
the outcome; never a header or a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from domain.service_calls import shown_target, shown_url
from domain.service_outcome import CallResult
from domain.transition import CallService
from infra.settings import ConnectorSettings

log = logging.getLogger("flowcore.http")

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_json = msgspec.json.Decoder()


def new_client(*, max_connections: int = 100) -> httpx.AsyncClient:
    """The one client every call shares (its connection pool); timeouts are set per call."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "flowcore"},
    )




def _join(base: str, path: str | None) -> str:
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        return None
    if "json" in content_type or raw.lstrip()[:1] in (b"{", b"["):
        try:
            return _json.decode(raw)
        except msgspec.DecodeError:
            pass
    return raw.decode("utf-8", errors="replace")


def _retry_after_ms(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((moment.timestamp() - time.time()) * 1000))


class HttpCaller:
    def __init__(
        self,
        client: httpx.AsyncClient,
        connectors: Mapping[str, ConnectorSettings] | None = None,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._client = client
        self._connectors = dict(connectors or {})
        self._max_bytes = max_response_bytes

    def _target(self, call: CallService) -> tuple[str, dict[str, str]] | str:
        """(url, headers) for the call, or why it cannot be made."""
        headers = dict(call.headers)
        if call.connector_key:
            connector = self._connectors.get(call.connector_key)
            if connector is None:
                return f"Connector '{call.connector_key}' is not configured (FLOWCORE_CONNECTORS)."
            url = _join(connector.base_url, call.endpoint)
            headers.update(connector.headers)  # the operator's configuration wins over the model
        elif call.endpoint:
            url = call.endpoint
        else:
            return "The service task has neither an endpoint nor a connector."
        try:
            parts = urlsplit(url)
        except ValueError:
            return f"'{shown_url(url)}' is not a valid URL."
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"'{shown_url(url)}' is not an http(s) URL."
        return url, headers

    async def call(self, call: CallService, *, idempotency_key: str) -> CallResult:
        method = call.method.upper()
        target = self._target(call)
        if isinstance(target, str):
            return CallResult(target=f"{method} {shown_target(call)}", setup_error=target)
        url, headers = target
        shown = f"{method} {shown_url(url)}"
        if method not in _METHODS:
            return CallResult(target=shown, setup_error=f"HTTP method '{method}' is not supported.")
        headers["Idempotency-Key"] = idempotency_key
        content: bytes | None = None
        if method not in _BODYLESS and call.payload is not None:
            content = msgspec.json.encode(call.payload)
            headers.setdefault("Content-Type", "application/json")
        seconds = max(call.timeout_ms, 1) / 1000
        started = time.monotonic()
        try:
            async with asyncio.timeout(seconds):
                result = await self._send(method, url, headers, content, seconds, shown)
        except TimeoutError:
            result = CallResult(target=shown, transport_error=f"Timed out after {call.timeout_ms} ms calling {shown}")
        except httpx.HTTPError as exc:
            result = CallResult(target=shown, transport_error=f"{type(exc).__name__} calling {shown}: {exc}")
        except OSError as exc:
            result = CallResult(target=shown, transport_error=f"{type(exc).__name__} calling {shown}: {exc}")
        elapsed = (time.monotonic() - started) * 1000
        result = msgspec.structs.replace(result, elapsed_ms=elapsed)
        outcome = result.status if result.status is not None else result.transport_error or result.setup_error
        log.info("service call %s -> %s in %.0f ms (key %s)", shown, outcome, elapsed, idempotency_key)
        return result

    async def _send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None, seconds: float, shown: str
    ) -> CallResult:
        async with self._client.stream(
            method, url, headers=headers, content=content, timeout=httpx.Timeout(seconds)
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    return CallResult(
                        target=shown,
                        status=response.status_code,
                        setup_error=f"The response of {shown} exceeds {self._max_bytes} bytes.",
                    )
                chunks.append(chunk)
            raw = b"".join(chunks)
            return CallResult(
                target=shown,
                status=response.status_code,
                body=_decode(raw, response.headers.get("content-type", "")),
                retry_after_ms=_retry_after_ms(response.headers.get("retry-after")),
            )
