"""What happens to the embedded server when the flowcore process owning it is killed with SIGKILL.

Documented behaviour (infra/embedded_pg.py): the owner's watchdog stops the postmaster as soon
as the owner dies; if the watchdog died too, the next start stops the orphan and starts afresh;
a stale postmaster.pid never blocks a start. After stop() no postmaster of the data dir is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from infra.embedded_pg import EmbeddedPostgres
from tests.infra.embedded import (
    Owner,
    is_alive,
    live_postmasters,
    read_markers,
    scratch_dir,
    start_owner,
    wait_until,
    write_marker,
)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def reap(owner: Owner) -> None:
    owner.process.wait(10)
    assert owner.process.returncode == -signal.SIGKILL


async def restart_and_check(data_dir: Path, old_postmaster: int, *, expect: list[str]) -> None:
    server = EmbeddedPostgres(data_dir)
    dsn = await asyncio.to_thread(server.start)
    try:
        assert server.postmaster_pid != old_postmaster
        assert not is_alive(old_postmaster)
        assert await read_markers(dsn) == expect
        await write_marker(dsn, "after")
    finally:
        await asyncio.to_thread(server.stop)
    assert live_postmasters(data_dir / "pgdata") == []


async def test_the_watchdog_stops_the_server_of_a_killed_owner() -> None:
    with scratch_dir() as data_dir:
        owner = await asyncio.to_thread(start_owner, data_dir)
        await write_marker(owner.dsn, "before")
        kill(owner.process.pid)
        reap(owner)
        # nobody starts flowcore again: the postmaster must still not linger
        assert await asyncio.to_thread(wait_until, lambda: not is_alive(owner.postmaster), 20)
        assert await asyncio.to_thread(wait_until, lambda: not is_alive(owner.watchdog), 5)
        assert live_postmasters(data_dir / "pgdata") == []
        await restart_and_check(data_dir, owner.postmaster, expect=["before"])


async def test_an_immediate_restart_waits_for_the_old_server_to_go() -> None:
    with scratch_dir() as data_dir:
        owner = await asyncio.to_thread(start_owner, data_dir)
        await write_marker(owner.dsn, "before")
        kill(owner.process.pid)
        reap(owner)
        # no waiting here: the new owner queues on the data-dir lock the watchdog still holds
        await restart_and_check(data_dir, owner.postmaster, expect=["before"])


async def test_an_orphaned_postmaster_is_stopped_and_replaced() -> None:
    with scratch_dir() as data_dir:
        owner = await asyncio.to_thread(start_owner, data_dir)
        await write_marker(owner.dsn, "before")
        kill(owner.watchdog)  # the watchdog is lost first, then its owner
        kill(owner.process.pid)
        reap(owner)
        await asyncio.sleep(0.5)
        assert is_alive(owner.postmaster)  # really orphaned: nothing stopped it
        await restart_and_check(data_dir, owner.postmaster, expect=["before"])


async def test_a_stale_postmaster_pid_file_does_not_block_start() -> None:
    with scratch_dir() as data_dir:
        owner = await asyncio.to_thread(start_owner, data_dir)
        await write_marker(owner.dsn, "before")
        for pid in (owner.watchdog, owner.process.pid, owner.postmaster):
            kill(pid)
        reap(owner)
        assert await asyncio.to_thread(wait_until, lambda: not is_alive(owner.postmaster), 10)
        assert (data_dir / "pgdata" / "postmaster.pid").exists()  # left behind by the killed server
        await restart_and_check(data_dir, owner.postmaster, expect=["before"])
