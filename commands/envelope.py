"""The request envelope `{cmd, data}` and the response envelope every answer uses."""

from __future__ import annotations

from typing import Any

import msgspec


class RequestEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cmd: str
    data: msgspec.Raw = msgspec.Raw(b"{}")


class ResponseEnvelope(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """`data` has no default, so it is always sent (null on failures); the rest only when set."""

    is_successful: bool
    message: str
    status_code: str
    data: Any
    error_code: str | None = None
    request_id: str | None = None
