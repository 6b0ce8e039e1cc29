"""Bytes in, command out; envelope in, bytes out. Decoders and encoders are built once, here.

Decode errors keep msgspec's JSON path. The command's fields live under `data`, so a path
msgspec reports for the inner document (`$.variables`) is rewritten to where the client put
it (`$.data.variables`).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from app.errors import Failure, MalformedRequest
from commands.base import Command
from commands.envelope import RequestEnvelope, ResponseEnvelope
from commands.registry import COMMANDS, DECODERS

_ENVELOPE = msgspec.json.Decoder(RequestEnvelope)
_ENCODER = msgspec.json.Encoder()

# msgspec ends a located message with " - at `$...`"; an unlocated one concerns the root.
_AT = re.compile(r" - at `\$(?P<rest>[^`]*)`$")



def _locate(message: str, root: str) -> tuple[str, str]:
    """Return the message with its path moved under `root`, and that path."""
    found = _AT.search(message)
    if found is None:
        return f"{message} - at `{root}`", root
    path = root + found.group("rest")
    return message[: found.start()] + f" - at `{path}`", path


def decode_envelope(body: bytes) -> RequestEnvelope:
    try:
        return _ENVELOPE.decode(body)
    except msgspec.ValidationError as exc:
        message, path = _locate(str(exc), "$")
        raise MalformedRequest(message, details={"path": path}) from None
    except msgspec.DecodeError as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}", details={"path": "$"}) from None


def command_class(name: str) -> type[Command]:
    found = COMMANDS.get(name)
    if found is None:
        raise MalformedRequest(f"Unknown command '{name}'.", details={"path": "$.cmd"})
    return found


def decode_data(cls: type[Command], data: msgspec.Raw) -> Command:
    try:
        return DECODERS[cls].decode(data)
    except msgspec.ValidationError as exc:
        message, path = _locate(str(exc), "$.data")
        raise MalformedRequest(message, details={"path": path}) from None
    except msgspec.DecodeError as exc:  # the envelope decoder already checked the syntax
        raise MalformedRequest(f"Field data is not valid JSON: {exc}", details={"path": "$.data"}) from None


def encode_success(message: str, data: Any) -> bytes:
    return _encode(ResponseEnvelope(is_successful=True, message=message, status_code="00", data=data))


def encode_failure(failure: Failure, request_id: str) -> bytes:
    return _encode(
        ResponseEnvelope(
            is_successful=False,
            message=failure.message,
            status_code=failure.status_code,
            data=failure.details,
            error_code=failure.error_code,
            request_id=request_id,
        )
    )


def _encode(envelope: ResponseEnvelope) -> bytes:
    return _ENCODER.encode(envelope)


def encode_json(value: Any) -> bytes:
    return _ENCODER.encode(value)
