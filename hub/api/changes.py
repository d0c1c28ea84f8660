"""The change feed of the caller's department: ``GET /v1/changes?since_release=N``.

What changed in the published index after release N, release by release, as the department sees it
(:mod:`warehouse.changes`): masters added, changed (the fields, with their new values), merged (the
retired id with its survivor), split, deceased and removed, and the enrolments its view shows. Pages of
at most ``limit`` events; ``next_cursor`` (the last event's id) asks for the next page, and is where a
reader that stopped resumes. 有条件 fields come only for a purpose that releases them, as in the persons
routes, and only for masters holding an enrolment of the department's own sources in the event's release;
the names of the others are listed under ``withheld`` of the event. Access-logged and limited
like every ``/v1`` route (the persons an answer names count against the daily quotas).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import ERRORS, CallerDep, Warehouse, declare_purpose, not_found, purpose_header
from warehouse.changes import ENROLMENT_KINDS, MAX_PAGE, PERSON_KINDS, FeedError, cut_event, read_changes
from warehouse.sharing import CONDITIONAL

router = APIRouter()


class ChangeEvent(BaseModel):
    """One change, in the department's view; what it carries depends on ``kind``."""
    model_config = ConfigDict(populate_by_name=True)

    event_id: str = Field(description="`<release>-<seq>`: unique in the department's feed, in order")
    release_no: int = Field(description="the release that made the change")
    kind: Literal[PERSON_KINDS + ENROLMENT_KINDS]  # type: ignore[valid-type]
    master_id: str = Field(description="the master the change is about (for an enrolment: its master now, or"
                                       " before when it was removed)")
    person: dict[str, Any] | None = Field(None, description="`added`: the new master's row, as the department's"
                                                            " view shows it")
    fields: dict[str, Any] | None = Field(None, description="`changed`, `deceased`, `enrolment_moved`,"
                                                            " `enrolment_changed`: the fields that changed, new values")
    survivor: str | None = Field(None, description="`merged`, `enrolment_removed`: the master the retired id was"
                                                   " merged into (look-ups of the retired id answer with it)")
    into: list[str] | None = Field(None, description="`split`: the new masters that took some of its records")
    enrolment: dict[str, Any] | None = Field(None, description="`enrolment_added`: the enrolment's row")
    source: str | None = None
    source_record_id: str | None = None
    from_: str | None = Field(None, alias="from", description="`enrolment_moved`: the master it left")
    to: str | None = Field(None, description="`enrolment_moved`: the master it joined")
    withheld: list[str] | None = Field(None, description="有条件 fields that changed but are not released: not for the"
                                                         " purpose named (or none named), or the master holds no"
                                                         " enrolment of the department's own sources")


class ChangesAnswer(BaseModel):
    department: str
    since_release: int
    current_release: int | None = Field(description="the release in force: the feed goes up to it")
    events: list[ChangeEvent]
    next_cursor: str | None = Field(description="send as `cursor` (with the same `since_release`) for the next"
                                                " page; null when this page ends the feed — keep the last"
                                                " `event_id` and resume from it later")
    withheld: list[str] = Field(description="有条件 fields left out of every event for this request")


@router.get("/v1/changes", tags=["changes"], response_model=ChangesAnswer, response_model_exclude_unset=True,
            response_model_by_alias=True, responses=ERRORS,
            summary="What changed in the index after a release, as the department sees it",
            description="The department's change feed: masters added, changed (fields and new values), merged"
                        " (retired id → survivor), split, deceased and removed, and the enrolments of its view"
                        " added, moved, changed and removed — release by release after `since_release`, in"
                        " order. Applied to the department's view of release N, the events give its view of the"
                        " current release. 有条件 fields come for a purpose that releases them, and only for"
                        " masters holding an enrolment of the department's own sources in the event's release."
                        " Page with `cursor` (the `next_cursor` of the page before); a cursor after the current"
                        " release answers 422; a release withdrawn by a rollback answers 422: read the view again"
                        " and follow from the current release.")
def changes(request: Request, c: CallerDep, engine: Warehouse,
            since_release: Annotated[int, Query(ge=0, le=2_000_000_000,
                                                description="the release the department's copy holds (0: all)")],
            cursor: Annotated[str | None, Query(max_length=24, description="`next_cursor` of the page before")] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="events a page")] = 500,
            x_purpose: Annotated[str | None, purpose_header()] = None):
    purpose = declare_purpose(request, None, x_purpose)
    request.state.access.requested = limit
    if not c.may_use("master_id"):
        raise not_found()
    fields, withheld = c.released(purpose)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for the page
        try:
            page = read_changes(conn, c.key.department, since_release, cursor=cursor, limit=limit)
        except FeedError as exc:
            raise HTTPException(422, str(exc)) from None
    conditional = [f for f in fields if c.sharing.classes[f] == CONDITIONAL]
    events = [cut_event(e, fields, conditional) for e in page["events"]]
    named = [m for e in events for m in (e["master_id"], e.get("survivor"), *(e.get("into") or [])) if m]
    request.state.access.results = len(events)
    request.state.access.master_ids = list(dict.fromkeys(named))
    return {**page, "events": events, "withheld": list(withheld)}
