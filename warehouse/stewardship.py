"""What stewards read and decide: the review queue (``mpi.review_pair``), the records of a pair, and
the history of a master id (``mpi.master``, its crosswalk, events and reviews).

Rows come back as stored, names and ID numbers included: the caller masks them before they leave.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

REVIEW_STATUSES = {"open": "decided_at IS NULL", "decided": "decided_at IS NOT NULL", "all": "true"}
RECORD_FIELDS = ("name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address_village",
                 "address_house_no", "status_raw", "standardized_at")


def _crosswalk_join(record_key: str, alias: str) -> str:
    """A LEFT JOIN of mpi.crosswalk on its primary key for a ``source/record`` key column."""
    source = f"split_part({record_key}, '/', 1)"
    return (f"LEFT JOIN mpi.crosswalk {alias} ON {alias}.source = {source}"
            f" AND {alias}.source_record_id = substr({record_key}, length({source}) + 2)")


def review_pairs(conn: sa.Connection, *, status: str, limit: int, reason: str | None = None) -> list[dict]:
    """Review pairs with the master ids of both records, strongest first; ``status`` is a key of
    :data:`REVIEW_STATUSES`, ``reason`` a prefix of the review reason."""
    where = REVIEW_STATUSES[status]
    params: dict = {"n": limit}
    if reason:
        where += " AND review_reason LIKE :reason"
        params["reason"] = f"{reason}%"
    rows = conn.execute(sa.text(
        "SELECT p.review_id, p.record_key_l, p.record_key_r, p.match_probability, p.match_weight, p.review_reason,"
        " p.created_at, p.decided_at, p.decision, p.reviewer, p.comment,"
        " cl.master_id AS master_l, cr.master_id AS master_r"
        f" FROM mpi.review_pair p {_crosswalk_join('p.record_key_l', 'cl')} {_crosswalk_join('p.record_key_r', 'cr')}"
        f" WHERE {where}"
        " ORDER BY p.match_probability DESC NULLS LAST, p.review_id LIMIT :n"), params).mappings().all()
    return [dict(r) for r in rows]


def review_pair(conn: sa.Connection, review_id: int) -> dict | None:
    """Every column of one review pair, or None."""
    row = conn.execute(sa.text("SELECT * FROM mpi.review_pair WHERE review_id = :i"), {"i": review_id}).mappings().first()
    return dict(row) if row is not None else None


def standardized_record(conn: sa.Connection, source: str, record_id: str) -> dict | None:
    """A standardized record's :data:`RECORD_FIELDS` and its master id (unmasked), or None."""
    row = conn.execute(sa.text(
        f"SELECT {', '.join('r.' + f for f in RECORD_FIELDS)}, c.master_id FROM std.resident r"
        " LEFT JOIN mpi.crosswalk c USING (source, source_record_id)"
        " WHERE r.source = :s AND r.source_record_id = :r"), {"s": source, "r": record_id}).mappings().first()
    return dict(row) if row is not None else None


def record_decision(conn: sa.Connection, review_id: int, decision: str, *, reviewer: str,
                    comment: str | None) -> dict | None:
    """Write a decision on a review pair (caller's transaction); None when there is no such pair."""
    row = conn.execute(sa.text(
        "UPDATE mpi.review_pair SET decision = :d, decided_at = clock_timestamp(), reviewer = :who, comment = :c"
        " WHERE review_id = :i RETURNING review_id, record_key_l, record_key_r, decision, decided_at"),
        {"d": decision, "who": reviewer, "c": comment, "i": review_id}).mappings().first()
    return dict(row) if row is not None else None


def master_redirect(conn: sa.Connection, master_id: str) -> sa.Row | None:
    """A master id's ``status`` and ``retired_into`` (in a row), or None when it was never minted."""
    return conn.execute(sa.text("SELECT status, retired_into FROM mpi.master WHERE master_id = :m"),
                        {"m": master_id}).first()


def master_row(conn: sa.Connection, master_id: str) -> dict:
    """A master id's status, redirect, dates and anchor (unmasked); raises when there is none."""
    return dict(conn.execute(sa.text("SELECT master_id, status, retired_into, created_at, retired_at, anchor"
                                     " FROM mpi.master WHERE master_id = :m"), {"m": master_id}).mappings().one())


def master_records(conn: sa.Connection, master_id: str) -> list[dict]:
    """The source records the crosswalk links to a master id, with their match rule."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT c.source, c.source_record_id, c.match_rule, c.updated_at FROM mpi.crosswalk c WHERE c.master_id = :m"
        " ORDER BY c.source, c.source_record_id"), {"m": master_id}).mappings()]


def master_events(conn: sa.Connection, master_ids: Sequence[str]) -> list[dict]:
    """Events of these master ids (as subject or as the other id), oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT e.event_id, e.run_id, e.created_at, e.master_id, e.event, e.cause, e.other_master_id, e.source,"
        " e.source_record_id, e.detail FROM mpi.master_event e"
        " WHERE e.master_id = ANY(:ids) OR e.other_master_id = ANY(:ids) ORDER BY e.event_id"),
        {"ids": list(master_ids)}).mappings()]


def reviews_touching(conn: sa.Connection, record_keys: Sequence[str]) -> list[dict]:
    """Review pairs involving any of these ``source/record`` keys, decided ones first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT review_id, record_key_l, record_key_r, review_reason, match_probability, decision, decided_at,"
        " reviewer, comment FROM mpi.review_pair WHERE record_key_l = ANY(:k) OR record_key_r = ANY(:k)"
        " ORDER BY decided_at NULLS LAST, review_id"), {"k": list(record_keys)}).mappings()]
