"""HTTP throughput of flowcore's command endpoint against a bare Starlette+asyncpg ceiling.

    .venv/bin/python -m bench.http_bench [--seconds 10] [--warmup 3] [--connections 16] [--rounds 1]
                                         [--database-url DSN] [--generator auto|wrk|python] [--profile]

One run starts everything it needs and stops it again, also on Ctrl-C or an error:
- PostgreSQL: the embedded server in a temporary directory (a throwaway cluster, so fsync and
  synchronous commit are off), or the server named by --database-url (its settings as they are);
  either way two fresh databases are created with flowcore's schema and dropped at the end;
- `flowcore serve` as a subprocess (one uvicorn worker, uvloop, httptools, no demo model);
- `bench.bare_app` as a subprocess, served the same way.

A model of five script tasks (`x = x + 1`, the engine benchmark's sequence model) is deployed
with CreateProcessDefinitionCommand and one start is checked to end `completed` with x == 5.
Then each server in turn gets the same StartProcessInstanceCommand body over N keep-alive
connections, a warm-up, and a measured window (bench/load.py). Only successful answers count.
The table shows req/s, p50/p99 latency and errors per server, then the ratio flowcore/bare and
whether the target (flowcore >= 0.5 x bare) is met. It also shows the CPU each party used per
answer during the window (read from /proc: the server process; PostgreSQL's postmaster and
backends when the server is the embedded one; the load generator) and how busy the server process
was: a Python server saturates one core, so its CPU per request sets its throughput, and that
figure is far less sensitive to whatever else runs on the machine than req/s is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import msgspec

from bench.engine_bench import sequence_model
from bench.load import LoadResult, die_with_parent, drive, wrk_path
from infra import sql
from infra.database import Db, connect, dsn_with_database
from infra.embedded_pg import EmbeddedPostgres
from infra.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
TENANT = "bench"
PROCESS_KEY = "sequence"
START_BODY = json.dumps(
    {"cmd": "StartProcessInstanceCommand", "data": {"processKey": PROCESS_KEY, "variables": {"x": 0}}},
    separators=(",", ":"),
).encode()
HEADERS = [("X-Tenant-ID", TENANT)]

# A throwaway cluster: durability would only measure the disk, not the two servers.
_THROWAWAY_CLUSTER = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
    "SELECT pg_reload_conf()",
)


class BenchError(RuntimeError):
    """The benchmark cannot run or a server did not behave."""


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """A server subprocess with its output in a log file; stop() always leaves nothing running."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path, port: int) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the benchmark only, which stops this in order
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise BenchError(f"{self.name} exited during startup:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    connection.request("GET", path)
                    if connection.getresponse().status == 200:
                        return
                finally:
                    connection.close()
            time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- HTTP calls for setup and checks ----------------------------------------------------------


def post_command(base_url: str, cmd: str, data: dict[str, Any]) -> tuple[int, bytes]:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        body = json.dumps({"cmd": cmd, "data": data}).encode()
        connection.request(
            "POST", "/api/core/cmd", body=body, headers={"Content-Type": "application/json", "X-Tenant-ID": TENANT}
        )
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _successful_data(name: str, status: int, body: bytes) -> dict[str, Any]:
    envelope = json.loads(body)
    if status != 200 or not envelope.get("isSuccessful"):
        raise BenchError(f"{name} refused the request (HTTP {status}): {body[:500]!r}")
    data: dict[str, Any] = envelope["data"]
    return data


def check_start(name: str, base_url: str) -> tuple[str, int]:
    """One start over HTTP must finish the instance; returns its guid and the answer's size."""
    status, body = post_command(base_url, "StartProcessInstanceCommand", json.loads(START_BODY)["data"])
    data = _successful_data(name, status, body)
    if data.get("status") != "completed":
        raise BenchError(f"{name}: the instance did not complete: {body[:500]!r}")
    return str(data["instanceGuid"]), len(body)


# --- the database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Databases:
    admin_dsn: str
    flowcore_dsn: str
    bare_dsn: str
    names: tuple[str, str]
    description: str


async def _admin(dsn: str, statements: Sequence[str]) -> None:
    connection = await connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _create_databases(admin_dsn: str, names: tuple[str, str], tune_cluster: bool) -> str:
    connection = await connect(admin_dsn)
    try:
        if tune_cluster:
            for statement in _THROWAWAY_CLUSTER:
                await connection.execute(statement)
        for name in names:
            await connection.execute(sql.create_database(name))
        settings = {key: await connection.fetchval(f"SHOW {key}") for key in
                    ("server_version", "fsync", "synchronous_commit")}
    finally:
        await connection.close()
    for name in names:
        database = await connect(dsn_with_database(admin_dsn, name))
        try:
            await migrate(Db(database))
        finally:
            await database.close()
    version = str(settings["server_version"]).split()[0]
    return f"PostgreSQL {version}, fsync {settings['fsync']}, synchronous_commit {settings['synchronous_commit']}"


async def _stored_instance(dsn: str, guid: str) -> tuple[int, int]:
    """The compact JSON size of the state flowcore stored, and the history rows it wrote."""
    connection = await connect(dsn)
    try:
        raw = await connection.fetchval(
            "SELECT state FROM process_instances WHERE tenant_id = $1 AND instance_guid = $2", TENANT, guid
        )
        events = await connection.fetchval(
            "SELECT count(*) FROM instance_history WHERE tenant_id = $1 AND instance_guid = $2", TENANT, guid
        )
    finally:
        await connection.close()
    if raw is None:
        raise BenchError(f"flowcore stored no instance {guid}")
    return len(msgspec.json.encode(msgspec.json.decode(raw))), int(events)


# --- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds (user + system) used so far by each party of a measurement."""

    server: float
    database: float | None  # None when the database server is not ours to look at
    client: float

    def minus(self, earlier: CpuTimes) -> CpuTimes:
        database = None if self.database is None or earlier.database is None else self.database - earlier.database
        return CpuTimes(self.server - earlier.server, database, self.client - earlier.client)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; empty when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def _children(ppid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields and fields[1] == str(ppid):
                    found.append(int(entry.name))
    return found


def cpu_times(server_pid: int, postmaster_pid: int | None) -> CpuTimes:
    """The server process, PostgreSQL (postmaster and its backends, when embedded), and the load
    generator (a finished child: wrk or bench.load)."""
    database = None
    if postmaster_pid is not None:
        database = sum(process_cpu(pid) for pid in [postmaster_pid, *_children(postmaster_pid)])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuTimes(process_cpu(server_pid), database, children.ru_utime + children.ru_stime)


@dataclass(frozen=True)
class Row:
    scenario: str
    result: LoadResult
    cpu: CpuTimes  # used during the measured window

    def per_request_ms(self, seconds: float | None) -> str:
        answers = self.result.ok + self.result.errors
        return "-" if seconds is None or not answers else f"{seconds / answers * 1000:.2f}"


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} cores ({model}), Python {platform.python_version()}"


# uvicorn re-raises the stop signal once it has shut down; a Python handler for it turns that
# into a normal exit, so cProfile still writes its file.
_PROFILED_SERVE = """
import cProfile, signal, sys
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
from app.cli import main
cProfile.run("main(sys.argv[2:])", sys.argv[1])
"""


def flowcore_command(port: int, profile_path: Path | None) -> list[str]:
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if profile_path is None:
        return [sys.executable, "-m", "app.cli", *serve]
    return [sys.executable, "-c", _PROFILED_SERVE, str(profile_path), *serve]


def print_profile(path: Path, limit: int = 30) -> None:
    import pstats

    if not path.exists():
        print(f"(no profile was written to {path})")
        return
    stats = pstats.Stats(str(path))
    stats.strip_dirs()
    print("\nflowcore server profile (cProfile), by own time:")
    stats.sort_stats("tottime").print_stats(limit)
    print("flowcore server profile (cProfile), by cumulative time:")
    stats.sort_stats("cumulative").print_stats(limit)


def _server_cpu_per_request(rows: list[Row], prefix: str) -> float:
    return statistics.median(
        row.cpu.server / max(1, row.result.ok + row.result.errors) for row in rows if row.scenario.startswith(prefix)
    )


def _format_table(rows: list[Row]) -> str:
    header = ("scenario", "req/s", "p50 ms", "p99 ms", "errors", "server CPU", "CPU ms/req: server", "db", "client")
    cells = [header] + [
        (row.scenario, f"{row.result.per_second:.0f}", f"{row.result.p50_ms:.1f}", f"{row.result.p99_ms:.1f}",
         str(row.result.errors), f"{row.cpu.server / row.result.seconds:.0%}", row.per_request_ms(row.cpu.server),
         row.per_request_ms(row.cpu.database), row.per_request_ms(row.cpu.client))
        for row in rows
    ]
    widths = [max(len(cell[i]) for cell in cells) for i in range(len(header))]
    lines = []
    for n, cell in enumerate(cells):
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cell, widths,
                                                                                                     strict=True))))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if wrk_path() else "python"
    token = secrets.token_hex(4)
    names = (f"flowcore_bench_{token}", f"bare_bench_{token}")
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="flowcore-http-bench-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)

        postmaster_pid: int | None = None
        if args.database_url:
            admin_dsn = args.database_url
        else:
            print("starting the embedded PostgreSQL ...", flush=True)
            pg_dir = Path(tempfile.mkdtemp(prefix="flowcore-http-bench-pg-", dir=_scratch_root()))
            stack.callback(shutil.rmtree, pg_dir, ignore_errors=True)
            postgres = EmbeddedPostgres(pg_dir)
            stack.callback(postgres.stop)
            admin_dsn = postgres.start()
            postmaster_pid = postgres.postmaster_pid
        stack.callback(lambda: asyncio.run(_admin(admin_dsn, [sql.drop_database(n) for n in names])))
        database = asyncio.run(_create_databases(admin_dsn, names, tune_cluster=not args.database_url))
        flowcore_dsn, bare_dsn = (dsn_with_database(admin_dsn, n) for n in names)

        profile_path = scratch / "flowcore.prof" if args.profile else None
        flowcore_port = free_port()
        flowcore = ServerProcess(
            "flowcore", flowcore_command(flowcore_port, profile_path),
            {**os.environ, "DATABASE_URL": flowcore_dsn, "FLOWCORE_DEMO_TENANT": "",
             "FLOWCORE_POOL_SIZE": str(args.pool_size), "FLOWCORE_LOG_LEVEL": args.log_level,
             "FLOWCORE_DATA_DIR": str(scratch / "flowcore-data")},
            scratch / "flowcore.log", flowcore_port,
        )
        stack.callback(flowcore.stop)
        print("starting flowcore ...", flush=True)
        flowcore.start()
        flowcore.wait_ready("/ready")
        status, body = post_command(flowcore.base_url, "CreateProcessDefinitionCommand",
                                    {"bpmnXml": sequence_model("javascript"), "name": "bench sequence"})
        deployed = _successful_data("flowcore deploy", status, body)
        if deployed.get("processKey") != PROCESS_KEY:
            raise BenchError(f"the deployed model has key {deployed.get('processKey')!r}, not {PROCESS_KEY!r}")
        guid, flowcore_answer = check_start("flowcore", flowcore.base_url)
        status, body = post_command(flowcore.base_url, "GetProcessInstanceStateCommand", {"instanceGuid": guid})
        variables = _successful_data("flowcore state", status, body)["state"]["variables"]
        if variables.get("x") != 5:
            raise BenchError(f"flowcore ran the five script tasks wrongly: x = {variables.get('x')!r}")
        state_bytes, history_rows = asyncio.run(_stored_instance(flowcore_dsn, guid))

        bare_port = free_port()
        bare = ServerProcess(
            "bare app",
            [sys.executable, "-m", "bench.bare_app", "--database-url", bare_dsn, "--port", str(bare_port),
             "--pool-size", str(args.pool_size), "--state-bytes", str(state_bytes)],
            dict(os.environ), scratch / "bare.log", bare_port,
        )
        stack.callback(bare.stop)
        print("starting the bare app ...", flush=True)
        bare.start()
        bare.wait_ready("/health")
        _, bare_answer = check_start("bare app", bare.base_url)

        print(f"\nmachine: {_machine()}; client and servers share these cores")
        print(f"database: {database}" + (" (embedded, throwaway)" if not args.database_url else ""))
        print(f"load: {generator}, {args.connections} keep-alive connections, warm-up {args.warmup:g} s, "
              f"{args.seconds:g} s measured per server, {args.rounds} round(s), pool size {args.pool_size}, "
              f"flowcore log level {args.log_level}")
        print(f"per start: flowcore stores the instance ({state_bytes} B state) and {history_rows} history rows, "
              f"answers {flowcore_answer} B; bare stores one row ({state_bytes} B state), answers {bare_answer} B")
        if args.profile:
            print("flowcore runs under cProfile: its figures are distorted, read only the profile")

        rows: list[Row] = []
        servers = (("flowcore", flowcore), ("bare Starlette+asyncpg", bare))
        for round_number in range(1, args.rounds + 1):
            for name, server in servers:
                print(f"driving {name} (round {round_number}) ...", flush=True)
                url = f"{server.base_url}/api/core/cmd"
                if args.warmup > 0:
                    drive(url, START_BODY, HEADERS, connections=args.connections, warmup=0, seconds=args.warmup,
                          generator=generator)
                assert server.process is not None
                before = cpu_times(server.process.pid, postmaster_pid)
                result = drive(url, START_BODY, HEADERS, connections=args.connections, warmup=0,
                               seconds=args.seconds, generator=generator)
                used = cpu_times(server.process.pid, postmaster_pid).minus(before)
                label = name if args.rounds == 1 else f"{name} #{round_number}"
                rows.append(Row(label, result, used))

        flowcore.stop()  # a profiled server writes its profile as it exits
        print(f"\ngenerator: {rows[0].result.generator}; latency over {rows[0].result.latency_of}")
        print(_format_table(rows))
        flowcore_rate = statistics.median(r.result.per_second for r in rows if r.scenario.startswith("flowcore"))
        bare_rate = statistics.median(r.result.per_second for r in rows if r.scenario.startswith("bare"))
        ratio = flowcore_rate / bare_rate if bare_rate else 0.0
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        summary = "median req/s" if args.rounds > 1 else "req/s"
        print(f"\nratio flowcore/bare ({summary}): {ratio:.2f} — target >= {TARGET_RATIO} {verdict}")
        cpu_ratio = _server_cpu_per_request(rows, "bare") / _server_cpu_per_request(rows, "flowcore")
        print(f"server CPU per request, bare/flowcore: {cpu_ratio:.2f} (where the throughput ratio settles when "
              "each server saturates its core and nothing else competes)")
        if profile_path is not None:
            print_profile(profile_path)
        return 0 if ratio >= TARGET_RATIO or args.profile else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.http_bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per server (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up per server before measuring (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--rounds", type=int, default=1, help="drive flowcore then bare this many times (default 1)")
    parser.add_argument("--database-url", help="an existing PostgreSQL server (default: an embedded one)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator; auto uses wrk when installed")
    parser.add_argument("--pool-size", type=int, default=10, help="database pool of both servers (default 10)")
    parser.add_argument("--log-level", default="INFO", help="flowcore's FLOWCORE_LOG_LEVEL (default INFO, as shipped)")
    parser.add_argument("--profile", action="store_true", help="run flowcore under cProfile and print where time goes")
    return parser


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the cleanup like a Ctrl-C


def guarded(bench: Callable[[], int]) -> int:
    """Run a benchmark so that SIGTERM, Ctrl-C and its own failures all end in its cleanup."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return bench()
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.connections < 1 or args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        _parser().error("--connections and --rounds must be >= 1, --seconds > 0, --warmup >= 0")
    return guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
