"""Numbered, forward-only SQL migrations (`infra/migrations/NNNN_name.sql`).

Applied under a session advisory lock, so several flowcore processes starting at once apply
each migration exactly once; each migration runs in its own transaction together with its
bookkeeping row. An applied migration whose file later changed is refused rather than ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from infra import sql
from infra.database import Db

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    found: dict[int, Migration] = {}
    for entry in resources.files("infra.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    ordered = [found[v] for v in sorted(found)]
    if [m.version for m in ordered] != list(range(1, len(ordered) + 1)):
        raise MigrationError(f"migration numbers must run 1..n without gaps, found {sorted(found)}")
    return ordered


async def migrate(db: Db, migrations: list[Migration] | None = None) -> list[int]:
    """Bring the database up to date; returns the versions this call applied."""
    pending = bundled_migrations() if migrations is None else migrations
    await db.execute(sql.LOCK_MIGRATIONS, sql.MIGRATION_LOCK_KEY)
    try:
        await db.execute(sql.CREATE_MIGRATIONS_TABLE)
        applied = {row["version"]: row for row in await db.fetch(sql.APPLIED_MIGRATIONS)}
        newest = max(applied, default=0)
        if newest > len(pending):
            raise MigrationError(f"database is at schema {newest}, newer than this flowcore ({len(pending)})")
        done: list[int] = []
        for migration in pending:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with db.transaction():
                await db.execute(migration.sql)
                await db.execute(sql.RECORD_MIGRATION, migration.version, migration.name, migration.checksum)
            done.append(migration.version)
        return done
    finally:
        await db.execute(sql.UNLOCK_MIGRATIONS, sql.MIGRATION_LOCK_KEY)
