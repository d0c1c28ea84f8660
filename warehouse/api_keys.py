"""The stored API keys of the read API (``audit.api_key``): only a hash of each key, never the secret."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from warehouse.tables import audit_api_key as api_key


def insert_key(conn: sa.Connection, *, key_id: str, department: str, key_hash: str, label: str,
               scopes: Sequence[str]) -> None:
    """Store a new key (caller's transaction)."""
    conn.execute(sa.insert(api_key).values(key_id=key_id, department=department, key_hash=key_hash, label=label,
                                           scopes=list(scopes)))


def active_key_by_hash(conn: sa.Connection, key_hash: str) -> sa.Row | None:
    """The unrevoked key with this hash: key_id, department, key_hash, label, scopes, blocked_at,
    blocked_reason."""
    c = api_key.c
    return conn.execute(sa.select(c.key_id, c.department, c.key_hash, c.label, c.scopes, c.blocked_at,
                                  c.blocked_reason)
                        .where(c.key_hash == key_hash, c.revoked_at.is_(None))).first()


def active_key(conn: sa.Connection, key_id: str) -> sa.Row | None:
    """The unrevoked key with this id: department, label, scopes, blocked_at."""
    c = api_key.c
    return conn.execute(sa.select(c.department, c.label, c.scopes, c.blocked_at)
                        .where(c.key_id == key_id, c.revoked_at.is_(None))).first()


def mark_revoked(conn: sa.Connection, key_id: str) -> dict | None:
    """Revoke an unrevoked key now: its key_id, department and revoked_at, or None when there is none."""
    c = api_key.c
    row = conn.execute(sa.update(api_key).where(c.key_id == key_id, c.revoked_at.is_(None))
                       .values(revoked_at=sa.func.now())
                       .returning(c.key_id, c.department, c.revoked_at)).mappings().first()
    return dict(row) if row is not None else None


def key_revocation(conn: sa.Connection, key_id: str) -> sa.Row | None:
    """The key's ``revoked_at`` (in a row; None when there is no such key)."""
    return conn.execute(sa.select(api_key.c.revoked_at).where(api_key.c.key_id == key_id)).first()


def key_rows(conn: sa.Connection, *, include_revoked: bool = False) -> list[dict]:
    """Keys with department, label, scopes and dates (never a hash), by department and age."""
    c = api_key.c
    query = (sa.select(c.key_id, c.department, c.label, c.scopes, c.created_at, c.revoked_at, c.blocked_at,
                       c.blocked_reason)
             .order_by(c.department, c.created_at, c.key_id))
    if not include_revoked:
        query = query.where(c.revoked_at.is_(None))
    return [dict(r) for r in conn.execute(query).mappings()]
