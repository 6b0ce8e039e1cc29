"""`flowcore serve`, `flowcore worker` and `flowcore migrate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import FrameType

import uvicorn

from app.container import build_container, open_storage, start_database
from app.factory import create_app
from app.logging import configure_logging, flush_logs
from infra.database import Db, connect
from infra.migrate import migrate
from infra.settings import Settings, SettingsError, load_settings

log = logging.getLogger("flowcore")

# Requests still running when a stop is asked for get this long to finish.
GRACEFUL_SECONDS = 30

# A start allocates thousands of short-lived objects; at the default threshold (700) a young
# collection ran every few requests, scanning whatever the requests in flight held at the time.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Once started: what startup built (modules, parsed schemas, the app) lives as long as the
    process, so later collections need not scan it again; young collections run less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class FlowcoreServer(uvicorn.Server):
    """uvicorn's server, closing flowcore's door the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()  # new requests on open connections now get "53"
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises a stop signal once it has shut down, and the process then dies of
        # it without running exit handlers: write the log lines still waiting in their batch.
        with super().capture_signals():
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # stderr gone: the stop signal must still be re-raised
                    flush_logs()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            tune_gc()
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    shown = f"[{host}]" if ":" in host else host
                    log.info("listening on http://%s:%s", shown, port)


def build_server(settings: Settings) -> FlowcoreServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,  # configure_logging() already routes uvicorn's records
        access_log=False,  # flowcore writes its own access line, with cmd and tenant
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    return FlowcoreServer(config, on_exit=app.state.lifecycle.stop)


def serve(settings: Settings) -> int:
    server = build_server(settings)
    server.run()
    return 0 if server.started else 1


async def migrate_only(settings: Settings) -> list[int]:
    async with AsyncExitStack() as stack:
        dsn = await start_database(settings, stack)
        connection = await connect(dsn)
        try:
            applied = await migrate(Db(connection))
        finally:
            await connection.close()
    log.info("migrations applied (%s)", ", ".join(f"{v:04d}" for v in applied) if applied else "up to date")
    return applied


async def work(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The job worker pool alone, without the HTTP server, until SIGTERM/SIGINT (or `stop`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AsyncExitStack() as stack:
            await open_storage(build_container(settings), settings, stack)
            log.info("worker ready")
            await stop.wait()
            log.info("worker shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcore", description="flowcore BPMN engine")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP server (FLOWCORE_HOST, FLOWCORE_PORT)")
    serve_cmd.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve_cmd.add_argument("--data-dir", type=Path, help="embedded PostgreSQL data (FLOWCORE_DATA_DIR)")
    worker_cmd = commands.add_parser("worker", help="run only the job workers (service calls, timers)")
    worker_cmd.add_argument("--workers", type=int, help="jobs performed at once (FLOWCORE_WORKERS, default 4)")
    worker_cmd.add_argument("--data-dir", type=Path, help="embedded PostgreSQL data (FLOWCORE_DATA_DIR)")
    migrate_cmd = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate_cmd.add_argument("--data-dir", type=Path, help="embedded PostgreSQL data (FLOWCORE_DATA_DIR)")
    return parser


def _with_arguments(settings: Settings, args: argparse.Namespace) -> Settings:
    """Command-line options win over the environment."""
    host: str | None = getattr(args, "host", None)
    port: int | None = getattr(args, "port", None)
    data_dir: Path | None = getattr(args, "data_dir", None)
    return dataclasses.replace(
        settings,
        host=host or settings.host,
        port=settings.port if port is None else port,
        data_dir=settings.data_dir if data_dir is None else data_dir.expanduser(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "port", None) is not None and not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    try:
        settings = _with_arguments(load_settings(), args)
    except SettingsError as exc:
        parser.error(str(exc))
    configure_logging(settings.log_level)
    if args.command == "serve":
        return serve(settings)
    if args.command == "worker":
        workers: int | None = getattr(args, "workers", None)
        if workers is not None and workers < 1:
            parser.error("--workers must be at least 1")
        settings = dataclasses.replace(settings, workers=workers or max(settings.workers, 1))
        try:
            asyncio.run(work(settings))
        except Exception:
            log.exception("worker failed")
            return 1
        return 0
    try:
        asyncio.run(migrate_only(settings))
    except Exception:
        log.exception("migration failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
