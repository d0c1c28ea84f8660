"""Stewardship: the review queue, decisions, and the history of a master id.

One code path for ``hub review …`` / ``hub history`` and the read API. Names and ID numbers
leave this module masked.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from hub.errors import HubError
from schemas.masking import mask_id_number, mask_name

DECISIONS = ("match", "not_a_match")
_RECORD_FIELDS = ("name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address_village",
                  "address_house_no", "status_raw", "standardized_at")


def _crosswalk_join(record_key: str, alias: str) -> str:
    """A LEFT JOIN of mpi.crosswalk on its primary key for a ``source/record`` key column."""
    source = f"split_part({record_key}, '/', 1)"
    return (f"LEFT JOIN mpi.crosswalk {alias} ON {alias}.source = {source}"
            f" AND {alias}.source_record_id = substr({record_key}, length({source}) + 2)")


def list_reviews(conn: sa.Connection, *, status: str = "open", limit: int = 50, reason: str | None = None) -> list[dict]:
    """Review pairs, strongest first: ``status`` open | decided | all."""
    if status not in ("open", "decided", "all"):
        raise HubError(f"unknown review status {status!r}: expected open, decided or all")
    where = {"open": "decided_at IS NULL", "decided": "decided_at IS NOT NULL", "all": "true"}[status]
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


def _record(conn: sa.Connection, record_key: str) -> dict:
    source, _, record_id = record_key.partition("/")
    row = conn.execute(sa.text(
        f"SELECT {', '.join('r.' + f for f in _RECORD_FIELDS)}, c.master_id FROM std.resident r"
        " LEFT JOIN mpi.crosswalk c USING (source, source_record_id)"
        " WHERE r.source = :s AND r.source_record_id = :r"), {"s": source, "r": record_id}).mappings().first()
    if row is None:
        return {"record_key": record_key, "present": False}
    out = dict(row)
    out.update(record_key=record_key, present=True, name=mask_name(out["name"]),
               id_number=mask_id_number(out["id_number"]) if out["id_number"] else None,
               phone=(out["phone"][:3] + "****" + out["phone"][-4:]) if out.get("phone") else None)
    return out


def show_review(conn: sa.Connection, review_id: int) -> dict:
    """One review pair: both records (masked), their master ids, and the evidence per comparison."""
    row = conn.execute(sa.text("SELECT * FROM mpi.review_pair WHERE review_id = :i"), {"i": review_id}).mappings().first()
    if row is None:
        raise HubError(f"no review pair {review_id}")
    out = dict(row)
    evidence = out.pop("evidence")
    out["evidence"] = evidence if isinstance(evidence, dict) else json.loads(evidence or "{}")
    out["left"] = _record(conn, out["record_key_l"])
    out["right"] = _record(conn, out["record_key_r"])
    return out


def decide(conn: sa.Connection, review_id: int, decision: str, *, reviewer: str, comment: str = "") -> dict:
    """Record a steward's decision; every later matching run honours it (must-link / cannot-link)."""
    if decision not in DECISIONS:
        raise HubError(f"unknown decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    if not reviewer or not reviewer.strip():
        raise HubError("a decision needs the reviewer's name (--reviewer)")
    row = conn.execute(sa.text(
        "UPDATE mpi.review_pair SET decision = :d, decided_at = clock_timestamp(), reviewer = :who, comment = :c"
        " WHERE review_id = :i RETURNING review_id, record_key_l, record_key_r, decision, decided_at"),
        {"d": decision, "who": reviewer.strip(), "c": comment or None, "i": review_id}).mappings().first()
    if row is None:
        raise HubError(f"no review pair {review_id}")
    return dict(row)


def resolve(conn: sa.Connection, master_id: str) -> tuple[str, list[str]]:
    """Follow redirects from ``master_id``: (the id in force, the chain of retired ids)."""
    chain, current = [], master_id
    for _ in range(100):
        row = conn.execute(sa.text("SELECT status, retired_into FROM mpi.master WHERE master_id = :m"),
                           {"m": current}).first()
        if row is None:
            raise HubError(f"no master id {current!r}")
        if row.status == "active" or row.retired_into is None:
            return current, chain
        chain.append(current)
        current = row.retired_into
    raise HubError(f"master id {master_id!r} redirects in a loop")


def history(conn: sa.Connection, master_id: str) -> dict:
    """The timeline of a master id: status, redirect, records, events with causes, review decisions."""
    current, chain = resolve(conn, master_id)
    ids = [current, *chain]
    master = conn.execute(sa.text("SELECT master_id, status, retired_into, created_at, retired_at, anchor"
                                  " FROM mpi.master WHERE master_id = :m"), {"m": current}).mappings().one()
    records = [dict(r) for r in conn.execute(sa.text(
        "SELECT c.source, c.source_record_id, c.match_rule, c.updated_at FROM mpi.crosswalk c WHERE c.master_id = :m"
        " ORDER BY c.source, c.source_record_id"), {"m": current}).mappings()]
    events = [dict(r) for r in conn.execute(sa.text(
        "SELECT e.event_id, e.run_id, e.created_at, e.master_id, e.event, e.cause, e.other_master_id, e.source,"
        " e.source_record_id, e.detail FROM mpi.master_event e"
        " WHERE e.master_id = ANY(:ids) OR e.other_master_id = ANY(:ids) ORDER BY e.event_id"),
        {"ids": ids}).mappings()]
    keys = [f"{r['source']}/{r['source_record_id']}" for r in records]
    reviews = [dict(r) for r in conn.execute(sa.text(
        "SELECT review_id, record_key_l, record_key_r, review_reason, match_probability, decision, decided_at,"
        " reviewer, comment FROM mpi.review_pair WHERE record_key_l = ANY(:k) OR record_key_r = ANY(:k)"
        " ORDER BY decided_at NULLS LAST, review_id"), {"k": keys}).mappings()]
    anchor = master["anchor"] or ""
    master = dict(master, anchor=("id:" + mask_id_number(anchor[3:])) if anchor.startswith("id:") else anchor)
    return {"asked": master_id, "master_id": current, "redirected_from": chain, "master": master,
            "records": records, "events": events, "reviews": reviews}
