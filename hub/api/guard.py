"""The guard every ``/v1`` request goes through (:func:`guard_and_log`, a middleware): the key (a blocked
key answers 403), the daily quotas, sweep detection and the throttling of bad keys shared by every API
process (:mod:`hub.api.limits`), the rate limit of this process, hostile input (a NUL character
answers 400, a value the warehouse refuses 422), the body's size, and the access-log row written once
the answer is known, with the persons it served counted against the quotas.

The app's state (``app.state``) holds the engine, the sharing configuration, the quotas, the token
buckets and the batch limit, set by :func:`hub.api.create_app`. A route that changes something writes its access-log
row itself, in the transaction of the change (:func:`hub.api.deps.log_in`), and the guard then writes
none: a change that cannot be logged is not made.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.api import limits
from hub.api.deps import UNAUTHORIZED, Caller, declare_purpose
from hub.api.limits import Admission, Quotas
from hub.api_keys import KeyBlocked, verify_key
from warehouse.access_log import Access, log_access

log = logging.getLogger("hub.api")

# what the access log keeps of a path: the routes' own words, master ids and review ids; the rest
# (a mistyped ID number or name in a URL, say) is masked
_ROUTE_WORDS = frozenset({"v1", "persons", "search", "check", "reviews", "decision", "healthz", "openapi.json",
                          "docs", "redoc", "masters", "decisions", "split", "move-out", "detach-id",
                          "purposes", "releases", "changes", "probe"})
_SAFE_ID = re.compile(r"^(M\d{9,12}|\d{1,10})$")
_MASTER_ID = re.compile(r"M\d{9,12}")  # what sweep detection counts (the access log keeps these paths)
# a NUL character in a JSON body: raw, or escaped as \u0000 (an odd number of backslashes before u0000)
_NUL_IN_JSON = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000")
NUL_REFUSED = ("{where} holds a NUL character (\\u0000), which no field of the hub accepts;"
               " remove it and send the request again")
VALUE_REFUSED = ("a value of the request cannot be used (a number out of range, or characters the warehouse"
                 " does not accept); nothing was read or changed: check the values and send the request again")

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



# ---------------------------------------------------------------------------------------------- small parts

def safe_path(path: str) -> str:
    """The path for the access log: segments other than plain surrogate ids are masked."""
    parts = [p if not p or p in _ROUTE_WORDS or _SAFE_ID.match(p) else "<masked>" for p in path.split("/")]
    return "/".join(parts)[:300]


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}



# ---------------------------------------------------------------------------------------------- the guard

def _admit(engine: sa.Engine, header: str | None, access: Access, quotas: Quotas | None,
           person_id: str | None) -> Admission:
    """The key, the daily quotas and sweep detection, in one transaction (see :mod:`hub.api.limits`)."""
    with engine.begin() as conn:
        try:
            key = verify_key(conn, header)
        except KeyBlocked as blocked:
            access.key_id, access.department = blocked.key_id, blocked.department
            refused = limits.refuse_unknown_key(conn, access.client, quotas)  # a blocked key counts as a bad one
            return refused if refused.status == 429 else Admission(status=403, detail=str(blocked))
        if key is None:
            return limits.refuse_unknown_key(conn, access.client, quotas)
        access.key_id, access.department = key.key_id, key.department
        if quotas is None:
            return Admission(key)
        refusal = limits.over_quota(conn, key, quotas)
        if refusal is None and person_id is not None:
            refusal = limits.sweep(conn, key, person_id, quotas)
        return refusal or Admission(key)


def _finish(engine: sa.Engine, access: Access, status: int, counted: bool, reserved: int = 0) -> None:
    """The access-log row (unless the route wrote it) and the persons served, in one transaction; persons
    the route reserved (:func:`reserve_persons`) and did not give are given back."""
    ids = getattr(access, "master_ids", None)
    persons = len(set(ids)) if ids else access.results
    with engine.begin() as conn:
        if not access.logged:
            log_access(conn, access, status)
        if counted and persons != reserved and access.key_id:
            limits.count_persons(conn, access, persons - reserved)


def db_cause(exc: BaseException) -> str:
    """What the database said, without values: the exception's kind, the SQL state and the first line of
    the server's message (``permission denied for table access_log``); never the statement's parameters."""
    orig = getattr(exc, "orig", None)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if orig is None or not primary:
        return type(exc).__name__
    return f"{type(exc).__name__} (SQL state {getattr(orig, 'pgcode', None) or 'unknown'}: {primary.splitlines()[0]})"


def _person_id(request: Request) -> str | None:
    """The master id of a look-up by master id (``GET /v1/persons/<id>``), else None."""
    parts = request.url.path.split("/")
    if request.method == "GET" and len(parts) == 4 and parts[2] == "persons" and _MASTER_ID.fullmatch(parts[3]):
        return parts[3]
    return None


async def _guarded(request: Request, call_next, access: Access, hostile: str | None) -> tuple[Response, bool]:
    """The answer, and whether the guard must write (and count) it."""
    state = request.app.state
    try:
        admission = await run_in_threadpool(_admit, state.engine, request.headers.get("x-api-key"), access,
                                            state.quotas, _person_id(request))
    except Exception as exc:  # noqa: BLE001 — the database is away: say so, without details
        log.error("read API: key lookup failed: %s", db_cause(exc))
        return JSONResponse({"detail": "service unavailable"}, 503), True
    if admission.key is None:
        if admission.status == 401:
            return JSONResponse(UNAUTHORIZED, 401, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'}), True
        return JSONResponse({"detail": admission.detail}, admission.status, headers=admission.headers), admission.log
    key = admission.key
    request.state.caller = Caller(key, state.sharing.get(key.department))
    if hostile:
        return JSONResponse({"detail": hostile}, 400), True
    if state.buckets is not None:
        wait = state.buckets.take(key.key_id)
        if wait:
            return JSONResponse({"detail": "rate limit exceeded"}, 429, headers=_retry_after(wait)), True
    if request.method in ("POST", "PUT", "PATCH"):
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return JSONResponse({"detail": "a request body needs a Content-Length"}, 411), True
        if int(length) > state.max_body:
            return JSONResponse({"detail": _too_large(request, state)}, 413), True
        if _NUL_IN_JSON.search(await request.body()):
            return JSONResponse({"detail": NUL_REFUSED.format(where="the request body")}, 400), True
    try:
        return await call_next(request), True
    except sa.exc.DataError:  # the warehouse refused a value of the request (a number out of range, …)
        return JSONResponse({"detail": VALUE_REFUSED}, 422), True
    except Exception as exc:  # noqa: BLE001 — no exception text: it may quote parameters (ID numbers)
        log.error("read API: %s failed: %s\n%s", access.endpoint, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return JSONResponse({"detail": "internal error"}, 500), True


def _too_large(request: Request, state) -> str:
    """The 413 of an oversized body, in the words of its route."""
    said = f"the request body is larger than {state.max_body} bytes"
    if request.url.path == "/v1/persons/check":
        return f"{said}: a batch check holds at most {state.max_batch} items; split it into smaller batches"
    if request.url.path == "/v1/persons/search":
        return f"{said}: a search holds one ID number (id_number) and, optionally, a purpose code"
    return f"{said}; send only the fields this request takes"


def hostile_reason(request: Request) -> str | None:
    """Why the request's path, query or headers cannot be used (a NUL character), else None."""
    if "\x00" in request.url.path or "\x00" in urllib.parse.unquote(request.scope.get("path", "")):
        return NUL_REFUSED.format(where="the path")
    if "\x00" in urllib.parse.unquote(request.scope.get("query_string", b"").decode("latin-1")):
        return NUL_REFUSED.format(where="the query")
    for name in ("x-api-key", "x-purpose"):  # the headers the hub reads (percent-encoded text)
        if "\x00" in urllib.parse.unquote(request.headers.get(name, "")):
            return NUL_REFUSED.format(where=f"the header {name}")
    return None


async def guard_and_log(request: Request, call_next):
    """Middleware: a ``/v1`` request needs a valid, unblocked key within its quotas and a token, and is
    logged with its status before its answer leaves; nothing is served that is not logged."""
    path = request.url.path
    if not (path == "/v1" or path.startswith("/v1/")):
        return await call_next(request)
    access = Access(endpoint=f"{request.method} {safe_path(path)}",
                    client=request.client.host if request.client else None)
    request.state.access = access
    hostile = hostile_reason(request)
    declare_purpose(request, None, None if hostile else request.headers.get("x-purpose"))
    response, write = await _guarded(request, call_next, access, hostile)
    if not write:  # a throttled address: counted in audit.api_quota and alerted once, not one row each
        return response
    try:
        await run_in_threadpool(_finish, request.app.state.engine, access, response.status_code,
                                request.app.state.quotas is not None, getattr(request.state, "reserved_persons", 0))
    except Exception as exc:  # noqa: BLE001 — nothing is served that is not logged
        reserved = getattr(request.state, "reserved_persons", 0)
        log.error("read API: access log write failed: %s; nothing was served (503)%s", db_cause(exc),
                  f"; the {reserved} persons reserved for the answer stay counted against today's quotas"
                  if reserved else "")
        return JSONResponse({"detail": "service unavailable: the access could not be logged"}, 503)
    return response


def charge(request: Request, c: Caller, items: int) -> None:
    """Take the extra tokens a batch of ``items`` costs beyond the request's own; 429 when they are missing."""
    buckets: TokenBuckets | None = request.app.state.buckets
    if buckets is None:
        return
    extra = math.ceil(items / buckets.limit.batch_items_per_token) - 1
    if extra > 0:
        wait = buckets.take(c.key.key_id, extra)
        if wait:
            raise HTTPException(429, "rate limit exceeded", headers=_retry_after(wait))


def reserve_persons(request: Request, c: Caller, persons: int, what: str) -> None:
    """Reserve ``persons`` of the caller's daily quotas before the answer is read (every API process counts
    against the same numbers); 429 saying how many remain when fewer do. The guard gives back what the
    answer did not use when it logs it."""
    quotas: Quotas | None = request.app.state.quotas
    if quotas is None or persons < 1:
        return
    refusal = limits.reserve_persons(request.app.state.engine, c.key, quotas, persons, what)
    if refusal is not None:
        raise HTTPException(refusal.status, refusal.detail, headers=refusal.headers)
    request.state.reserved_persons = getattr(request.state, "reserved_persons", 0) + persons
