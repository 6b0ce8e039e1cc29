"""The few ASGI primitives the edge shares: reading request headers and sending a JSON answer.

The command endpoint is a plain ASGI app rather than a Starlette request/response function:
every start pays for whatever runs around it, and it needs neither a Request nor a Response
object to read three headers and a body and write one answer.
"""

from __future__ import annotations

from starlette.types import Scope, Send

_JSON = b"application/json"


def headers(scope: Scope, names: frozenset[bytes]) -> dict[bytes, str]:
    """The first value of each of `names` (lower case) that the request carries."""
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        name = key.lower()
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), if the request carries it."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def send_json(send: Send, status: int, body: bytes) -> None:
    start_headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})
