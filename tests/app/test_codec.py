"""The codec: any input either decodes to a command or is refused as malformed, never anything else."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from app.codec import command_class, decode_data, decode_envelope, encode_failure, encode_success
from app.errors import Failure, MalformedRequest
from commands.base import Command
from commands.registry import COMMANDS

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "instanceGuid",
        "processKey",
        "variables",
        "id",
        "pageSize",
        "action",
        "bpmnXml",
        "executionMode",
        "inheritFrom",
        "unknownField",
        "taskId",
    ]
)
data_objects = st.dictionaries(field_names, json_values, max_size=5)


def _decode(body: bytes) -> Command:
    envelope = decode_envelope(body)
    return decode_data(command_class(envelope.cmd), envelope.data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_command_or_malformed(body: bytes) -> None:
    try:
        _decode(body)
    except MalformedRequest as exc:
        assert exc.details is not None and str(exc.details["path"]).startswith("$")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)), data_objects)
def test_arbitrary_data_is_a_command_or_refused_at_a_path_under_data(cmd: str, data: dict[str, Any]) -> None:
    body = json.dumps({"cmd": cmd, "data": data}).encode()
    try:
        command = _decode(body)
    except MalformedRequest as exc:
        assert exc.details is not None
        path = str(exc.details["path"])
        assert path == "$.data" or path.startswith("$.data.")
        assert exc.message.endswith(f" - at `{path}`")
    else:
        assert isinstance(command, COMMANDS[cmd])


@given(st.text(), json_values)
def test_success_envelope_round_trips(message: str, data: Any) -> None:
    decoded = msgspec.json.decode(encode_success(message, data))
    assert decoded == {"isSuccessful": True, "message": message, "statusCode": "00", "data": data}


def test_failure_envelope_always_has_data() -> None:
    failure = Failure("99", 404, "INSTANCE_NOT_FOUND", "Process instance 'g' not found.", None)
    assert msgspec.json.decode(encode_failure(failure, "rid")) == {
        "isSuccessful": False,
        "message": "Process instance 'g' not found.",
        "statusCode": "99",
        "data": None,
        "errorCode": "INSTANCE_NOT_FOUND",
        "requestId": "rid",
    }
