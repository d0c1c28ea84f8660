"""Routes for keys with the steward scope: the review queue, one pair, a decision; the decisions touching a
master (superseded ones marked) and the decisions on a master: split, move a record out, detach an ID number.

A steward key sees and decides only what touches its own department: the pairs and masters with a record of
one of its department's sources, each record cut to the fields its department may see under the sharing
configuration; anything else is 404, as if it did not exist (:mod:`hub.stewardship`). A record of another
department's source is never named to it: answers carry its master id and count it (``other_records``), and
a split, move-out or detach-id naming one answers 404 exactly like a record that does not exist. The reviewer
and comment of another department's decision read "another department's steward" and null.

A decision that would put two people in one master is refused with 409 and the reason (what to do instead).
A route that records a decision writes its access-log row in the same transaction, after the change
(:func:`hub.api.deps.log_in`): when the row cannot be written, the decision is rolled back with it."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from hub.api.deps import ERRORS, Caller, StewardDep, Warehouse, log_in, not_found
from hub.api.models import DecisionRequest, RecordDecisionRequest, SplitRequest
from hub.errors import HubError
from hub.stewardship import (
    DecisionRefused,
    OutOfScope,
    decide,
    detach_id,
    list_reviews,
    master_decisions,
    master_in_scope,
    move_out,
    show_review,
    split,
)

router = APIRouter(tags=["reviews"], responses=ERRORS)


def _viewer(c: Caller):
    """What the steward's department may see; a key of a department the sharing configuration does not
    name sees nothing."""
    if c.sharing is None:
        raise not_found()
    return c.sharing


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@router.get("/v1/reviews", summary="The review queue, strongest pairs first (steward keys)",
            description="Pairs of source records the matcher could not decide, with their master ids."
                        " Records are named by `source/record id`; no names or ID numbers. Only pairs with a record"
                        " of one of the steward's own department's sources.")
def reviews(request: Request, c: StewardDep, engine: Warehouse,
            status: Annotated[Literal["open", "decided", "all"], Query()] = "open",
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
            reason: Annotated[str | None, Query(max_length=100,
                                                description="review reason prefix, e.g. grey_zone")] = None):
    request.state.access.requested = limit
    with engine.connect() as conn:
        rows = list_reviews(conn, status=status, limit=limit, reason=reason, viewer=_viewer(c))
    request.state.access.results = len(rows)
    request.state.access.master_ids = sorted({m for r in rows for m in (r.get("master_l"), r.get("master_r")) if m})
    return {"reviews": _json_safe(rows)}


@router.get("/v1/reviews/{review_id}",
            summary="One review pair: both records (masked) and the evidence per comparison (steward keys)",
            description="Only a pair with a record of the steward's own department's sources. Of such a record,"
                        " the fields the department may see, masked (`withheld` lists the others); of a record of"
                        " another department's source, its master id only (`record_key` null, counted in"
                        " `other_records`).")
def review(request: Request, c: StewardDep, engine: Warehouse, review_id: int):
    request.state.access.requested = 1
    with engine.connect() as conn:
        try:
            out = show_review(conn, review_id, viewer=_viewer(c))
        except HubError:
            raise not_found() from None
    request.state.access.results = 1
    shown = (out.get("master_l"), out.get("master_r"), *((out.get(s) or {}).get("master_id") for s in ("left", "right")))
    request.state.access.master_ids = sorted({m for m in shown if m})
    return _json_safe(out)


REFUSED = {409: {"description": "refused: the decision would put two people in one master, or does not fit the"
                                " master (the reason says what to do instead)"}}


@router.post("/v1/reviews/{review_id}/decision", responses=REFUSED,
             summary="Decide a review pair (steward keys); every later matching run honours it",
             description="The reviewer is kept with the decision, followed by the key id that sent it.")
def decide_review(request: Request, c: StewardDep, engine: Warehouse, review_id: int, body: DecisionRequest):
    request.state.access.requested = 1
    reviewer = body.reviewer.strip()
    if not reviewer:
        raise HTTPException(422, "reviewer: the reviewer's name is needed")
    with engine.begin() as conn:
        try:
            out = decide(conn, review_id, body.decision, reviewer=f"{reviewer} (api key {c.key.key_id})",
                         comment=body.comment or "", viewer=_viewer(c))
        except DecisionRefused as exc:
            raise HTTPException(409, str(exc)) from None
        except HubError:
            raise not_found() from None
        request.state.access.results = 1
        log_in(conn, request)  # the decision and its access-log row commit together, or neither does
    return _json_safe(out)


@router.get("/v1/masters/{master_id}/decisions",
            summary="Every steward decision touching a master, superseded ones marked (steward keys)",
            description="Decisions naming the master's records of the steward's own department, oldest first,"
                        " with reviewer, time and comment; `superseded_by` is the decision that replaced one (null"
                        " while in force). Only the department's own record keys are listed; `other_records` counts"
                        " the others. Another department's decision reads `another department's steward`, its"
                        " comment null.")
def decisions(request: Request, c: StewardDep, engine: Warehouse, master_id: str):
    request.state.access.requested = 1
    with engine.connect() as conn:
        try:
            out = master_decisions(conn, master_id, viewer=_viewer(c))
        except HubError:
            raise not_found() from None
    request.state.access.results = len(out["decisions"])
    return _json_safe(out)


def _on_master(request: Request, c: Caller, engine: Warehouse, master_id: str, act) -> dict:
    """Run a decision on a master the steward may see, and log the request in the same transaction."""
    request.state.access.requested = 1
    with engine.begin() as conn:
        try:
            master_in_scope(conn, master_id, _viewer(c))
        except HubError:
            raise not_found() from None
        try:
            out = act(conn)
        except OutOfScope:
            raise not_found() from None
        except HubError as exc:
            raise HTTPException(409, str(exc)) from None
        request.state.access.results = 1
        log_in(conn, request)  # the decision and its access-log row commit together, or neither does
    return _json_safe(out)


def _reviewer(c, reviewer: str) -> str:
    if not reviewer.strip():
        raise HTTPException(422, "reviewer: the reviewer's name is needed")
    return f"{reviewer.strip()} (api key {c.key.key_id})"


@router.post("/v1/masters/{master_id}/split", responses=REFUSED,
             summary="Split a master: the listed records become a master apart from the rest (steward keys)")
def split_master(request: Request, c: StewardDep, engine: Warehouse, master_id: str, body: SplitRequest):
    who = _reviewer(c, body.reviewer)
    return _on_master(request, c, engine, master_id,
                      lambda conn: split(conn, master_id, body.records, reviewer=who, reason=body.reason,
                                         viewer=_viewer(c)))


@router.post("/v1/masters/{master_id}/move-out", responses=REFUSED,
             summary="Move one record out of a master, on its own (steward keys)")
def move_record_out(request: Request, c: StewardDep, engine: Warehouse, master_id: str, body: RecordDecisionRequest):
    who = _reviewer(c, body.reviewer)

    return _on_master(request, c, engine, master_id,
                      lambda conn: move_out(conn, body.record, reviewer=who, reason=body.reason, master_id=master_id,
                                            viewer=_viewer(c)))


@router.post("/v1/masters/{master_id}/detach-id", responses=REFUSED,
             summary="A record's ID number belongs to someone else: matching no longer anchors or compares it"
                     " (steward keys)")
def detach_record_id(request: Request, c: StewardDep, engine: Warehouse, master_id: str, body: RecordDecisionRequest):
    who = _reviewer(c, body.reviewer)

    return _on_master(request, c, engine, master_id,
                      lambda conn: detach_id(conn, body.record, reviewer=who, reason=body.reason, master_id=master_id,
                                             viewer=_viewer(c)))
