from __future__ import annotations

import asyncio
import fcntl
import os
import pwd
import stat
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest

from infra.embedded_pg import SERVER_SYSTEM_USER, EmbeddedPostgres, EmbeddedPostgresError, unreachable_ancestor
from tests.infra.embedded import (
    interpreter_for,
    is_alive,
    live_postmasters,
    read_markers,
    scratch_dir,
    start_owner,
    unprivileged_env,
    write_marker,
)


def lock_is_free(data_dir: Path) -> bool:
    with (data_dir / "pgdata.lock").open("a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


async def test_start_serves_stop_releases_everything() -> None:
    with scratch_dir() as data_dir:
        server = EmbeddedPostgres(data_dir)
        dsn = await asyncio.to_thread(server.start)
        assert server.start() == dsn  # a second start is the same server
        postmaster, watchdog = server.postmaster_pid, server.watchdog_pid
        assert postmaster is not None and watchdog is not None
        expected_user = SERVER_SYSTEM_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        assert psutil.Process(postmaster).username() == expected_user
        assert not lock_is_free(data_dir)
        await write_marker(dsn, "kept")

        await asyncio.to_thread(server.stop)
        assert not is_alive(postmaster) and not is_alive(watchdog)
        assert live_postmasters(server.pgdata) == []
        assert lock_is_free(data_dir)
        with pytest.raises(OSError):
            await asyncpg.connect(dsn, timeout=5)
        server.stop()  # stopping twice is harmless

        again = await asyncio.to_thread(server.start)
        try:
            assert await read_markers(again) == ["kept"]
        finally:
            await asyncio.to_thread(server.stop)
        assert live_postmasters(server.pgdata) == []


async def test_runs_as_an_unprivileged_user() -> None:
    """As root the suite also checks the path a normal user takes: no user switch at all."""
    with scratch_dir() as data_dir:
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            python = interpreter_for("nobody")
            if python is None:
                pytest.skip("no Python interpreter the user 'nobody' may run (environment, not flowcore)")
            os.chown(data_dir, user.pw_uid, user.pw_gid)
            owner = await asyncio.to_thread(
                start_owner, data_dir, user="nobody", env=unprivileged_env(data_dir), python=python
            )
            expected_uid = user.pw_uid
        else:
            owner = await asyncio.to_thread(start_owner, data_dir)
            expected_uid = os.geteuid()
        try:
            assert psutil.Process(owner.postmaster).uids().real == expected_uid
            await write_marker(owner.dsn, "unprivileged")
            assert await read_markers(owner.dsn) == ["unprivileged"]
        finally:
            assert owner.process.stdin is not None
            owner.process.stdin.close()  # the owner stops its server and exits
            assert owner.process.wait(30) == 0
        assert not is_alive(owner.postmaster)
        assert live_postmasters(data_dir / "pgdata") == []


async def test_a_second_owner_of_one_data_dir_is_refused() -> None:
    with scratch_dir() as data_dir:
        first = EmbeddedPostgres(data_dir)
        await asyncio.to_thread(first.start)
        try:
            second = EmbeddedPostgres(data_dir, lock_timeout=0.3)
            with pytest.raises(EmbeddedPostgresError, match="in use by another flowcore process"):
                await asyncio.to_thread(second.start)
            assert first.postmaster_pid is not None and is_alive(first.postmaster_pid)
        finally:
            await asyncio.to_thread(first.stop)


async def test_root_refuses_a_data_dir_the_server_user_cannot_reach() -> None:
    with scratch_dir() as scratch:
        private = scratch / "home"
        private.mkdir(mode=0o700)
        data_dir = private / "flowcore"
        server = EmbeddedPostgres(data_dir)
        if os.geteuid() == 0:
            with pytest.raises(EmbeddedPostgresError, match="FLOWCORE_DATA_DIR"):
                server.start()
            # nothing was loosened on the way: the private directory stays private
            assert stat.S_IMODE(private.stat().st_mode) == 0o700
            assert not (data_dir / "pgdata").exists()
            assert lock_is_free(data_dir)
        else:
            await asyncio.to_thread(server.start)  # a normal user runs the server itself
            await asyncio.to_thread(server.stop)


def test_unreachable_ancestor_reads_owner_group_and_other_bits() -> None:
    me = os.geteuid()
    stranger_uid, stranger_gid = me + 4242, os.getegid() + 4242
    with scratch_dir() as scratch:
        scratch.chmod(0o755)
        closed = scratch / "closed"
        closed.mkdir()
        closed.chmod(0o750)
        target = closed / "a" / "b"
        assert unreachable_ancestor(target, stranger_uid, stranger_gid) == closed
        assert unreachable_ancestor(target, me, stranger_gid) is None  # the owner may pass
        assert unreachable_ancestor(target, stranger_uid, closed.stat().st_gid) is None  # so may the group
        closed.chmod(0o751)
        assert unreachable_ancestor(target, stranger_uid, stranger_gid) is None
