"""The change feed per department and the webhook outbox.

When a release is published, :func:`record_changes` writes, in the release's transaction and for every
department of the sharing configuration, what changed from the release before (the last one not
withdrawn) as that department's view ``dept_<department>.master_person`` / ``.enrolment`` shows it —
the same columns, with ``sources`` and ``record_count`` cut to its own programmes when it sees only
those — and queues the events for the department's webhook, if it has one.

Events of a release, in this order (``seq``), each by master id:

* ``merged`` — a master id retired into ``survivor`` (its redirect); ``split`` — a master some of whose
  records went to the new masters ``into`` (they come as ``added``); ``removed`` — a master gone with no
  survivor (its records were deleted at the sources);
* ``added`` — a new master, with its row (``person``); ``changed`` / ``deceased`` — the fields that
  changed, with their new values (``fields``; ``deceased`` when ``status`` became ``deceased``);
* ``enrolment_removed``, ``enrolment_moved`` (``from``/``to`` master), ``enrolment_changed``,
  ``enrolment_added`` (``enrolment``) — enrolments the department's view shows.

A person event (``added``, ``changed``, ``deceased``) also records ``own_enrolment``: whether the master
holds an enrolment of the department's own sources in the release. The read API and the webhooks release
有条件 values (for a purpose) only for such masters (:func:`cut_event`); the stored events are the
department's view, which shows them for every master (direct SQL has no purpose, see
:mod:`warehouse.grants`).

Applying a release's events to the department's view of the release before gives its view of the
release. An event is named ``<release>-<seq>``; a reader resumes after the last one it holds (the
cursor). A department that may not see ``master_id`` gets no events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from warehouse.grants import department_access
from warehouse.grants_views import DepartmentAccess, master_person_sql, policy_qual, sql_literal
from warehouse.release_diff import differing, row_changes_sql, splits, survivors
from warehouse.sharing import DepartmentSharing

PERSON_KINDS = ("merged", "split", "removed", "added", "changed", "deceased")
ENROLMENT_KINDS = ("enrolment_removed", "enrolment_moved", "enrolment_changed", "enrolment_added")
MAX_PAGE = 1000
_FROM_CURRENT = " FROM publish.master_person_current p"


class FeedError(ValueError):
    """A feed request that cannot be answered (an unknown or withdrawn release, a bad cursor); the message
    says what to send instead."""


# ---------------------------------------------------------------------------------------------- writing

def previous_release(conn: sa.Connection, release_no: int) -> int | None:
    """The release ``release_no`` follows: the last one before it not withdrawn."""
    return conn.execute(sa.text("SELECT max(release_no) FROM publish.release WHERE release_no < :n"
                                " AND withdrawn_at IS NULL"), {"n": release_no}).scalar()


#: the masters and enrolments that differ between the two releases (:func:`warehouse.release_diff.differing`):
#: only their rows are compared (the rest are the same in every projection)
_ONLY_MASTERS = " AND p.master_id = ANY(CAST(:only_m AS text[]))"
_ONLY_RECORDS = (" AND (e.source, e.source_record_id) IN (SELECT * FROM unnest(CAST(:only_s AS text[]),"
                 " CAST(:only_r AS text[])))")


def _person_rows_sql(d: DepartmentAccess, release_no: int | None, only: bool = False) -> str:
    """The department's master_person view as it reads (read) release ``release_no`` (none: no rows)."""
    sql = master_person_sql(lambda c: '"' + c.replace('"', '""') + '"', d)
    if not sql.endswith(_FROM_CURRENT):  # the view's definition changed shape: refuse rather than guess
        raise RuntimeError("the department view's definition no longer reads publish.master_person_current")
    where = f"p.release_no = {int(release_no)}" if release_no is not None else "false"
    return sql[: -len(_FROM_CURRENT)] + f" FROM publish.master_person p WHERE {where}" + (_ONLY_MASTERS if only else "")


def _enrolment_rows_sql(d: DepartmentAccess, release_no: int | None, only: bool = False) -> str:
    cols = ", ".join(f'e."{c}"' for c in d.enrolment_columns)
    where = f"e.release_no = {int(release_no)}" if release_no is not None else "false"
    return (f"SELECT {cols} FROM publish.enrolment e WHERE {where} AND {policy_qual(d)}"
            + (_ONLY_RECORDS if only else ""))


def _events_sql(d: DepartmentAccess, old: int | None, new: int, only: bool = False) -> str:
    """INSERT of the department's events from release ``old`` to ``new`` (:gone/:survivor, :split_m/:split_into;
    with ``only``, the rows of :only_m masters and :only_s/:only_r enrolments only)."""
    persons = row_changes_sql(_person_rows_sql(d, old, only), _person_rows_sql(d, new, only))
    enrol_old, enrol_new = _enrolment_rows_sql(d, old, only), _enrolment_rows_sql(d, new, only)
    return f"""
    INSERT INTO publish.change_event (department, release_no, seq, kind, master_id, payload)
    SELECT {sql_literal(d.department)}, {int(new)}, row_number() OVER (ORDER BY ev.ord, ev.master_id, ev.sub),
           ev.kind, ev.master_id, ev.payload
    FROM (
      SELECT CASE WHEN c.old IS NULL THEN 4 WHEN c.new IS NOT NULL THEN 5 WHEN s.survivor IS NULL THEN 3 ELSE 1 END AS ord,
             c.master_id, '' AS sub,
             CASE WHEN c.old IS NULL THEN 'added'
                  WHEN c.new IS NULL THEN CASE WHEN s.survivor IS NULL THEN 'removed' ELSE 'merged' END
                  WHEN c.new ->> 'status' = 'deceased' AND (c.old ->> 'status') IS DISTINCT FROM 'deceased' THEN 'deceased'
                  ELSE 'changed' END AS kind,
             CASE WHEN c.old IS NULL THEN jsonb_build_object('person', c.new)
                  WHEN c.new IS NULL THEN CASE WHEN s.survivor IS NULL THEN '{{}}'::jsonb
                                               ELSE jsonb_build_object('survivor', s.survivor) END
                  ELSE jsonb_build_object('fields', (SELECT jsonb_object_agg(f, c.new -> f) FROM unnest(c.fields) f))
             END || CASE WHEN c.new IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('own_enrolment', EXISTS (
                      SELECT FROM publish.enrolment oe WHERE oe.release_no = {int(new)} AND oe.master_id = c.master_id
                        AND oe.department = {sql_literal(d.department)})) END AS payload
      FROM ({persons}) c
      LEFT JOIN unnest(CAST(:gone AS text[]), CAST(:survivor AS text[])) s (master_id, survivor)
        ON s.master_id = c.master_id
      UNION ALL
      SELECT 2, sp.m, '', 'split', jsonb_build_object('into', jsonb_agg(sp.i ORDER BY sp.i))
      FROM unnest(CAST(:split_m AS text[]), CAST(:split_into AS text[])) sp (m, i)
      WHERE EXISTS (SELECT FROM publish.master_person p WHERE p.release_no = {int(new)} AND p.master_id = sp.m)
      GROUP BY sp.m
      UNION ALL
      SELECT CASE WHEN o.r IS NULL THEN 8 WHEN n.r IS NULL THEN 6 ELSE 7 END,
             coalesce(n.r ->> 'master_id', o.r ->> 'master_id'), x.source || '/' || x.source_record_id,
             CASE WHEN o.r IS NULL THEN 'enrolment_added' WHEN n.r IS NULL THEN 'enrolment_removed'
                  WHEN (n.r ->> 'master_id') IS DISTINCT FROM (o.r ->> 'master_id') THEN 'enrolment_moved'
                  ELSE 'enrolment_changed' END,
             CASE WHEN o.r IS NULL THEN jsonb_build_object('enrolment', n.r)
                  ELSE jsonb_strip_nulls(jsonb_build_object('source', x.source, 'source_record_id', x.source_record_id,
                         'from', o.r ->> 'master_id', 'to', n.r ->> 'master_id',
                         'survivor', CASE WHEN n.r IS NULL THEN s.survivor END))
                       || CASE WHEN n.r IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('fields',
                            coalesce((SELECT jsonb_object_agg(k.key, k.value) FROM jsonb_each(n.r) k
                                      WHERE k.value IS DISTINCT FROM o.r -> k.key), '{{}}'::jsonb)) END
             END
      FROM (SELECT source, source_record_id, to_jsonb(y) - 'release_no' AS r FROM ({enrol_old}) y) o
      FULL JOIN (SELECT source, source_record_id, to_jsonb(y) - 'release_no' AS r FROM ({enrol_new}) y) n
        USING (source, source_record_id)
      CROSS JOIN LATERAL (SELECT coalesce(n.source, o.source) AS source,
                                 coalesce(n.source_record_id, o.source_record_id) AS source_record_id) x
      LEFT JOIN unnest(CAST(:gone AS text[]), CAST(:survivor AS text[])) s (master_id, survivor)
        ON s.master_id = o.r ->> 'master_id'
      WHERE o.r IS DISTINCT FROM n.r
    ) ev"""


def record_changes(conn: sa.Connection, release_no: int,
                   sharing: Mapping[str, DepartmentSharing] | None = None) -> dict[str, int]:
    """Write every department's events of release ``release_no`` (against the release before it) and queue
    them for the departments' webhooks (caller's transaction: the release's). Idempotent: a release whose
    events are written already is left as it is. Returns department → events of the release."""
    from warehouse.sharing import load_sharing

    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('hub change feed'))"))
    done = conn.execute(sa.text("SELECT department, count(*) FROM publish.change_event WHERE release_no = :n"
                                " GROUP BY 1"), {"n": release_no}).all()
    if done:
        return dict(done)
    old = previous_release(conn, release_no)
    gone = [] if old is None else conn.execute(sa.text(
        "SELECT master_id FROM publish.master_person o WHERE o.release_no = :old AND NOT EXISTS"
        " (SELECT FROM publish.master_person n WHERE n.release_no = :new AND n.master_id = o.master_id)"),
        {"old": old, "new": release_no}).scalars().all()
    redirect = survivors(conn, gone, release_no)
    split = splits(conn, old, release_no) if old is not None else {}
    params = {"gone": list(redirect), "survivor": list(redirect.values()),
              "split_m": [m for m, into in split.items() for _ in into],
              "split_into": [i for into in split.values() for i in into]}
    if old is not None:  # compared once here, then each department's projection of what differs only
        masters, records = differing(conn, old, release_no)
        params |= {"only_m": masters, "only_s": [s for s, _ in records], "only_r": [r for _, r in records]}
    counts: dict[str, int] = {}
    for d in department_access(sharing if sharing is not None else load_sharing()):
        if "master_id" not in d.fields:
            continue
        counts[d.department] = conn.execute(sa.text(_events_sql(d, old, release_no, old is not None)),
                                            params).rowcount
    conn.execute(sa.text(
        "INSERT INTO publish.webhook_outbox (webhook_id, department, release_no, seq)"
        " SELECT w.webhook_id, e.department, e.release_no, e.seq FROM publish.change_event e"
        " JOIN publish.webhook w ON w.department = e.department AND w.from_release < e.release_no"
        " WHERE e.release_no = :n ON CONFLICT DO NOTHING"), {"n": release_no})
    return counts


def ensure_changes(conn: sa.Connection, sharing: Mapping[str, DepartmentSharing] | None = None) -> list[int]:
    """Write the events of every release not withdrawn that has none yet (releases published before the
    feed existed); returns those releases."""
    missing = conn.execute(sa.text(
        "SELECT r.release_no FROM publish.release r WHERE r.withdrawn_at IS NULL AND NOT EXISTS"
        " (SELECT FROM publish.change_event e WHERE e.release_no = r.release_no) ORDER BY 1")).scalars().all()
    for n in missing:
        record_changes(conn, n, sharing)
    return list(missing)


# ---------------------------------------------------------------------------------------------- reading

def parse_cursor(cursor: str) -> tuple[int, int]:
    """``<release>-<seq>`` → (release, seq); :class:`FeedError` for anything else."""
    release, sep, seq = (cursor or "").partition("-")
    if not sep or not release.isdigit() or not seq.isdigit() or len(cursor) > 24:
        raise FeedError("cursor: not a cursor of this feed; send the next_cursor of the page before"
                        " (an event id such as 12-345), or since_release alone to start over")
    return int(release), int(seq)


def event_id(release_no: int, seq: int) -> str:
    return f"{release_no}-{seq}"


def read_changes(conn: sa.Connection, department: str, since_release: int, *, cursor: str | None = None,
                 limit: int = 500) -> dict:
    """The department's events after release ``since_release`` (and after ``cursor``, the id of the last
    event read) up to the current release, in order, at most ``limit``: ``events``, ``next_cursor`` (None
    when the page ends the feed), ``current_release``.

    Raises :class:`FeedError` for a release that does not exist or was withdrawn, a cursor of another
    feed, or a limit out of range."""
    if not 1 <= limit <= MAX_PAGE:
        raise FeedError(f"limit: between 1 and {MAX_PAGE} events a page")
    current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()
    if since_release < 0:
        raise FeedError("since_release: a release number (0 for everything from the first release)")
    if since_release > 0:
        known = conn.execute(sa.text("SELECT withdrawn_at IS NOT NULL FROM publish.release WHERE release_no = :n"),
                             {"n": since_release}).scalar()
        if known is None:
            raise FeedError(f"since_release: there is no release {since_release}"
                            + (f" (the current release is {current})" if current else " (nothing is published yet)"))
        if known:
            raise FeedError(f"since_release: release {since_release} was withdrawn by a rollback; read the"
                            " department view of the current release again and follow the feed from it")
    after = parse_cursor(cursor) if cursor else (since_release, 2**31 - 1)  # every event after the release
    if after[0] < since_release:
        raise FeedError("cursor: it lies before since_release; send the since_release the reading started with")
    if cursor and after[0] > (current or 0):
        raise FeedError(f"cursor: release {after[0]} of cursor {cursor} is after the current release"
                        f" ({current or 'none yet'}); send the next_cursor of a page this feed gave, or since_release"
                        " alone to start over")
    e = sa.text(
        "SELECT e.release_no, e.seq, e.kind, e.master_id, e.payload FROM publish.change_event e"
        " JOIN publish.release r ON r.release_no = e.release_no AND r.withdrawn_at IS NULL"
        " WHERE e.department = :d AND e.release_no <= :current AND (e.release_no, e.seq) > (:r, :s)"
        " ORDER BY e.release_no, e.seq LIMIT :limit")
    rows = conn.execute(e, {"d": department, "current": current or 0, "r": after[0], "s": after[1],
                            "limit": limit + 1}).mappings().all()
    events = [as_event(r) for r in rows[:limit]]
    more = len(rows) > limit
    return {"department": department, "since_release": since_release, "current_release": current,
            "events": events, "next_cursor": events[-1]["event_id"] if more else None}


def as_event(row: Mapping) -> dict:
    """An event as readers get it: its id, release, kind, master id and what it carries."""
    return {"event_id": event_id(row["release_no"], row["seq"]), "release_no": row["release_no"],
            "kind": row["kind"], "master_id": row["master_id"], **dict(row["payload"])}


def cut_event(event: dict, released: Iterable[str], conditional: Iterable[str] = ()) -> dict:
    """The event with only the person fields in ``released`` (the others' names listed under ``withheld``):
    the 有条件 fields a purpose did not unlock. The ``conditional`` (有条件) fields among them are kept only
    for a master holding an enrolment of the department's own sources in the event's release
    (``own_enrolment``): a purpose is for the department's own clients, the feed is no bulk export of
    everyone else's names, ID numbers and addresses."""
    keep = set(released) | {"master_id"}
    out, withheld = dict(event), set()
    if not out.pop("own_enrolment", False):
        keep -= set(conditional)
    for part in ("person", "fields"):
        values = event.get(part)
        if isinstance(values, dict) and event["kind"] in PERSON_KINDS:
            withheld |= {f for f in values if f not in keep}
            out[part] = {f: v for f, v in values.items() if f in keep}
    if withheld:
        out["withheld"] = sorted(withheld)
    return out


def apply_events(persons: dict[str, dict], enrolments: dict[tuple[str, str], dict], events: Iterable[dict]) -> None:
    """Apply events, in order, to a department's view held as master id → row and (source, record) → row."""
    for e in events:
        kind = e["kind"]
        if kind == "added":
            persons[e["master_id"]] = dict(e["person"])
        elif kind in ("changed", "deceased"):
            persons[e["master_id"]].update(e["fields"])
        elif kind in ("merged", "removed"):
            persons.pop(e["master_id"], None)
        elif kind == "enrolment_added":
            row = e["enrolment"]
            enrolments[(row["source"], row["source_record_id"])] = dict(row)
        elif kind in ("enrolment_moved", "enrolment_changed"):
            enrolments[(e["source"], e["source_record_id"])].update(e["fields"])
        elif kind == "enrolment_removed":
            enrolments.pop((e["source"], e["source_record_id"]), None)


# ---------------------------------------------------------------------------------------------- webhooks

def add_webhook(conn: sa.Connection, department: str, url: str, secret: str, *, purpose: str | None = None,
                created_by: str | None = None) -> dict:
    """Subscribe ``department`` (one webhook each; a second replaces the first): the events of every release
    published from now on are queued for ``url``."""
    current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar() or 0
    conn.execute(sa.text("DELETE FROM publish.webhook WHERE department = :d"), {"d": department})
    row = conn.execute(sa.text(
        "INSERT INTO publish.webhook (department, url, secret, purpose, from_release, created_by)"
        " VALUES (:d, :u, :s, :p, :f, :b) RETURNING webhook_id, from_release"),
        {"d": department, "u": url, "s": secret, "p": purpose, "f": current, "b": created_by}).one()
    return {"webhook_id": row.webhook_id, "department": department, "from_release": row.from_release}


def has_webhooks(conn: sa.Connection) -> bool:
    return conn.execute(sa.text("SELECT EXISTS (SELECT FROM publish.webhook)")).scalar_one()


def remove_webhook(conn: sa.Connection, department: str) -> bool:
    """Remove the department's webhook and its undelivered events; False when it had none."""
    return conn.execute(sa.text("DELETE FROM publish.webhook WHERE department = :d"), {"d": department}).rowcount > 0


def list_webhooks(conn: sa.Connection, department: str | None = None) -> list[dict]:
    """Every webhook (never its secret) with its queue: pending and delivered events, the oldest pending
    one's attempts, last status or error and next attempt."""
    rows = conn.execute(sa.text(
        "SELECT w.webhook_id, w.department, w.url, w.purpose, w.from_release, w.created_at, w.created_by,"
        " count(*) FILTER (WHERE o.state = 'pending') AS pending,"
        " count(*) FILTER (WHERE o.state = 'delivered') AS delivered,"
        " max(o.delivered_at) AS last_delivered_at"
        " FROM publish.webhook w LEFT JOIN publish.webhook_outbox o USING (webhook_id)"
        " WHERE CAST(:d AS text) IS NULL OR w.department = :d"
        " GROUP BY w.webhook_id ORDER BY w.department"), {"d": department}).mappings().all()
    out = []
    for r in rows:
        head = next_pending(conn, r["webhook_id"], 1)
        out.append({**r, "head": {k: head[0][k] for k in ("event_id", "attempts", "last_status", "last_error",
                                                          "next_attempt_at")} if head else None})
    return out


def webhook_secret(conn: sa.Connection, webhook_id: int) -> tuple[dict, str]:
    """The webhook (department, url, purpose) and, apart, its secret: for signing only."""
    row = conn.execute(sa.text("SELECT webhook_id, department, url, purpose, secret FROM publish.webhook"
                               " WHERE webhook_id = :w"), {"w": webhook_id}).mappings().one()
    info = dict(row)
    return info, info.pop("secret")


def next_pending(conn: sa.Connection, webhook_id: int, limit: int) -> list[dict]:
    """The webhook's undelivered events, oldest first, with their delivery state."""
    rows = conn.execute(sa.text(
        "SELECT o.release_no, o.seq, o.attempts, o.last_status, o.last_error, o.next_attempt_at,"
        " e.kind, e.master_id, e.payload FROM publish.webhook_outbox o JOIN publish.change_event e"
        "   USING (department, release_no, seq)"
        " WHERE o.webhook_id = :w AND o.state = 'pending' ORDER BY o.release_no, o.seq LIMIT :n"),
        {"w": webhook_id, "n": limit}).mappings().all()
    return [{**dict(r), "event_id": event_id(r["release_no"], r["seq"])} for r in rows]


def record_attempt(conn: sa.Connection, webhook_id: int, release_no: int, seq: int, *, status: int | None,
                   error: str | None, delivered: bool, retry_in_seconds: float = 0.0) -> None:
    """Note one delivery attempt of an event: delivered, or the status or error and when to try again."""
    conn.execute(sa.text(
        "UPDATE publish.webhook_outbox SET attempts = attempts + 1, last_attempt_at = clock_timestamp(),"
        " last_status = :st, last_error = :er,"
        " state = CASE WHEN :ok THEN 'delivered' ELSE 'pending' END,"
        " delivered_at = CASE WHEN :ok THEN clock_timestamp() END,"
        " next_attempt_at = clock_timestamp() + make_interval(secs => :wait)"
        " WHERE webhook_id = :w AND release_no = :r AND seq = :s"),
        {"st": status, "er": error, "ok": delivered, "wait": retry_in_seconds, "w": webhook_id, "r": release_no,
         "s": seq})
