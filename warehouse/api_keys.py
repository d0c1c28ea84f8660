"""The stored API keys of the read API (``audit.api_key``): only a hash of each key, never the secret."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa


def insert_key(conn: sa.Connection, *, key_id: str, department: str, key_hash: str, label: str,
               scopes: Sequence[str]) -> None:
    """Store a new key (caller's transaction)."""
    conn.execute(sa.text("INSERT INTO audit.api_key (key_id, department, key_hash, label, scopes)"
                         " VALUES (:k, :d, :h, :l, :s)"),
                 {"k": key_id, "d": department, "h": key_hash, "l": label, "s": list(scopes)})


def active_key_by_hash(conn: sa.Connection, key_hash: str) -> sa.Row | None:
    """The unrevoked key with this hash: key_id, department, key_hash, label, scopes."""
    return conn.execute(sa.text(
        "SELECT key_id, department, key_hash, label, scopes FROM audit.api_key"
        " WHERE key_hash = :h AND revoked_at IS NULL"), {"h": key_hash}).first()


def active_key(conn: sa.Connection, key_id: str) -> sa.Row | None:
    """The unrevoked key with this id: department, label, scopes."""
    return conn.execute(sa.text(
        "SELECT department, label, scopes FROM audit.api_key WHERE key_id = :k AND revoked_at IS NULL"),
        {"k": key_id}).first()


def mark_revoked(conn: sa.Connection, key_id: str) -> dict | None:
    """Revoke an unrevoked key now: its key_id, department and revoked_at, or None when there is none."""
    row = conn.execute(sa.text(
        "UPDATE audit.api_key SET revoked_at = now() WHERE key_id = :k AND revoked_at IS NULL"
        " RETURNING key_id, department, revoked_at"), {"k": key_id}).mappings().first()
    return dict(row) if row is not None else None


def key_revocation(conn: sa.Connection, key_id: str) -> sa.Row | None:
    """The key's ``revoked_at`` (in a row; None when there is no such key)."""
    return conn.execute(sa.text("SELECT revoked_at FROM audit.api_key WHERE key_id = :k"), {"k": key_id}).first()


def key_rows(conn: sa.Connection, *, include_revoked: bool = False) -> list[dict]:
    """Keys with department, label, scopes and dates (never a hash), by department and age."""
    rows = conn.execute(sa.text(
        "SELECT key_id, department, label, scopes, created_at, revoked_at FROM audit.api_key"
        + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY department, created_at, key_id"
    )).mappings().all()
    return [dict(r) for r in rows]
