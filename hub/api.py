"""The read API of the master person index: departments look residents up, stewards decide reviews.

Every path under ``/v1`` needs a department's API key (header ``X-API-Key``, see
:mod:`hub.api_keys`) and is written to ``audit.access_log`` — refused requests too — before its
answer leaves: who (key id, department), what (method and path; a path segment that is not a
plain surrogate id is masked), the declared purpose, how many items were asked for and returned,
and the HTTP status. No ID number or name is ever logged; ID numbers travel only in request bodies.

Sharing (``warehouse/sharing.yaml``): an answer holds only the fields the key's department may see.
A 有条件 (conditional) field is released only with a declared purpose (body field ``purpose`` or
header ``X-Purpose``); without one the answer holds the 无条件 fields and lists the others under
``withheld`` — it is not refused. A lookup by ID number needs ``id_number`` to be shared with the
department at all, and a batch check compares names only when ``name`` is released.

No enumeration: an unknown master id, an unknown ID number and a look-up the department may not
make answer alike (404 ``{"detail": "not found"}``); a missing, unknown or revoked key answers
alike (401). Each key has a token bucket (:class:`RateLimit`); an empty bucket answers 429 with
``Retry-After``.
"""

import logging
import math
import re
import threading
import time
import traceback
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api_keys import ApiKey, verify_key
from hub.errors import HubError
from warehouse.sharing import CONDITIONAL, DepartmentSharing, load_sharing

log = logging.getLogger("hub.api")

DEFAULT_MAX_BATCH = 1000
PURPOSE_MAX = 200
NOT_FOUND = {"detail": "not found"}
UNAUTHORIZED = {"detail": "missing, unknown or revoked API key"}
# what the access log keeps of a path: the routes' own words, master ids and review ids; the rest
# (a mistyped ID number or name in a URL, say) is masked
_ROUTE_WORDS = frozenset({"v1", "persons", "search", "check", "reviews", "decision", "healthz", "openapi.json",
                          "docs", "redoc"})
_SAFE_ID = re.compile(r"^(M\d{9,12}|\d{1,10})$")


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per key: ``burst`` requests at once, refilled at ``per_second``.

    A request costs one token; a batch check costs one token per ``batch_items_per_token`` items
    (at least one, at most ``burst``).
    """
    per_second: float = 5.0
    burst: int = 60
    batch_items_per_token: int = 100


class TokenBuckets:
    """In-memory token buckets keyed by API key id (per process; thread-safe)."""

    def __init__(self, limit: RateLimit, clock=time.monotonic):
        if limit.per_second <= 0 or limit.burst < 1 or limit.batch_items_per_token < 1:
            raise ValueError("a rate limit needs per_second > 0, burst >= 1 and batch_items_per_token >= 1")
        self.limit, self._clock = limit, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 when granted, else the seconds until they would be there."""
        burst, rate = float(self.limit.burst), self.limit.per_second
        cost = min(float(cost), burst)
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - stamp) * rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / rate


# ---------------------------------------------------------------------------------------------- models

class Person(BaseModel):
    """A published master person, cut to the fields the department may see (absent = not released)."""
    master_id: str | None = None
    name: str | None = None
    id_number: str | None = None
    id_number_status: str | None = None
    sex: int | None = Field(None, description="GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 unspecified")
    birth_date: date | None = None
    phone: str | None = None
    address: str | None = None
    status: str | None = Field(None, description="vital status, e.g. alive / deceased")
    status_date: date | None = None
    record_count: int | None = Field(None, description="source records linked to this person")
    sources: list[str] | None = Field(None, description="source systems holding a record of this person")
    conflicts: int | None = Field(None, description="fields on which the sources disagree")
    enrolments: list["Enrolment"] = Field(
        default_factory=list,
        description="the person's enrolments the department may see (its own programmes', or all)")


class Enrolment(BaseModel):
    source: str
    source_record_id: str
    department: str
    program: str | None = None
    status_raw: str | None = None


class PersonAnswer(BaseModel):
    release_no: int
    requested_master_id: str = Field(description="the master id asked for")
    redirected_from: list[str] = Field(
        description="retired master ids followed to reach this person (empty when the id asked for is in force)")
    person: Person
    withheld: list[str] = Field(description="有条件 fields left out because no purpose was declared")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(min_length=1, max_length=40,
                           description="citizen ID number (18 characters, or 15 for a first-generation one)")
    purpose: str | None = Field(None, max_length=PURPOSE_MAX,
                                description="declared purpose; needed for 有条件 fields (kept in the access log)")


class SearchAnswer(BaseModel):
    release_no: int
    results: list[Person]
    withheld: list[str] = Field(description="有条件 fields left out because no purpose was declared")


class CheckItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(max_length=40)
    name: str | None = Field(None, max_length=100, description="compared with the golden name when given")


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[CheckItem] = Field(description="residents to check, in the department's order")
    purpose: str | None = Field(None, max_length=PURPOSE_MAX,
                                description="declared purpose; needed when names are 有条件 for the department")


class CheckResult(BaseModel):
    index: int = Field(description="position of the item in the request")
    match: Literal["matched", "name_mismatch", "not_found", "invalid_id_number", "ambiguous"] = Field(
        description="matched: ID number found (and the name agrees, when compared); name_mismatch: ID number"
                    " found, the name differs; not_found: no published person with that ID number (or a look-up"
                    " the department may not make); invalid_id_number: not a usable citizen ID number;"
                    " ambiguous: more than one published person holds the number (see candidates)")
    master_id: str | None = None
    candidates: list[str] | None = None
    name_checked: bool = False
    person_status: str | None = Field(None, description="vital status, when released to the department")


class CheckAnswer(BaseModel):
    release_no: int | None
    results: list[CheckResult]
    counts: dict[str, int]
    name_checked: bool = Field(description="whether names were compared (name released to the department)")
    withheld: list[str]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["match", "not_a_match"]
    reviewer: str = Field(min_length=1, max_length=100, description="who decides (kept with the decision)")
    comment: str | None = Field(None, max_length=2000)


Person.model_rebuild()


# ---------------------------------------------------------------------------------------------- helpers

@dataclass(frozen=True)
class Caller:
    key: ApiKey
    sharing: DepartmentSharing | None

    def released(self, purpose: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(fields released for this request, 有条件 fields withheld for want of a purpose)."""
        if self.sharing is None:
            return (), ()
        visible = self.sharing.visible()
        if purpose:
            return visible, ()
        return (tuple(f for f in visible if self.sharing.classes[f] != CONDITIONAL),
                tuple(f for f in visible if self.sharing.classes[f] == CONDITIONAL))

    def may_use(self, field: str) -> bool:
        return self.sharing is not None and field in self.sharing.visible()


@dataclass
class _Access:
    endpoint: str
    client: str | None
    key_id: str | None = None
    department: str | None = None
    purpose: str | None = None
    requested: int = 0
    results: int = 0


def _safe_path(path: str) -> str:
    """The path for the access log: segments other than plain surrogate ids are masked."""
    parts = [p if not p or p in _ROUTE_WORDS or _SAFE_ID.match(p) else "<masked>" for p in path.split("/")]
    return "/".join(parts)[:300]


def _header_text(value: str | None) -> str | None:
    """A header value as text: UTF-8 sent raw or percent-encoded (headers arrive as latin-1)."""
    if value is None:
        return None
    try:
        value = value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return urllib.parse.unquote(value)


def _declare_purpose(request: Request, body_purpose: str | None, header: str | None) -> str | None:
    purpose = (body_purpose or _header_text(header) or "").strip()[:PURPOSE_MAX] or None
    request.state.access.purpose = purpose
    return purpose


def _not_found() -> HTTPException:
    return HTTPException(404, NOT_FOUND["detail"])


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}


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


# ---------------------------------------------------------------------------------------------- queries

def _current_release(conn: sa.Connection) -> int | None:
    return conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()


def _persons(conn: sa.Connection, where: str, params: dict, fields: tuple[str, ...]) -> list[dict]:
    # only the released columns are read: what a department may not see never leaves the database
    columns = ", ".join(dict.fromkeys(("master_id", *fields)))
    rows = conn.execute(sa.text(f"SELECT {columns} FROM publish.master_person_current WHERE {where}"
                                " ORDER BY master_id"), params).mappings().all()
    return [dict(r) for r in rows]


def _enrolments(conn: sa.Connection, master_ids: list[str], caller: Caller) -> dict[str, list[dict]]:
    if not master_ids or caller.sharing is None:
        return {}
    own = caller.sharing.own_enrolments_only
    rows = conn.execute(sa.text(
        "SELECT master_id, source, source_record_id, department, program, status_raw"
        " FROM publish.enrolment_current WHERE master_id = ANY(:ids)"
        + (" AND department = :d" if own else "") + " ORDER BY source, source_record_id"),
        {"ids": master_ids, "d": caller.key.department}).mappings().all()
    out: dict[str, list[dict]] = {}
    for r in rows:
        r = dict(r)
        out.setdefault(r.pop("master_id"), []).append(r)
    return out


def _person_out(row: dict, fields: tuple[str, ...], enrolments: list[dict]) -> dict:
    out = {f: row[f] for f in fields}
    out["enrolments"] = enrolments
    return out


def _follow_redirects(conn: sa.Connection, master_id: str) -> tuple[str, list[str]] | None:
    from hub.stewardship import resolve

    try:
        return resolve(conn, master_id)
    except HubError:
        return None


# ---------------------------------------------------------------------------------------------- the app

_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="the department's API key (`hub api-key create`)")

def _purpose_header():
    return Header(alias="X-Purpose", description="declared purpose (UTF-8, percent-encoded); needed for 有条件 fields")


_DESCRIPTION = """\
Read access to the published master person index (一人一档) of the resident data hub.

* **Keys**: every `/v1` path needs a department's key in `X-API-Key`. A missing, unknown or revoked
  key answers 401, alike.
* **Fields**: answers hold only the fields the key's department may see (`warehouse/sharing.yaml`).
  有条件 (conditional) fields are released only with a declared **purpose** (`purpose` in the body,
  or the `X-Purpose` header, UTF-8 percent-encoded); without one they are listed under `withheld`.
* **ID numbers** travel only in request bodies, never in a URL.
* **Not found**: an unknown master id, an unknown ID number and a look-up the department may not
  make all answer 404 `{"detail": "not found"}`.
* **Limits**: a token bucket per key (429 with `Retry-After`); a batch check holds at most a
  configured number of items (413 beyond).
* **Audit**: every request, refused ones too, is logged in `audit.access_log` (key, department,
  path, purpose, counts, status) — never an ID number or a name.
"""

_ERRORS = {
    401: {"description": "missing, unknown or revoked API key", "content": {"application/json": {"example": UNAUTHORIZED}}},
    404: {"description": "not found (or not for this department: the two look the same)",
          "content": {"application/json": {"example": NOT_FOUND}}},
    429: {"description": "rate limit exceeded; retry after `Retry-After` seconds"},
}


def create_app(engine: sa.Engine | None = None, *,
               sharing: Mapping[str, DepartmentSharing] | str | Path | None = None,
               rate_limit: RateLimit | None = RateLimit(),
               max_batch: int = DEFAULT_MAX_BATCH) -> FastAPI:
    """The read API over ``engine`` (default: the hub's warehouse).

    ``sharing``: the per-department field classes (default ``warehouse/sharing.yaml``, or a path to
    another file); ``rate_limit``: a token bucket per key (None: no limit); ``max_batch``: the most
    items a batch check may hold.
    """
    if engine is None:
        from hub import settings

        engine = settings.engine()
    if sharing is None or isinstance(sharing, str | Path):
        sharing = load_sharing(sharing)
    sharing = dict(sharing)
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    buckets = TokenBuckets(rate_limit) if rate_limit else None
    max_body = 8192 + 512 * max_batch

    app = FastAPI(
        title="Resident data hub — read API", version="1", description=_DESCRIPTION,
        openapi_tags=[{"name": "persons", "description": "the published master person index"},
                      {"name": "reviews", "description": "the review queue (keys with the steward scope)"},
                      {"name": "health", "description": "liveness (no key, no data)"}])
    app.state.engine, app.state.sharing, app.state.max_batch = engine, sharing, max_batch

    # ------------------------------------------------------------------ errors: same shapes, no echoed input
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        body = NOT_FOUND if exc.status_code == 404 else {"detail": exc.detail}
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # pydantic would echo the input (an ID number, a name): keep where and what, never the value
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)

    # ------------------------------------------------------------------ keys, limits, body size and the access log
    def _verify(key: str | None) -> ApiKey | None:
        with engine.connect() as conn:
            return verify_key(conn, key)

    def _write_log(access: _Access, status: int) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO audit.access_log (key_id, department, endpoint, purpose, requested, results, status,"
                " client) VALUES (:k, :d, :e, :p, :q, :r, :s, :c)"),
                {"k": access.key_id, "d": access.department, "e": access.endpoint, "p": access.purpose,
                 "q": access.requested, "r": access.results, "s": status, "c": access.client})

    async def _guarded(request: Request, call_next, access: _Access):
        try:
            key = await run_in_threadpool(_verify, request.headers.get("x-api-key"))
        except Exception as exc:  # noqa: BLE001 — the database is away: say so, without details
            log.error("read API: key lookup failed: %s", type(exc).__name__)
            return JSONResponse({"detail": "service unavailable"}, 503)
        if key is None:
            return JSONResponse(UNAUTHORIZED, 401, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
        access.key_id, access.department = key.key_id, key.department
        request.state.caller = Caller(key, sharing.get(key.department))
        if buckets is not None:
            wait = buckets.take(key.key_id)
            if wait:
                return JSONResponse({"detail": "rate limit exceeded"}, 429, headers=_retry_after(wait))
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "a request body needs a Content-Length"}, 411)
            if int(length) > max_body:
                return JSONResponse({"detail": f"the request body is larger than {max_body} bytes"
                                               f" (a batch check holds at most {max_batch} items)"}, 413)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 — no exception text: it may quote parameters (ID numbers)
            log.error("read API: %s failed: %s\n%s", access.endpoint, type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            return JSONResponse({"detail": "internal error"}, 500)

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next):
        path = request.url.path
        if not (path == "/v1" or path.startswith("/v1/")):
            return await call_next(request)
        access = _Access(endpoint=f"{request.method} {_safe_path(path)}",
                         client=request.client.host if request.client else None)
        request.state.access = access
        _declare_purpose(request, None, request.headers.get("x-purpose"))
        response = await _guarded(request, call_next, access)
        try:
            await run_in_threadpool(_write_log, access, response.status_code)
        except Exception as exc:  # noqa: BLE001 — nothing is served that is not logged
            log.error("read API: access log write failed: %s", type(exc).__name__)
            return JSONResponse({"detail": "service unavailable: the access could not be logged"}, 503)
        return response

    def caller(request: Request, _key: Annotated[str | None, Security(_API_KEY)] = None) -> Caller:
        return request.state.caller

    def steward(c: Annotated[Caller, Depends(caller)]) -> Caller:
        if "steward" not in c.key.scopes:
            raise _not_found()  # the review queue does not exist for other keys
        return c

    def charge(c: Caller, items: int) -> None:
        if buckets is None:
            return
        extra = math.ceil(items / buckets.limit.batch_items_per_token) - 1
        if extra > 0:
            wait = buckets.take(c.key.key_id, extra)
            if wait:
                raise HTTPException(429, "rate limit exceeded", headers=_retry_after(wait))


    # ------------------------------------------------------------------ endpoints
    @app.get("/healthz", tags=["health"], summary="Liveness: the API answers and reaches the warehouse")
    def healthz():
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001
            return JSONResponse({"status": "unavailable"}, 503)
        return {"status": "ok"}

    @app.get("/v1/persons/{master_id}", tags=["persons"], response_model=PersonAnswer,
             response_model_exclude_unset=True, responses=_ERRORS,
             summary="A person by master id (a retired id answers with its survivor)",
             description="The person of the current release with this master id. A master id retired by a"
                         " merge answers with the person it was merged into; `redirected_from` lists the"
                         " retired ids followed.")
    def get_person(request: Request, c: Annotated[Caller, Depends(caller)],
                   master_id: Annotated[str, PathParam(description="master id, e.g. M000000123")],
                   x_purpose: Annotated[str | None, _purpose_header()] = None):
        purpose = _declare_purpose(request, None, x_purpose)
        request.state.access.requested = 1
        if not c.may_use("master_id") or len(master_id) > 64:
            raise _not_found()
        fields, withheld = c.released(purpose)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for the answer
            release = _current_release(conn)
            rows = _persons(conn, "master_id = :m", {"m": master_id}, fields) if release else []
            chain: list[str] = []
            if release and not rows:
                followed = _follow_redirects(conn, master_id)
                if followed and followed[1]:
                    rows = _persons(conn, "master_id = :m", {"m": followed[0]}, fields)
                    chain = followed[1]
            if not rows:
                raise _not_found()
            enrolments = _enrolments(conn, [rows[0]["master_id"]], c)
        request.state.access.results = 1
        return {"release_no": release, "requested_master_id": master_id, "redirected_from": chain,
                "person": _person_out(rows[0], fields, enrolments.get(rows[0]["master_id"], [])),
                "withheld": list(withheld)}

    @app.post("/v1/persons/search", tags=["persons"], response_model=SearchAnswer,
              response_model_exclude_unset=True, responses=_ERRORS,
              summary="Persons by exact ID number (sent in the body)",
              description="The persons of the current release holding this citizen ID number (normally one)."
                          " The number is standardized first (full-width digits, lower-case x, a 15-digit"
                          " number upgraded); a number that is not usable answers 422 without echoing it.")
    def search(request: Request, body: SearchRequest, c: Annotated[Caller, Depends(caller)],
               x_purpose: Annotated[str | None, _purpose_header()] = None):
        purpose = _declare_purpose(request, body.purpose, x_purpose)
        request.state.access.requested = 1
        clean = _standardize_id_numbers([body.id_number])[0]
        if clean is None:
            raise HTTPException(422, f"id_number: not a usable citizen ID number ({_id_number_status(body.id_number)});"
                                     " nothing was looked up")
        if not c.may_use("id_number"):
            raise _not_found()
        fields, withheld = c.released(purpose)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            release = _current_release(conn)
            rows = _persons(conn, "id_number = :n", {"n": clean}, fields) if release else []
            if not rows:
                raise _not_found()
            enrolments = _enrolments(conn, [r["master_id"] for r in rows], c)
        request.state.access.results = len(rows)
        return {"release_no": release, "withheld": list(withheld),
                "results": [_person_out(r, fields, enrolments.get(r["master_id"], [])) for r in rows]}

    @app.post("/v1/persons/check", tags=["persons"], response_model=CheckAnswer, responses={
                  **_ERRORS, 413: {"description": f"more items than the batch limit (default {DEFAULT_MAX_BATCH})"}},
              summary="Batch check (比对) of residents against the index",
              description="For each item (ID number, optionally a name) the master id and a match status."
                          " Names are compared (after standardization: traditional/simplified, separators)"
                          " only when `name` is released to the department — for a 有条件 name, with a"
                          " purpose. ID numbers are never echoed; results are in request order with `index`."
                          f" At most {max_batch} items per request; a larger batch answers 413.")
    def check(request: Request, body: CheckRequest, c: Annotated[Caller, Depends(caller)],
              x_purpose: Annotated[str | None, _purpose_header()] = None):
        purpose = _declare_purpose(request, body.purpose, x_purpose)
        n = len(body.items)
        request.state.access.requested = n
        if n > max_batch:
            raise HTTPException(413, f"a batch check holds at most {max_batch} items; this one has {n}:"
                                     f" split it into batches of {max_batch}")
        charge(c, n)
        fields, withheld = c.released(purpose)
        compare_names = "name" in fields
        clean = _standardize_id_numbers([i.id_number for i in body.items]) if n else []
        found: dict[str, list[dict]] = {}
        # a department that may not look up by ID number gets what an unknown number gets: not_found
        allowed = c.may_use("id_number") and c.may_use("master_id")
        wanted = sorted({x for x in clean if x}) if allowed else []
        read = tuple(f for f in ("id_number", "name", "status") if f in fields or f == "id_number")
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            release = _current_release(conn)
            rows = _persons(conn, "id_number = ANY(:ids)", {"ids": wanted}, read) if release and wanted else []
        for r in rows:
            found.setdefault(r["id_number"], []).append(r)
        given_keys = _name_keys([i.name for i in body.items]) if compare_names and n else [None] * n
        golden_keys: dict[str, str | None] = {}
        if compare_names and found:
            masters = [r for rs in found.values() for r in rs]
            golden_keys = dict(zip([r["master_id"] for r in masters], _name_keys([r["name"] for r in masters])))
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
        counts: dict[str, int] = {}
        for r in results:
            counts[r["match"]] = counts.get(r["match"], 0) + 1
        request.state.access.results = sum(1 for r in results if r.get("master_id") or r.get("candidates"))
        return {"release_no": release, "results": results, "counts": counts, "name_checked": compare_names,
                "withheld": list(withheld)}

    @app.get("/v1/reviews", tags=["reviews"], responses=_ERRORS,
             summary="The review queue, strongest pairs first (steward keys)",
             description="Pairs of source records the matcher could not decide, with their master ids."
                         " Records are named by `source/record id`; no names or ID numbers.")
    def reviews(request: Request, c: Annotated[Caller, Depends(steward)],
                status: Annotated[Literal["open", "decided", "all"], Query()] = "open",
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                reason: Annotated[str | None, Query(max_length=100,
                                                    description="review reason prefix, e.g. grey_zone")] = None):
        from hub.stewardship import list_reviews

        request.state.access.requested = limit
        with engine.connect() as conn:
            rows = list_reviews(conn, status=status, limit=limit, reason=reason)
        request.state.access.results = len(rows)
        return {"reviews": _json_safe(rows)}

    @app.get("/v1/reviews/{review_id}", tags=["reviews"], responses=_ERRORS,
             summary="One review pair: both records (masked) and the evidence per comparison (steward keys)")
    def review(request: Request, c: Annotated[Caller, Depends(steward)], review_id: int):
        from hub.stewardship import show_review

        request.state.access.requested = 1
        with engine.connect() as conn:
            try:
                out = show_review(conn, review_id)
            except HubError:
                raise _not_found() from None
        request.state.access.results = 1
        return _json_safe(out)

    @app.post("/v1/reviews/{review_id}/decision", tags=["reviews"], responses=_ERRORS,
              summary="Decide a review pair (steward keys); every later matching run honours it",
              description="The reviewer is kept with the decision, followed by the key id that sent it.")
    def decide_review(request: Request, c: Annotated[Caller, Depends(steward)], review_id: int,
                      body: DecisionRequest):
        from hub.stewardship import decide

        request.state.access.requested = 1
        reviewer = body.reviewer.strip()
        if not reviewer:
            raise HTTPException(422, "reviewer: the reviewer's name is needed")
        with engine.begin() as conn:
            try:
                out = decide(conn, review_id, body.decision, reviewer=f"{reviewer} (api key {c.key.key_id})",
                             comment=body.comment or "")
            except HubError:
                raise _not_found() from None
        request.state.access.results = 1
        return _json_safe(out)

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, *, engine: sa.Engine | None = None, **options) -> None:
    """Run the read API with uvicorn (``options`` go to :func:`create_app`).

    uvicorn's access log is off: ``audit.access_log`` is the access log, and a client that put an ID
    number in a URL would otherwise have it written to the server's log.
    """
    import uvicorn

    uvicorn.run(create_app(engine, **options), host=host, port=port, access_log=False, log_level="info")


__all__ = ["DEFAULT_MAX_BATCH", "RateLimit", "TokenBuckets", "create_app", "serve"]
