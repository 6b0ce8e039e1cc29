"""A local stub service for the service-task benchmark: answers every request at once.

    .venv/bin/python -m bench.stub_service --port 9000 [--delay-ms 0]

Raw asyncio streams (on uvloop when installed) with keep-alive, so that the stub costs a few
tens of µs per call and the benchmark measures flowcore's worker pool, not the stub. Each
answer is `{"ok":true,"n":<calls so far>}`; GET /health answers too.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class Stub:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lowered = head.lower()
                at = lowered.find(b"\r\ncontent-length:")
                if at >= 0:
                    begin = at + len(b"\r\ncontent-length:")
                    await reader.readexactly(int(lowered[begin : lowered.index(b"\r\n", begin)]))
                self.calls += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                body = b'{"ok":true,"n":%d}' % self.calls
                writer.write(_HEAD % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def _main(port: int, delay: float) -> None:
    stub = Stub(delay)
    server = await asyncio.start_server(stub.serve, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    summary = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="bench.stub_service", description=summary)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before each answer")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.port, args.delay_ms / 1000))
    else:
        uvloop.run(_main(args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
