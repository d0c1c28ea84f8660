"""Sign-in sessions of the workbench (``audit.workbench_session``).

A session is opened with a department's API key. The browser holds a random token in a cookie; the table
keeps only its SHA-256, the key it was opened with and a second token every form must post back (a page of
another site cannot read it, so it cannot forge a decision). A session ends when its holder signs out, when
it expires, or at once when its key is revoked or blocked (checked on every request).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from warehouse.tables import audit_api_key, audit_workbench_session

#: how long a sign-in lasts (a working day)
SESSION_HOURS = 9


@dataclass(frozen=True)
class SessionRow:
    """A live session and its key (never the key's secret or hash)."""
    session_hash: str
    key_id: str
    department: str
    label: str
    scopes: frozenset[str]
    csrf_token: str
    blocked: bool
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(conn: sa.Connection, key_id: str, client: str | None, *, hours: float = SESSION_HOURS) -> tuple[str, str]:
    """Open a session for ``key_id``: returns (the cookie's token, the forms' token). Only a hash is stored."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(sa.insert(audit_workbench_session).values(
        session_hash=token_hash(token), key_id=key_id, csrf_token=csrf, client=(client or None),
        created_at=sa.func.now(), expires_at=sa.func.now() + sa.text(f"interval '{float(hours)} hours'")))
    return token, csrf


def live_session(conn: sa.Connection, token: str | None) -> SessionRow | None:
    """The live session of ``token`` with its key, or None (unknown, ended, expired, or its key revoked)."""
    if not token or len(token) > 100:
        return None
    s, k = audit_workbench_session, audit_api_key
    row = conn.execute(
        sa.select(s.c.session_hash, s.c.key_id, k.c.department, k.c.label, k.c.scopes, s.c.csrf_token,
                  k.c.blocked_at, s.c.expires_at)
        .join(k, k.c.key_id == s.c.key_id)
        .where(s.c.session_hash == token_hash(token), s.c.ended_at.is_(None), s.c.expires_at > sa.func.now(),
               k.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    return SessionRow(row.session_hash, row.key_id, row.department, row.label or "", frozenset(row.scopes or ()),
                      row.csrf_token, row.blocked_at is not None, row.expires_at)


def end_session(conn: sa.Connection, token: str | None) -> bool:
    """End the session of ``token`` (sign-out); False when there was none to end."""
    if not token:
        return False
    s = audit_workbench_session
    return conn.execute(sa.update(s).where(s.c.session_hash == token_hash(token), s.c.ended_at.is_(None))
                        .values(ended_at=sa.func.now())).rowcount > 0
