"""The access log of the read API (``audit.access_log``): who asked what, for which purpose, and how it
was answered. Never an ID number or a name."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from warehouse import tables


@dataclass
class Access:
    """One row of ``audit.access_log``: who asked what, for which purpose, and how it was answered."""
    endpoint: str
    client: str | None
    key_id: str | None = None
    department: str | None = None
    purpose: str | None = None
    requested: int = 0
    results: int = 0
    logged: bool = False  # written already, in the transaction of the change the request made


def log_access(conn: sa.Connection, access: Access, status: int) -> None:
    """Append one access to the access log (caller's transaction)."""
    conn.execute(sa.insert(tables.audit_access_log).values(
        key_id=access.key_id, department=access.department, endpoint=access.endpoint, purpose=access.purpose,
        requested=access.requested, results=access.results, status=status, client=access.client))
