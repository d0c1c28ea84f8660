"""Daily quotas, sweep detection and alerts of the read API, kept in the warehouse so that every API
process counts against the same numbers (``audit.api_quota``, ``audit.access_alert``,
``audit.api_key.blocked_at``).

* Requests and persons served are counted per ``key`` and ``department`` and day (the day of the hub's
  users, Asia/Shanghai), one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` per count.
* Persons an answer may give are **reserved** before it is read (:func:`reserve`): one statement per
  subject adds them only while the total stays within the limit (``… persons + n <= limit``), under the
  row's lock, so two processes cannot both take the last of a quota; what the answer did not use is
  given back afterwards (:func:`count` with a negative number).
* Requests with a missing, unknown or revoked key are counted per client address and minute (scope
  ``client``, subject ``<address> <HH:MM>``): the row holds how many came, even those answered 429
  without an access-log row of their own.
* A sweep is many distinct master ids looked up one by one (``GET /v1/persons/<id>``) by one key in a
  short window, read from ``audit.access_log``.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from warehouse.tables import audit_access_alert as alert
from warehouse.tables import audit_access_log as access_log
from warehouse.tables import audit_api_key as api_key
from warehouse.tables import audit_api_quota as quota

#: the hub's users keep Beijing time (no daylight saving): quotas start anew at their midnight
LOCAL_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
PERSON_PATH = "GET /v1/persons/"
#: the look-ups of one person by master id a sweep is counted over: the read API's and the workbench's master view
PERSON_PATHS = (PERSON_PATH, "GET /workbench/masters/")
UNBLOCKED = "unblocked"  # the kind of alert that records a lifted block


def local_now(now: dt.datetime | None = None) -> dt.datetime:
    """Now (or ``now``) in Asia/Shanghai time."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(LOCAL_TZ)


def seconds_to_midnight(now: dt.datetime | None = None) -> int:
    """Seconds until the next midnight in Asia/Shanghai (when the daily quotas start anew)."""
    local = local_now(now)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), LOCAL_TZ)
    return max(1, int((midnight - local).total_seconds() + 0.999))


def _upsert(scope_subjects: list[tuple[str, str]], day: dt.date, requests: int, persons: int):
    stmt = insert(quota).values([dict(scope=s, subject=subj, day=day, requests=requests, persons=persons)
                                 for s, subj in scope_subjects])
    return stmt.on_conflict_do_update(
        index_elements=[quota.c.scope, quota.c.subject, quota.c.day],
        set_={"requests": quota.c.requests + stmt.excluded.requests,
              "persons": quota.c.persons + stmt.excluded.persons},
    ).returning(quota.c.scope, quota.c.requests, quota.c.persons)


def count(conn: sa.Connection, scope_subjects: list[tuple[str, str]], day: dt.date, *, requests: int = 0,
          persons: int = 0) -> dict[str, tuple[int, int]]:
    """Add ``requests`` and ``persons`` to each (scope, subject) of ``day`` in one statement: the totals
    after the addition, ``{scope: (requests, persons)}``."""
    rows = conn.execute(_upsert(scope_subjects, day, requests, persons)).all()
    return {r.scope: (int(r.requests), int(r.persons)) for r in rows}


class QuotaShort(Exception):
    """A reservation that would take a subject over its limit (the transaction is to be rolled back)."""

    def __init__(self, scope: str, subject: str, limit: int, used: int):
        super().__init__(f"{scope} {subject}: {used} of {limit} used")
        self.scope, self.subject, self.limit, self.used = scope, subject, limit, used

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def reserve(conn: sa.Connection, subjects: list[tuple[str, str, int | None]], day: dt.date, persons: int) -> None:
    """Add ``persons`` to each ``(scope, subject, limit)`` of ``day`` only if every total stays within its
    limit (None: no limit); raises :class:`QuotaShort` for the first that would not, after which the
    caller must roll its transaction back (the subjects before it were added already). Subjects are
    locked in the order given: keep one order (key, then department) everywhere."""
    c = quota.c
    for scope, subject, limit in subjects:
        if limit is None:
            count(conn, [(scope, subject)], day, persons=persons)
            continue
        if persons > limit:
            raise QuotaShort(scope, subject, limit, usage(conn, scope, subject, day)[1])
        stmt = insert(quota).values(scope=scope, subject=subject, day=day, requests=0, persons=persons)
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.scope, c.subject, c.day], set_={"persons": c.persons + persons},
            where=c.persons + persons <= limit).returning(c.persons)
        if conn.execute(stmt).first() is None:  # the row is locked by now: this is the total that refused
            raise QuotaShort(scope, subject, limit, usage(conn, scope, subject, day)[1])


def usage(conn: sa.Connection, scope: str, subject: str, day: dt.date) -> tuple[int, int]:
    """(requests, persons) counted for a subject and day; (0, 0) when there are none."""
    c = quota.c
    row = conn.execute(sa.select(c.requests, c.persons)
                       .where(c.scope == scope, c.subject == subject, c.day == day)).first()
    return (int(row.requests), int(row.persons)) if row else (0, 0)


def raise_alert(conn: sa.Connection, kind: str, detail: str, *, key_id: str | None = None,
                department: str | None = None, client: str | None = None) -> None:
    """Append an alert (caller's transaction)."""
    conn.execute(sa.insert(alert).values(kind=kind, key_id=key_id, department=department, client=client,
                                         detail=detail))


def raise_alert_once_a_day(conn: sa.Connection, kind: str, subject: str, detail: str, *, key_id: str | None = None,
                           department: str | None = None) -> bool:
    """An alert ``<subject>: <detail>`` of ``kind`` unless one was raised for ``subject`` today (Asia/Shanghai)
    already; race-free across processes (a transaction-scoped advisory lock). True when raised."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"alert {kind} {subject}"))))
    day_start = dt.datetime.combine(local_now().date(), dt.time(), LOCAL_TZ)
    seen = conn.execute(sa.select(alert.c.alert_id).where(
        alert.c.kind == kind, alert.c.raised_at >= day_start,
        sa.func.starts_with(alert.c.detail, f"{subject}:")).limit(1)).first()
    if seen is None:
        raise_alert(conn, kind, f"{subject}: {detail}", key_id=key_id, department=department)
    return seen is None


def alerts(conn: sa.Connection, *, kind: str | None = None, since_id: int = 0) -> list[dict]:
    """Alerts after ``since_id``, oldest first (optionally of one kind)."""
    query = sa.select(alert).where(alert.c.alert_id > since_id).order_by(alert.c.alert_id)
    if kind:
        query = query.where(alert.c.kind == kind)
    return [dict(r) for r in conn.execute(query).mappings()]


def swept_master_ids(conn: sa.Connection, key_id: str, window_seconds: float) -> set[str]:
    """The distinct master ids ``key_id`` looked up one by one in the last ``window_seconds`` (since it
    was last unblocked, if that is later: an unblocked key starts afresh)."""
    c = access_log.c
    path_id = sa.func.substring(c.endpoint, r"/(M\d+)$")
    unblocked = (sa.select(sa.func.max(alert.c.raised_at))
                 .where(alert.c.kind == UNBLOCKED, alert.c.key_id == key_id).scalar_subquery())
    since = sa.func.greatest(sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, float(window_seconds)),
                             sa.func.coalesce(unblocked, sa.literal("-infinity", type_=sa.DateTime(timezone=True))))
    rows = conn.execute(sa.select(path_id).distinct()
                        .where(c.key_id == key_id, c.accessed_at > since,
                               sa.or_(*(c.endpoint.like(p + "M%") for p in PERSON_PATHS))))
    return {r[0] for r in rows}


def block_key(conn: sa.Connection, key_id: str, reason: str) -> bool:
    """Block an unblocked key now; False when it was blocked already (or does not exist)."""
    c = api_key.c
    done = conn.execute(sa.update(api_key).where(c.key_id == key_id, c.blocked_at.is_(None))
                        .values(blocked_at=sa.func.now(), blocked_reason=reason).returning(c.key_id)).first()
    return done is not None


def unblock_key(conn: sa.Connection, key_id: str) -> dict | None:
    """Lift a key's block and record it (an alert of kind ``unblocked``, from which sweep detection counts
    anew): its key_id, department, blocked_at and blocked_reason as they were, or None when the key is
    not blocked (or does not exist)."""
    c = api_key.c
    before = conn.execute(sa.select(c.key_id, c.department, c.blocked_at, c.blocked_reason)
                          .where(c.key_id == key_id, c.blocked_at.is_not(None)).with_for_update()).mappings().first()
    if before is None:
        return None
    conn.execute(sa.update(api_key).where(c.key_id == key_id).values(blocked_at=None, blocked_reason=None))
    raise_alert(conn, UNBLOCKED, f"key {key_id}: unblocked; it had been blocked at"
                f" {local_now(before['blocked_at']):%Y-%m-%d %H:%M} (Asia/Shanghai): {before['blocked_reason']}",
                key_id=key_id, department=before["department"])
    return dict(before)
