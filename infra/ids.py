"""Random ids for instances and tokens (uuid4), the production IdSource."""

from __future__ import annotations

import uuid


class UuidIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())
