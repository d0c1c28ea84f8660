"""Validation history for auditors: every run, expectation, observed value and outcome."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa


def record_validation(conn: sa.Connection, *, suite: str, success: bool, evaluated: int, successful: int,
                      failed: int, docs_path: str | None, outcomes: Iterable[dict]) -> int:
    """Store one validation run with its per-expectation outcomes; returns the run id.

    Outcomes hold counts and short observed values only, never personal data.
    """
    run_id = conn.execute(sa.text(
        "INSERT INTO audit.validation_run (suite, success, evaluated, successful, failed, docs_path)"
        " VALUES (:suite, :success, :evaluated, :successful, :failed, :docs) RETURNING run_id"),
        {"suite": suite, "success": success, "evaluated": evaluated, "successful": successful,
         "failed": failed, "docs": docs_path}).scalar_one()
    rows = [{"run": run_id, "pos": i, **o} for i, o in enumerate(outcomes)]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO audit.validation_result (run_id, position, expectation, table_name, column_name, success, observed,"
            " unexpected_count, unexpected_percent) VALUES (:run, :pos, :expectation, :table, :column, :success, :observed,"
            " :unexpected_count, :unexpected_percent)"), rows)
    return run_id
