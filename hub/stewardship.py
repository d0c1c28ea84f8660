"""Stewardship: the review queue, decisions, and the history of a master id.

One code path for ``hub review …`` / ``hub history`` and the read API. Names and ID numbers
leave this module masked.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from hub.errors import HubError
from schemas.masking import mask_id_number, mask_name
from warehouse import stewardship as stored

DECISIONS = ("match", "not_a_match")


def list_reviews(conn: sa.Connection, *, status: str = "open", limit: int = 50, reason: str | None = None) -> list[dict]:
    """Review pairs, strongest first: ``status`` open | decided | all."""
    if status not in stored.REVIEW_STATUSES:
        raise HubError(f"unknown review status {status!r}: expected open, decided or all")
    return stored.review_pairs(conn, status=status, limit=limit, reason=reason)


def _record(conn: sa.Connection, record_key: str) -> dict:
    source, _, record_id = record_key.partition("/")
    out = stored.standardized_record(conn, source, record_id)
    if out is None:
        return {"record_key": record_key, "present": False}
    out.update(record_key=record_key, present=True, name=mask_name(out["name"]),
               id_number=mask_id_number(out["id_number"]) if out["id_number"] else None,
               phone=(out["phone"][:3] + "****" + out["phone"][-4:]) if out.get("phone") else None)
    return out


def show_review(conn: sa.Connection, review_id: int) -> dict:
    """One review pair: both records (masked), their master ids, and the evidence per comparison."""
    out = stored.review_pair(conn, review_id)
    if out is None:
        raise HubError(f"no review pair {review_id}")
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
    row = stored.record_decision(conn, review_id, decision, reviewer=reviewer.strip(), comment=comment or None)
    if row is None:
        raise HubError(f"no review pair {review_id}")
    return row


def resolve(conn: sa.Connection, master_id: str) -> tuple[str, list[str]]:
    """Follow redirects from ``master_id``: (the id in force, the chain of retired ids)."""
    chain, current = [], master_id
    for _ in range(100):
        row = stored.master_redirect(conn, current)
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
    master = stored.master_row(conn, current)
    records = stored.master_records(conn, current)
    events = stored.master_events(conn, [current, *chain])
    reviews = stored.reviews_touching(conn, [f"{r['source']}/{r['source_record_id']}" for r in records])
    anchor = master["anchor"] or ""
    master = dict(master, anchor=("id:" + mask_id_number(anchor[3:])) if anchor.startswith("id:") else anchor)
    return {"asked": master_id, "master_id": current, "redirected_from": chain, "master": master,
            "records": records, "events": events, "reviews": reviews}
