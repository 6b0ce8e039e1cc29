"""The job worker pool: claim due jobs, perform them outside any transaction, feed results back.

One dispatcher per process claims as many due jobs as it has free slots (FOR UPDATE SKIP
LOCKED, so any number of processes share the queue) and runs each in its own task. It looks at
the queue when PostgreSQL notifies it of new due jobs (LISTEN), when a slot frees up, and every
poll interval besides (timers coming due, retries, expired leases, a lost notification):
- a service call goes out through the HttpCaller; its result is classified
  (domain.service_outcome) and handed to handlers.jobs, which completes, fails or reschedules
  the task and settles the job in one transaction;
- a timer fires through handlers.jobs as well.
Each claim leases the job for its call timeout plus a margin. A worker that dies simply lets
the lease run out: the job is claimed again and that claim counts as an attempt, so a call
whose worker keeps dying still ends (the task fails once the attempts are spent). A worker
that loses its lease finds its result refused when feeding it back, and changes nothing.

A feed-back that fails (the database unreachable, the instance changing all the time, a bug)
is tried again a few times with a short backoff, the job's lease extended meanwhile, because
the outcome is in hand: left to its lease, the job would be claimed again and its service
called again. Only when that fails too is the job left to its lease. A job claimed past its
last attempt is ended whatever happens: its task (or timer) fails, and if even that cannot be
recorded, the job alone is marked failed, so that no job is claimed forever.

Every few minutes the pool also runs housekeeping (infra.housekeeping): finished jobs past
their retention and expired idempotency keys are deleted.

`stop()` claims nothing more, gives running jobs a grace period, then interrupts them and
hands their jobs straight back to the queue (an interrupted claim does not count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from domain.service_outcome import Outcome, classify
from domain.transition import CallService
from handlers.deps import Deps
from handlers.errors import VersionConflict
from handlers.jobs import (
    CALL_SERVICE,
    SCHEDULE_TIMER,
    Backoff,
    ClaimedJob,
    Settled,
    attempts_spent,
    fire_timer,
    lease_expired,
)
from handlers.jobs import record_call_outcome as record_outcome
from handlers.ports import StorageUnavailable
from infra.housekeeping import Housekeeping
from infra.http_caller import HttpCaller
from infra.job_store import Job, PostgresJobStore
from infra.settings import Settings

log = logging.getLogger("flowcore.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    size: int = 4  # jobs performed at once by this process
    poll_interval: float = 0.2  # seconds between looks at the queue while idle
    lease_margin: float = 15.0  # seconds a claim outlives its call's timeout
    backoff_cap_ms: int = 300_000
    stop_grace: float = 10.0  # seconds running jobs get to finish when the worker stops
    bpmn_error_field: str | None = "bpmnErrorCode"  # a task's BpmnErrorField property wins
    listen: bool = True  # LISTEN for new jobs (one pooled connection) rather than only polling
    feedback_tries: int = 6  # times an outcome in hand is offered to the database before giving up
    feedback_backoff: float = 0.5  # seconds before its second try; doubling, at most FEEDBACK_BACKOFF_CAP
    housekeeping_interval: float = 300.0  # seconds between housekeeping passes (given a Housekeeping)


FEEDBACK_BACKOFF_CAP = 8.0
HOUSEKEEPING_FIRST_DELAY = 60.0  # the first pass after start, so that a short-lived process makes one too


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def claimed(job: Job, worker_id: str) -> ClaimedJob:
    effect = job.effect
    return ClaimedJob(
        id=job.id,
        tenant_id=job.tenant_id,
        instance_guid=job.instance_guid,
        token_id=job.token_id,
        node_id=job.node_id,
        kind=job.kind,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        worker_id=worker_id,
        attempt_group=effect.attempt_group if isinstance(effect, CallService) else 1,
        retry_backoff_ms=effect.retry_backoff_ms if isinstance(effect, CallService) else 0,
    )


class JobWorker:
    def __init__(
        self,
        deps: Deps,
        store: PostgresJobStore,
        caller: HttpCaller,
        config: WorkerConfig = WorkerConfig(),
        *,
        worker_id: str | None = None,
        jitter: Callable[[], float] = random.random,
        housekeeping: Housekeeping | None = None,
    ) -> None:
        self._deps = deps
        self._store = store
        self._caller = caller
        self._config = config
        self._jitter = jitter
        self._housekeeping = housekeeping
        self._housekeeper: asyncio.Task[None] | None = None
        self.worker_id = worker_id or new_worker_id()
        self._running: dict[asyncio.Task[Settled | None], Job] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("the worker is already started")
        self._stopping.clear()
        self._loop = asyncio.create_task(self._dispatch(), name=f"flowcore-worker {self.worker_id}")
        if self._config.listen:
            self._listener = asyncio.create_task(self._listen(), name=f"flowcore-worker-listen {self.worker_id}")
        if self._housekeeping is not None and self._config.housekeeping_interval > 0:
            self._housekeeper = asyncio.create_task(
                self._keep_house(self._housekeeping), name=f"flowcore-housekeeping {self.worker_id}"
            )
        log.info("job worker %s started (%d at once)", self.worker_id, self._config.size)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._loop is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._housekeeper is not None:
            # A pass under way ends after its current batch; one stuck on the database is cut off.
            done, _ = await asyncio.wait([self._housekeeper], timeout=self._config.stop_grace)
            if not done:
                self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        running = list(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=self._config.stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        log.info("job worker %s stopped", self.worker_id)

    def nudge(self) -> None:
        """Look at the queue now rather than at the next poll (new jobs were just committed)."""
        self._wake.set()

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def housekeeping(self) -> Housekeeping | None:
        return self._housekeeping

    # -- claiming -------------------------------------------------------------------------------

    async def run_once(self) -> list[Settled | None]:
        """Claim one batch and perform it to the end (tests, tools): what became of each job."""
        jobs = await self._claim(self._config.size)
        return list(await asyncio.gather(*(self._perform(job) for job in jobs)))

    async def _claim(self, limit: int) -> list[Job]:
        return await self._store.claim_due(
            worker_id=self.worker_id,
            limit=limit,
            lease_margin_seconds=self._config.lease_margin,
            now=self._deps.clock.now(),
        )

    async def _dispatch(self) -> None:
        config = self._config
        failures = 0
        while not self._stopping.is_set():
            free = config.size - len(self._running)
            full = False
            if free > 0:
                try:
                    jobs = await self._claim(free)
                    failures = 0
                except StorageUnavailable as exc:
                    if failures == 0:
                        log.warning("job worker cannot reach the database: %s", exc)
                    failures += 1
                    jobs = []
                except Exception:
                    log.exception("job worker failed to claim jobs")
                    failures += 1
                    jobs = []
                for job in jobs:
                    task = asyncio.create_task(self._perform(job), name=f"flowcore-job {job.id}")
                    self._running[task] = job
                    task.add_done_callback(self._finished)
                full = len(jobs) == free
            if full:
                # Every slot is taken: look again as soon as one frees up.
                self._wake.clear()
                if len(self._running) >= config.size:
                    await self._wake.wait()
                continue
            self._wake.clear()
            # While the database is unreachable, look less and less often (up to every 5 s).
            pause = config.poll_interval if not failures else min(config.poll_interval * 2 ** min(failures, 10), 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _listen(self) -> None:
        """Wake the dispatcher on the database's notice of new jobs; polling stays the fallback
        (a lost listening connection is opened again a little later)."""
        while not self._stopping.is_set():
            try:
                async with self._store.listening(self.nudge) as lost:
                    await lost.wait()
                log.warning("job worker lost its listening connection; polling until it is back")
            except StorageUnavailable as exc:
                log.debug("job worker cannot listen for new jobs: %s", exc)
            except Exception:
                log.exception("job worker cannot listen for new jobs")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 5.0)

    def _finished(self, task: asyncio.Task[Settled | None]) -> None:
        self._running.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job task ended with an error", exc_info=task.exception())

    # -- performing -----------------------------------------------------------------------------

    async def _perform(self, job: Job) -> Settled | None:
        ticket = claimed(job, self.worker_id)
        settled: Settled | None = None
        try:
            if job.kind == CALL_SERVICE and isinstance(job.effect, CallService):
                outcome = await self._call(job, job.effect, ticket)
                backoff = Backoff(cap_ms=self._config.backoff_cap_ms, jitter=self._jitter())
                settled = await self._record(ticket, lambda: record_outcome(self._deps, ticket, outcome, backoff))
            elif job.kind == SCHEDULE_TIMER:
                settled = await self._record(ticket, lambda: fire_timer(self._deps, ticket))
            else:
                log.error("job %s has unknown kind %r; leaving it failed", job.id, job.kind)
                await self._store.fail(job.id, self.worker_id, job.attempts, error=f"unknown job kind {job.kind!r}",
                                       now=self._deps.clock.now())
                return None
        except asyncio.CancelledError:
            await self._release(ticket)
            raise
        except Exception:
            # The job stays leased; when the lease runs out it is claimed again (an attempt).
            log.exception("job %s of instance %s could not be performed", job.id, job.instance_guid)
        if settled is None and attempts_spent(ticket):
            await self._abandon(ticket)
        log.debug("job %s (%s, attempt %d) %s", job.id, job.kind, job.attempts, settled)
        return settled

    async def _call(self, job: Job, effect: CallService, ticket: ClaimedJob) -> Outcome:
        if attempts_spent(ticket):
            return lease_expired(ticket)  # the last attempt's worker died: nothing is left
        result = await self._caller.call(effect, idempotency_key=job.idempotency_key)
        return classify(result, bpmn_error_field=effect.bpmn_error_field or self._config.bpmn_error_field)

    async def _record(self, ticket: ClaimedJob, feed_back: Callable[[], Awaitable[Settled]]) -> Settled | None:
        """Feed back an outcome in hand, trying again after a failure while this worker still
        holds the job; None when every try failed (the job is left to its lease)."""
        config = self._config
        tries = max(1, config.feedback_tries)
        for attempt in range(1, tries + 1):
            try:
                return await feed_back()
            except (StorageUnavailable, VersionConflict) as exc:
                why, trace = f"{type(exc).__name__}: {exc}", None
            except Exception as exc:
                # Only the type in the warnings: an unknown exception's text may quote the data.
                why, trace = type(exc).__name__, exc
            if attempt == tries:
                log.error(
                    "job %s of instance %s: its outcome could not be recorded in %d tries (%s); "
                    "the job is left to its lease", ticket.id, ticket.instance_guid, tries, why, exc_info=trace,
                )
                return None
            delay = min(config.feedback_backoff * 2 ** (attempt - 1), FEEDBACK_BACKOFF_CAP)
            log.warning(
                "job %s of instance %s: its outcome could not be recorded (%s); try %d of %d in %.1f s",
                ticket.id, ticket.instance_guid, why, attempt + 1, tries, delay,
            )
            if not await self._keep_lease(ticket, delay + config.lease_margin):
                log.warning(
                    "job %s of instance %s is no longer held by this worker (its outcome was recorded after "
                    "all, or another worker claimed it); nothing more to do", ticket.id, ticket.instance_guid,
                )
                return Settled.LOST
            await asyncio.sleep(delay)
        return None  # pragma: no cover - the loop always returns

    async def _keep_lease(self, ticket: ClaimedJob, seconds: float) -> bool:
        """Extend the lease for the next try; False only when the job is known to be lost."""
        try:
            return await self._store.extend_lease(
                ticket.id, ticket.worker_id, ticket.attempt, seconds=seconds, now=self._deps.clock.now()
            )
        except Exception as exc:
            # Unreachable database: the next try will tell. The lease may run out meanwhile, and a
            # feed-back after another claim is refused, so trying cannot do harm.
            log.debug("job %s: lease not extended (%s)", ticket.id, type(exc).__name__)
            return True

    async def _abandon(self, ticket: ClaimedJob) -> None:
        """The job's attempts are spent and even its failure could not be recorded on the
        instance: end the job alone, so it is not claimed again and again. The instance stays as
        it is; an operator has to look at it (the log says which)."""
        error = f"attempts spent ({ticket.max_attempts}) and the failure could not be recorded on the instance"
        try:
            failed = await self._store.fail(
                ticket.id, ticket.worker_id, ticket.attempt, error=error, now=self._deps.clock.now()
            )
        except Exception as exc:
            log.error("job %s of instance %s could not be marked failed (%s); it will be claimed again",
                      ticket.id, ticket.instance_guid, type(exc).__name__)
            return
        if failed:
            log.error("job %s (%s) of instance %s marked failed: %s; the instance was left unchanged",
                      ticket.id, ticket.kind, ticket.instance_guid, error)

    async def _release(self, ticket: ClaimedJob) -> None:
        try:
            await asyncio.shield(
                self._store.release(ticket.id, ticket.worker_id, ticket.attempt, now=self._deps.clock.now())
            )
        except Exception:
            log.warning("job %s could not be handed back; its lease will run out", ticket.id, exc_info=True)

    # -- housekeeping ---------------------------------------------------------------------------

    async def _keep_house(self, housekeeping: Housekeeping) -> None:
        pause = min(self._config.housekeeping_interval, HOUSEKEEPING_FIRST_DELAY)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            if self._stopping.is_set():
                return
            pause = self._config.housekeeping_interval
            try:
                swept = await housekeeping.run(self._deps.clock.now(), keep_going=lambda: not self._stopping.is_set())
            except StorageUnavailable as exc:
                log.warning("housekeeping skipped: %s", exc)
                continue
            except Exception:
                log.exception("housekeeping failed")
                continue
            if swept.total:
                log.info("housekeeping deleted %d finished jobs and %d expired idempotency keys",
                         swept.jobs, swept.idempotency_keys)


def config_from(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        size=settings.workers,
        poll_interval=settings.job_poll_ms / 1000,
        lease_margin=settings.job_lease_margin_ms / 1000,
        backoff_cap_ms=settings.retry_backoff_cap_ms,
        bpmn_error_field=settings.bpmn_error_field,
    )
