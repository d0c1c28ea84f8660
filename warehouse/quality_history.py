"""The validation history as the workbench's quality pages show it: every suite of every gate run, with the
release it was published as (or the publish attempt's outcome), newest first.

Counts and names only, never a value: ``audit.validation_suite`` rows joined to their ``audit.validation_run``,
``publish.release`` (the release made from the run) and the run's last ``audit.publish_attempt``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

__all__ = ["history_releases", "history_suites", "validation_history"]

_HISTORY = """
SELECT s.run_id, r.started_at, r.previous_started_at, s.suite, s.success, s.evaluated, s.successful, s.failed,
       s.row_count, a.outcome, coalesce(p.release_no, a.release_no) AS release_no, p.release_no IS NOT NULL AS published
FROM audit.validation_suite s
JOIN (SELECT run_id, started_at, lag(started_at) OVER (ORDER BY started_at, run_id) AS previous_started_at
      FROM audit.validation_run) r USING (run_id)
LEFT JOIN LATERAL (SELECT max(release_no) AS release_no FROM publish.release WHERE validation_run_id = s.run_id
                   HAVING count(*) > 0) p ON true
LEFT JOIN LATERAL (SELECT outcome, release_no FROM audit.publish_attempt WHERE validation_run_id = s.run_id
                   ORDER BY attempted_at DESC, attempt_id DESC LIMIT 1) a ON true
WHERE (CAST(:suites AS text[]) IS NULL OR s.suite = ANY(CAST(:suites AS text[])))
  AND (CAST(:release AS integer) IS NULL OR coalesce(p.release_no, a.release_no) = CAST(:release AS integer))
ORDER BY r.started_at DESC, s.run_id DESC, s.suite
LIMIT :limit
"""


def validation_history(conn: sa.Connection, *, suites: Sequence[str] | None = None, release_no: int | None = None,
                       limit: int = 200) -> list[dict]:
    """One dict per (gate run, suite), newest run first: run_id, started_at, previous_started_at (the gate run
    before it, None for the first), suite, success, evaluated, successful, failed, row_count, outcome (of the
    run's last publish attempt: published, unchanged, blocked, rolled_back; None without one), release_no (the
    release published from the run, else the one its attempt named) and published.

    ``suites``: only these suites (None: all); ``release_no``: only the runs of that release; at most ``limit``.
    """
    rows = conn.execute(sa.text(_HISTORY), {"suites": None if suites is None else list(suites),
                                            "release": release_no, "limit": max(1, int(limit))}).mappings()
    return [dict(r) for r in rows]


def history_suites(conn: sa.Connection) -> list[str]:
    """Every suite the history holds, by name."""
    return list(conn.execute(sa.text("SELECT DISTINCT suite FROM audit.validation_suite ORDER BY suite")).scalars())


def history_releases(conn: sa.Connection) -> list[int]:
    """Every release a gate run was published as, newest first."""
    return [int(n) for n in conn.execute(sa.text(
        "SELECT release_no FROM publish.release WHERE validation_run_id IS NOT NULL ORDER BY release_no DESC")).scalars()]
