"""Signing in and out of the workbench, and who the signed-in user is (the dependencies of every page).

The sign-in form takes a department's API key. A wrong key, a revoked one and an unknown one answer alike;
attempts from one address are throttled with the read API's bad-key throttle. A blocked key is told why. The
session cookie is ``HttpOnly`` and ``SameSite=Strict`` and lives under ``/workbench`` only; forms post back the
session's own token (:func:`checked_form`), so another site's page cannot make a signed-in browser decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from hub.api import limits
from hub.api.deps import Caller
from hub.api_keys import ApiKey, KeyBlocked, verify_key
from hub.workbench.pages import HEADERS, PREFIX, Forbidden, NotSignedIn, page
from warehouse.workbench_sessions import SESSION_HOURS, end_session, open_session

COOKIE = "hub_workbench"
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class User:
    """The signed-in user: the key's department and scopes, what the department may see, the forms' token."""
    caller: Caller
    csrf: str

    @property
    def key(self) -> ApiKey:
        return self.caller.key

    @property
    def department(self) -> str:
        return self.caller.key.department

    @property
    def scopes(self) -> frozenset[str]:
        return self.caller.key.scopes

    @property
    def is_steward(self) -> bool:
        return "steward" in self.scopes

    @property
    def is_auditor(self) -> bool:
        return "auditor" in self.scopes

    @property
    def department_title(self) -> str:
        sharing = self.caller.sharing
        return getattr(sharing, "title", None) or self.department


def signed_in(request: Request) -> User:
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotSignedIn()
    return user


def steward(user: Annotated[User, Depends(signed_in)]) -> User:
    if not user.is_steward:
        raise Forbidden("steward", "The review queue and the decisions on masters")
    return user


def auditor(user: Annotated[User, Depends(signed_in)]) -> User:
    if not user.is_auditor:
        raise Forbidden("auditor", "Working the findings inbox")
    return user


def checked_form(request: Request, user: Annotated[User, Depends(signed_in)],
                 csrf: Annotated[str, Form(max_length=100)] = "") -> User:
    """The signed-in user of a form that posted back its session's token; any other post is refused (403)."""
    import hmac

    if not csrf or not hmac.compare_digest(csrf, user.csrf):
        raise Forbidden("session", "This form is out of date or was not sent from the workbench: reload the page")
    return user


UserDep = Annotated[User, Depends(signed_in)]
StewardDep = Annotated[User, Depends(steward)]
AuditorDep = Annotated[User, Depends(auditor)]
FormUser = Annotated[User, Depends(checked_form)]


def _safe_next(target: str | None) -> str:
    # only a workbench path of this hub: never an open redirect to another site
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


@router.get("/workbench", include_in_schema=False)
def _bare():
    return RedirectResponse(PREFIX + "/", 308, headers=HEADERS)


@router.get("/workbench/login")
def login_form(request: Request, next: str | None = None):
    return page(request, "login.html.j2", title="登录 Sign in", next=_safe_next(next), error=None)


def _sign_in(request: Request, key_text: str) -> tuple[str | None, str | None]:
    """(cookie token, None) when the key opens a session, else (None, why) — the same words for any bad key."""
    state, access = request.app.state, request.state.access
    with state.engine.begin() as conn:
        throttled = limits.address_throttled(conn, access.client, state.quotas)
        if throttled is not None:  # checked before the key: a right key guessed at last opens nothing either
            request.state.unlogged = True
            return None, "本地址错误尝试过多，请一分钟后再试 " + throttled.detail
        try:
            key = verify_key(conn, key_text.strip())
        except KeyBlocked as blocked:
            access.key_id, access.department = blocked.key_id, blocked.department
            return None, "密钥已被封禁 " + str(blocked)
        if key is None:
            refused = limits.refuse_unknown_key(conn, access.client, state.quotas)
            if refused.status == 429:
                request.state.unlogged = True
                return None, "本地址错误尝试过多，请一分钟后再试 " + refused.detail
            return None, "密钥无效或已撤销 unknown or revoked key"
        access.key_id, access.department = key.key_id, key.department
        end_session(conn, request.cookies.get(COOKIE))  # one session per browser: a sign-in ends the one it had
        token, _ = open_session(conn, key.key_id, access.client)
    return token, None


@router.post("/workbench/login")
async def login(request: Request, key: Annotated[str, Form(max_length=200)] = "",
                next: Annotated[str, Form(max_length=500)] = ""):
    token, why = await run_in_threadpool(_sign_in, request, key)
    if token is None:
        status = 429 if getattr(request.state, "unlogged", False) else 401
        answer = page(request, "login.html.j2", status=status, title="登录 Sign in", next=_safe_next(next), error=why)
        if status == 429:
            answer.headers["Retry-After"] = "60"
        return answer
    response = RedirectResponse(_safe_next(next), 303, headers=HEADERS)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_HOURS * 3600), path=PREFIX, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/workbench/logout")
def logout(request: Request, user: FormUser):
    with request.app.state.engine.begin() as conn:
        end_session(conn, request.cookies.get(COOKIE))
    response = RedirectResponse(PREFIX + "/login", 303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response
