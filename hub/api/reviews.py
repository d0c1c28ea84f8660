"""Routes of the review queue, for keys with the steward scope: the queue, one pair, a decision."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from hub.api.deps import ERRORS, StewardDep, Warehouse, not_found
from hub.api.models import DecisionRequest
from hub.errors import HubError
from hub.stewardship import decide, list_reviews, show_review

router = APIRouter(tags=["reviews"], responses=ERRORS)


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
                        " Records are named by `source/record id`; no names or ID numbers.")
def reviews(request: Request, c: StewardDep, engine: Warehouse,
            status: Annotated[Literal["open", "decided", "all"], Query()] = "open",
            limit: Annotated[int, Query(ge=1, le=500)] = 50,
            reason: Annotated[str | None, Query(max_length=100,
                                                description="review reason prefix, e.g. grey_zone")] = None):
    request.state.access.requested = limit
    with engine.connect() as conn:
        rows = list_reviews(conn, status=status, limit=limit, reason=reason)
    request.state.access.results = len(rows)
    return {"reviews": _json_safe(rows)}


@router.get("/v1/reviews/{review_id}",
            summary="One review pair: both records (masked) and the evidence per comparison (steward keys)")
def review(request: Request, c: StewardDep, engine: Warehouse, review_id: int):
    request.state.access.requested = 1
    with engine.connect() as conn:
        try:
            out = show_review(conn, review_id)
        except HubError:
            raise not_found() from None
    request.state.access.results = 1
    return _json_safe(out)


@router.post("/v1/reviews/{review_id}/decision",
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
                         comment=body.comment or "")
        except HubError:
            raise not_found() from None
    request.state.access.results = 1
    return _json_safe(out)
