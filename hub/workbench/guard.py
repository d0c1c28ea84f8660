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
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hub.api import limits
from hub.api.deps import Caller
from hub.api.guard import db_cause, hostile_reason
from hub.api_keys import ApiKey
from hub.workbench.pages import CSP, HEADERS, PREFIX, not_signed_in, refusal
from warehouse.access_log import Access, log_access
from warehouse.workbench_sessions import live_session

log = logging.getLogger("hub.workbench")

#: a folder or file name of the Data Docs (suite, run name, run time, batch): no long digit run (an ID number)
_DOCS_SEGMENT = re.compile(r"^(?!.*\d{15})[A-Za-z0-9_.:+-]{1,100}$")
_MASTER_ID = re.compile(r"M\d{9,12}")
#: the largest form a page takes (a comment, a reason, a list of records)
MAX_FORM = 64 * 1024
#: the paths open before signing in
_OPEN = frozenset({PREFIX + "/login", PREFIX})

_WORDS = frozenset({"workbench", "login", "logout", "reviews", "decision", "masters", "split", "move-out",
                    "findings", "export.xlsx", "acknowledge", "assign", "resolve", "dismiss", "reopen", "quality",
                    "docs", "scorecard", "scorecards", "validations", "expectations", "static", "index.html",
                    "explain", "waterfall.svg"})
_SAFE = re.compile(r"^(?!.*\d{15})(M\d{9,12}|\d{1,10}|F[0-9A-F]{15}|(?=[0-9a-f]*[a-f])[0-9a-f]{12,64}"
                   r"|[a-z_]{1,40}\.html|[A-Za-z0-9_.-]{1,80}\.(?:html|svg|png))$")


def _is_asset(path: str) -> bool:
    return path.startswith(PREFIX + "/quality/docs/") and not path.endswith((".html", "/"))


def safe_path(path: str) -> str:
    """The path for the access log: the workbench's own words, master ids, numbers and ids, and the Data Docs'
    suite and run folders (GX's own names); the rest masked."""
    docs = path.startswith(PREFIX + "/quality/docs/")
    return "/".join(p if not p or p in _WORDS or _SAFE.match(p) or (docs and _DOCS_SEGMENT.match(p)) else "<masked>"
                    for p in path.split("/"))[:300]


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


def _master_id(request: Request) -> str | None:
    """The master id of a master view (``GET /workbench/masters/<id>``): a look-up of one person by id."""
    parts = request.url.path.split("/")
    if request.method == "GET" and len(parts) == 4 and parts[2] == "masters" and _MASTER_ID.fullmatch(parts[3]):
        return parts[3]
    return None


def _admit(request: Request, key: ApiKey) -> tuple[int, str, str] | None:
    """The read API's limits, for a page: the daily quotas, the sweep of master ids (which blocks the key, and
    with it its sessions) and the token bucket of the key. None when the page may be shown, else (status, why
    in Chinese, why in English)."""
    state = request.app.state
    if state.quotas is not None:
        with state.engine.begin() as conn:
            refusal = limits.over_quota(conn, key, state.quotas)
            master_id = _master_id(request)
            if refusal is None and master_id is not None:
                refusal = limits.sweep(conn, key, master_id, state.quotas)
        if refusal is not None:
            if refusal.status == 403:
                return 403, "密钥已被封禁：短时间内逐个查看的人员过多", refusal.detail
            return refusal.status, "已超出今日访问限额（人数或次数）", refusal.detail
    if state.buckets is not None and state.buckets.take(key.key_id):
        return 429, "请求过于频繁，请稍候再试", "too many pages at once; wait a moment"
    return None


def _write(request: Request, access: Access, status: int) -> None:
    state = request.app.state
    with state.engine.begin() as conn:
        if not access.logged:
            log_access(conn, access, status)
        persons = len(set(access.master_ids or ()))
        if persons and state.quotas is not None and access.key_id and status < 400:
            limits.count_persons(conn, access, persons)


def _same_origin(request: Request) -> bool:
    """A form posted from a page of this hub: its Origin (or, without one, its Referer) names this host."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent:
        return True  # browsers send Origin on every cross-site POST; a client without one is not a browser
    if sent == "null":
        return False  # a sandboxed frame or a page that hides where it is: not a page of the hub
    parts = urlsplit(sent)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


async def _refused_post(request: Request) -> HTMLResponse | None:
    """Why a POST to a page cannot be taken (a body of unknown length, oversized, cut off or NUL-bearing), else None."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():  # a browser always says how long a form is; nothing is read blind
        return refusal(request, 411, "提交内容缺少长度（Content-Length）", "a form needs a Content-Length")
    if int(length) > MAX_FORM:
        return refusal(request, 413, "提交内容过大", f"the form is larger than {MAX_FORM // 1024} KB")
    try:
        body = await request.body()  # at most Content-Length bytes: the server refuses a body longer than it says
    except ClientDisconnect:
        return refusal(request, 400, "提交未完成：连接已断开", "the form was not sent whole: the connection closed")
    if b"\x00" in body or b"%00" in body:
        return refusal(request, 400, "提交内容含有空字符（NUL），已拒绝",
                       "the form holds a NUL character, which no field accepts; remove it and send it again")
    return None


async def workbench_guard(request: Request, call_next):
    path = request.url.path
    if not (path == PREFIX or path.startswith(PREFIX + "/")) or path.startswith(PREFIX + "/static/"):
        return await call_next(request)
    access = Access(endpoint=f"{request.method} {safe_path(path)}",
                    client=request.client.host if request.client else None)
    request.state.access = access
    request.state.user = None
    hostile = hostile_reason(request)
    try:
        request.state.user = await run_in_threadpool(_user, request, access)
        refused = None
        if request.state.user is not None and not _is_asset(path) and not hostile:
            refused = await run_in_threadpool(_admit, request, request.state.user.key)
    except Exception as exc:  # noqa: BLE001 — the database is away: say so, without details
        log.error("workbench: session lookup failed: %s", db_cause(exc))
        return HTMLResponse("<p>服务暂不可用 service unavailable</p>", 503, headers=HEADERS)
    if hostile:
        response = refusal(request, 400, "请求含有空字符（NUL），已拒绝", hostile)
    else:
        if refused is not None:
            status, zh, en = refused
            response = refusal(request, status, zh, en)
            if status == 429:
                response.headers["Retry-After"] = "60" if "quota" in en else "2"
        elif request.method == "POST" and not _same_origin(request):  # before the session: say what it is
            response = refusal(request, 403, "表单来自其他网站，已拒绝", "a form sent from another site is refused")
        elif request.state.user is None and path not in _OPEN:
            response = await not_signed_in(request, None)  # nothing of the workbench is shown or named before
        elif request.method == "POST" and (bad := await _refused_post(request)) is not None:
            response = bad
        else:
            response = await call_next(request)
    if _is_asset(path) and response.status_code == 200:
        access.logged = True  # a Data Docs page's script, style or font: the page that named it is the view logged
    if getattr(request.state, "unlogged", False):
        access.logged = True  # a throttled address: counted in audit.api_quota, not one row each
    try:
        await run_in_threadpool(_write, request, access, response.status_code)
    except Exception as exc:  # noqa: BLE001 — nothing is shown that is not logged
        log.error("workbench: access log write failed: %s; nothing was shown (503)", db_cause(exc))
        return HTMLResponse("<p>服务暂不可用：访问记录无法写入 service unavailable: the access could not be logged</p>",
                            503, headers=HEADERS)
    response.headers.setdefault("Content-Security-Policy", CSP)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
