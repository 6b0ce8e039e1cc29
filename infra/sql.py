"""Every SQL statement flowcore sends, with $n placeholders. Nothing else in the project writes SQL.

Statements that differ only by an identifier or sort order are built here from fixed tables,
never from caller text.

Every statement on tenant data names its tenant, except the job worker's and housekeeping's,
which serve all tenants on purpose; the comment above CLAIM_DUE_JOBS lists them.
"""

from __future__ import annotations

# --- migrations --------------------------------------------------------------------------

# pg_advisory_lock's bigint key space; the two-int4 space used for definition versions does not
# overlap with it.
MIGRATION_LOCK_KEY = 0x666C6F77636F7265  # "flowcore"

LOCK_MIGRATIONS = "SELECT pg_advisory_lock($1)"
UNLOCK_MIGRATIONS = "SELECT pg_advisory_unlock($1)"
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
APPLIED_MIGRATIONS = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"

# --- process definitions -----------------------------------------------------------------

_DEFINITION_COLUMNS = """id, tenant_id, process_key, version, name, description, category, is_active,
    bpmn_xml, processes, element_counts, metadata, created_at, updated_at"""

# Serialises version assignment per (tenant, key) until the transaction ends.
LOCK_DEFINITION_KEY = "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))"

INSERT_DEFINITION = f"""
INSERT INTO process_definitions (tenant_id, process_key, version, name, description, category, is_active,
    bpmn_xml, processes, element_counts, metadata, created_at, updated_at)
SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11
FROM process_definitions WHERE tenant_id = $1 AND process_key = $2
RETURNING {_DEFINITION_COLUMNS}"""

GET_DEFINITION = f"SELECT {_DEFINITION_COLUMNS} FROM process_definitions WHERE tenant_id = $1 AND id = $2"

LATEST_DEFINITION = f"""
SELECT {_DEFINITION_COLUMNS} FROM process_definitions
WHERE tenant_id = $1 AND process_key = $2
ORDER BY version DESC LIMIT 1"""

DEFINITION_BY_VERSION = f"""
SELECT {_DEFINITION_COLUMNS} FROM process_definitions
WHERE tenant_id = $1 AND process_key = $2 AND version = $3"""

FIND_PROCESS = f"""
SELECT {_DEFINITION_COLUMNS} FROM process_definitions
WHERE tenant_id = $1 AND is_active AND processes @> ARRAY[$2::text]
ORDER BY created_at DESC, id DESC LIMIT 1"""

# $2 search pattern (already escaped for LIKE), $3 category, $4 is_active, $5 process_key
_DEFINITION_FILTER = """
WHERE tenant_id = $1
  AND ($2::text IS NULL OR name ILIKE $2 ESCAPE '\\' OR process_key ILIKE $2 ESCAPE '\\'
       OR description ILIKE $2 ESCAPE '\\')
  AND ($3::text IS NULL OR category = $3)
  AND ($4::boolean IS NULL OR is_active = $4)
  AND ($5::text IS NULL OR process_key = $5)"""

COUNT_DEFINITIONS = f"SELECT count(*) FROM process_definitions {_DEFINITION_FILTER}"

DEFINITION_SORT_COLUMNS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "name": "name",
    "processKey": "process_key",
    "version": "version",
}


def list_definitions(sort_by: str, descending: bool) -> str:
    """A page of definitions ($6 limit, $7 offset); an unknown sort_by sorts by creation time."""
    column = DEFINITION_SORT_COLUMNS.get(sort_by, "created_at")
    direction = "DESC" if descending else "ASC"
    return (
        f"SELECT {_DEFINITION_COLUMNS} FROM process_definitions {_DEFINITION_FILTER}\n"
        f"ORDER BY {column} {direction}, id {direction} LIMIT $6 OFFSET $7"
    )


UPDATE_DEFINITION_META = """
UPDATE process_definitions
SET name = $3, description = $4, category = $5, is_active = $6, metadata = $7, updated_at = $8
WHERE tenant_id = $1 AND id = $2"""

DELETE_DEFINITION = "DELETE FROM process_definitions WHERE tenant_id = $1 AND id = $2"

# --- process instances -------------------------------------------------------------------

_INSTANCE_COLUMNS = """tenant_id, instance_guid, definition_id, process_key, process_name, definition_version,
    status, execution_mode, business_key, correlation_key, context_type, context_id, state, row_version,
    started_at, updated_at, completed_at"""

# A new instance and its first history events as one statement (one round trip, atomic without an
# explicit transaction). $18 is the events as a jsonb array in HistoryEvent's JSON shape; they are
# written only when the instance row is, so a duplicate guid writes nothing and counts 0.
# $19..$21, when $19 is not NULL, guard the write: definition $19 must still be the latest version
# of process key $20 in the tenant, active and named $21, else nothing is written and the count is -1.
INSERT_INSTANCE_WITH_HISTORY = f"""
WITH guard AS (
    SELECT $19::bigint IS NULL OR EXISTS (
        SELECT 1 FROM (
            SELECT id, is_active, name FROM process_definitions
            WHERE tenant_id = $1 AND process_key = $20::text
            ORDER BY version DESC LIMIT 1
        ) AS latest
        WHERE latest.id = $19 AND latest.is_active AND latest.name = $21::text
    ) AS ok
), inserted AS (
    INSERT INTO process_instances ({_INSTANCE_COLUMNS})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
    FROM guard WHERE guard.ok
    ON CONFLICT (tenant_id, instance_guid) DO NOTHING
    RETURNING tenant_id, instance_guid
), history AS (
    INSERT INTO instance_history (tenant_id, instance_guid, seq, event_type, at, node_id, node_name, node_type,
        token_id, actor, comment, data)
    SELECT inserted.tenant_id, inserted.instance_guid, e.seq, e."eventType", e.at, e."nodeId", e."nodeName",
        e."nodeType", e."tokenId", e.actor, e.comment, e.data
    FROM inserted, jsonb_to_recordset($18::jsonb) AS e(seq integer, "eventType" text, at timestamptz,
        "nodeId" text, "nodeName" text, "nodeType" text, "tokenId" integer, actor text, comment text, data jsonb)
)
SELECT CASE WHEN guard.ok THEN (SELECT count(*) FROM inserted) ELSE -1 END FROM guard"""

GET_INSTANCE = f"SELECT {_INSTANCE_COLUMNS} FROM process_instances WHERE tenant_id = $1 AND instance_guid = $2"
GET_INSTANCE_FOR_UPDATE = GET_INSTANCE + " FOR UPDATE"

# Compare-and-set on row_version ($3): zero rows updated means another command won.
SAVE_INSTANCE = """
UPDATE process_instances
SET definition_id = $4, process_key = $5, process_name = $6, definition_version = $7, status = $8,
    execution_mode = $9, business_key = $10, correlation_key = $11, context_type = $12, context_id = $13,
    state = $14, started_at = $15, updated_at = $16, completed_at = $17, row_version = $3 + 1
WHERE tenant_id = $1 AND instance_guid = $2 AND row_version = $3"""

# $2 process_key, $3 status, $4 business_key, $5 execution_mode, $6 started_after, $7 started_before
_INSTANCE_FILTER = """
WHERE tenant_id = $1
  AND ($2::text IS NULL OR process_key = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR business_key = $4)
  AND ($5::text IS NULL OR execution_mode = $5)
  AND ($6::timestamptz IS NULL OR started_at >= $6)
  AND ($7::timestamptz IS NULL OR started_at < $7)"""

COUNT_INSTANCES = f"SELECT count(*) FROM process_instances {_INSTANCE_FILTER}"
LIST_INSTANCES = f"""
SELECT {_INSTANCE_COLUMNS} FROM process_instances {_INSTANCE_FILTER}
ORDER BY started_at DESC, instance_guid DESC LIMIT $8 OFFSET $9"""

COUNT_LIVE_INSTANCES_OF_DEFINITION = """
SELECT count(*) FROM process_instances
WHERE tenant_id = $1 AND definition_id = $2 AND status IN ('running', 'waiting', 'error')"""

LIVE_INSTANCES_OF_DEFINITION_FOR_UPDATE = f"""
SELECT {_INSTANCE_COLUMNS} FROM process_instances
WHERE tenant_id = $1 AND definition_id = $2 AND status IN ('running', 'waiting', 'error')
ORDER BY started_at FOR UPDATE"""

# Live instances first: a message is meant for the one still waiting on it.
INSTANCE_BY_CORRELATION_KEY = f"""
SELECT {_INSTANCE_COLUMNS} FROM process_instances
WHERE tenant_id = $1 AND correlation_key = $2
ORDER BY (status IN ('running', 'waiting', 'error')) DESC, started_at DESC LIMIT 1"""

# --- history -----------------------------------------------------------------------------

INSERT_HISTORY_EVENT = """
INSERT INTO instance_history (tenant_id, instance_guid, seq, event_type, at, node_id, node_name, node_type,
    token_id, actor, comment, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""

COUNT_HISTORY = "SELECT count(*) FROM instance_history WHERE tenant_id = $1 AND instance_guid = $2"
PAGE_HISTORY = """
SELECT seq, event_type, at, node_id, node_name, node_type, token_id, actor, comment, data
FROM instance_history WHERE tenant_id = $1 AND instance_guid = $2
ORDER BY seq DESC LIMIT $3 OFFSET $4"""

# --- jobs --------------------------------------------------------------------------------

INSERT_JOB = """
INSERT INTO jobs (tenant_id, instance_guid, token_id, node_id, kind, payload, max_attempts, run_at,
    idempotency_key, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"""

CANCEL_TOKEN_JOBS = """
UPDATE jobs SET status = 'cancelled', updated_at = $4
WHERE tenant_id = $1 AND instance_guid = $2 AND token_id = $3 AND status = 'pending'"""

# A service call's job, as INSERT_JOB, but a token that comes back to the same service task (a
# loop) makes a new call which must not look like a repeat of the old one: its key ($9) gets
# `~n` for the n-th job under that key.
INSERT_CALL_JOB = """
INSERT INTO jobs (tenant_id, instance_guid, token_id, node_id, kind, payload, max_attempts, run_at,
    idempotency_key, created_at, updated_at)
SELECT $1, $2, $3, $4, $5, $6, $7, $8,
    CASE WHEN earlier.n = 0 THEN $9 ELSE $9 || '~' || (earlier.n + 1) END, $10, $10
FROM (
    SELECT count(*) AS n FROM jobs
    WHERE tenant_id = $1 AND instance_guid = $2 AND token_id = $3 AND kind = 'callService'
      AND (idempotency_key = $9 OR starts_with(idempotency_key, $9 || '~'))
) AS earlier"""

# The worker's side of the queue serves every tenant, so these statements are the deliberately
# cross-tenant ones (every other statement on tenant data names its tenant):
# - CLAIM_DUE_JOBS takes due jobs of any tenant;
# - the statements on a held job (HOLD_JOB, SETTLE_HELD_JOB, RETRY_HELD_JOB, RELEASE_HELD_JOB,
#   EXTEND_HELD_JOB_LEASE) address it by id alone: the claim returned its tenant, and everything
#   else the feed-back reads or writes is scoped by that tenant;
# - housekeeping (DELETE_FINISHED_JOBS here, PRUNE_IDEMPOTENCY_KEYS below) deletes expired rows of
#   every tenant.

# A running job whose lease ran out belongs to a worker presumed dead and is claimed again; every
# claim counts as an attempt. Each job is leased for its own call timeout plus a margin, so a job
# whose worker died is claimed again as soon as its call could no longer be running. SKIP LOCKED
# lets any number of claimers take disjoint batches without waiting on each other.
# $1 now, $2 how many, $3 worker id, $4 lease margin seconds
CLAIM_DUE_JOBS = """
WITH due AS (
    SELECT id FROM jobs
    WHERE (status = 'pending' AND run_at <= $1) OR (status = 'running' AND lease_until < $1)
    ORDER BY run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, locked_by = $3,
    lease_until = $1::timestamptz
        + make_interval(secs => coalesce((jobs.payload ->> 'timeoutMs')::float8 / 1000, 0) + $4),
    updated_at = $1
FROM due WHERE jobs.id = due.id
RETURNING jobs.*"""

# What a worker does with a job it claimed. $1 job id, $2 worker id, $3 attempt (the claim it
# made): a job is the caller's only while it is running under that very claim, so a worker that
# overran its lease and lost the job to a later claim changes nothing.
_HELD_CLAIM = "id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'running'"

# Locks the row until the transaction ends, so no other worker can claim it meanwhile.
HOLD_JOB = f"SELECT id FROM jobs WHERE {_HELD_CLAIM} FOR UPDATE"

# $4 now, $5 status: done, failed or cancelled; $6 error
SETTLE_HELD_JOB = f"""
UPDATE jobs SET status = $5, lease_until = NULL, last_error = coalesce($6, last_error), updated_at = $4
WHERE {_HELD_CLAIM}"""

# $4 now, $5 run_at, $6 error
RETRY_HELD_JOB = f"""
UPDATE jobs SET status = 'pending', lease_until = NULL, locked_by = NULL, run_at = $5, last_error = $6,
    updated_at = $4
WHERE {_HELD_CLAIM}"""

# Back to the queue, due at $5, without this claim counting: a stop interrupted the call, or a
# timer was claimed before its due time. $4 now
RELEASE_HELD_JOB = f"""
UPDATE jobs SET status = 'pending', attempts = attempts - 1, lease_until = NULL, locked_by = NULL, run_at = $5,
    updated_at = $4
WHERE {_HELD_CLAIM}"""

# The lease runs at least until $4 now + $5 seconds (never shortened): a worker keeps the job
# while it retries recording an outcome it already has.
EXTEND_HELD_JOB_LEASE = f"""
UPDATE jobs SET lease_until = greatest(lease_until, $4::timestamptz + make_interval(secs => $5)), updated_at = $4
WHERE {_HELD_CLAIM}"""

# $1 tenant, $2 instance, $3 token, $4 job id
LATER_JOB_FOR_TOKEN = """
SELECT EXISTS (
    SELECT 1 FROM jobs later
    WHERE later.tenant_id = $1 AND later.instance_guid = $2 AND later.token_id = $3 AND later.id > $4
      AND later.kind = (SELECT kind FROM jobs WHERE id = $4)
)"""

# Housekeeping, across tenants: up to $2 finished jobs last changed before $1. Jobs of an instance
# still running, waiting or in error stay whatever their age: a token coming back to a service
# task numbers its new idempotency key by counting the earlier jobs (INSERT_CALL_JOB), and a
# superseded job is recognised by the later ones (LATER_JOB_FOR_TOKEN).
DELETE_FINISHED_JOBS = """
DELETE FROM jobs WHERE id IN (
    SELECT j.id FROM jobs j
    WHERE j.status IN ('done', 'failed', 'cancelled') AND j.updated_at < $1
      AND NOT EXISTS (
          SELECT 1 FROM process_instances i
          WHERE i.tenant_id = j.tenant_id AND i.instance_guid = j.instance_guid
            AND i.status IN ('running', 'waiting', 'error')
      )
    LIMIT $2
    FOR UPDATE OF j SKIP LOCKED
)"""

# New due jobs wake idle workers at once instead of at their next poll. A notification is sent
# when the transaction commits (never for one rolled back), once however many jobs it stored.
JOBS_CHANNEL = "flowcore_jobs"
NOTIFY_JOBS = f"SELECT pg_notify('{JOBS_CHANNEL}', '')"

# --- idempotency keys --------------------------------------------------------------------

# $3 is the oldest creation time still honoured (now - 24 h).
GET_IDEMPOTENT_RESPONSE = """
SELECT request_hash, status_code, http_status, body FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2 AND created_at > $3"""

# The first response stays; an expired entry under the same key is replaced.
PUT_IDEMPOTENT_RESPONSE = """
INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, http_status, body, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, key) DO UPDATE
SET request_hash = excluded.request_hash, status_code = excluded.status_code,
    http_status = excluded.http_status, body = excluded.body, created_at = excluded.created_at
WHERE idempotency_keys.created_at <= $8"""

# Housekeeping, across tenants: up to $2 entries created at or before $1 (past their lifetime,
# never read again). By ctid: the table's key is (tenant, key), and a batch needs no tenant.
PRUNE_IDEMPOTENCY_KEYS = """
DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
))"""

# --- databases (test fixtures and tooling) -----------------------------------------------


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_database(name: str, *, template: str | None = None) -> str:
    suffix = f" TEMPLATE {quote_identifier(template)}" if template else ""
    return f"CREATE DATABASE {quote_identifier(name)}{suffix}"


def drop_database(name: str) -> str:
    return f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)"


# Durability is worthless for a throwaway test cluster and costs most of a test's time.
TEST_SERVER_SETTINGS = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
    "SELECT pg_reload_conf()",
)
