"""The wall clock handlers read: always timezone-aware UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def monotonic_ms() -> float:
    """Milliseconds on a clock that never jumps: for timing, not for timestamps."""
    return time.perf_counter() * 1000.0
