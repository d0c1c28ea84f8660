"""Workbench page for stewards: one master id — its records, its golden values with their source and the
survivorship rule that chose them, the values its records disagree on, the history of its events and
decisions — and the decisions on it: split records off, move one record out, each with a reason.

Scope as in the read API (:mod:`hub.stewardship`): a master without a record of the steward's department is
404; of another department's records only their number is shown; golden values follow the department's
sharing classes (不予共享 withheld, 有条件 masked unless an approved purpose releases them, then in full).

A decision that cannot be done as asked leads (303) to the master's page with ``?refused=<why>``, which says why
and what to do instead in Chinese and English (409): reloading it sends nothing again.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse

from hub.api.deps import log_in
from hub.errors import HubError
from hub.stewardship import (
    OutOfScope,
    StewardRefused,
    master_decisions,
    master_in_scope,
    move_out,
    own_sources,
    pairs_for,
    records_of_master,
    resolve,
    split,
)
from hub.workbench.pages import HEADERS, page
from hub.workbench.refusals import master_words
from hub.workbench.reviews import DECISION_WORDS, REASONS, StewardForm, declared_purpose, purposes_of, viewer_of
from hub.workbench.session import StewardDep, User
from schemas.masking import mask_birth_date, mask_house_no, mask_id_number, mask_name, mask_phone
from warehouse import stewardship as stored
from warehouse.master_view import golden_conflicts, golden_values
from warehouse.sharing import CONDITIONAL, NOT_SHARED

router = APIRouter(include_in_schema=False)

#: the golden fields in the order shown
GOLDEN_ORDER = ("name", "id_number", "sex", "birth_date", "address", "phone", "status", "status_date")
#: survivorship rules in words (mpi/survivorship.yaml)
RULE_WORDS = {
    "only_value": ("各记录取值一致", "the only value its records carry"),
    "recency": ("最近载入的记录", "the most recently loaded record"),
    "frequency": ("多数记录的取值", "the value most records carry"),
    "tie_break": ("并列时取来源与记录编号最小者", "a tie: the smallest source and record id"),
    "anchor": ("主索引锚定的身份证号", "the ID number the master is anchored on"),
    "with_status": ("与生存状态同一记录", "from the record that gave the vital status"),
}
EVENT_WORDS = {"created": ("新建", "created"), "merged": ("合并", "merged"), "split": ("拆分", "split"),
               "record_added": ("加入记录", "record added"), "record_moved": ("记录移出", "record moved"),
               "record_removed": ("记录删除", "record removed"), "retired": ("停用", "retired")}
_HOUSE = re.compile(r"[0-9０-９一二三四五六七八九十百零〇-]+号$")


def rule_words(rule: str) -> tuple[str, str]:
    if rule.startswith("authority:"):
        source = rule.partition(":")[2]
        return f"权威来源（一数一源）：{source}", f"the authoritative source (一数一源): {source}"
    return RULE_WORDS.get(rule, (rule, rule))


def _masked(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    if field == "name":
        return mask_name(value)
    if field == "id_number":
        return mask_id_number(value)
    if field == "phone":
        return mask_phone(value)
    if field == "birth_date":
        return mask_birth_date(value)
    if field == "address":
        return _HOUSE.sub(lambda m: (mask_house_no(m.group(0)[:-1]) or "") + "号", value)
    return value


def shown_value(sharing, field: str, value: str | None, full: tuple[str, ...]) -> tuple[str | None, str]:
    """(the value as the department may see it, how: full | masked | withheld)."""
    cls = sharing.classes.get(field, NOT_SHARED)
    if cls == NOT_SHARED:
        return None, "withheld"
    if cls == CONDITIONAL and field not in full:
        masked = _masked(field, value)
        return masked, "masked" if masked != value else "full"
    return value, "full"


def golden_rows(conn, master_id: str, viewer, full: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """The golden values and the conflicts of a master as the steward's department may see them."""
    def origin(source, record_id):
        key = f"{source}/{record_id}" if source else None
        if key is None:
            return None
        return key if source in mine else None

    mine = set(own_sources(viewer))
    values = {r["field"]: r for r in golden_values(conn, master_id)}
    golden = []
    for f in [*GOLDEN_ORDER, *sorted(set(values) - set(GOLDEN_ORDER))]:
        r = values.get(f)
        if r is None:
            continue
        shown, how = shown_value(viewer, f, r["value"], full)
        golden.append({"field": f, "value": shown, "how": how, "record_key": origin(r["source"], r["source_record_id"]),
                       "other": bool(r["source"]) and r["source"] not in mine, "loaded_at": r["loaded_at"],
                       "rule": r["rule"], "rule_words": rule_words(r["rule"])})
    conflicts = []
    for c in golden_conflicts(conn, master_id):
        shown, how = shown_value(viewer, c["field"], c["value"], full)
        own = sorted(s for s in c["sources"] if s in mine)
        conflicts.append({"field": c["field"], "value": shown, "how": how, "sources": own,
                          "other_sources": len(set(c["sources"]) - mine), "records": c["records"],
                          "chosen": c["chosen"]})
    return golden, conflicts


def history_rows(conn, current: str, chain: list[str], viewer) -> tuple[list[dict], list[dict]]:
    """The master's events (another department's record not named) and the review pairs touching its
    records, as the viewer may read them."""
    mine = set(own_sources(viewer))
    events = []
    for e in stored.master_events(conn, [current, *chain]):
        key = f"{e['source']}/{e['source_record_id']}" if e.get("source") else None
        events.append(dict(e, record_key=key if key and e["source"] in mine else None,
                           other_record=bool(key) and e["source"] not in mine,
                           words=EVENT_WORDS.get(e["event"], (e["event"], e["event"]))))
    keys = [f"{r['source']}/{r['source_record_id']}" for r in stored.master_records(conn, current)]
    reviews = pairs_for(conn, viewer, stored.reviews_touching(conn, keys))
    return events, reviews


def master_context(conn, user: User, master_id: str, purpose: str | None, full: tuple[str, ...]) -> dict:
    """Everything the master page shows (raises :class:`HubError` for a master outside the steward's scope)."""
    viewer = viewer_of(user)
    current = master_in_scope(conn, master_id, viewer)
    _, chain = resolve(conn, current)
    records = records_of_master(conn, current, viewer=viewer, full=full)
    golden, conflicts = golden_rows(conn, current, viewer, full)
    events, reviews = history_rows(conn, current, chain, viewer)
    decisions = master_decisions(conn, current, viewer=viewer)["decisions"]
    conditional = [f for f in viewer.visible() if viewer.classes[f] == CONDITIONAL]
    return {"asked": master_id, "master_id": current, "master": stored.master_row(conn, current),
            "records": records["records"], "other_records": records["other_records"], "golden": golden,
            "conflicts": conflicts, "events": events, "reviews": reviews, "decisions": decisions,
            "purposes": purposes_of(user), "purpose": purpose, "full": full, "conditional": conditional,
            "reason_words": REASONS, "decision_words": DECISION_WORDS}


#: why a decision on a master was refused, as the page's query names it
REFUSED = Literal["reason_needed", "no_records", "all_records", "alone", "retired", "other"]


def _refusal_words(conn, ctx: dict, refused: str, record: str | None, asked: str | None) -> tuple[str, str]:
    """The words of a refusal named in the page's query; the record and the retired id only when they are the
    steward's own record of this master and an id retired into it (else not named)."""
    own = {r.get("record_key") for r in ctx["records"]}
    facts = {"master_id": ctx["master_id"], "record": record if record in own else "该记录 the record"}
    if refused == "retired":
        try:
            retired = asked if asked and asked != ctx["master_id"] and resolve(conn, asked)[0] == ctx["master_id"] else None
        except HubError:
            retired = None
        facts = {"master_id": retired or "该主索引 the master", "current": ctx["master_id"]}
    if refused == "other":
        return ("操作被拒绝，未记录：请检查所勾选的记录和理由后重试。",
                "Refused, nothing recorded: check the records ticked and the reason, and send it again.")
    return master_words(StewardRefused("", code=refused, **facts))


def _master_page(request: Request, ctx: dict, *, status: int = 200, error: tuple[str, str] | None = None,
                 done: str | None = None):
    request.state.access.results = len(ctx["records"]) + 1
    request.state.access.master_ids = [ctx["master_id"]]
    return page(request, "master.html.j2", status=status, title=f"主索引 {ctx['master_id']} Master {ctx['master_id']}",
                error=error, done=done, **ctx)


@router.get("/workbench/masters/{master_id}")
def master_page(request: Request, user: StewardDep, master_id: str,
                purpose: Annotated[str | None, Query(max_length=100)] = None,
                done: Annotated[str | None, Query(max_length=20)] = None,
                refused: Annotated[REFUSED | None, Query()] = None,
                record: Annotated[str | None, Query(max_length=200)] = None,
                asked: Annotated[str | None, Query(max_length=40)] = None):
    purpose, full = declared_purpose(request, user, purpose)
    request.state.access.requested = 1
    with request.app.state.engine.connect() as conn:
        try:
            ctx = master_context(conn, user, master_id, purpose, full)
        except HubError:
            raise HTTPException(404) from None
        error = _refusal_words(conn, ctx, refused, record, asked) if refused else None
    if ctx["master_id"] != master_id:  # a retired id: the page of the id in force
        query = urlencode({"purpose": purpose} if purpose else {})
        return RedirectResponse(f"/workbench/masters/{ctx['master_id']}" + (f"?{query}" if query else ""), 303,
                                headers=HEADERS)
    if error is not None:
        return _master_page(request, ctx, status=409, error=error)
    return _master_page(request, ctx, done=done if done in ("split", "move_out") else None)


def _on_master(request: Request, user: User, master_id: str, purpose: str, act) -> object:
    """Run a decision on a master the steward may see, its access-log row in the same transaction; a refusal leads
    to the master's page saying why (``?refused=…``)."""
    purpose_code, _ = declared_purpose(request, user, purpose)
    request.state.access.requested = 1
    viewer = viewer_of(user)
    engine = request.app.state.engine
    refused: dict[str, str] | None = None
    with engine.begin() as conn:
        try:
            current = master_in_scope(conn, master_id, viewer)
        except HubError:
            raise HTTPException(404) from None
        try:
            out = act(conn, viewer)
        except OutOfScope:
            raise HTTPException(404) from None
        except StewardRefused as exc:  # nothing was written
            refused = {"refused": exc.code, **({"record": exc.facts["record"]} if "record" in exc.facts else {}),
                       **({"asked": exc.facts["master_id"]} if exc.code == "retired" else {})}
        except HubError:
            refused = {"refused": "other"}
        else:
            request.state.access.results = 1
            request.state.access.master_ids = [current]
            log_in(conn, request, 303)  # the decision and its access-log row commit together, or neither does
    purpose_query = {"purpose": purpose_code} if purpose_code else {}
    if refused is not None:
        return RedirectResponse(f"/workbench/masters/{current}?{urlencode({**refused, **purpose_query})}#refused", 303,
                                headers=HEADERS)
    query = urlencode({"done": out["kind"], **purpose_query})
    return RedirectResponse(f"/workbench/masters/{current}?{query}", 303, headers=HEADERS)


def _reviewer(user: User) -> str:
    return f"{user.key.label or user.department} (api key {user.key.key_id})"


@router.post("/workbench/masters/{master_id}/split")
def split_master(request: Request, user: StewardForm, master_id: str,
                 records: Annotated[list[str] | None, Form(max_length=200)] = None,
                 reason: Annotated[str, Form(max_length=2000)] = "",
                 purpose: Annotated[str, Form(max_length=100)] = ""):
    taken = list(records or [])
    return _on_master(request, user, master_id, purpose,
                      lambda conn, viewer: split(conn, master_id, taken, reviewer=_reviewer(user), reason=reason,
                                                 viewer=viewer))


@router.post("/workbench/masters/{master_id}/move-out")
def move_record_out(request: Request, user: StewardForm, master_id: str,
                    record: Annotated[str, Form(max_length=200)] = "",
                    reason: Annotated[str, Form(max_length=2000)] = "",
                    purpose: Annotated[str, Form(max_length=100)] = ""):
    return _on_master(request, user, master_id, purpose,
                      lambda conn, viewer: move_out(conn, record.strip(), reviewer=_reviewer(user), reason=reason,
                                                    master_id=master_id, viewer=viewer))

