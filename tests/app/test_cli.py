"""`flowcore` command line: options over the environment, `migrate` on a real database."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from app.cli import _parser, _with_arguments, main, migrate_only
from app.container import PoolProbe
from infra import sql
from infra.database import create_pool, dsn_with_database
from infra.migrate import bundled_migrations
from infra.settings import Settings, load_settings


def _settings(argv: list[str], environ: dict[str, str]) -> Settings:
    args: argparse.Namespace = _parser().parse_args(argv)
    return _with_arguments(load_settings(environ), args)


def test_command_line_options_win_over_the_environment(tmp_path: Path) -> None:
    environ = {
        "FLOWCORE_HOST": "0.0.0.0",
        "FLOWCORE_PORT": "9000",
        "FLOWCORE_DATA_DIR": str(tmp_path / "env"),
    }
    from_env = _settings(["serve"], environ)
    assert (from_env.host, from_env.port, from_env.data_dir) == ("0.0.0.0", 9000, tmp_path / "env")
    overridden = _settings(
        ["serve", "--host", "127.0.0.2", "--port", "8181", "--data-dir", str(tmp_path / "cli")], environ
    )
    assert (overridden.host, overridden.port, overridden.data_dir) == ("127.0.0.2", 8181, tmp_path / "cli")


def test_defaults_are_loopback_8080() -> None:
    settings = _settings(["serve"], {})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize("argv", [[], ["launch"], ["serve", "--port", "http"], ["serve", "--port", "70000"]])
def test_bad_command_lines_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: flowcore" in capsys.readouterr().err


def test_bad_environment_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWCORE_PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 2
    assert "FLOWCORE_PORT" in capsys.readouterr().err


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(pg_dsn: str, pg_admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = "flowcore_cli_migrate"
    await pg_admin.execute(sql.drop_database(name))
    await pg_admin.execute(sql.create_database(name))
    try:
        yield dsn_with_database(pg_dsn, name)
    finally:
        await pg_admin.execute(sql.drop_database(name))


async def test_migrate_applies_every_migration_once(empty_database: str, tmp_path: Path) -> None:
    settings = Settings(database_url=empty_database, data_dir=tmp_path)
    first = await migrate_only(settings)
    again = await migrate_only(settings)
    assert first == [m.version for m in bundled_migrations()]
    assert again == []


async def test_readiness_probe_follows_the_pool(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, max_size=1)
    probe = PoolProbe(pool)
    assert await probe() is True
    await pool.close()
    assert await probe() is False


def test_a_stop_signal_closes_the_door_before_uvicorn_stops(tmp_path: Path) -> None:
    from app.cli import build_server
    from app.lifecycle import Lifecycle, Runtime

    server = build_server(Settings(database_url="postgresql://unused/none", data_dir=tmp_path, port=0))
    app = server.config.app
    assert isinstance(app, Starlette)
    lifecycle: Lifecycle = app.state.lifecycle
    lifecycle.serve(Runtime(bus=object(), ready=object()))  # type: ignore[arg-type]
    assert lifecycle.serving
    server.handle_exit(signal.SIGTERM, None)
    assert not lifecycle.serving
    assert server.should_exit


def test_log_records_carry_the_request_id() -> None:
    from app.logging import RequestIdFilter, request_id_var

    record = logging.LogRecord("flowcore", logging.INFO, __file__, 1, "hello", None, None)
    token = request_id_var.set("rid-42")
    try:
        assert RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert getattr(record, "request_id", None) == "rid-42"
    outside = logging.LogRecord("flowcore", logging.INFO, __file__, 1, "hello", None, None)
    RequestIdFilter().filter(outside)
    assert getattr(outside, "request_id", None) == "-"


def test_once_started_the_server_freezes_what_startup_built_and_collects_less_often() -> None:
    import gc

    from app.cli import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    built_at_startup = [object()]
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert all(o is not built_at_startup for o in gc.get_objects())  # frozen: no longer scanned
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _record(level: int, text: str) -> logging.LogRecord:
    return logging.LogRecord("flowcore.test", level, __file__, 1, text, None, None)


def test_info_lines_wait_for_their_batch_and_a_warning_takes_them_along_in_order() -> None:
    import io

    from app.logging import BatchingHandler

    stream = io.StringIO()
    handler = BatchingHandler(stream, interval=3600)  # the batch timer never fires here
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    try:
        handler.handle(_record(logging.INFO, "first"))
        handler.handle(_record(logging.INFO, "second"))
        assert stream.getvalue() == ""
        handler.handle(_record(logging.WARNING, "trouble"))
        assert stream.getvalue() == "INFO first\nINFO second\nWARNING trouble\n"
        handler.handle(_record(logging.INFO, "third"))
    finally:
        handler.close()
    assert stream.getvalue().endswith("WARNING trouble\nINFO third\n")  # closing writes what waits


def test_waiting_lines_are_written_within_the_interval_or_when_too_many_wait() -> None:
    import io

    from app.logging import BatchingHandler

    stream = io.StringIO()
    handler = BatchingHandler(stream, interval=0.05)
    try:
        handler.handle(_record(logging.INFO, "soon"))
        deadline = time.monotonic() + 10
        while "soon" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "soon\n"
    finally:
        handler.close()

    crowded = io.StringIO()
    handler = BatchingHandler(crowded, interval=3600, max_pending=3)
    try:
        for n in range(3):
            handler.handle(_record(logging.INFO, f"line {n}"))
        assert crowded.getvalue() == "line 0\nline 1\nline 2\n"
    finally:
        handler.close()


def test_a_closed_batching_handler_writes_at_once_and_closes_twice_without_harm() -> None:
    import io

    from app.logging import BatchingHandler

    stream = io.StringIO()
    handler = BatchingHandler(stream, interval=3600)
    handler.handle(_record(logging.INFO, "before"))
    handler.close()
    handler.handle(_record(logging.INFO, "after"))  # e.g. logged by an exit handler
    assert stream.getvalue() == "before\nafter\n"
    handler.close()  # logging.shutdown closes every handler again at exit
