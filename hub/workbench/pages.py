"""Rendering the workbench's pages: :func:`page`, the error pages, and the headers every page carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reports.render import CHINA_STANDARD_TIME, render

STATIC = Path(__file__).resolve().parents[2] / "reports" / "static" / "workbench"
PREFIX = "/workbench"

#: the browser may fetch from the hub only: a page that names any other host is refused by the browser itself
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self';"
       " font-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'")
#: every workbench answer: never cached (pages show personal data), never framed by another site, no referrer
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "X-Frame-Options": "SAMEORIGIN"}

#: the navigation: (path, Chinese, English, scope needed or None)
NAVIGATION = (
    ("/workbench/", "首页", "Home", None),
    ("/workbench/reviews", "待审核配对", "Review queue", "steward"),
    ("/workbench/findings", "问题清单", "Findings inbox", None),
    ("/workbench/quality/", "数据质量", "Quality", None),
)


class NotSignedIn(Exception):
    """No live session: the page answers with the sign-in page."""


class Forbidden(Exception):
    """Signed in, but the key's scopes do not give this page."""

    def __init__(self, needed: str, what: str):
        super().__init__(what)
        self.needed, self.what = needed, what


def now_cst() -> dt.datetime:
    return dt.datetime.now(CHINA_STANDARD_TIME)


def page(request: Request, template: str, *, status: int = 200, title: str = "", **context) -> HTMLResponse:
    """Render ``reports/templates/workbench/<template>`` inside the workbench's layout for the signed-in user."""
    user = getattr(request.state, "user", None)
    nav = [(path, zh, en) for path, zh, en, scope in NAVIGATION
           if user is not None and (scope is None or scope in user.scopes)]
    text = render(f"workbench/{template}", user=user, csrf=user.csrf if user else "", nav=nav, title=title,
                  path=request.url.path, generated=now_cst(), **context)
    return HTMLResponse(text, status, headers=HEADERS)


def refusal(request: Request, status: int, zh: str, en: str) -> HTMLResponse:
    """A page saying why the request was refused (Chinese, English beside it)."""
    return page(request, "message.html.j2", status=status, title=zh, zh=zh, en=en)


async def not_signed_in(request: Request, exc: NotSignedIn | None):
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method not in ("GET", "HEAD"):
        return refusal(request, 401, "请先登录", "Sign in first: your session has ended.")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='/')}", 303, headers=HEADERS)


_SCOPE_WORDS = {"steward": "数据管理员（steward）", "auditor": "审计员（auditor）"}


async def _forbidden(request: Request, exc: Forbidden):
    if exc.needed not in _SCOPE_WORDS:  # a form without its session's token: out of date, or not from the hub
        return refusal(request, 403, "表单已过期，请刷新页面后重试",
                       "This form is out of date (you signed in again, or it was not sent from the workbench):"
                       " reload the page and send it again.")
    return refusal(request, 403, f"无权访问：需要{_SCOPE_WORDS[exc.needed]}权限",
                   f"{exc.what} needs a key with the {exc.needed} scope; ask the hub's operator"
                   f" (hub api-key create … --{exc.needed}).")


_STATUS_WORDS = {400: ("请求有误", "Bad request"), 403: ("无权访问", "Forbidden"), 404: ("未找到", "Not found"),
                 405: ("不支持的操作", "Method not allowed"), 409: ("操作被拒绝", "Refused"),
                 413: ("内容过大", "Too large"), 415: ("不支持的内容类型", "Unsupported media type"),
                 422: ("输入有误", "Invalid input"), 429: ("请求过于频繁", "Too many requests")}


def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
    """A workbench path's HTTP error as a page (the read API answers JSON)."""
    zh, en = _STATUS_WORDS.get(exc.status_code, ("出错了", "Error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else ""
    return refusal(request, exc.status_code, zh, f"{en}{': ' + detail if detail else ''}")


def invalid_input(request: Request, errors: list[dict]) -> HTMLResponse:
    """A page for a query or form value the page cannot take: which one and why, never the value sent."""
    fields = ", ".join(sorted({str(e.get("loc", ("?",))[-1]) for e in errors})) or "?"
    return refusal(request, 422, f"输入有误：{fields}", f"Invalid input in {fields}: correct it and try again.")


def is_workbench(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


ERROR_HANDLERS = {NotSignedIn: not_signed_in, Forbidden: _forbidden}
