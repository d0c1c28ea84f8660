"""Stable master ids with events, incremental matching state, steward decisions, golden provenance.

* ``mpi.master`` gains a status: a merged-away id is ``retired`` with a redirect (``retired_into``);
  its anchor (``id:<number>`` / ``rec:<record>``) is the current one and no longer the id's key.
* ``mpi.link_run`` / ``mpi.master_event``: every matching run, and every change of a master id
  with its cause.
* ``mpi.match_feature`` / ``mpi.match_edge`` / ``mpi.term_frequency`` / ``mpi.model_state``: what
  an incremental run needs — the matching features of every record, the scored links, and the
  term-frequency snapshot scores are computed with.
* ``mpi.review_pair`` gains the reviewer and comment; decided pairs are the must-link and
  cannot-link rules every run honours.
* ``mpi.golden`` gains phone, address and status; ``mpi.golden_value`` holds the provenance of
  every golden value and ``mpi.golden_conflict`` the values sources disagree on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE mpi.master DROP CONSTRAINT master_anchor_key;
    ALTER TABLE mpi.master ALTER COLUMN anchor DROP NOT NULL;
    ALTER TABLE mpi.master
        ADD COLUMN status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
        ADD COLUMN retired_into text REFERENCES mpi.master (master_id),
        ADD COLUMN retired_at   timestamptz;
    CREATE INDEX ON mpi.master (anchor);

    CREATE TABLE mpi.link_run (
        run_id        bigserial PRIMARY KEY,
        mode          text NOT NULL CHECK (mode IN ('full', 'incremental')),
        started_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz,
        model_version text NOT NULL,
        records       integer,
        affected      integer,
        counts        jsonb NOT NULL DEFAULT '{}'
    );

    CREATE TABLE mpi.master_event (
        event_id         bigserial PRIMARY KEY,
        run_id           bigint REFERENCES mpi.link_run (run_id),
        master_id        text NOT NULL,
        event            text NOT NULL CHECK (event IN ('created', 'merged', 'split', 'record_added',
                                                        'record_moved', 'record_removed', 'retired')),
        cause            text NOT NULL CHECK (cause IN ('new_data', 'source_correction', 'source_deletion',
                                                        'model_change', 'steward_decision', 'rule_change')),
        other_master_id  text,
        source           text,
        source_record_id text,
        detail           jsonb NOT NULL DEFAULT '{}',
        created_at       timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX ON mpi.master_event (master_id);
    CREATE INDEX ON mpi.master_event (other_master_id) WHERE other_master_id IS NOT NULL;

    CREATE TABLE mpi.match_feature (
        record_key      text PRIMARY KEY,
        source          text NOT NULL,
        source_record_id text NOT NULL,
        name_key        text, name_pinyin text, surname text, given_key text, given_pinyin text,
        id_valid        text, id_body text, id_claimed text,
        dob             text, birth_year text, sex smallint, phone text, address_key text, village text,
        anchor_key      text NOT NULL,
        standardized_at timestamptz NOT NULL
    );
    CREATE UNIQUE INDEX ON mpi.match_feature (source, source_record_id);
    CREATE INDEX ON mpi.match_feature (anchor_key);
    CREATE INDEX ON mpi.match_feature (id_valid) WHERE id_valid IS NOT NULL;
    CREATE INDEX ON mpi.match_feature (dob, surname);
    CREATE INDEX ON mpi.match_feature (id_body);
    CREATE INDEX ON mpi.match_feature (substr(id_body, 7, 11));
    CREATE INDEX ON mpi.match_feature (substr(id_body, 1, 6), substr(id_body, 15, 3), birth_year, surname);
    CREATE INDEX ON mpi.match_feature (name_pinyin, birth_year);
    CREATE INDEX ON mpi.match_feature (phone, name_key);
    CREATE INDEX ON mpi.match_feature (address_key, birth_year);

    CREATE TABLE mpi.match_edge (
        record_key_l      text NOT NULL,
        record_key_r      text NOT NULL,
        match_probability double precision NOT NULL,
        match_weight      double precision NOT NULL,
        evidence          jsonb NOT NULL DEFAULT '{}',
        PRIMARY KEY (record_key_l, record_key_r)
    );
    CREATE INDEX ON mpi.match_edge (record_key_r);

    CREATE TABLE mpi.term_frequency (
        column_name text NOT NULL,
        value       text NOT NULL,
        tf          double precision NOT NULL,
        PRIMARY KEY (column_name, value)
    );
    CREATE TABLE mpi.model_state (
        singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        model_version text NOT NULL,
        records       integer NOT NULL,
        frequencies_at timestamptz NOT NULL DEFAULT now()
    );

    ALTER TABLE mpi.review_pair
        ADD COLUMN reviewer text,
        ADD COLUMN comment  text;

    ALTER TABLE mpi.golden
        ADD COLUMN phone       text,
        ADD COLUMN address     text,
        ADD COLUMN status      text,
        ADD COLUMN status_date date,
        ADD COLUMN conflicts   integer NOT NULL DEFAULT 0;
    CREATE TABLE mpi.golden_value (
        master_id        text NOT NULL,
        field            text NOT NULL,
        value            text,
        source           text,
        source_record_id text,
        loaded_at        timestamptz,
        rule             text NOT NULL,
        PRIMARY KEY (master_id, field)
    );
    CREATE TABLE mpi.golden_conflict (
        master_id text NOT NULL,
        field     text NOT NULL,
        value     text NOT NULL,
        sources   text[] NOT NULL,
        records   integer NOT NULL,
        chosen    boolean NOT NULL,
        PRIMARY KEY (master_id, field, value)
    );
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE mpi.golden_conflict, mpi.golden_value, mpi.model_state, mpi.term_frequency, mpi.match_edge,
               mpi.match_feature, mpi.master_event, mpi.link_run;
    ALTER TABLE mpi.golden DROP COLUMN phone, DROP COLUMN address, DROP COLUMN status, DROP COLUMN status_date,
                           DROP COLUMN conflicts;
    ALTER TABLE mpi.review_pair DROP COLUMN reviewer, DROP COLUMN comment;
    ALTER TABLE mpi.master DROP COLUMN status, DROP COLUMN retired_into, DROP COLUMN retired_at;
    ALTER TABLE mpi.master ADD CONSTRAINT master_anchor_key UNIQUE (anchor);
    """)
