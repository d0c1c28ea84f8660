"""The guard every ``/v1`` request goes through (:func:`guard_and_log`, a middleware): the key, the rate
limit, the body's size, and the access-log row written once the answer is known.

The app's state (``app.state``) holds the engine, the sharing configuration, the token buckets and
the batch limit, set by :func:`hub.api.create_app`. A route that changes something writes its access-log
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
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import UNAUTHORIZED, Caller, declare_purpose
from hub.api_keys import ApiKey, verify_key
from warehouse.access_log import Access, log_access

log = logging.getLogger("hub.api")

# what the access log keeps of a path: the routes' own words, master ids and review ids; the rest
# (a mistyped ID number or name in a URL, say) is masked
_ROUTE_WORDS = frozenset({"v1", "persons", "search", "check", "reviews", "decision", "healthz", "openapi.json",
                          "docs", "redoc", "masters", "decisions", "split", "move-out", "detach-id"})
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



# ---------------------------------------------------------------------------------------------- small parts

def safe_path(path: str) -> str:
    """The path for the access log: segments other than plain surrogate ids are masked."""
    parts = [p if not p or p in _ROUTE_WORDS or _SAFE_ID.match(p) else "<masked>" for p in path.split("/")]
    return "/".join(parts)[:300]


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}



# ---------------------------------------------------------------------------------------------- the guard


def _verify(engine: sa.Engine, key: str | None) -> ApiKey | None:
    with engine.connect() as conn:
        return verify_key(conn, key)


def _write_log(engine: sa.Engine, access: Access, status: int) -> None:
    with engine.begin() as conn:
        log_access(conn, access, status)


async def _guarded(request: Request, call_next, access: Access):
    state = request.app.state
    try:
        key = await run_in_threadpool(_verify, state.engine, request.headers.get("x-api-key"))
    except Exception as exc:  # noqa: BLE001 — the database is away: say so, without details
        log.error("read API: key lookup failed: %s", type(exc).__name__)
        return JSONResponse({"detail": "service unavailable"}, 503)
    if key is None:
        return JSONResponse(UNAUTHORIZED, 401, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
    access.key_id, access.department = key.key_id, key.department
    request.state.caller = Caller(key, state.sharing.get(key.department))
    if state.buckets is not None:
        wait = state.buckets.take(key.key_id)
        if wait:
            return JSONResponse({"detail": "rate limit exceeded"}, 429, headers=_retry_after(wait))
    if request.method in ("POST", "PUT", "PATCH"):
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return JSONResponse({"detail": "a request body needs a Content-Length"}, 411)
        if int(length) > state.max_body:
            return JSONResponse({"detail": f"the request body is larger than {state.max_body} bytes"
                                           f" (a batch check holds at most {state.max_batch} items)"}, 413)
    try:
        return await call_next(request)
    except Exception as exc:  # noqa: BLE001 — no exception text: it may quote parameters (ID numbers)
        log.error("read API: %s failed: %s\n%s", access.endpoint, type(exc).__name__,
                  "".join(traceback.format_tb(exc.__traceback__)))
        return JSONResponse({"detail": "internal error"}, 500)


async def guard_and_log(request: Request, call_next):
    """Middleware: a ``/v1`` request needs a valid key and a token, and is logged with its status
    before its answer leaves; nothing is served that is not logged."""
    path = request.url.path
    if not (path == "/v1" or path.startswith("/v1/")):
        return await call_next(request)
    access = Access(endpoint=f"{request.method} {safe_path(path)}",
                    client=request.client.host if request.client else None)
    request.state.access = access
    declare_purpose(request, None, request.headers.get("x-purpose"))
    response = await _guarded(request, call_next, access)
    if access.logged:  # a route that changes something logged it in the transaction of the change
        return response
    try:
        await run_in_threadpool(_write_log, request.app.state.engine, access, response.status_code)
    except Exception as exc:  # noqa: BLE001 — nothing is served that is not logged
        log.error("read API: access log write failed: %s", type(exc).__name__)
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
