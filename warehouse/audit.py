"""Validation history for auditors: every gate run, suite, expectation, observed value and outcome.

One publish-gate run is one ``audit.validation_run`` (suite ``publish_gate``); its suites
(``source.<name>`` per standardized source, ``master_index``) are ``audit.validation_suite`` rows
and their expectations ``audit.validation_result`` rows. Everything stored is counts, short
observed values and names of tables, columns and expectations: never personal data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from warehouse.tables import audit_validation_run

GATE_SUITE = "publish_gate"
SOURCE_SUITE_PREFIX = "source."


def record_gate_run(conn: sa.Connection, suites: Iterable[Mapping[str, Any]], *, docs_path: str | None,
                    ran_with: Mapping[str, Any] | None = None, content_hash: str | None = None,
                    index_state: str | None = None) -> int:
    """Store one gate run; returns its run id.

    ``ran_with``: the model, rules and code version and the Airflow run the gate ran with;
    ``content_hash``: the digest of the index it validated (:func:`warehouse.releases.content_hash`);
    ``index_state``: the state it was read in (:func:`warehouse.releases.content_state`).

    ``suites``: per suite its ``suite`` name, ``success``, ``row_count`` and ``outcomes`` (dicts with
    expectation, table, column, success, observed, unexpected_count, unexpected_percent).
    """
    suites = list(suites)
    outcomes = [(s["suite"], o) for s in suites for o in s["outcomes"]]
    successful = sum(1 for _, o in outcomes if o["success"])
    run_id = conn.execute(sa.text(
        "INSERT INTO audit.validation_run (suite, success, evaluated, successful, failed, docs_path, ran_with,"
        " content_hash, index_state) VALUES (:suite, :success, :evaluated, :successful, :failed, :docs, :ran_with,"
        " :hash, :state)"
        " RETURNING run_id"),
        {"suite": GATE_SUITE, "success": all(s["success"] for s in suites) and successful == len(outcomes),
         "evaluated": len(outcomes), "successful": successful, "failed": len(outcomes) - successful,
         "docs": docs_path, "ran_with": json.dumps(ran_with) if ran_with is not None else None,
         "hash": content_hash, "state": index_state}).scalar_one()
    if suites:
        conn.execute(sa.text(
            "INSERT INTO audit.validation_suite (run_id, suite, success, evaluated, successful, failed, row_count)"
            " VALUES (:run, :suite, :success, :evaluated, :successful, :failed, :row_count)"),
            [{"run": run_id, "suite": s["suite"], "success": bool(s["success"]),
              "evaluated": len(s["outcomes"]), "successful": sum(1 for o in s["outcomes"] if o["success"]),
              "failed": sum(1 for o in s["outcomes"] if not o["success"]), "row_count": s.get("row_count")}
             for s in suites])
    if outcomes:
        conn.execute(sa.text(
            "INSERT INTO audit.validation_result (run_id, position, suite, expectation, table_name, column_name,"
            " success, observed, unexpected_count, unexpected_percent) VALUES (:run, :pos, :suite, :expectation,"
            " :table, :column, :success, :observed, :unexpected_count, :unexpected_percent)"),
            [{"run": run_id, "pos": i, "suite": suite, "expectation": o["expectation"], "table": o.get("table"),
              "column": o.get("column"), "success": bool(o["success"]), "observed": o.get("observed"),
              "unexpected_count": o.get("unexpected_count"), "unexpected_percent": o.get("unexpected_percent")}
             for i, (suite, o) in enumerate(outcomes)])
    return run_id


def last_passed_row_counts(conn: sa.Connection) -> dict[str, int]:
    """Rows per source at the last gate run whose suite for that source passed (the last good load)."""
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (s.suite) s.suite, s.row_count FROM audit.validation_suite s"
        " JOIN audit.validation_run r USING (run_id)"
        " WHERE s.success AND s.row_count IS NOT NULL AND s.suite LIKE :prefix"
        " ORDER BY s.suite, r.started_at DESC, r.run_id DESC"), {"prefix": SOURCE_SUITE_PREFIX + "%"}).all()
    return {r.suite[len(SOURCE_SUITE_PREFIX):]: int(r.row_count) for r in rows}


def last_gate_run(conn: sa.Connection) -> dict | None:
    """The latest gate run: its ``run_id``, ``success``, ``successful`` and ``failed`` counts and ``docs_path``
    (None before the first run)."""
    run = audit_validation_run.c
    row = conn.execute(sa.select(run.run_id, run.success, run.successful, run.failed, run.docs_path)
                       .order_by(run.run_id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def last_passed_gate_at(conn: sa.Connection) -> dt.datetime | None:
    """When the last gate run that passed started (None before the first): what the gate compares a
    source's deletions since."""
    run = audit_validation_run.c
    return conn.execute(sa.select(sa.func.max(run.started_at)).where(run.success)).scalar()
