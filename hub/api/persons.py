"""Routes of the published master person index: a person by master id, a search by ID number, a batch
check (比对), the department's purpose catalogue, and the liveness probe.

Every route that returns persons notes their master ids for the access log. A department that sees only
its own programmes' enrolments (``enrolments: own``) sees the derived fields the same way: ``sources``
holds only its own sources, ``record_count`` counts only its own records, and ``conflicts`` (which counts
disagreements with other departments' records) is left out.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from hub.api.deps import ERRORS, CallerDep, Warehouse, declare_purpose, not_found, purpose_header
from hub.api.guard import charge, reserve_persons
from hub.api.models import (
    DEFAULT_MAX_BATCH,
    CheckAnswer,
    CheckRequest,
    PersonAnswer,
    PurposesAnswer,
    SearchAnswer,
    SearchRequest,
)
from hub.errors import HubError
from hub.stewardship import resolve
from warehouse import serving
from warehouse.releases import redirects_recorded, survivor_in_release

router = APIRouter()

_CHECK_DESCRIPTION = (
    "For each item (ID number, optionally a name) the master id and a match status."
    " Names are compared (after standardization: traditional/simplified, separators)"
    " only when `name` is released to the department — for a 有条件 name, with a"
    " purpose. ID numbers are never echoed; results are in request order with `index`."
    " At most {max_batch} items per request; a larger batch answers 413.")


def describe_batch_limit(app: FastAPI, max_batch: int) -> None:
    """Write the app's batch limit into the batch check's description."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.name == "check":
            route.description = _CHECK_DESCRIPTION.format(max_batch=max_batch)


# ---------------------------------------------------------------------------------------------- helpers

def _standardize_id_numbers(values: list[str]) -> list[str | None]:
    """The clean 18-character number of each value, or None when it is not a usable ID number."""
    import pandas as pd

    from schemas.id_number import USABLE, standardize_id_numbers

    std = standardize_id_numbers(pd.Series(values, dtype="object"))
    usable = std["id_number_status"].isin(USABLE).to_numpy()
    return [str(n) if ok else None for n, ok in zip(std["id_number"].tolist(), usable)]


def _id_number_status(value: str) -> str:
    import pandas as pd

    from schemas.id_number import standardize_id_numbers

    return str(standardize_id_numbers(pd.Series([value], dtype="object"))["id_number_status"].iloc[0])


def _name_keys(values: list[str | None]) -> list[str | None]:
    import pandas as pd

    from schemas.names import standardize_names

    keys = standardize_names(pd.Series(values, dtype="object"))["name_key"].tolist()
    return [k if isinstance(k, str) else None for k in keys]


def _enrolments(conn, master_ids: list[str], c) -> dict[str, list[dict]]:
    """The enrolments the caller's department may see: its own programmes', or all (its view and row
    security decide)."""
    if not master_ids or c.sharing is None:
        return {}
    return serving.enrolments(conn, master_ids, department=c.key.department)


@functools.cache
def _source_departments() -> dict[str, str]:
    """source → the department that owns it (the source registry, as publishing derives enrolments)."""
    from connectors.registry import source_departments

    return source_departments()


def _person_out(row: dict, fields: tuple[str, ...], enrolments: list[dict], c) -> dict:
    out = {f: row[f] for f in fields}
    if c.sharing is not None and c.sharing.own_enrolments_only:
        # derived fields must not tell the department who is in other departments' programmes
        if "sources" in out:
            owners = _source_departments()
            out["sources"] = [s for s in out["sources"] or [] if owners.get(s) == c.key.department]
        if "record_count" in out:
            out["record_count"] = len(enrolments)
        out.pop("conflicts", None)
    out["enrolments"] = enrolments
    return out


def _follow_redirects(conn, master_id: str, department: str) -> tuple[str, list[str]] | None:
    """The id in force of a retired ``master_id`` and the retired ids followed: by the current release's
    redirects as the department's view shows them (ids a release published, resolved to the current
    release's survivor), or — a release published before redirects were recorded — by the index's."""
    if redirects_recorded(conn):
        survivor = survivor_in_release(conn, master_id, department=department)
        return (survivor, [master_id]) if survivor is not None else None
    try:
        return resolve(conn, master_id)
    except HubError:
        return None


def _check_results(clean: list[str | None], found: dict[str, list[dict]], given_keys: list[str | None],
                   golden_keys: dict[str, str | None], compare_names: bool, fields: tuple[str, ...]) -> list[dict]:
    """One result per item, in request order."""
    results = []
    for i, (item_id, given) in enumerate(zip(clean, given_keys)):
        if item_id is None:
            results.append({"index": i, "match": "invalid_id_number"})
            continue
        hits = found.get(item_id, [])
        if not hits:
            results.append({"index": i, "match": "not_found"})
        elif len(hits) > 1:
            results.append({"index": i, "match": "ambiguous", "candidates": [h["master_id"] for h in hits]})
        else:
            hit = hits[0]
            golden = golden_keys.get(hit["master_id"])
            checked = bool(compare_names and given and golden)
            results.append({"index": i, "master_id": hit["master_id"], "name_checked": checked,
                            "match": "name_mismatch" if checked and given != golden else "matched",
                            "person_status": hit.get("status") if "status" in fields else None})
    return results


# ---------------------------------------------------------------------------------------------- routes

@router.get("/healthz", tags=["health"], summary="Liveness: the API answers and reaches the warehouse")
def healthz(engine: Warehouse):
    try:
        with engine.connect() as conn:
            serving.ping(conn)
    except Exception:  # noqa: BLE001
        return JSONResponse({"status": "unavailable"}, 503)
    return {"status": "ok"}


@router.get("/v1/persons/{master_id}", tags=["persons"], response_model=PersonAnswer,
            response_model_exclude_unset=True, responses=ERRORS,
            summary="A person by master id (a retired id answers with its survivor)",
            description="The person of the current release with this master id. A master id retired by a"
                        " merge answers with the person it was merged into; `redirected_from` lists the"
                        " retired ids followed.")
def get_person(request: Request, c: CallerDep, engine: Warehouse,
               master_id: Annotated[str, PathParam(description="master id, e.g. M000000123")],
               x_purpose: Annotated[str | None, purpose_header()] = None):
    purpose = declare_purpose(request, None, x_purpose)
    request.state.access.requested = 1
    if not c.may_use("master_id") or len(master_id) > 64:
        raise not_found()
    fields, withheld = c.released(purpose)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for the answer
        release = serving.current_release_no(conn)
        department = c.key.department
        rows = serving.persons_by_master_id(conn, master_id, fields, department=department) if release else []
        chain: list[str] = []
        if release and not rows:
            followed = _follow_redirects(conn, master_id, department)
            if followed and followed[1]:
                rows = serving.persons_by_master_id(conn, followed[0], fields, department=department)
                chain = followed[1]
        if not rows:
            raise not_found()
        enrolments = _enrolments(conn, [rows[0]["master_id"]], c)
    request.state.access.results = 1
    request.state.access.master_ids = [rows[0]["master_id"]]
    return {"release_no": release, "requested_master_id": master_id, "redirected_from": chain,
            "person": _person_out(rows[0], fields, enrolments.get(rows[0]["master_id"], []), c),
            "withheld": list(withheld)}


@router.post("/v1/persons/search", tags=["persons"], response_model=SearchAnswer,
             response_model_exclude_unset=True, responses=ERRORS,
             summary="Persons by exact ID number (sent in the body)",
             description="The persons of the current release holding this citizen ID number (normally one)."
                         " The number is standardized first (full-width digits, lower-case x, a 15-digit"
                         " number upgraded); a number that is not usable answers 422 without echoing it.")
def search(request: Request, body: SearchRequest, c: CallerDep, engine: Warehouse,
           x_purpose: Annotated[str | None, purpose_header()] = None):
    purpose = declare_purpose(request, body.purpose, x_purpose)
    request.state.access.requested = 1
    clean = _standardize_id_numbers([body.id_number])[0]
    if clean is None:
        raise HTTPException(422, f"id_number: not a usable citizen ID number ({_id_number_status(body.id_number)});"
                                 " nothing was looked up")
    if not c.may_use("id_number"):
        raise not_found()
    fields, withheld = c.released(purpose)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        release = serving.current_release_no(conn)
        rows = serving.persons_by_id_numbers(conn, [clean], fields, department=c.key.department) if release else []
        if not rows:
            raise not_found()
        enrolments = _enrolments(conn, [r["master_id"] for r in rows], c)
    request.state.access.results = len(rows)
    request.state.access.master_ids = [r["master_id"] for r in rows]
    return {"release_no": release, "withheld": list(withheld),
            "results": [_person_out(r, fields, enrolments.get(r["master_id"], []), c) for r in rows]}


@router.post("/v1/persons/check", tags=["persons"], response_model=CheckAnswer, responses={
                 **ERRORS, 413: {"description": f"more items than the batch limit (default {DEFAULT_MAX_BATCH})"}},
             summary="Batch check (比对) of residents against the index",
             description=_CHECK_DESCRIPTION.format(max_batch=DEFAULT_MAX_BATCH))
def check(request: Request, body: CheckRequest, c: CallerDep, engine: Warehouse,
          x_purpose: Annotated[str | None, purpose_header()] = None):
    purpose = declare_purpose(request, body.purpose, x_purpose)
    max_batch = request.app.state.max_batch
    n = len(body.items)
    request.state.access.requested = n
    if n > max_batch:
        raise HTTPException(413, f"a batch check holds at most {max_batch} items; this one has {n}:"
                                 f" split it into batches of {max_batch}")
    charge(request, c, n)
    fields, withheld = c.released(purpose)
    compare_names = "name" in fields
    clean = _standardize_id_numbers([i.id_number for i in body.items]) if n else []
    found: dict[str, list[dict]] = {}
    # a department that may not look up by ID number gets what an unknown number gets: not_found
    allowed = c.may_use("id_number") and c.may_use("master_id")
    wanted = sorted({x for x in clean if x}) if allowed else []
    # each distinct usable number may give a person: reserve them of today's quotas before reading
    what = f"this batch check of {n} items"
    reserve_persons(request, c, len(wanted), what)
    read = tuple(f for f in ("id_number", "name", "status") if f in fields or f == "id_number")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        release = serving.current_release_no(conn)
        rows = (serving.persons_by_id_numbers(conn, wanted, read, department=c.key.department)
                if release and wanted else [])
    for r in rows:
        found.setdefault(r["id_number"], []).append(r)
    given_keys = _name_keys([i.name for i in body.items]) if compare_names and n else [None] * n
    golden_keys: dict[str, str | None] = {}
    if compare_names and found:
        masters = [r for rs in found.values() for r in rs]
        golden_keys = dict(zip([r["master_id"] for r in masters], _name_keys([r["name"] for r in masters])))
    results = _check_results(clean, found, given_keys, golden_keys, compare_names, fields)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["match"]] = counts.get(r["match"], 0) + 1
    given = [m for r in results for m in ([r["master_id"]] if r.get("master_id") else r.get("candidates") or [])]
    if len(set(given)) > len(wanted):  # an ID number held by several persons: reserve the extra ones too
        reserve_persons(request, c, len(set(given)) - len(wanted), what)
    request.state.access.results = sum(1 for r in results if r.get("master_id") or r.get("candidates"))
    request.state.access.master_ids = given
    return {"release_no": release, "results": results, "counts": counts, "name_checked": compare_names,
            "withheld": list(withheld)}


@router.get("/v1/purposes", tags=["purposes"], response_model=PurposesAnswer, responses=ERRORS,
            summary="The approved purposes of the caller's department",
            description="The purposes a request of this department may name (header `X-Purpose` or body"
                        " `purpose`): code, title, legal basis, the 有条件 fields each releases and the last day"
                        " it is in force. An expired purpose is listed with `in_force: false` and releases"
                        " nothing; the department renews it with the data office.")
def purposes(c: CallerDep):
    sharing = c.sharing
    listed = sorted(sharing.purposes.values(), key=lambda p: p.code) if sharing is not None else []
    return {"department": c.key.department,
            "conditional_fields": list(sharing.conditional()) if sharing is not None else [],
            "purposes": [{"code": p.code, "title": p.title, "legal_basis": p.legal_basis, "fields": list(p.fields),
                          "expires": p.expires, "in_force": p.in_force()} for p in listed]}
