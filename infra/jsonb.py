"""jsonb column values: raw JSON bytes in and out (see infra.database), shaped by msgspec."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()


def to_jsonb(value: Any) -> bytes | None:
    """None stays SQL NULL; anything else is stored as its JSON."""
    return None if value is None else _encoder.encode(value)


def any_from_jsonb(raw: bytes | None) -> Any:
    return None if raw is None else _any_decoder.decode(raw)
