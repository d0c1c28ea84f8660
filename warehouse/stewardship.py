"""What stewards read and decide: the review queue (``mpi.review_pair``), the records of a pair, and
the history of a master id (``mpi.master``, its crosswalk, events and reviews).

Rows come back as stored, names and ID numbers included: the caller masks them before they leave.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from warehouse.tables import mpi_crosswalk, mpi_master, mpi_master_event, mpi_review_pair, std_resident

REVIEW_STATUSES = ("open", "decided", "all")
RECORD_FIELDS = ("name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address_village",
                 "address_house_no", "status_raw", "standardized_at")


def _is_record(crosswalk: sa.FromClause, record_key: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """The crosswalk row (on its primary key) of a ``source/record`` key column."""
    source = sa.func.split_part(record_key, "/", 1)
    return sa.and_(crosswalk.c.source == source,
                   crosswalk.c.source_record_id == sa.func.substr(record_key, sa.func.length(source) + 2))


def review_pairs(conn: sa.Connection, *, status: str, limit: int, reason: str | None = None) -> list[dict]:
    """Review pairs with the master ids of both records, strongest first; ``status`` is one of
    :data:`REVIEW_STATUSES`, ``reason`` a prefix of the review reason."""
    p = mpi_review_pair
    cl, cr = mpi_crosswalk.alias("cl"), mpi_crosswalk.alias("cr")
    query = (sa.select(p.c.review_id, p.c.record_key_l, p.c.record_key_r, p.c.match_probability, p.c.match_weight,
                       p.c.review_reason, p.c.created_at, p.c.decided_at, p.c.decision, p.c.reviewer, p.c.comment,
                       cl.c.master_id.label("master_l"), cr.c.master_id.label("master_r"))
             .select_from(p.outerjoin(cl, _is_record(cl, p.c.record_key_l))
                          .outerjoin(cr, _is_record(cr, p.c.record_key_r)))
             .order_by(p.c.match_probability.desc().nulls_last(), p.c.review_id).limit(limit))
    if status == "open":
        query = query.where(p.c.decided_at.is_(None))
    elif status == "decided":
        query = query.where(p.c.decided_at.is_not(None))
    if reason:
        query = query.where(p.c.review_reason.like(f"{reason}%"))
    return [dict(r) for r in conn.execute(query).mappings()]


def review_pair(conn: sa.Connection, review_id: int) -> dict | None:
    """Every column of one review pair, or None."""
    row = conn.execute(sa.select(mpi_review_pair).where(mpi_review_pair.c.review_id == review_id)).mappings().first()
    return dict(row) if row is not None else None


def standardized_record(conn: sa.Connection, source: str, record_id: str) -> dict | None:
    """A standardized record's :data:`RECORD_FIELDS` and its master id (unmasked), or None."""
    r, c = std_resident, mpi_crosswalk
    row = conn.execute(
        sa.select(*(r.c[f] for f in RECORD_FIELDS), c.c.master_id)
        .select_from(r.outerjoin(c, sa.and_(c.c.source == r.c.source, c.c.source_record_id == r.c.source_record_id)))
        .where(r.c.source == source, r.c.source_record_id == record_id)).mappings().first()
    return dict(row) if row is not None else None


def resident_record(conn: sa.Connection, source: str, record_id: str) -> dict | None:
    """Every column of one standardized record (what the matcher compares), or None."""
    r = std_resident
    row = conn.execute(sa.select(r).where(r.c.source == source, r.c.source_record_id == record_id)).mappings().first()
    return dict(row) if row is not None else None


def record_decision(conn: sa.Connection, review_id: int, decision: str, *, reviewer: str,
                    comment: str | None) -> dict | None:
    """Write a decision on a review pair (caller's transaction); None when there is no such pair."""
    p = mpi_review_pair
    row = conn.execute(
        sa.update(p).where(p.c.review_id == review_id)
        .values(decision=decision, decided_at=sa.func.clock_timestamp(), reviewer=reviewer, comment=comment)
        .returning(p.c.review_id, p.c.record_key_l, p.c.record_key_r, p.c.decision, p.c.decided_at)
    ).mappings().first()
    return dict(row) if row is not None else None


def master_redirect(conn: sa.Connection, master_id: str) -> sa.Row | None:
    """A master id's ``status`` and ``retired_into`` (in a row), or None when it was never minted."""
    m = mpi_master
    return conn.execute(sa.select(m.c.status, m.c.retired_into).where(m.c.master_id == master_id)).first()


def master_row(conn: sa.Connection, master_id: str) -> dict:
    """A master id's status, redirect, dates and anchor (unmasked); raises when there is none."""
    m = mpi_master
    return dict(conn.execute(
        sa.select(m.c.master_id, m.c.status, m.c.retired_into, m.c.created_at, m.c.retired_at, m.c.anchor)
        .where(m.c.master_id == master_id)).mappings().one())


def master_records(conn: sa.Connection, master_id: str) -> list[dict]:
    """The source records the crosswalk links to a master id, with their match rule."""
    c = mpi_crosswalk
    return [dict(r) for r in conn.execute(
        sa.select(c.c.source, c.c.source_record_id, c.c.match_rule, c.c.updated_at)
        .where(c.c.master_id == master_id).order_by(c.c.source, c.c.source_record_id)).mappings()]


def master_events(conn: sa.Connection, master_ids: Sequence[str]) -> list[dict]:
    """Events of these master ids (as subject or as the other id), oldest first."""
    e, ids = mpi_master_event, list(master_ids)
    return [dict(r) for r in conn.execute(
        sa.select(e.c.event_id, e.c.run_id, e.c.created_at, e.c.master_id, e.c.event, e.c.cause, e.c.other_master_id,
                  e.c.source, e.c.source_record_id, e.c.detail)
        .where(sa.or_(e.c.master_id.in_(ids), e.c.other_master_id.in_(ids))).order_by(e.c.event_id)).mappings()]


def reviews_touching(conn: sa.Connection, record_keys: Sequence[str]) -> list[dict]:
    """Review pairs involving any of these ``source/record`` keys, undecided ones last."""
    p, keys = mpi_review_pair, list(record_keys)
    return [dict(r) for r in conn.execute(
        sa.select(p.c.review_id, p.c.record_key_l, p.c.record_key_r, p.c.review_reason, p.c.match_probability,
                  p.c.decision, p.c.decided_at, p.c.reviewer, p.c.comment)
        .where(sa.or_(p.c.record_key_l.in_(keys), p.c.record_key_r.in_(keys)))
        .order_by(p.c.decided_at.nulls_last(), p.c.review_id)).mappings()]
