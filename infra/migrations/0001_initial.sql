-- flowcore schema 1. Every table is scoped by tenant_id and every query filters on it.

CREATE TABLE process_definitions (
    id             bigserial PRIMARY KEY,
    tenant_id      text        NOT NULL,
    process_key    text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    name           text        NOT NULL,
    description    text,
    category       text,
    is_active      boolean     NOT NULL DEFAULT true,
    bpmn_xml       text        NOT NULL,
    processes      text[]      NOT NULL,  -- every executable process id in the document
    element_counts jsonb       NOT NULL,
    metadata       jsonb,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT process_definitions_key_version UNIQUE (tenant_id, process_key, version)
);
CREATE INDEX process_definitions_tenant_created ON process_definitions (tenant_id, created_at DESC, id DESC);
CREATE INDEX process_definitions_processes ON process_definitions USING gin (processes);

-- No foreign key to process_definitions: a definition deleted with force leaves its
-- instances (and their history) readable.
CREATE TABLE process_instances (
    tenant_id          text        NOT NULL,
    instance_guid      text        NOT NULL,
    definition_id      bigint      NOT NULL,
    process_key        text        NOT NULL,
    process_name       text        NOT NULL,
    definition_version integer     NOT NULL,
    status             text        NOT NULL,
    execution_mode     text        NOT NULL,
    business_key       text,
    correlation_key    text,
    context_type       text,
    context_id         jsonb,
    state              jsonb       NOT NULL,
    row_version        integer     NOT NULL,
    started_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    completed_at       timestamptz,
    PRIMARY KEY (tenant_id, instance_guid)
);
CREATE INDEX process_instances_started ON process_instances (tenant_id, started_at DESC);
CREATE INDEX process_instances_key ON process_instances (tenant_id, process_key, started_at DESC);
CREATE INDEX process_instances_status ON process_instances (tenant_id, status, started_at DESC);
CREATE INDEX process_instances_business_key ON process_instances (tenant_id, business_key)
    WHERE business_key IS NOT NULL;
CREATE INDEX process_instances_correlation_key ON process_instances (tenant_id, correlation_key)
    WHERE correlation_key IS NOT NULL;
CREATE INDEX process_instances_live_by_definition ON process_instances (tenant_id, definition_id)
    WHERE status IN ('running', 'waiting', 'error');

CREATE TABLE instance_history (
    tenant_id     text        NOT NULL,
    instance_guid text        NOT NULL,
    seq           integer     NOT NULL,
    event_type    text        NOT NULL,
    at            timestamptz NOT NULL,
    node_id       text,
    node_name     text,
    node_type     text,
    token_id      integer,
    actor         text,
    comment       text,
    data          jsonb,
    PRIMARY KEY (tenant_id, instance_guid, seq)
);

CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    tenant_id       text        NOT NULL,
    instance_guid   text        NOT NULL,
    token_id        integer     NOT NULL,
    node_id         text        NOT NULL,
    kind            text        NOT NULL,  -- the effect's tag: callService, scheduleTimer
    payload         jsonb       NOT NULL,  -- the whole effect, as msgspec encodes it
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,  -- claims so far
    max_attempts    integer     NOT NULL CHECK (max_attempts > 0),
    run_at          timestamptz NOT NULL,
    lease_until     timestamptz,
    locked_by       text,
    last_error      text,
    idempotency_key text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX jobs_status_run_at ON jobs (status, run_at);
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE status = 'running';
CREATE INDEX jobs_pending_by_token ON jobs (tenant_id, instance_guid, token_id) WHERE status = 'pending';

CREATE TABLE idempotency_keys (
    tenant_id      text        NOT NULL,
    key            text        NOT NULL,
    request_hash   text        NOT NULL,
    status_code    text        NOT NULL,
    http_status    integer     NOT NULL,
    body           bytea       NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
