"""Closed-loop HTTP load for the benchmark: N keep-alive connections, each sending the next
request as soon as the previous answer is read, for a warm-up and then a measured window.

Two generators measure the same thing and print the same result:
- `wrk` (when installed), driven by a Lua script that counts an answer as successful only when
  it is HTTP 200 with `"isSuccessful":true` and `"status":"completed"` in the body;
- this module's own generator, run in a separate process (`python -m bench.load ...`): raw
  asyncio streams on uvloop with a hand-written HTTP/1.1 request, so the client costs a few
  tens of µs per request and stays far below the servers it drives.

Only answers completed inside the measured window count. Throughput counts successful answers;
anything else (another status, a failure envelope, a dropped connection) is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

_OK_MARKERS = (b'"isSuccessful":true', b'"status":"completed"')
_RESULT_PREFIX = "BENCH_RESULT "


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    generator: str
    seconds: float  # length of the measured window
    ok: int  # successful answers completed in the window
    errors: int
    p50_ms: float
    p99_ms: float
    latency_of: str  # which answers the percentiles are taken over

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


_decode_result = msgspec.json.Decoder(LoadResult).decode
_encode = msgspec.json.Encoder().encode


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def successful(status: int, body: bytes) -> bool:
    return status == 200 and all(marker in body for marker in _OK_MARKERS)


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM when the benchmark itself dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# --- the Python generator ---------------------------------------------------------------------


class _Window:
    def __init__(self, start: float, stop: float) -> None:
        self.start = start
        self.stop = stop
        self.latencies: list[float] = []
        self.errors = 0

    def record(self, began: float, ended: float, ok: bool) -> None:
        if self.start <= ended <= self.stop:
            if ok:
                self.latencies.append(ended - began)
            else:
                self.errors += 1


def _request_bytes(url: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only plain http:// URLs are supported, not {url!r}")
    port = parts.port or 80
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        raise ConnectionError("answer without Content-Length")
    begin = at + len(b"\r\ncontent-length:")
    return int(lowered[begin : lowered.index(b"\r\n", begin)])


async def _connection(host: str, port: int, request: bytes, window: _Window) -> None:
    clock = time.perf_counter
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while clock() < window.stop:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            began = clock()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
                window.record(began, clock(), False)
                writer.close()
                reader, writer = None, None
                await asyncio.sleep(0.01)
                continue
            window.record(began, clock(), successful(int(head[9:12]), body))
            if b"\r\nconnection: close" in head.lower():
                writer.close()
                reader, writer = None, None
    finally:
        if writer is not None:
            writer.close()


async def _run(url: str, body: bytes, headers: list[tuple[str, str]], connections: int,
               warmup: float, seconds: float) -> LoadResult:
    host, port, request = _request_bytes(url, body, headers)
    start = time.perf_counter() + warmup
    window = _Window(start, start + seconds)
    await asyncio.gather(*(_connection(host, port, request, window) for _ in range(connections)))
    latencies = sorted(window.latencies)
    return LoadResult(
        generator="python (asyncio streams on uvloop)" if _uvloop_installed() else "python (asyncio streams)",
        seconds=seconds, ok=len(latencies), errors=window.errors,
        p50_ms=percentile(latencies, 0.50) * 1000, p99_ms=percentile(latencies, 0.99) * 1000,
        latency_of="successful answers",
    )


def _uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.load", description="closed-loop HTTP POST load, one result line")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="the JSON request body")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    headers = [(name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in args.header)]
    coroutine = _run(args.url, args.body.encode(), headers, args.connections, args.warmup, args.seconds)
    if _uvloop_installed():
        import uvloop

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    print(_RESULT_PREFIX + _encode(result).decode(), flush=True)


# --- wrk ----------------------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
ok = 0
bad = 0

function response(status, headers, body)
  if status == 200 and body:find('"isSuccessful":true', 1, true) and body:find('"status":"completed"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local good, failed = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("ok")
    failed = failed + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "%(prefix)s{\\"ok\\":%%d,\\"bad\\":%%d,\\"socket_errors\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%f,\\"p99_us\\":%%f}\\n",
    good, failed, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


class _WrkRaw(msgspec.Struct, frozen=True):
    ok: int
    bad: int
    socket_errors: int
    duration_us: int
    p50_us: float
    p99_us: float


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _wrk_script(body: bytes, headers: list[tuple[str, str]]) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the request body cannot be embedded in the wrk script")
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in [("Content-Type", "application/json"), *headers]]
    return _WRK_SCRIPT % {"body": text, "headers": "\n".join(lines), "prefix": _RESULT_PREFIX}


def _run_wrk(wrk: str, script: Path, url: str, connections: int, seconds: float) -> _WrkRaw:
    # One wrk thread: it keeps up with tens of thousands of requests a second on its own, and
    # leaves the cores the client shares with the servers to them.
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
               url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False,
                          preexec_fn=die_with_parent)
    for line in done.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return msgspec.json.decode(line.removeprefix(_RESULT_PREFIX), type=_WrkRaw)
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stdout}{done.stderr}")


def drive_with_wrk(wrk: str, url: str, body: bytes, headers: list[tuple[str, str]], *, connections: int,
                   warmup: float, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="flowcore-bench-wrk-") as scratch:
        script = Path(scratch) / "start.lua"
        script.write_text(_wrk_script(body, headers), encoding="utf-8")
        if warmup > 0:
            _run_wrk(wrk, script, url, connections, warmup)
        raw = _run_wrk(wrk, script, url, connections, seconds)
    return LoadResult(
        generator="wrk (1 thread, Lua check of every answer)",
        seconds=raw.duration_us / 1e6, ok=raw.ok, errors=raw.bad + raw.socket_errors,
        p50_ms=raw.p50_us / 1000, p99_ms=raw.p99_us / 1000,
        latency_of="all answers (wrk)",
    )


def drive_with_python(url: str, body: bytes, headers: list[tuple[str, str]], *, connections: int,
                      warmup: float, seconds: float) -> LoadResult:
    command = [sys.executable, "-m", "bench.load", "--url", url, "--body", body.decode(),
               "--connections", str(connections), "--warmup", str(warmup), "--seconds", str(seconds)]
    command += [arg for name, value in headers for arg in ("--header", f"{name}: {value}")]
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(root)}, preexec_fn=die_with_parent)
    try:
        out, err = process.communicate(timeout=warmup + seconds + 60)
    finally:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(Exception):
                process.communicate(timeout=5)
    for line in out.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return _decode_result(line.removeprefix(_RESULT_PREFIX))
    raise RuntimeError(f"the load generator gave no result (exit {process.returncode}): {out}{err}")


def drive(url: str, body: bytes, headers: list[tuple[str, str]], *, connections: int, warmup: float,
          seconds: float, generator: str = "auto") -> LoadResult:
    """Load `url` with the chosen generator ("wrk", "python", or "auto": wrk when installed)."""
    wrk = wrk_path() if generator in ("auto", "wrk") else None
    if generator == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk), or use --generator python")
    if wrk is not None:
        return drive_with_wrk(wrk, url, body, headers, connections=connections, warmup=warmup, seconds=seconds)
    return drive_with_python(url, body, headers, connections=connections, warmup=warmup, seconds=seconds)


if __name__ == "__main__":
    _main()
