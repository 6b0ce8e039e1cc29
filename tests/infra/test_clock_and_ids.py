from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from infra.clock import SystemClock
from infra.ids import UuidIds, request_id


def test_clock_is_aware_utc_and_current() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_ids_are_distinct_uuid4() -> None:
    ids = UuidIds()
    made = [ids.new_id() for _ in range(100)]
    assert len(set(made)) == 100
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # the canonical lower-case, hyphenated form


def test_request_ids_are_distinct_hex() -> None:
    made = [request_id() for _ in range(100)]
    assert len(set(made)) == 100
    assert all(len(r) == 32 and int(r, 16) >= 0 for r in made)
