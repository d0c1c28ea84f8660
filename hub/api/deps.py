"""What the routes reach through dependencies: the caller (its key and what its department may see),
the purpose it names, the warehouse, and :func:`log_in` for a route that changes something.

A purpose is a code of the department's catalogue (``warehouse/purposes.yaml``). It releases exactly the
有条件 fields it lists while it is in force; anything else sent as a purpose (free text, ``-``, an
unknown, expired or other department's code) releases none, and the answer is the one without a purpose.
The access log keeps the code, or a fixed marker — never the text sent.

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
from warehouse.purposes import EXPIRED_MARK, NOT_A_PURPOSE_CODE
from warehouse.sharing import CONDITIONAL, DepartmentSharing

NOT_FOUND = {"detail": "not found"}
UNAUTHORIZED = {"detail": "missing, unknown or revoked API key"}
#: the answer of a refusal: what is wrong and what to do, in words
_REFUSAL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
#: a 422: the fields that do not validate (where and what, never the value sent), or, in words, a value the
#: warehouse cannot use
_INVALID = {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
    {"type": "string"},
    {"type": "array", "items": {"type": "object", "required": ["loc", "msg", "type"], "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"}, "type": {"type": "string"}}}},
]}}}


def _refusal(description: str, schema: dict = _REFUSAL, example: dict | None = None) -> dict:
    content = {"schema": schema, **({"example": example} if example else {})}
    return {"description": description, "content": {"application/json": content}}


#: the refusals every /v1 route may answer, for the OpenAPI description
ERRORS = {
    400: _refusal("a bad request: a NUL character (\\u0000) in the path, the query, a header or the body;"
                  " remove it and send the request again"),
    401: _refusal("missing, unknown or revoked API key", example=UNAUTHORIZED),
    403: _refusal("the API key is blocked (it looked up too many different persons in a short time); a data"
                  " steward of the hub can lift the block"),
    404: _refusal("not found (or not for this department: the two look the same)", example=NOT_FOUND),
    422: _refusal("invalid input: the fields that do not validate (where and what, never the value sent), or a"
                  " value the warehouse cannot use (a number out of range, say); correct it and send the request"
                  " again", schema=_INVALID),
    429: _refusal("rate limit exceeded; retry after `Retry-After` seconds"),
}


@dataclass(frozen=True)
class Caller:
    """The verified key of a request and what its department may see."""
    key: ApiKey
    sharing: DepartmentSharing | None

    def released(self, purpose: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(fields released for this request, 有条件 fields withheld): the 无条件 fields and the 有条件 fields
        the purpose code ``purpose`` unlocks — none unless it is an approved purpose of the caller's
        department in force today."""
        if self.sharing is None:
            return (), ()
        unlocked = set(self.sharing.unlocked(purpose))
        visible = self.sharing.visible()
        return (tuple(f for f in visible if self.sharing.classes[f] != CONDITIONAL or f in unlocked),
                tuple(f for f in visible if self.sharing.classes[f] == CONDITIONAL and f not in unlocked))

    def purpose_for_log(self, purpose: str | None) -> str | None:
        """What the access log keeps of a declared purpose: the code of an approved purpose of the caller's
        department (``(expired) <code>`` once expired), else a fixed marker; None when none was sent."""
        return logged_purpose(self.sharing, purpose)

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


def logged_purpose(sharing: DepartmentSharing | None, purpose: str | None) -> str | None:
    """The access log's purpose for ``purpose`` sent by a caller of ``sharing``'s department (None: not known
    yet): an approved code as it is, ``(expired) <code>``, or :data:`NOT_A_PURPOSE_CODE` for anything else."""
    if purpose is None:
        return None
    found = sharing.purpose(purpose) if sharing is not None else None
    if found is None:
        return NOT_A_PURPOSE_CODE
    return found.code if found.in_force() else EXPIRED_MARK + found.code


def declare_purpose(request: Request, body_purpose: str | None, header: str | None) -> str | None:
    """The purpose the request names (body first, then header), as sent but trimmed; the access log notes
    only its code or a marker (:func:`logged_purpose`)."""
    purpose = ((body_purpose or "").strip() or (_header_text(header) or "").strip())[:PURPOSE_MAX] or None
    c = getattr(request.state, "caller", None)
    request.state.access.purpose = logged_purpose(c.sharing if c is not None else None, purpose)
    return purpose


def not_found() -> HTTPException:
    return HTTPException(404, NOT_FOUND["detail"])


def purpose_header():
    """The optional ``X-Purpose`` header parameter of a route."""
    return Header(alias="X-Purpose", description="the code of an approved purpose of the department (see"
                  " `GET /v1/purposes`), e.g. `mz-dibao-review`; releases the 有条件 fields that purpose lists."
                  " Anything else releases no 有条件 field")


# ---------------------------------------------------------------------------------------------- dependencies

_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="the department's API key (`hub api-key create`)")


def caller(request: Request, _key: Annotated[str | None, Security(_API_KEY)] = None) -> Caller:
    """The caller the guard verified (the security parameter puts the key in the OpenAPI description); the
    access log's purpose is settled now that the department is known."""
    c = request.state.caller
    header = request.headers.get("x-purpose")
    request.state.access.purpose = c.purpose_for_log((_header_text(header) or "").strip()[:PURPOSE_MAX] or None)
    return c


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
