"""Numbered releases of the master index, switched atomically.

A release is written and made current in one transaction: readers of
``publish.master_person_current`` see the old release until the commit and the new one after it,
never half of one. Publishing the same content again creates no new release.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

PUBLISH_LOCK = 20261122


@dataclass(frozen=True)
class PublishOutcome:
    outcome: str  # published | unchanged | blocked
    release_no: int | None
    reason: str


def _content_hash(conn: sa.Connection) -> str:
    return conn.execute(sa.text(
        "SELECT md5(coalesce(string_agg(g::text, '|' ORDER BY g.master_id), '')) FROM mpi.golden g")).scalar_one()


def current_release(conn: sa.Connection) -> dict | None:
    row = conn.execute(sa.text(
        "SELECT r.* FROM publish.current_release c JOIN publish.release r USING (release_no)")).mappings().first()
    return dict(row) if row else None


def publish(conn: sa.Connection, validation_run_id: int) -> PublishOutcome:
    """Publish mpi.golden as a new release unless it equals the current one (caller's transaction)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK})
    digest = _content_hash(conn)
    current = current_release(conn)
    if current and current["content_hash"] == digest:
        outcome = PublishOutcome("unchanged", current["release_no"],
                                 f"content equals release {current['release_no']}; it stays current")
    else:
        release_no = conn.execute(sa.text("SELECT coalesce(max(release_no), 0) + 1 FROM publish.release")).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO publish.release (release_no, master_count, record_count, content_hash, validation_run_id)"
            " SELECT :n, count(*), coalesce(sum(record_count), 0), :h, :v FROM mpi.golden"),
            {"n": release_no, "h": digest, "v": validation_run_id})
        conn.execute(sa.text(
            "INSERT INTO publish.master_person (release_no, master_id, name, id_number, id_number_status, sex,"
            " birth_date, record_count, sources) SELECT :n, master_id, name, id_number, id_number_status, sex,"
            " birth_date, record_count, sources FROM mpi.golden"), {"n": release_no})
        conn.execute(sa.text(
            "INSERT INTO publish.current_release (release_no) VALUES (:n)"
            " ON CONFLICT (singleton) DO UPDATE SET release_no = EXCLUDED.release_no, switched_at = now()"),
            {"n": release_no})
        outcome = PublishOutcome("published", release_no, "all gate expectations passed")
    _record_attempt(conn, validation_run_id, outcome)
    return outcome


def record_blocked(conn: sa.Connection, validation_run_id: int, reason: str) -> PublishOutcome:
    """Record that the gate blocked a release; the current release stays in place."""
    current = current_release(conn)
    outcome = PublishOutcome("blocked", current["release_no"] if current else None, reason)
    _record_attempt(conn, validation_run_id, outcome)
    return outcome


def _record_attempt(conn: sa.Connection, validation_run_id: int, outcome: PublishOutcome) -> None:
    conn.execute(sa.text(
        "INSERT INTO audit.publish_attempt (validation_run_id, outcome, release_no, reason) VALUES (:v, :o, :n, :r)"),
        {"v": validation_run_id, "o": outcome.outcome, "n": outcome.release_no, "r": outcome.reason})


def list_releases(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(sa.text(
        "SELECT r.*, (c.release_no IS NOT NULL) AS is_current FROM publish.release r"
        " LEFT JOIN publish.current_release c USING (release_no) ORDER BY r.release_no")).mappings().all()
    return [dict(r) for r in rows]
