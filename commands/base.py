"""The one configured base for every command: frozen, keyword-only, camelCase, strict about fields."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """A request a client can send in the `data` of the envelope."""


NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Guid = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
PageNumber = Annotated[int, msgspec.Meta(ge=1)]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=100)]
JsonObject = dict[str, Any]
