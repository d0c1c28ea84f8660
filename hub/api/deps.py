"""What the routes reach through dependencies: the caller (its key and what its department may see),
the declared purpose, the warehouse, and :func:`log_in` for a route that changes something.

The guard every ``/v1`` request goes through first (key, limits, access log) is :mod:`hub.api.guard`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from hub.api.models import PURPOSE_MAX
from hub.api_keys import ApiKey
from warehouse.access_log import log_access
from warehouse.sharing import CONDITIONAL, DepartmentSharing

NOT_FOUND = {"detail": "not found"}
UNAUTHORIZED = {"detail": "missing, unknown or revoked API key"}
#: the refusals every /v1 route may answer, for the OpenAPI description
ERRORS = {
    401: {"description": "missing, unknown or revoked API key", "content": {"application/json": {"example": UNAUTHORIZED}}},
    404: {"description": "not found (or not for this department: the two look the same)",
          "content": {"application/json": {"example": NOT_FOUND}}},
    429: {"description": "rate limit exceeded; retry after `Retry-After` seconds"},
}


@dataclass(frozen=True)
class Caller:
    """The verified key of a request and what its department may see."""
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


# ---------------------------------------------------------------------------------------------- small parts

def _header_text(value: str | None) -> str | None:
    """A header value as text: UTF-8 sent raw or percent-encoded (headers arrive as latin-1)."""
    if value is None:
        return None
    try:
        value = value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return urllib.parse.unquote(value)


def declare_purpose(request: Request, body_purpose: str | None, header: str | None) -> str | None:
    """The request's declared purpose (body first, then header), noted for the access log."""
    purpose = (body_purpose or _header_text(header) or "").strip()[:PURPOSE_MAX] or None
    request.state.access.purpose = purpose
    return purpose


def not_found() -> HTTPException:
    return HTTPException(404, NOT_FOUND["detail"])


def purpose_header():
    """The optional ``X-Purpose`` header parameter of a route."""
    return Header(alias="X-Purpose", description="declared purpose (UTF-8, percent-encoded); needed for 有条件 fields")


# ---------------------------------------------------------------------------------------------- dependencies

_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="the department's API key (`hub api-key create`)")


def caller(request: Request, _key: Annotated[str | None, Security(_API_KEY)] = None) -> Caller:
    """The caller the guard verified (the security parameter puts the key in the OpenAPI description)."""
    return request.state.caller


def steward(c: Annotated[Caller, Depends(caller)]) -> Caller:
    """A caller whose key has the steward scope; for any other the review queue does not exist."""
    if "steward" not in c.key.scopes:
        raise not_found()
    return c


def warehouse(request: Request) -> sa.Engine:
    """The engine of the warehouse the API serves."""
    return request.app.state.engine


def log_in(conn: sa.Connection, request: Request, status: int = 200) -> None:
    """Write the request's access-log row in ``conn``'s transaction (the one making the change): if the row
    cannot be written, the change is rolled back with it. The guard then writes no second row."""
    access = request.state.access
    log_access(conn, access, status)
    access.logged = True


CallerDep = Annotated[Caller, Depends(caller)]
StewardDep = Annotated[Caller, Depends(steward)]
Warehouse = Annotated[sa.Engine, Depends(warehouse)]
