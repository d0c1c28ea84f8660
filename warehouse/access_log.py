"""The access log of the read API (``audit.access_log``): who asked what, for which purpose, which persons
the answer held, and how it was answered. Never an ID number or a name.

The log is tamper-evident. Rows are append-only (a trigger refuses UPDATE and DELETE), and each row
carries ``row_hash`` = SHA-256 over the previous row's ``row_hash`` (``prev_hash``) and the row's own
content as canonical JSON: a row edited or removed behind the trigger's back (a superuser disabling it)
breaks the chain, and :func:`verify_chain` names the first row that no longer fits. Writers from several
API processes take one transaction-level advisory lock before reading the last hash, so the chain never
forks.

``purpose`` holds an approved purpose code of the caller's department, ``(expired) <code>`` for one that
has expired, or ``(not a purpose code)`` for anything else sent as a purpose — never the text sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from warehouse import tables

#: the advisory lock every writer of the access log holds while it appends (until its transaction ends)
ACCESS_LOG_LOCK = "hub:access_log"
#: the columns a row's hash covers, in the canonical JSON (keys sorted)
HASHED = ("access_id", "accessed_at", "key_id", "department", "endpoint", "purpose", "requested", "results",
          "status", "client", "master_ids")


@dataclass
class Access:
    """One row of ``audit.access_log``: who asked what, for which purpose, and how it was answered."""
    endpoint: str
    client: str | None
    key_id: str | None = None
    department: str | None = None
    purpose: str | None = None  # a purpose code of the department, or a fixed marker: never the text sent
    requested: int = 0
    results: int = 0
    master_ids: list[str] = field(default_factory=list)  # the persons the answer returned
    logged: bool = False  # written already, in the transaction of the change the request made


def _canonical_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def row_hash(prev_hash: str | None, row: dict) -> str:
    """SHA-256 (hex) over the previous row's hash and the row's content as canonical JSON."""
    content = {k: row[k] for k in HASHED}
    content["accessed_at"] = _canonical_time(content["accessed_at"])
    content["master_ids"] = list(content["master_ids"] or [])
    text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(((prev_hash or "") + text).encode("utf-8")).hexdigest()


def log_access(conn: sa.Connection, access: Access, status: int) -> None:
    """Append one access to the access log, chained to the row before it (caller's transaction).

    The advisory lock is held until the caller's transaction ends: the next writer reads this row's hash
    only once it is committed (or rolled back)."""
    log = tables.audit_access_log
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": ACCESS_LOG_LOCK})
    prev = conn.execute(sa.select(log.c.row_hash).order_by(log.c.access_id.desc()).limit(1)).scalar()
    access_id, accessed_at = conn.execute(sa.text(
        "SELECT nextval(pg_get_serial_sequence('audit.access_log', 'access_id')), clock_timestamp()")).one()
    row = dict(access_id=access_id, accessed_at=accessed_at, key_id=access.key_id, department=access.department,
               endpoint=access.endpoint, purpose=access.purpose, requested=access.requested,
               results=access.results, status=status, client=access.client,
               master_ids=list(dict.fromkeys(access.master_ids)))
    conn.execute(sa.insert(log).values(**row, prev_hash=prev, row_hash=row_hash(prev, row)))


def verify_chain(conn: sa.Connection) -> tuple[bool, int | None, int]:
    """Check the hash chain of the whole access log, in order of ``access_id``:
    ``(ok, the first access id that does not fit or None, rows checked)``.

    A row does not fit when its ``prev_hash`` is not the previous row's ``row_hash`` (a row was removed or
    inserted) or its ``row_hash`` is not the hash of its content (a row was changed). Rows written before
    the chain existed (no ``row_hash``, all before the first chained row) are skipped."""
    log = tables.audit_access_log
    query = sa.select(*(log.c[k] for k in HASHED), log.c.prev_hash, log.c.row_hash).order_by(log.c.access_id)
    checked, chained, prev = 0, False, None
    for row in conn.execution_options(yield_per=5000).execute(query).mappings():
        if not chained and row["row_hash"] is None and row["prev_hash"] is None:
            prev = None
            continue  # before the chain began
        chained = True
        checked += 1
        if row["prev_hash"] != prev or row["row_hash"] != row_hash(row["prev_hash"], dict(row)):
            return False, row["access_id"], checked
        prev = row["row_hash"]
    return True, None, checked


# ---------------------------------------------------------------------------------------------- the monthly report

def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """The first day of ``YYYY-MM`` and of the month after; ValueError naming the expected form."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month {month!r}: give it as YYYY-MM, e.g. 2026-11") from None
    nxt = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, nxt


def access_report(conn: sa.Connection, department: str, month: str, *, tz: str = "Asia/Shanghai") -> dict:
    """The department's use of the read API in ``month`` (YYYY-MM, local time ``tz``): per key and purpose
    the requests, the refused ones (status 400 and above), the answers with persons and the distinct
    persons returned; and the month's totals."""
    first, nxt = month_bounds(month)
    rows = conn.execute(sa.text(
        "SELECT l.key_id, k.label, l.purpose, count(*) AS requests,"
        "       count(*) FILTER (WHERE l.status >= 400) AS refused,"
        "       count(*) FILTER (WHERE cardinality(l.master_ids) > 0) AS answers_with_persons,"
        "       (SELECT count(DISTINCT m) FROM audit.access_log x, unnest(x.master_ids) m"
        "         WHERE x.department = :d AND x.key_id IS NOT DISTINCT FROM l.key_id"
        "           AND x.purpose IS NOT DISTINCT FROM l.purpose"
        "           AND x.accessed_at >= :a AND x.accessed_at < :b) AS persons"
        "  FROM audit.access_log l LEFT JOIN audit.api_key k USING (key_id)"
        " WHERE l.department = :d AND l.accessed_at >= :a AND l.accessed_at < :b"
        " GROUP BY l.key_id, k.label, l.purpose ORDER BY l.key_id, l.purpose NULLS FIRST"),
        {"d": department, "a": _local(first, tz), "b": _local(nxt, tz)}).mappings().all()
    totals = conn.execute(sa.text(
        "SELECT count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS refused,"
        "       (SELECT count(DISTINCT m) FROM audit.access_log x, unnest(x.master_ids) m"
        "         WHERE x.department = :d AND x.accessed_at >= :a AND x.accessed_at < :b) AS persons"
        "  FROM audit.access_log WHERE department = :d AND accessed_at >= :a AND accessed_at < :b"),
        {"d": department, "a": _local(first, tz), "b": _local(nxt, tz)}).mappings().one()
    return {"department": department, "month": month, "time_zone": tz,
            "by_key_and_purpose": [dict(r) for r in rows], "totals": dict(totals)}


def _local(day: dt.date, tz: str) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
