"""A small HTTP service on 127.0.0.1 for tests that call out over a real socket.

It answers POST/PUT with JSON, can fail the first N calls (503), can take its time, and keeps a
ledger the way a careful receiver would: every call counted per Idempotency-Key, and the call's
effect applied once per key (a repeated key gets the first answer back, nothing is applied twice).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Ledger:
    fail_first: int = 0  # this many calls (counted over the whole service) answer 503
    delay: float = 0.0  # seconds before answering
    calls: Counter[str] = field(default_factory=Counter)  # Idempotency-Key -> calls seen
    effects: dict[str, Any] = field(default_factory=dict)  # Idempotency-Key -> the payload applied
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str, payload: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.total += 1
            number = self.total
            self.calls[key] += 1
        if self.delay:
            time.sleep(self.delay)
        if number <= self.fail_first:
            return 503, {"error": f"call {number} fails on purpose"}
        with self.lock:
            first = key not in self.effects
            if first:
                self.effects[key] = payload
        return 200, {"accepted": True, "firstTime": first, "key": key, "echo": payload}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        payload = json.loads(raw) if raw else None
        key = self.headers.get("Idempotency-Key") or ""
        status, body = self.server.ledger.answer(key, payload)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _reply
    do_PUT = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ledger: Ledger

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that went away mid-call (its process was killed) is part of the tests.
        pass


@contextmanager
def local_service(ledger: Ledger) -> Iterator[str]:
    """Serve `ledger` on 127.0.0.1 (a free port); yields the base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.ledger = ledger
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
