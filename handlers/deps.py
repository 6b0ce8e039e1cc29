"""What every handler is given: ports and settings, assembled once at the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from domain.engine import Limits
from domain.transition import IdSource
from handlers.definition_cache import DefinitionCache
from handlers.latest_definitions import LatestDefinitions
from handlers.ports import Clock, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class Deps:
    uow: UnitOfWorkFactory
    clock: Clock
    ids: IdSource
    definitions: DefinitionCache = field(default_factory=lambda: DefinitionCache())
    latest_definitions: LatestDefinitions = field(default_factory=lambda: LatestDefinitions())
    limits: Limits = field(default_factory=Limits)
    max_conflict_retries: int = 3  # lost compare-and-set races retried on fresh state
    # monotonic milliseconds, to time a supervised step; None reports no execution time
    stopwatch: Callable[[], float] | None = None
