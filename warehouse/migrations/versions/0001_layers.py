"""The warehouse layers: raw, std, mpi, publish and audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS std;
CREATE SCHEMA IF NOT EXISTS mpi;
CREATE SCHEMA IF NOT EXISTS publish;
CREATE SCHEMA IF NOT EXISTS audit;

-- raw: records exactly as received; append-only
CREATE TABLE raw.load_batch (
    batch_id     bigserial PRIMARY KEY,
    source       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    received     integer NOT NULL DEFAULT 0,
    landed       integer NOT NULL DEFAULT 0,
    quarantined  integer NOT NULL DEFAULT 0,
    duplicates   integer NOT NULL DEFAULT 0,
    pages        integer NOT NULL DEFAULT 0,
    error        text
);
CREATE INDEX ON raw.load_batch (source, batch_id);

CREATE TABLE raw.record (
    record_id        bigserial PRIMARY KEY,
    source           text NOT NULL,
    source_record_id text NOT NULL,
    content_hash     text NOT NULL,
    payload          jsonb NOT NULL,
    batch_id         bigint NOT NULL REFERENCES raw.load_batch (batch_id),
    fetched_at       timestamptz NOT NULL,
    UNIQUE (source, source_record_id, content_hash)
);
CREATE INDEX ON raw.record (source, source_record_id, record_id DESC);

CREATE TABLE raw.quarantine (
    quarantine_id    bigserial PRIMARY KEY,
    batch_id         bigint NOT NULL REFERENCES raw.load_batch (batch_id),
    source           text NOT NULL,
    source_record_id text,
    reason_code      text NOT NULL,
    detail           text NOT NULL,
    payload          text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- std: canonical resident records, raw value beside clean value, per-field status
CREATE TABLE std.resident (
    source           text NOT NULL,
    source_record_id text NOT NULL,
    raw_record_id    bigint NOT NULL REFERENCES raw.record (record_id),
    batch_id         bigint NOT NULL,
    program          text,
    name_raw         text,
    name             text,
    name_key         text,
    name_status      text NOT NULL,
    id_number_raw    text,
    id_number        text,
    id_number_status text NOT NULL,
    id_birth_date    date,
    id_sex           smallint,
    id_region        text,
    sex_raw          text,
    birth_date_raw   text,
    address_raw      text,
    phone_raw        text,
    status_raw       text,
    standardized_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_record_id)
);
CREATE INDEX ON std.resident (id_number) WHERE id_number IS NOT NULL;

-- mpi: master ids, crosswalk, golden records
CREATE SEQUENCE mpi.master_id_seq;
CREATE TABLE mpi.master (
    master_id   text PRIMARY KEY,
    anchor      text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE mpi.crosswalk (
    source           text NOT NULL,
    source_record_id text NOT NULL,
    master_id        text NOT NULL REFERENCES mpi.master (master_id),
    match_rule       text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_record_id)
);
CREATE INDEX ON mpi.crosswalk (master_id);
CREATE TABLE mpi.golden (
    master_id        text PRIMARY KEY REFERENCES mpi.master (master_id),
    name             text,
    id_number        text,
    id_number_status text NOT NULL,
    sex              smallint,
    birth_date       date,
    record_count     integer NOT NULL,
    sources          text[] NOT NULL
);

-- publish: numbered releases; the pointer switches in the same transaction that writes one
CREATE TABLE publish.release (
    release_no        integer PRIMARY KEY,
    published_at      timestamptz NOT NULL DEFAULT now(),
    master_count      integer NOT NULL,
    record_count      integer NOT NULL,
    content_hash      text NOT NULL,
    validation_run_id bigint NOT NULL
);
CREATE TABLE publish.master_person (
    release_no   integer NOT NULL REFERENCES publish.release (release_no),
    master_id    text NOT NULL,
    name         text,
    id_number    text,
    id_number_status text NOT NULL,
    sex          smallint,
    birth_date   date,
    record_count integer NOT NULL,
    sources      text[] NOT NULL,
    PRIMARY KEY (release_no, master_id)
);
CREATE TABLE publish.current_release (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    release_no integer NOT NULL REFERENCES publish.release (release_no),
    switched_at timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW publish.master_person_current AS
    SELECT p.* FROM publish.master_person p JOIN publish.current_release c USING (release_no);

-- audit: validation history and publishing decisions, queryable by auditors
CREATE TABLE audit.validation_run (
    run_id      bigserial PRIMARY KEY,
    suite       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    success     boolean NOT NULL,
    evaluated   integer NOT NULL,
    successful  integer NOT NULL,
    failed      integer NOT NULL,
    docs_path   text
);
CREATE TABLE audit.validation_result (
    run_id             bigint NOT NULL REFERENCES audit.validation_run (run_id),
    position           integer NOT NULL,
    expectation        text NOT NULL,
    table_name         text,
    column_name        text,
    success            boolean NOT NULL,
    observed           text,
    unexpected_count   bigint,
    unexpected_percent double precision,
    PRIMARY KEY (run_id, position)
);
CREATE TABLE audit.publish_attempt (
    attempt_id        bigserial PRIMARY KEY,
    attempted_at      timestamptz NOT NULL DEFAULT now(),
    validation_run_id bigint REFERENCES audit.validation_run (run_id),
    outcome           text NOT NULL CHECK (outcome IN ('published', 'unchanged', 'blocked')),
    release_no        integer,
    reason            text NOT NULL
);
"""

DOWNGRADE = """
DROP SCHEMA IF EXISTS audit CASCADE;
DROP SCHEMA IF EXISTS publish CASCADE;
DROP SCHEMA IF EXISTS mpi CASCADE;
DROP SCHEMA IF EXISTS std CASCADE;
DROP SCHEMA IF EXISTS raw CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
