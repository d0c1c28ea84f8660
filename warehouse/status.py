"""What ran, as the warehouse recorded it: per source the last load and the cursor, the last gate run, the
last master-index run, and the open review pairs and audit findings (what ``hub status`` reads).

Counts, times, states and short error texts only: never a name or an ID number.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

_LOAD_COLUMNS = ("batch_id", "started_at", "finished_at", "status", "mode", "received", "landed", "quarantined",
                 "duplicates", "tombstones", "pages", "error")


def source_loads(conn: sa.Connection, sources: Iterable[str]) -> dict[str, dict]:
    """Per source: its ``last_load`` (the newest batch, ``mode`` None while it runs; None when never loaded),
    ``last_success`` (when the newest succeeded batch finished), ``failures_since_success`` (failed batches
    after it), ``batches``, ``cursor`` and ``cursor_updated_at`` (the stored incremental cursor),
    ``last_full_extract`` (when the last succeeded complete extract finished) and ``last_file`` (the newest
    drop file taken whole). Sources the warehouse knows but ``sources`` does not name are included too."""
    names = list(sources)
    columns = ", ".join(f"b.{c}" for c in _LOAD_COLUMNS)
    rows = conn.execute(sa.text(
        "WITH s AS (SELECT unnest(CAST(:names AS text[])) AS source"
        "           UNION SELECT source FROM raw.load_batch UNION SELECT source FROM raw.source_state),"
        " agg AS (SELECT source, count(*) AS batches,"
        "                max(finished_at) FILTER (WHERE status = 'succeeded') AS last_success,"
        "                max(finished_at) FILTER (WHERE status = 'succeeded' AND mode = 'full') AS last_full_extract,"
        "                max(batch_id) FILTER (WHERE status = 'succeeded') AS last_success_batch"
        "         FROM raw.load_batch GROUP BY source)"
        f" SELECT s.source, {columns}, coalesce(agg.batches, 0) AS batches, agg.last_success,"
        "        agg.last_full_extract, st.cursor, st.updated_at AS cursor_updated_at,"
        "        (SELECT count(*) FROM raw.load_batch f WHERE f.source = s.source AND f.status = 'failed'"
        "          AND f.batch_id > coalesce(agg.last_success_batch, 0)) AS failures_since_success,"
        "        (SELECT max(file_name) FROM raw.ingested_file i WHERE i.source = s.source) AS last_file"
        " FROM s LEFT JOIN agg USING (source) LEFT JOIN raw.source_state st USING (source)"
        " LEFT JOIN LATERAL (SELECT * FROM raw.load_batch x WHERE x.source = s.source"
        "                    ORDER BY x.batch_id DESC LIMIT 1) b ON true"
        " ORDER BY s.source"), {"names": names}).mappings().all()
    out = {}
    for r in rows:
        last = {c: r[c] for c in _LOAD_COLUMNS} if r["batch_id"] is not None else None
        if last is not None and last["status"] == "running":
            last["mode"] = None  # set when the batch closes; the column's default says nothing yet
        out[r["source"]] = {
            "registered": r["source"] in names,
            "last_load": last,
            "last_success": r["last_success"],
            "failures_since_success": int(r["failures_since_success"]),
            "batches": int(r["batches"]),
            "cursor": r["cursor"],
            "cursor_updated_at": r["cursor_updated_at"],
            "last_full_extract": r["last_full_extract"],
            "last_file": r["last_file"],
        }
    return out


def last_gate(conn: sa.Connection) -> dict | None:
    """The latest publish-gate run: ``run_id``, ``started_at``, ``success`` and the ``evaluated``,
    ``successful`` and ``failed`` expectation counts, with the number of suites that failed (None before
    the first run)."""
    row = conn.execute(sa.text(
        "SELECT r.run_id, r.started_at, r.success, r.evaluated, r.successful, r.failed,"
        "       (SELECT count(*) FROM audit.validation_suite s WHERE s.run_id = r.run_id) AS suites,"
        "       (SELECT count(*) FROM audit.validation_suite s WHERE s.run_id = r.run_id AND NOT s.success)"
        "         AS suites_failed"
        " FROM audit.validation_run r ORDER BY r.run_id DESC LIMIT 1")).mappings().first()
    return dict(row) if row else None


def last_link_run(conn: sa.Connection) -> dict | None:
    """The latest master-index run: ``run_id``, ``mode``, ``started_at``, ``finished_at`` (None while it runs
    or when it stopped), ``records``, ``affected``, ``model_version`` and ``ran_with`` (the model, rules and
    code it ran with, where recorded). None before the first run."""
    row = conn.execute(sa.text("SELECT * FROM mpi.link_run ORDER BY run_id DESC LIMIT 1")).mappings().first()
    if row is None:
        return None
    keep = ("run_id", "mode", "started_at", "finished_at", "records", "affected", "ran_with")
    return {k: row[k] for k in row.keys() if k in keep or k.endswith("_version")}


def open_review_count(conn: sa.Connection) -> int:
    """Review pairs no steward has decided yet."""
    return conn.execute(sa.text("SELECT count(*) FROM mpi.review_pair WHERE decided_at IS NULL")).scalar_one()


def release_count(conn: sa.Connection) -> int:
    """Releases published so far (withdrawn ones included)."""
    return conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one()


def open_finding_count(conn: sa.Connection) -> int:
    """Findings not closed yet (open, acknowledged or assigned), of every kind: the audits' and the gate's."""
    from warehouse.finding_lifecycle import NOT_CLOSED

    return conn.execute(sa.text("SELECT count(*) FROM audit.finding WHERE status = ANY(CAST(:nc AS text[]))"),
                        {"nc": list(NOT_CLOSED)}).scalar_one()
