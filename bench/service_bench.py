"""Instances completed per second: one service task through the worker pool, against a fully
automatic process, both through the real server in the same run.

    .venv/bin/python -m bench.service_bench [--seconds 10] [--warmup 3] [--workers 8] [--in-flight 32]
                                            [--clients 8] [--rounds 1] [--database-url DSN] [--log-level INFO]

One run starts everything it needs and stops it again, also on Ctrl-C or an error:
- PostgreSQL: the embedded server in a temporary directory (a throwaway cluster: fsync and
  synchronous commit off), or the server named by --database-url; a fresh database with
  flowcore's schema, dropped at the end;
- `bench.stub_service` as a subprocess on 127.0.0.1: answers every call at once;
- `flowcore serve` as a subprocess, its worker pool in process (FLOWCORE_WORKERS).

Two models are deployed: "automatic" (start → one script task → end: the start command runs
it to completion) and "service" (start → one service task calling the stub → end: the start
command commits a job, a worker calls the stub and completes the instance). Clients send
StartProcessInstanceCommand over keep-alive connections, keeping at most --in-flight
instances unfinished at a time (a start that answers `completed` frees its place at once; one
that answers `running` frees it when the instance is seen completed in the database). After a
warm-up, the figure is the number of instances whose `completed_at` falls in the measured
window, divided by its length: the same count for both scenarios. The table also shows the
start-to-completion time of those instances (p50/p99) and the server's CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from bench.http_bench import (
    BenchError,
    ServerProcess,
    flowcore_command,
    free_port,
    guarded,
    post_command,
    print_profile,
    process_cpu,
)
from infra import sql
from infra.database import Db, connect, dsn_with_database
from infra.embedded_pg import EmbeddedPostgres
from infra.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
TENANT = "bench"  # the tenant bench.http_bench.post_command sends
AUTOMATIC, SERVICE = "automatic", "service"
PROCESS_KEYS = {AUTOMATIC: "BenchAutomatic", SERVICE: "BenchService"}
_THROWAWAY_CLUSTER = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
    "SELECT pg_reload_conf()",
)
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs" targetNamespace="http://flowcore.bench">\n'
)


def automatic_model() -> str:
    return _HEAD + f"""
  <bpmn:process id="{PROCESS_KEYS[AUTOMATIC]}" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Work"/>
    <bpmn:scriptTask id="Work" scriptFormat="javascript"><bpmn:script>x = x + 1;</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Work" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


def service_model(stub_url: str) -> str:
    return _HEAD + f"""
  <bpmn:process id="{PROCESS_KEYS[SERVICE]}" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:serviceTask id="Call">
      <bpmn:extensionElements><camunda:properties>
        <camunda:property name="Endpoint" value="{stub_url}/score"/>
        <camunda:property name="TimeoutMs" value="5000"/>
      </camunda:properties></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


# --- the load ------------------------------------------------------------------------------------


def _start_request(base_url: str, process_key: str) -> tuple[str, int, bytes]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps(
        {"cmd": "StartProcessInstanceCommand", "data": {"processKey": process_key, "variables": {"x": 0}}},
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /api/core/cmd HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"X-Tenant-ID: {TENANT}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode("latin-1") + body


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    begin = lowered.index(b"\r\ncontent-length:") + len(b"\r\ncontent-length:")
    return int(lowered[begin : lowered.index(b"\r\n", begin)])


class Load:
    """Closed-loop starts with at most `in_flight` unfinished instances."""

    def __init__(
        self, base_url: str, dsn: str, process_key: str, *, clients: int, in_flight: int, server_pid: int
    ) -> None:
        self.host, self.port, self.request = _start_request(base_url, process_key)
        self.server_pid = server_pid
        self.server_cpu = 0.0  # CPU seconds the server used in the measured window
        self.dsn = dsn
        self.process_key = process_key
        self.clients = clients
        self.places = asyncio.Semaphore(in_flight)
        self.awaiting = 0  # started instances answered `running`: their place frees on completion
        self.refused = 0
        self.stopping = asyncio.Event()

    async def _client(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            while not self.stopping.is_set():
                await self.places.acquire()
                if self.stopping.is_set():
                    self.places.release()
                    return
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                if b'"isSuccessful":true' not in body:
                    self.refused += 1
                    self.places.release()
                elif b'"status":"completed"' in body:
                    self.places.release()
                else:
                    self.awaiting += 1
        finally:
            writer.close()

    async def _monitor(self) -> None:
        """Frees the places of instances that finished in the background (via the workers)."""
        connection = await asyncpg.connect(self.dsn)
        try:
            seen = await self._finished(connection)
            while not self.stopping.is_set():
                await asyncio.sleep(0.01)
                now = await self._finished(connection)
                freed = min(now - seen, self.awaiting)
                seen = now
                self.awaiting -= freed
                for _ in range(freed):
                    self.places.release()
        finally:
            await connection.close()

    async def _finished(self, connection: asyncpg.Connection) -> int:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM process_instances WHERE tenant_id = $1 AND process_key = $2 "
            "AND status IN ('completed', 'error')", TENANT, self.process_key,
        )
        return count

    async def run(self, warmup: float, seconds: float) -> tuple[datetime, datetime]:
        """Drive for warm-up + seconds; returns the measured window (wall clock, UTC)."""
        tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        tasks.append(asyncio.create_task(self._monitor()))
        try:
            await asyncio.sleep(warmup)
            began, cpu = datetime.now(UTC), process_cpu(self.server_pid)
            await asyncio.sleep(seconds)
            ended, self.server_cpu = datetime.now(UTC), process_cpu(self.server_pid) - cpu
        finally:
            self.stopping.set()
            for _ in range(self.clients):
                self.places.release()  # wake clients waiting for a place
            await asyncio.gather(*tasks, return_exceptions=True)
        return began, ended


@dataclass(frozen=True)
class Row:
    scenario: str
    completed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float  # CPU seconds the server used in the window

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds


async def _window_figures(
    dsn: str, process_key: str, began: datetime, ended: datetime
) -> tuple[int, float, float, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT extract(epoch FROM completed_at - started_at) * 1000 AS ms FROM process_instances "
            "WHERE tenant_id = $1 AND process_key = $2 AND status = 'completed' "
            "AND completed_at >= $3 AND completed_at < $4", TENANT, process_key, began, ended,
        )
        errors = await connection.fetchval(
            "SELECT count(*) FROM process_instances WHERE tenant_id = $1 AND process_key = $2 AND status = 'error'",
            TENANT, process_key,
        )
    finally:
        await connection.close()
    latencies = sorted(float(row["ms"]) for row in rows)

    def pct(fraction: float) -> float:
        return latencies[max(0, int(fraction * len(latencies) + 0.5) - 1)] if latencies else float("nan")

    return len(latencies), pct(0.5), pct(0.99), int(errors)


async def _drained(dsn: str, timeout: float = 60) -> None:
    """Wait until no instance is still running (the service scenario's backlog finishes)."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while await connection.fetchval("SELECT count(*) FROM process_instances WHERE status = 'running'"):
            if time.monotonic() > deadline:
                raise BenchError("instances were still running a minute after the load stopped")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


def measure(scenario: str, server: ServerProcess, dsn: str, args: argparse.Namespace) -> Row:
    assert server.process is not None
    load = Load(server.base_url, dsn, PROCESS_KEYS[scenario], clients=args.clients, in_flight=args.in_flight,
                server_pid=server.process.pid)
    began, ended = asyncio.run(load.run(args.warmup, args.seconds))
    asyncio.run(_drained(dsn))
    completed, p50, p99, errors = asyncio.run(_window_figures(dsn, PROCESS_KEYS[scenario], began, ended))
    if load.refused:
        raise BenchError(f"{scenario}: {load.refused} starts were refused; see the server log")
    seconds = (ended - began).total_seconds()
    return Row(scenario, completed, seconds, p50, p99, errors, load.server_cpu)


# --- setup ---------------------------------------------------------------------------------------


async def _create_database(admin_dsn: str, name: str, tune_cluster: bool) -> str:
    connection = await connect(admin_dsn)
    try:
        if tune_cluster:
            for statement in _THROWAWAY_CLUSTER:
                await connection.execute(statement)
        await connection.execute(sql.create_database(name))
        version = str(await connection.fetchval("SHOW server_version")).split()[0]
        fsync = await connection.fetchval("SHOW fsync")
    finally:
        await connection.close()
    database = await connect(dsn_with_database(admin_dsn, name))
    try:
        await migrate(Db(database))
    finally:
        await database.close()
    return f"PostgreSQL {version}, fsync {fsync}"


async def _drop_database(admin_dsn: str, name: str) -> None:
    connection = await connect(admin_dsn)
    try:
        await connection.execute(sql.drop_database(name))
    finally:
        await connection.close()


def _data(name: str, status: int, body: bytes) -> dict[str, object]:
    envelope = json.loads(body)
    if status != 200 or not envelope.get("isSuccessful"):
        raise BenchError(f"{name} was refused (HTTP {status}): {body[:500]!r}")
    data: dict[str, object] = envelope["data"]
    return data


def _check_both_complete(base_url: str) -> None:
    for scenario in (AUTOMATIC, SERVICE):
        started = _data(f"{scenario} start", *post_command(
            base_url, "StartProcessInstanceCommand", {"processKey": PROCESS_KEYS[scenario], "variables": {"x": 0}}
        ))
        deadline = time.monotonic() + 30
        state = started
        while state.get("status") != "completed":
            if state.get("status") == "error" or time.monotonic() > deadline:
                raise BenchError(f"the {scenario} instance did not complete: {state}")
            time.sleep(0.05)
            state = _data("state", *post_command(
                base_url, "GetProcessInstanceStateCommand", {"instanceGuid": started["instanceGuid"]}
            ))


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _format(rows: list[Row]) -> str:
    header = ("scenario", "instances/s", "completed", "start→done p50 ms", "p99 ms", "errors", "server CPU")
    cells = [header] + [
        (r.scenario, f"{r.per_second:.0f}", str(r.completed), f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", str(r.errors),
         f"{r.server_cpu / r.seconds:.0%}")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cell, widths, strict=True)))
             for cell in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    name = f"flowcore_service_bench_{secrets.token_hex(4)}"
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="flowcore-service-bench-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        if args.database_url:
            admin_dsn = args.database_url
        else:
            print("starting the embedded PostgreSQL ...", flush=True)
            pg_dir = Path(tempfile.mkdtemp(prefix="flowcore-service-bench-pg-", dir=_scratch_root()))
            stack.callback(shutil.rmtree, pg_dir, ignore_errors=True)
            postgres = EmbeddedPostgres(pg_dir)
            stack.callback(postgres.stop)
            admin_dsn = postgres.start()
        stack.callback(lambda: asyncio.run(_drop_database(admin_dsn, name)))
        database = asyncio.run(_create_database(admin_dsn, name, tune_cluster=not args.database_url))
        dsn = dsn_with_database(admin_dsn, name)

        stub_port = free_port()
        stub = ServerProcess("stub service", [sys.executable, "-m", "bench.stub_service", "--port", str(stub_port)],
                             dict(os.environ), scratch / "stub.log", stub_port)
        stack.callback(stub.stop)
        stub.start()
        stub.wait_ready("/health")

        port = free_port()
        profile = scratch / "flowcore.prof"
        flowcore = ServerProcess(
            "flowcore", flowcore_command(port, profile if args.profile else None),
            {**os.environ, "DATABASE_URL": dsn, "FLOWCORE_DEMO_TENANT": "", "FLOWCORE_LOG_LEVEL": args.log_level,
             "FLOWCORE_WORKERS": str(args.workers), "FLOWCORE_POOL_SIZE": str(args.pool_size),
             "FLOWCORE_JOB_POLL_MS": "10", "FLOWCORE_DATA_DIR": str(scratch / "flowcore-data")},
            scratch / "flowcore.log", port,
        )
        stack.callback(flowcore.stop)
        print("starting the stub service and flowcore ...", flush=True)
        flowcore.start()
        flowcore.wait_ready("/ready")
        for xml in (automatic_model(), service_model(stub.base_url)):
            _data("deploy", *post_command(flowcore.base_url, "CreateProcessDefinitionCommand", {"bpmnXml": xml}))
        _check_both_complete(flowcore.base_url)

        print(f"\ndatabase: {database}" + ("" if args.database_url else " (embedded, throwaway)"))
        print(f"load: {args.clients} keep-alive connections, at most {args.in_flight} unfinished instances, "
              f"warm-up {args.warmup:g} s, {args.seconds:g} s measured per scenario, {args.rounds} round(s); "
              f"flowcore: {args.workers} workers, pool size {args.pool_size}, log level {args.log_level}; "
              f"machine: {os.cpu_count()} cores shared by client, stub, server and database")
        rows: list[Row] = []
        scenarios = (args.only,) if args.only else (AUTOMATIC, SERVICE)
        for round_number in range(1, args.rounds + 1):
            for scenario in scenarios:
                print(f"driving the {scenario} scenario (round {round_number}) ...", flush=True)
                rows.append(measure(scenario, flowcore, dsn, args))
        flowcore.stop()  # a profiled server writes its profile as it exits
        print()
        print(_format(rows))
        if not args.only:
            auto = statistics.median(r.per_second for r in rows if r.scenario == AUTOMATIC)
            service = statistics.median(r.per_second for r in rows if r.scenario == SERVICE)
            print(f"\nservice / automatic (instances per second): {service / auto:.2f}")
        if args.profile:
            print_profile(profile, limit=35)
        if any(r.errors for r in rows):
            print(f"instances in error: see {scratch / 'flowcore.log'}", file=sys.stderr)
            return 1
        return 0


def _parser() -> argparse.ArgumentParser:
    summary = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="bench.service_bench", description=summary)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per scenario (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up per scenario (default 3)")
    parser.add_argument("--workers", type=int, default=8, help="flowcore's FLOWCORE_WORKERS (default 8)")
    parser.add_argument("--in-flight", type=int, default=32, help="most unfinished instances at a time (default 32)")
    parser.add_argument("--clients", type=int, default=8, help="keep-alive connections sending starts (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="run both scenarios this many times (default 1)")
    parser.add_argument("--pool-size", type=int, default=10, help="flowcore's database pool (default 10)")
    parser.add_argument("--database-url", help="an existing PostgreSQL server (default: an embedded one)")
    parser.add_argument("--log-level", default="INFO", help="flowcore's FLOWCORE_LOG_LEVEL (default INFO, as shipped)")
    parser.add_argument("--only", choices=(AUTOMATIC, SERVICE), help="run one scenario only")
    parser.add_argument("--profile", action="store_true", help="run flowcore under cProfile and print where time goes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.workers, args.in_flight, args.clients, args.rounds) < 1 or args.seconds <= 0 or args.warmup < 0:
        _parser().error("--workers, --in-flight, --clients and --rounds must be >= 1, --seconds > 0, --warmup >= 0")
    return guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
