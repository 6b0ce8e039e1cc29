"""Whether the edge is serving, and what it serves with once the lifespan has built it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.errors import NotServing
from handlers.bus import Bus


class ReadinessProbe(Protocol):
    """True when the database answers; used by GET /ready."""

    async def __call__(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Runtime:
    """What requests need, resolved once from the container when the lifespan has started."""

    bus: Bus
    ready: ReadinessProbe


class Lifecycle:
    """starting -> serving -> stopping. Requests are answered "53" outside `serving`."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._stopping = False

    def serve(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stopping = False

    def stop(self) -> None:
        """Refuse new requests from now on; requests already inside finish normally."""
        self._stopping = True

    @property
    def serving(self) -> bool:
        return self._runtime is not None and not self._stopping

    def current(self) -> Runtime:
        if self._runtime is None or self._stopping:
            raise NotServing()
        return self._runtime
