"""Stops the embedded postmaster when the flowcore process that owns it goes away.

`pg_ctl start` detaches the postmaster, so it would outlive a flowcore process killed with
SIGKILL. The owner therefore launches this watchdog in its own session with the read end of a
pipe on stdin: the kernel closes the write end however the owner ends, the watchdog reads EOF
and shuts the postmaster down. A clean stop uses the very same path (the owner closes the pipe
and waits), so there is one way the server is ever stopped.

The watchdog also inherits the owner's lock on the data directory, so the next flowcore start
waits until the old server is down instead of racing it.

Run as: python -m infra.pg_watchdog PGDATA POSTMASTER_PID STOP_TIMEOUT
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil  # type: ignore[import-untyped]

_POLL_SECONDS = 0.05


def _postgres_cmdline(pid: int) -> list[str] | None:
    """The command line of pid if it is a live (not zombie) postgres process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            # Nobody may reap it (a minimal container init), but it is gone for our purposes.
            return None
        cmdline: list[str] = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not cmdline or Path(cmdline[0]).name != "postgres":
        return None
    return cmdline


def is_live_postgres(pid: int) -> bool:
    return _postgres_cmdline(pid) is not None


def is_postmaster(pid: int, pgdata: Path) -> bool:
    """True if pid is a live postgres process serving this data directory."""
    cmdline = _postgres_cmdline(pid)
    return cmdline is not None and str(pgdata) in cmdline


def read_postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def stop_postmaster(pgdata: Path, pid: int, timeout: float) -> bool:
    """Fast shutdown, escalating to immediate shutdown and then SIGKILL. True once it is gone."""
    steps = ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    for sig, wait in steps:
        if not is_postmaster(pid, pgdata):
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_postmaster(pid, pgdata):
                return True
            time.sleep(_POLL_SECONDS)
    return not is_postmaster(pid, pgdata)


def _log(pgdata: Path, message: str) -> None:
    try:
        with (pgdata.parent / "pg-watchdog.log").open("a") as log:
            log.write(f"{datetime.now(UTC).isoformat()} [{os.getpid()}] {message}\n")
    except OSError:
        pass  # logging must never keep the server from being stopped


def main(argv: list[str]) -> int:
    pgdata, pid, timeout = Path(argv[0]), int(argv[1]), float(argv[2])
    # Ctrl-C in the owner's terminal is the owner's business; it tells us by closing the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass  # the owner never writes; anything read is ignored until EOF
    stopped = stop_postmaster(pgdata, pid, timeout)
    _log(pgdata, f"owner stopped or died; postmaster {pid} {'stopped' if stopped else 'did NOT stop'}")
    return 0 if stopped else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
