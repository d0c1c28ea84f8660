"""The read API of the master person index: departments look residents up, stewards decide reviews.

Every path under ``/v1`` needs a department's API key (header ``X-API-Key``, see
:mod:`hub.api_keys`) and is written to the access log — refused requests too — before its
answer leaves: who (key id, department), what (method and path; a path segment that is not a
plain surrogate id is masked), the purpose code, how many items were asked for and returned, the
master ids returned, and the HTTP status, in a hash chain (:mod:`warehouse.access_log`). No ID
number or name is ever logged; ID numbers travel only in request bodies.

Sharing (``warehouse/sharing.yaml``): an answer holds only the fields the key's department may see.
Persons are read as the department's database role through its views (:mod:`warehouse.serving`), so
PostgreSQL's grants and row security decide. A 有条件 (conditional) field is released only for a purpose
code of the department's catalogue (``warehouse/purposes.yaml``; body field ``purpose`` or header
``X-Purpose``) that unlocks it; otherwise the answer holds the 无条件 fields and lists the others under
``withheld`` — it is not refused. A lookup by ID number needs ``id_number`` to be shared with the
department at all, and a batch check compares names only when ``name`` is released.

No enumeration: an unknown master id, an unknown ID number and a look-up the department may not
make answer alike (404 ``{"detail": "not found"}``); a missing, unknown or revoked key answers
alike (401); a key blocked for sweeping master ids answers 403 saying so. Each key has a token bucket
per process (:class:`RateLimit`; an empty bucket answers 429 with ``Retry-After``) and daily quotas
shared by every process (:class:`Quotas`, :mod:`hub.api.limits`).

The parts: :mod:`hub.api.guard` (key, limits, access log), :mod:`hub.api.limits` (quotas, sweeps),
:mod:`hub.api.deps` (caller, purpose), :mod:`hub.api.models` (requests and answers), and one router
per concern (:mod:`hub.api.persons`, :mod:`hub.api.reviews`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api import changes, persons, probe, releases, reviews
from hub.api.deps import NOT_FOUND
from hub.api.docs_policy import docs_policy
from hub.api.guard import RateLimit, TokenBuckets, guard_and_log
from hub.api.limits import Quotas
from hub.api.models import DEFAULT_MAX_BATCH, UNEXPECTED_FIELD, UNEXPECTED_FIELD_ELSEWHERE
from warehouse.serving import DepartmentViewsMissing
from warehouse.sharing import DepartmentSharing, load_sharing

DEFAULT_RATE_LIMIT = RateLimit()
DEFAULT_QUOTAS = Quotas()

_DESCRIPTION = """\
Read access to the published master person index (一人一档) of the resident data hub.

* **Keys**: every `/v1` path needs a department's key in `X-API-Key`. A missing, unknown or revoked
  key answers 401, alike.
* **Fields**: answers hold only the fields the key's department may see (`warehouse/sharing.yaml`),
  read as the department's own database role through its views. 有条件 (conditional) fields are
  released only for a **purpose code** of the department's catalogue (`GET /v1/purposes`;
  `warehouse/purposes.yaml`), given as `purpose` in the body or the `X-Purpose` header, and only the
  fields that purpose unlocks; anything else (free text, an unknown, expired or other department's
  code) releases none, and the fields are listed under `withheld`. `sources` and `enrolments` show
  only the department's own programmes unless its sharing says otherwise.
* **ID numbers** travel only in request bodies, never in a URL.
* **Not found**: an unknown master id, an unknown ID number and a look-up the department may not
  make all answer 404 `{"detail": "not found"}`.
* **Limits**: a token bucket per key (429 with `Retry-After`); daily quotas of persons per key and
  per department (429 with `Retry-After` until midnight, Asia/Shanghai); a batch check holds at most a
  configured number of items (413 beyond). Many distinct master ids looked up one by one in a short
  time block the key (403) until the hub's operator unblocks it (`hub api-key unblock`). A NUL character anywhere answers 400.
* **Releases**: `GET /v1/releases/{n}` is what release n was made of (model, rules and code checksums,
  the source batches); any department's key may read it. A master id merged away answers with the
  person of the current release it was merged into (`redirected_from`).
* **Audit**: every request, refused ones too, is logged in `audit.access_log` (key, department,
  path, purpose code, counts, the master ids returned, status; a hash chain over the rows) — never an
  ID number or a name. A change (a steward decision) is logged in its own transaction: if the row
  cannot be written, nothing changes.
"""


async def _http_error(request: Request, exc: StarletteHTTPException):
    from hub.workbench import pages

    if pages.is_workbench(request):  # the workbench answers with a page
        return pages.http_error(request, exc)
    body = NOT_FOUND if exc.status_code == 404 else {"detail": exc.detail}
    return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def _loc(loc) -> list:
    # a field name the caller made up could be anything (an ID number used as a key): keep only plain names
    return [p if isinstance(p, int) or _FIELD_NAME.fullmatch(str(p)) else "<field>" for p in loc]


async def _invalid_request(request: Request, exc: RequestValidationError):
    # pydantic would echo the input (an ID number, a name): keep where and what, never the value
    from hub.workbench import pages

    if pages.is_workbench(request):  # the workbench answers with a page
        return pages.invalid_input(request, [{"loc": _loc(e.get("loc", ()))} for e in exc.errors()])
    errors = []
    for e in exc.errors():
        msg, kind = e.get("msg", ""), e.get("type", "")
        if kind == "extra_forbidden":  # a field the route does not take: say what it takes, in a sentence
            msg = UNEXPECTED_FIELD.get(request.url.path, UNEXPECTED_FIELD_ELSEWHERE)
        errors.append({"loc": _loc(e.get("loc", ())), "msg": msg, "type": kind})
    return JSONResponse({"detail": errors}, 422)


async def _views_missing(request: Request, exc: DepartmentViewsMissing):
    # the grants were not applied (or not since the sharing changed): the operator's fix, not the caller's
    return JSONResponse({"detail": "service unavailable: the department's views are missing in the warehouse;"
                                   " the hub's operator must run `hub grants apply`"}, 503)


def create_app(engine: sa.Engine | None = None, *,
               sharing: Mapping[str, DepartmentSharing] | str | Path | None = None,
               rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
               max_batch: int = DEFAULT_MAX_BATCH, quotas: Quotas | None = DEFAULT_QUOTAS) -> FastAPI:
    """The read API over ``engine`` (default: the hub's warehouse).

    ``sharing``: the per-department field classes (default ``warehouse/sharing.yaml``, or a path to
    another file); ``rate_limit``: a token bucket per key (None: no limit); ``max_batch``: the most
    items a batch check may hold; ``quotas``: the daily quotas, sweep detection and bad-key throttling
    shared by every API process (:class:`Quotas`; None: none of them).
    """
    if engine is None:
        from hub import settings

        engine = settings.engine()
    else:
        from hub.api_db import warn_if_superuser

        warn_if_superuser(engine)
    if sharing is None or isinstance(sharing, str | Path):
        sharing = load_sharing(sharing)
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")

    # /docs and /redoc from the files in fastapi-offline's wheel (no CDN); no online validator badge either
    app = FastAPIOffline(
        title="Resident data hub — read API", version="1", description=_DESCRIPTION,
        swagger_ui_parameters={"validatorUrl": None},
        openapi_tags=[{"name": "persons", "description": "the published master person index"},
                      {"name": "reviews", "description": "the review queue (keys with the steward scope)"},
                      {"name": "changes", "description": "the department's change feed after a release"},
                      {"name": "releases", "description": "the published releases and what each was made of"},
                      {"name": "health", "description": "liveness (no key, no data)"}])
    app.state.engine, app.state.sharing, app.state.max_batch = engine, dict(sharing), max_batch
    app.state.buckets = TokenBuckets(rate_limit) if rate_limit else None
    app.state.quotas = quotas
    app.state.max_body = 8192 + 512 * max_batch
    # errors keep the same shapes and never echo the input
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(DepartmentViewsMissing, _views_missing)
    app.middleware("http")(guard_and_log)
    app.middleware("http")(docs_policy)  # /docs, /redoc: the browser may fetch from the hub only
    app.include_router(persons.router)
    app.include_router(probe.router)
    app.include_router(reviews.router)
    app.include_router(releases.router)
    app.include_router(changes.router)
    persons.describe_batch_limit(app, max_batch)
    from hub import workbench

    workbench.mount(app)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, *, engine: sa.Engine | None = None, **options) -> None:
    """Run the read API with uvicorn (``options`` go to :func:`create_app`).

    uvicorn's access log is off: the access log in the warehouse is the access log, and a client that
    put an ID number in a URL would otherwise have it written to the server's log.
    """
    import uvicorn

    uvicorn.run(create_app(engine, **options), host=host, port=port, access_log=False, log_level="info")


__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUOTAS", "Quotas", "RateLimit", "TokenBuckets", "create_app", "serve"]
