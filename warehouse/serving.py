"""What the read API reads and writes: the published index of the current release and the access log.

Only the columns asked for are read: what a department may not see never leaves the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from warehouse.releases import PUBLISHED_COLUMNS


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


def ping(conn: sa.Connection) -> None:
    """Raises when the warehouse does not answer."""
    conn.execute(sa.text("SELECT 1"))


def current_release_no(conn: sa.Connection) -> int | None:
    """The number of the release in force, or None before the first publish."""
    return conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()


def _columns(fields: Iterable[str]) -> str:
    columns = tuple(dict.fromkeys(("master_id", *fields)))
    unknown = [c for c in columns if c not in PUBLISHED_COLUMNS]
    if unknown:  # the names go into the statement: only published columns may
        raise ValueError(f"not a published field: {', '.join(unknown)}")
    return ", ".join(columns)


def persons_by_master_id(conn: sa.Connection, master_id: str, fields: Sequence[str]) -> list[dict]:
    """The current release's person with this master id (at most one), cut to ``fields`` and master_id."""
    rows = conn.execute(sa.text(f"SELECT {_columns(fields)} FROM publish.master_person_current"
                                " WHERE master_id = :m ORDER BY master_id"), {"m": master_id}).mappings().all()
    return [dict(r) for r in rows]


def persons_by_id_numbers(conn: sa.Connection, id_numbers: Sequence[str], fields: Sequence[str]) -> list[dict]:
    """The current release's persons holding any of these (standardized) ID numbers, by master id."""
    rows = conn.execute(sa.text(f"SELECT {_columns(fields)} FROM publish.master_person_current"
                                " WHERE id_number = ANY(:ids) ORDER BY master_id"),
                        {"ids": list(id_numbers)}).mappings().all()
    return [dict(r) for r in rows]


def enrolments(conn: sa.Connection, master_ids: Sequence[str], *,
               department: str | None = None) -> dict[str, list[dict]]:
    """master id → its enrolments in the current release (only ``department``'s programmes when given)."""
    if not master_ids:
        return {}
    rows = conn.execute(sa.text(
        "SELECT master_id, source, source_record_id, department, program, status_raw"
        " FROM publish.enrolment_current WHERE master_id = ANY(:ids)"
        + (" AND department = :d" if department is not None else "") + " ORDER BY source, source_record_id"),
        {"ids": list(master_ids), "d": department}).mappings().all()
    out: dict[str, list[dict]] = {}
    for r in rows:
        r = dict(r)
        out.setdefault(r.pop("master_id"), []).append(r)
    return out


def log_access(conn: sa.Connection, access: Access, status: int) -> None:
    """Append one access to ``audit.access_log`` (caller's transaction)."""
    conn.execute(sa.text(
        "INSERT INTO audit.access_log (key_id, department, endpoint, purpose, requested, results, status,"
        " client) VALUES (:k, :d, :e, :p, :q, :r, :s, :c)"),
        {"k": access.key_id, "d": access.department, "e": access.endpoint, "p": access.purpose,
         "q": access.requested, "r": access.results, "s": status, "c": access.client})
