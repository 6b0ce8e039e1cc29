"""Helpers for the embedded PostgreSQL tests: scratch directories, child owners, process checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def scratch_dir() -> Iterator[Path]:
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="flowcore-embedded-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def interpreter_for(user: str) -> str | None:
    """A Python of this minor version that `user` may run (ours may sit in root's private home)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, shutil.which(f"python{version}"), f"/usr/bin/python{version}"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"],
                user=user,
                capture_output=True,
                text=True,
                cwd="/",
                check=False,
            )
        except OSError:
            continue  # missing, or not executable by that user
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def unprivileged_env(home: Path) -> dict[str, str]:
    """Environment for a child run as another user: our packages without the venv's activation."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def live_postmasters(pgdata: Path) -> list[int]:
    """Live (not zombie) postgres processes started for this data directory."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        info: dict[str, Any] = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"]:
            continue
        if Path(info["cmdline"][0]).name == "postgres" and str(pgdata.resolve()) in info["cmdline"]:
            found.append(info["pid"])
    return found


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@dataclass
class Owner:
    """A child process owning the embedded server, as a flowcore server would."""

    process: subprocess.Popen[str]
    dsn: str
    postmaster: int
    watchdog: int


def start_owner(
    data_dir: Path, *, user: str | None = None, env: dict[str, str] | None = None, python: str = sys.executable
) -> Owner:
    process = subprocess.Popen(
        [python, "-m", "tests.infra.embedded_pg_child", str(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        user=user,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError(f"owner exited with {process.returncode} before reporting")
    info = json.loads(line)
    return Owner(process, info["dsn"], info["postmaster"], info["watchdog"])


async def write_marker(dsn: str, value: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS marker (value text)")
        await connection.execute("INSERT INTO marker VALUES ($1)", value)
    finally:
        await connection.close()


async def read_markers(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        return [row["value"] for row in await connection.fetch("SELECT value FROM marker ORDER BY value")]
    finally:
        await connection.close()
