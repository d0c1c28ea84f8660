"""The workbench's guard (a middleware): who is signed in, and the access-log row of every page.

For every request under ``/workbench/`` but its static files: the session cookie is looked up
(:mod:`warehouse.workbench_sessions`; a revoked or blocked key has no session), the user is put on the
request (``request.state.user``, None when nobody is signed in), and once the answer is known its
access-log row is written — page views, sign-ins (refused ones too), decisions (those write their row in
their own transaction) — before the answer leaves. Nothing is shown that is not logged: when the row cannot
be written the answer is a 503 page instead. Every answer carries :data:`hub.workbench.pages.CSP` unless the
page set its own.
"""

from __future__ import annotations

import logging
import re

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import Caller
from hub.api.guard import _cause, _hostile
from hub.api_keys import ApiKey
from hub.workbench.pages import CSP, HEADERS, PREFIX, not_signed_in
from warehouse.access_log import Access, log_access
from warehouse.workbench_sessions import live_session

log = logging.getLogger("hub.workbench")

#: the paths open before signing in
_OPEN = frozenset({PREFIX + "/login", PREFIX})

_WORDS = frozenset({"workbench", "login", "logout", "reviews", "decision", "masters", "split", "move-out",
                    "findings", "export.xlsx", "acknowledge", "assign", "resolve", "dismiss", "reopen", "quality",
                    "docs", "scorecard", "scorecards", "validations", "expectations", "static", "index.html",
                    "explain", "waterfall.svg"})
_SAFE = re.compile(r"^(M\d{9,12}|\d{1,10}|[0-9a-f]{12,64}|[a-z_]{1,40}\.html|[A-Za-z0-9_.-]{1,80}\.(?:html|svg|png))$")


def _is_asset(path: str) -> bool:
    return path.startswith(PREFIX + "/quality/docs/") and not path.endswith((".html", "/"))


def safe_path(path: str) -> str:
    """The path for the access log: the workbench's own words, master ids, numbers and ids; the rest masked."""
    return "/".join(p if not p or p in _WORDS or _SAFE.match(p) else "<masked>" for p in path.split("/"))[:300]


def _user(request: Request, access: Access):
    from hub.workbench.session import COOKIE, User

    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with request.app.state.engine.connect() as conn:
        row = live_session(conn, token)
    if row is None or row.blocked:
        return None
    access.key_id, access.department = row.key_id, row.department
    key = ApiKey(row.key_id, row.department, row.label, row.scopes)
    return User(Caller(key, request.app.state.sharing.get(row.department)), row.csrf_token)


def _write(request: Request, access: Access, status: int) -> None:
    if access.logged:
        return
    with request.app.state.engine.begin() as conn:
        log_access(conn, access, status)


async def workbench_guard(request: Request, call_next):
    path = request.url.path
    if not (path == PREFIX or path.startswith(PREFIX + "/")) or path.startswith(PREFIX + "/static/"):
        return await call_next(request)
    access = Access(endpoint=f"{request.method} {safe_path(path)}",
                    client=request.client.host if request.client else None)
    request.state.access = access
    hostile = _hostile(request)
    if hostile:
        response = HTMLResponse(f"<p>{hostile}</p>", 400, headers=HEADERS)
    else:
        try:
            request.state.user = await run_in_threadpool(_user, request, access)
        except Exception as exc:  # noqa: BLE001 — the database is away: say so, without details
            log.error("workbench: session lookup failed: %s", _cause(exc))
            return HTMLResponse("<p>服务暂不可用 service unavailable</p>", 503, headers=HEADERS)
        if request.state.user is None and path not in _OPEN:
            response = await not_signed_in(request, None)  # nothing of the workbench is shown or named before
        else:
            response = await call_next(request)
    if _is_asset(path) and response.status_code == 200:
        access.logged = True  # a Data Docs page's script, style or font: the page that named it is the view logged
    try:
        await run_in_threadpool(_write, request, access, response.status_code)
    except Exception as exc:  # noqa: BLE001 — nothing is shown that is not logged
        log.error("workbench: access log write failed: %s; nothing was shown (503)", _cause(exc))
        return HTMLResponse("<p>服务暂不可用：访问记录无法写入 service unavailable: the access could not be logged</p>",
                            503, headers=HEADERS)
    response.headers.setdefault("Content-Security-Policy", CSP)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
