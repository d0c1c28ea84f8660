"""Workbench pages for stewards: the review queue, one review pair, and the decision on it.

The pages call the read API's steward logic (:mod:`hub.stewardship`: one code path): a steward sees only
the pairs with a record of its own department's sources, of those records the fields its department may see
(masked), of another department's records their master id only. An approved purpose of the department
(``?purpose=<code>``, chosen on the page) shows the 有条件 fields it releases in full on the department's own
records, and its code goes to the access log with the page view.

Keyboard: in the queue ``j`` / ``k`` move, ``Enter`` opens the pair; on a pair ``m`` decides "match", ``n``
"not a match", ``c`` goes to the comment. After a decision the next pair of the (filtered) queue opens; the same
decision sent again (a key pressed twice, parallel posts) records nothing new and opens the next pair too. A
refused "match" leads (303) to the pair's page with ``?refused=match``, which checks again — recording nothing —
and answers 409 with the reason and what to do instead on the workbench, in Chinese and English: every POST ends
in a redirect, so reloading a page never sends a decision again.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse

from connectors.registry import source_departments
from hub.api.deps import log_in
from hub.errors import HubError
from hub.stewardship import DecisionRefused, decide, list_reviews, own_sources, records_of_master, show_review, would_refuse
from hub.workbench.pages import HEADERS, Forbidden, page
from hub.workbench.refusals import decision_words
from hub.workbench.session import FormUser, StewardDep, User
from warehouse.sharing import CONDITIONAL

router = APIRouter(include_in_schema=False)

#: how many of the strongest open pairs the queue reads before its filters
QUEUE_DEPTH = 2000
#: probability bands of the queue's filter: code → (from, below, Chinese, English)
BANDS = {"0.9-1": (0.9, 1.01, "很可能 ≥ 0.9", "likely ≥ 0.9"), "0.7-0.9": (0.7, 0.9, "0.7–0.9", "0.7–0.9"),
         "0.5-0.7": (0.5, 0.7, "0.5–0.7", "0.5–0.7"), "0-0.5": (0.0, 0.5, "不太可能 < 0.5", "unlikely < 0.5")}
#: the age filter: waited at least this many days
WAITED = {"1": 1, "7": 7, "30": 30}
#: review reasons in words
REASONS = {
    "grey_zone": ("介于匹配与不匹配之间", "between match and non-match: the matcher could not decide"),
    "constraint:different_id": ("两个不同的有效身份证号", "two different valid ID numbers"),
    "constraint:parent_child": ("出生日期相差一代人（疑为父母子女）", "birth dates a generation apart (parent and child?)"),
    "constraint:twins": ("疑为双胞胎或兄弟姐妹", "likely twins or siblings"),
    "constraint:steward": ("与已有的审核决定相抵触", "against a steward decision in force"),
}
DECISION_WORDS = {"match": ("是同一人", "match"), "not_a_match": ("不是同一人", "not a match"),
                  "split": ("拆分", "split"), "move_out": ("移出", "move out"), "detach_id": ("解除身份证号", "detach ID number")}
#: the query parameters of the queue's filters (carried from page to page and through a decision)
FILTERS = ("department", "reason", "band", "waited")


def steward_form(user: FormUser) -> User:
    """A steward's form that posted back its session's token (both checked: the token first)."""
    if not user.is_steward:
        raise Forbidden("steward", "The decisions on review pairs and masters")
    return user


StewardForm = Annotated[User, Depends(steward_form)]


def viewer_of(user: User):
    """What the steward's department may see; a department the sharing configuration does not name sees nothing."""
    if user.caller.sharing is None:
        raise HTTPException(404)
    return user.caller.sharing


def declared_purpose(request: Request, user: User, purpose: str | None) -> tuple[str | None, tuple[str, ...]]:
    """(the purpose code as chosen, the 有条件 fields it releases); the access log keeps its code or a marker."""
    purpose = (purpose or "").strip()[:100] or None
    request.state.access.purpose = user.caller.purpose_for_log(purpose)
    sharing = user.caller.sharing
    return purpose, (sharing.unlocked(purpose) if sharing is not None else ())


def purposes_of(user: User) -> list:
    """The department's approved purposes in force, for the purpose selector."""
    sharing = user.caller.sharing
    return [p for p in (sharing.purposes.values() if sharing is not None else ()) if p.in_force()]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def waited_days(created: dt.datetime | None) -> float | None:
    if created is None:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return (_now() - created).total_seconds() / 86400


def _filters(department: str | None, reason: str | None, band: str | None, waited: str | None) -> dict[str, str]:
    given = {"department": department, "reason": reason, "band": band, "waited": waited}
    return {k: v.strip() for k, v in given.items() if v and v.strip()}


def queue_rows(conn, user: User, filters: dict[str, str]) -> tuple[list[dict], list[str]]:
    """The open pairs of the steward's queue that pass ``filters`` (strongest first), and every reason of its
    open pairs (for the filter's choices)."""
    viewer = viewer_of(user)
    rows = list_reviews(conn, status="open", limit=QUEUE_DEPTH, viewer=viewer)
    reasons = sorted({r["review_reason"] for r in rows})
    mine = set(own_sources(viewer))
    departments = source_departments()
    out = []
    for r in rows:
        keys = [k for k in (r["record_key_l"], r["record_key_r"]) if k]
        sources = {k.partition("/")[0] for k in keys}
        wanted = filters.get("department")
        if wanted == "own" and r["other_records"]:
            continue
        if wanted == "other" and not r["other_records"]:
            continue
        if wanted and wanted not in ("own", "other") and wanted not in sources:
            continue
        if filters.get("reason") and not r["review_reason"].startswith(filters["reason"]):
            continue
        band = BANDS.get(filters.get("band", ""))
        p = r["match_probability"]
        if band and (p is None or not band[0] <= p < band[1]):
            continue
        days = waited_days(r["created_at"])
        if filters.get("waited") in WAITED and (days is None or days < WAITED[filters["waited"]]):
            continue
        out.append(dict(r, waited_days=days, own_sources=sorted(sources & mine),
                        departments=sorted({departments.get(s, "") for s in sources})))
    return out, reasons


def _shown_masters(rows) -> list[str]:
    return sorted({m for r in rows for m in (r.get("master_l"), r.get("master_r")) if m})


@router.get("/workbench/reviews")
def queue(request: Request, user: StewardDep,
          department: Annotated[str | None, Query(max_length=40)] = None,
          reason: Annotated[str | None, Query(max_length=100)] = None,
          band: Annotated[str | None, Query(max_length=10)] = None,
          waited: Annotated[str | None, Query(max_length=4)] = None,
          decided: Annotated[int | None, Query()] = None):
    filters = _filters(department, reason, band, waited)
    with request.app.state.engine.connect() as conn:
        rows, reasons = queue_rows(conn, user, filters)
    request.state.access.requested = QUEUE_DEPTH
    request.state.access.results = len(rows)
    request.state.access.master_ids = _shown_masters(rows)
    return page(request, "reviews.html.j2", title="待审核配对 Review queue", rows=rows, filters=filters,
                reasons=reasons, reason_words=REASONS, bands=BANDS, waited=WAITED, decided=decided,
                own=own_sources(viewer_of(user)), query=urlencode(filters))


def pair_context(conn, user: User, review_id: int, purpose: str | None, full: tuple[str, ...]) -> dict:
    """Everything the pair page shows (raises :class:`HubError` for a pair outside the steward's scope)."""
    from hub.workbench.waterfall import waterfall_svg

    viewer = viewer_of(user)
    pair = show_review(conn, review_id, viewer=viewer, full=full)
    sides = []
    for side, master_key in (("left", "master_l"), ("right", "master_r")):
        record = pair[side]
        master = record.get("master_id") or pair.get(master_key)
        others = {"records": [], "other_records": 0}
        if master:
            held = records_of_master(conn, master, viewer=viewer, full=full)
            pair_keys = {pair["record_key_l"], pair["record_key_r"]}
            others = {"records": [r for r in held["records"] if r["record_key"] not in pair_keys],
                      "other_records": held["other_records"] - sum(
                          1 for s in ("left", "right") if pair[s].get("record_key") is None
                          and pair[s].get("master_id") == master)}
        sides.append({"side": side, "record": record, "master_id": master, "others": others})
    explanation = pair.get("explanation")
    svg = waterfall_svg(explanation) if explanation else None
    sharing = viewer
    conditional = [f for f in sharing.visible() if sharing.classes[f] == CONDITIONAL]
    return {"pair": pair, "sides": sides, "svg": svg, "purpose": purpose, "full": full, "purposes": purposes_of(user),
            "conditional": conditional, "reason_words": REASONS, "decision_words": DECISION_WORDS}


def _pair_masters(ctx: dict) -> list[str]:
    pair = ctx["pair"]
    found = {pair.get("master_l"), pair.get("master_r"), *(s["master_id"] for s in ctx["sides"])}
    return sorted(m for m in found if m)


def _shown_records(ctx: dict) -> int:
    """The records the pair page shows with their fields: the pair's own department's records still in the
    warehouse, and the other records of their masters (another department's record is shown by its master only)."""
    pair_records = sum(1 for s in ctx["sides"] if s["record"].get("record_key") and s["record"].get("present", True))
    return pair_records + sum(len(s["others"]["records"]) for s in ctx["sides"])


def _pair_page(request: Request, ctx: dict, filters: dict[str, str], *, status: int = 200,
               refused: tuple[str, str] | None = None):
    request.state.access.results = _shown_records(ctx)
    request.state.access.master_ids = _pair_masters(ctx)
    review_id = ctx["pair"]["review_id"]
    return page(request, "review.html.j2", status=status, title=f"待审核配对 {review_id} Review pair {review_id}",
                filters=filters, query=urlencode(filters), refused=refused, **ctx)


@router.get("/workbench/reviews/{review_id}")
def pair_page(request: Request, user: StewardDep, review_id: int,
              purpose: Annotated[str | None, Query(max_length=100)] = None,
              department: Annotated[str | None, Query(max_length=40)] = None,
              reason: Annotated[str | None, Query(max_length=100)] = None,
              band: Annotated[str | None, Query(max_length=10)] = None,
              waited: Annotated[str | None, Query(max_length=4)] = None,
              refused: Annotated[Literal["match"] | None, Query()] = None):
    purpose, full = declared_purpose(request, user, purpose)
    request.state.access.requested = 1
    with request.app.state.engine.connect() as conn:
        try:
            ctx = pair_context(conn, user, review_id, purpose, full)
            # after a refused decision: the same check again, nothing recorded (None: it would be accepted now)
            why = would_refuse(conn, review_id, refused, viewer=viewer_of(user)) if refused else None
        except HubError:
            raise HTTPException(404) from None
    if why is not None:
        return _pair_page(request, ctx, _filters(department, reason, band, waited), status=409,
                          refused=decision_words(why))
    return _pair_page(request, ctx, _filters(department, reason, band, waited))


def _next_pair(request: Request, user: User, filters: dict[str, str], purpose: str | None, after: int) -> str:
    """Where a decision leads: the next open pair of the filtered queue, else the queue itself."""
    with request.app.state.engine.connect() as conn:
        rows, _ = queue_rows(conn, user, filters)
    following = [r["review_id"] for r in rows if r["review_id"] != after]
    query = urlencode({**filters, **({"purpose": purpose} if purpose else {})})
    if following:
        return f"/workbench/reviews/{following[0]}" + (f"?{query}" if query else "")
    return "/workbench/reviews?" + urlencode({**filters, "decided": after})


@router.post("/workbench/reviews/{review_id}/decision")
def decision(request: Request, user: StewardForm, review_id: int,
             decision: Annotated[str, Form(max_length=20)] = "",
             comment: Annotated[str, Form(max_length=2000)] = "",
             purpose: Annotated[str, Form(max_length=100)] = "",
             department: Annotated[str, Form(max_length=40)] = "",
             reason: Annotated[str, Form(max_length=100)] = "",
             band: Annotated[str, Form(max_length=10)] = "",
             waited: Annotated[str, Form(max_length=4)] = ""):
    filters = _filters(department, reason, band, waited)
    purpose_code, _ = declared_purpose(request, user, purpose)
    request.state.access.requested = 1
    if decision not in ("match", "not_a_match"):
        raise HTTPException(422, "decision: match or not_a_match")
    reviewer = f"{user.key.label or user.department} (api key {user.key.key_id})"
    engine = request.app.state.engine
    with engine.begin() as conn:
        try:
            out = decide(conn, review_id, decision, reviewer=reviewer, comment=comment, viewer=viewer_of(user))
        except DecisionRefused:
            refused = True  # nothing was written; the pair's page says why (409), a reload sends nothing
        except HubError:
            raise HTTPException(404) from None
        else:
            refused = False
            request.state.access.results = 1
            request.state.access.master_ids = _masters_of(conn, out)
            log_in(conn, request, 303)  # the decision and its access-log row commit together, or neither does
    if refused:
        query = urlencode({**filters, **({"purpose": purpose_code} if purpose_code else {}), "refused": decision})
        return RedirectResponse(f"/workbench/reviews/{review_id}?{query}#refused", 303, headers=HEADERS)
    return RedirectResponse(_next_pair(request, user, filters, purpose_code, review_id), 303, headers=HEADERS)


def _masters_of(conn, out: dict) -> list[str]:
    from warehouse.stewardship import masters_of

    keys = [k for k in (out.get("record_key_l"), out.get("record_key_r")) if k]
    return sorted(set(masters_of(conn, keys).values()))
