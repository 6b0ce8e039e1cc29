"""A stand-in flowcore process for the crash tests: owns an embedded server until killed.

Run as: python -m tests.infra.embedded_pg_child DATA_DIR
Prints one JSON line (dsn, postmaster and watchdog pids), then waits for stdin to close.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from infra.embedded_pg import EmbeddedPostgres


def main() -> None:
    server = EmbeddedPostgres(Path(sys.argv[1]))
    dsn = server.start()
    line = {"dsn": dsn, "postmaster": server.postmaster_pid, "watchdog": server.watchdog_pid}
    print(json.dumps(line), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
