"""Numbered releases of the master index, switched atomically.

A release is written and made current in one transaction: readers of
``publish.master_person_current`` see the old release until the commit and the new one after it,
never half of one, and a query already running finishes on the release it started with.
A release's content is the golden records and every enrolment with its status, status date, own address
and fields as received: whatever a department or a ledger reads of release N is release N's own.
Publishing the same content again creates no new release; a status change at a source is new content.

A rollback makes an earlier release current again and withdraws the releases after it; content
equal to a withdrawn release is not published again until it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from warehouse.locks import lock_index
from warehouse.tables import audit_publish_attempt

_BEIJING = ZoneInfo("Asia/Shanghai")

PUBLISH_LOCK = 20261122


@dataclass(frozen=True)
class PublishOutcome:
    outcome: str  # published | unchanged | blocked
    release_no: int | None
    reason: str


#: The columns of a release's rows the planner is given statistics for after publishing (see :func:`publish`).
PLANNED_PERSON_COLUMNS = ("release_no", "master_id", "id_number", "id_number_status", "sex", "birth_date", "status",
                          "status_date")
PLANNED_ENROLMENT_COLUMNS = ("release_no", "master_id", "source", "source_record_id", "department", "program",
                             "status_raw", "status_date", "address_town", "address_village", "address_group")
#: Every enrolment as a release publishes it: the record's master id, department (from the source → department
#: parameters :s / :d), programme, status, status date, own address and fields as received.
_ENROLMENTS = (
    "SELECT c.master_id, c.source, c.source_record_id, coalesce(d.department, '') AS department, r.program,"
    " r.status_raw, r.status_date, r.address_raw, r.address_town, r.address_village, r.address_group,"
    " r.address_house_no, rr.payload AS record_fields"
    " FROM mpi.crosswalk c JOIN std.resident r USING (source, source_record_id)"
    " LEFT JOIN raw.record rr ON rr.record_id = r.raw_record_id"
    " LEFT JOIN unnest(CAST(:s AS text[]), CAST(:d AS text[])) AS d (source, department) ON d.source = c.source")
ENROLMENT_COLUMNS = ("master_id", "source", "source_record_id", "department", "program", "status_raw", "status_date",
                     "address_raw", "address_town", "address_village", "address_group", "address_house_no",
                     "record_fields")


def _department_params(departments: Mapping[str, str] | None) -> dict:
    return {"s": list(departments or {}), "d": list((departments or {}).values())}


#: The enrolments as the content hash reads them: each record's landed version by its id (raw.record is
#: append-only and lands a new version, with a new id, whenever a record's content changes) instead of its fields.
_ENROLMENT_VERSIONS = _ENROLMENTS.replace("rr.payload AS record_fields", "r.raw_record_id AS record_version").replace(
    " LEFT JOIN raw.record rr ON rr.record_id = r.raw_record_id", "")
#: A digest that changes with any row: a row's MD5 as a 64-bit number, summed (in parallel, no sort), with the count.
_ROW_SUM = "count(*) || ':' || coalesce(sum(('x' || left(md5({row}::text), 16))::bit(64)::bigint::numeric), 0)"
_HASH_PREFIX = "v2:"
_CONTENT_HASH = (
    f"'{_HASH_PREFIX}' || md5((SELECT {_ROW_SUM.format(row='g')} FROM mpi.golden g)"
    f" || '#' || (SELECT {_ROW_SUM.format(row='e')} FROM ({_ENROLMENT_VERSIONS}) e))")
#: The content hash as releases before 'v2:' recorded it: every row's fields as text, ordered (5× longer to compute:
#: 23 s at 1,000,000 persons against 4.7 s). Computed only to compare with a hash of that form.
_LEGACY_HASH = (
    "md5((SELECT coalesce(string_agg(g::text, '|' ORDER BY g.master_id), '') FROM mpi.golden g)"
    " || '#' || (SELECT coalesce(string_agg(md5(e::text), '' ORDER BY e.source, e.source_record_id), '')"
    f"            FROM ({_ENROLMENTS}) e))")
#: How many transactions have written what a release publishes (rows of audit.index_write, kept by triggers)
_INDEX_WRITES = "(SELECT count(*) FROM audit.index_write)"


def content_hash(conn: sa.Connection, departments: Mapping[str, str] | None) -> str:
    """What a release publishes, as one digest: the golden records and every enrolment with its status,
    dates, address and landed version of its fields (a status change at a source changes it). The gate records
    the digest of what it validated; a release publishes only that."""
    return conn.execute(sa.text(f"SELECT {_CONTENT_HASH}"), _department_params(departments)).scalar_one()


class _SameContent:
    """Compares recorded digests with the content now (``digest``), whichever form they were recorded in: one
    of the form before ``v2:`` is compared with the content's digest in that form, computed once, when needed."""

    def __init__(self, conn: sa.Connection, digest: str, departments: Mapping[str, str] | None):
        self.conn, self.digest, self.departments, self._legacy = conn, digest, departments, None

    def __call__(self, recorded: str | None) -> bool:
        if recorded is None:
            return False
        if recorded.startswith(_HASH_PREFIX):
            return recorded == self.digest
        if self._legacy is None:
            self._legacy = self.conn.execute(sa.text(f"SELECT {_LEGACY_HASH}"),
                                             _department_params(self.departments)).scalar_one()
        return recorded == self._legacy


def _registry_digest(departments: Mapping[str, str] | None) -> str:
    return hashlib.sha256(json.dumps(sorted((departments or {}).items())).encode()).hexdigest()[:16]


def content_state(conn: sa.Connection, departments: Mapping[str, str] | None) -> tuple[str, str]:
    """:func:`content_hash` with the state it was read in: how many transactions had written the index
    (``audit.index_write``, read in the same statement, so of the same snapshot) and the registry's digest.
    While the state stays the same, so does the content: :func:`publish` then takes the gate's digest."""
    writes, digest = conn.execute(sa.text(f"SELECT {_INDEX_WRITES}, {_CONTENT_HASH}"),
                                  _department_params(departments)).one()
    return digest, _index_state(writes, departments)


def _index_state(writes: int, departments: Mapping[str, str] | None) -> str:
    return f"{writes}/{_registry_digest(departments)}"


def _digest_now(conn: sa.Connection, validation_run_id: int,
                departments: Mapping[str, str] | None) -> tuple[str, str | None]:
    """The content's digest now, and the one gate run ``validation_run_id`` recorded (None for no such run).
    The gate's digest is the content's while no transaction has written the index since the gate read it and the
    registry is the same; otherwise the content's digest is computed again."""
    validated = conn.execute(sa.text("SELECT content_hash, index_state FROM audit.validation_run WHERE run_id = :v"),
                             {"v": validation_run_id}).first()
    if validated is None:
        return content_hash(conn, departments), None
    if validated.content_hash and validated.index_state:
        writes = conn.execute(sa.text(f"SELECT {_INDEX_WRITES}")).scalar_one()
        if validated.index_state == _index_state(writes, departments):
            return validated.content_hash, validated.content_hash
    return content_hash(conn, departments), validated.content_hash


def current_release(conn: sa.Connection) -> dict | None:
    """The release in force (``ran_with``: the steps only, as :func:`list_releases`), None before the first."""
    row = conn.execute(sa.text(
        "SELECT r.* FROM publish.current_release c JOIN publish.release r USING (release_no)")).mappings().first()
    return dict(row, ran_with=_steps(row["ran_with"])) if row else None


PUBLISHED_COLUMNS = ("master_id", "name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address",
                     "status", "status_date", "record_count", "sources", "conflicts")


def publish(conn: sa.Connection, validation_run_id: int, departments: Mapping[str, str] | None = None,
            ran_with: Mapping | None = None) -> PublishOutcome:
    """Publish mpi.golden and the enrolments as a new release unless they equal the current one (caller's
    transaction).

    ``departments`` (source → department) fills ``publish.enrolment``: every source record's master id
    with its department, programme, status, status date, own address and fields as received. The
    release's content hash covers the golden records and the enrolments, so a status change at a
    source publishes a new release.

    The content must be what the gate run validated (its recorded digest), else nothing is published.
    Publishing the same gate run again (a retry after a crash that came after the commit) reports the release
    that attempt published.
    ``ran_with`` (what this publish runs with: model, rules, code, Airflow run) is kept with the attempt; the
    release keeps it beside those of the matching run that built the index and of the gate run."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK})
    lock_index(conn, shared=True)  # no standardizing or matching commits halfway through the release
    digest, validated = _digest_now(conn, validation_run_id, departments)
    same = _SameContent(conn, digest, departments)
    current = current_release(conn)
    withdrawn = next((n for n, recorded in conn.execute(sa.text(
        "SELECT release_no, content_hash FROM publish.release WHERE withdrawn_at IS NOT NULL"
        " AND (content_hash = :h OR content_hash NOT LIKE :v) ORDER BY release_no DESC"),
        {"h": digest, "v": f"{_HASH_PREFIX}%"}) if same(recorded)), None)
    if current and same(current["content_hash"]) and current["validation_run_id"] == validation_run_id:
        # a repeated attempt (a task retried after its process died once the release was committed): the same
        # release, reported as published, so that what follows a publish runs for it
        outcome = PublishOutcome("published", current["release_no"],
                                 f"release {current['release_no']} was already published from gate run"
                                 f" {validation_run_id} by an earlier attempt; it stays current")
    elif current and same(current["content_hash"]):
        outcome = PublishOutcome("unchanged", current["release_no"],
                                 f"content equals release {current['release_no']}; it stays current")
    elif validated is not None and not same(validated):
        outcome = PublishOutcome("blocked", current["release_no"] if current else None,
                                 f"the index changed after gate run {validation_run_id} validated it (a standardizing"
                                 " or matching run committed since); run the gate again")
    elif withdrawn is not None:
        outcome = PublishOutcome("blocked", current["release_no"] if current else None,
                                 f"content equals release {withdrawn}, which was withdrawn by a rollback;"
                                 " it is not published again until the index or an enrolment changes")
    else:
        release_no = conn.execute(sa.text("SELECT coalesce(max(release_no), 0) + 1 FROM publish.release")).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO publish.release (release_no, master_count, record_count, content_hash, validation_run_id,"
            " ran_with) SELECT :n, count(*), coalesce(sum(record_count), 0), :h, :v, :w FROM mpi.golden"),
            {"n": release_no, "h": digest, "v": validation_run_id,
             "w": json.dumps({**_release_ran_with(conn, validation_run_id, ran_with),
                              SOURCE_BATCHES: source_batches(conn), REDIRECTS: redirects(conn)})})
        columns = ", ".join(PUBLISHED_COLUMNS)
        conn.execute(sa.text(
            f"INSERT INTO publish.master_person (release_no, {columns}) SELECT :n, {columns} FROM mpi.golden"),
            {"n": release_no})
        enrolment_columns = ", ".join(ENROLMENT_COLUMNS)
        conn.execute(sa.text(
            f"INSERT INTO publish.enrolment (release_no, {enrolment_columns})"
            f" SELECT :n, {enrolment_columns} FROM ({_ENROLMENTS}) e"),
            {"n": release_no, **_department_params(departments)})
        # fresh statistics for the audits and reports that read the new release next: without them the planner
        # took release N's rows for an empty table until autovacuum came round (200 s instead of 5 s at 200,000);
        # only for the columns readers filter, join or group on: names, addresses and the records' JSON fields
        # took half of the time and steer no plan
        conn.execute(sa.text(f"ANALYZE publish.master_person ({', '.join(PLANNED_PERSON_COLUMNS)}),"
                             f" publish.enrolment ({', '.join(PLANNED_ENROLMENT_COLUMNS)})"))
        conn.execute(sa.text(
            "INSERT INTO publish.current_release (release_no) VALUES (:n)"
            " ON CONFLICT (singleton) DO UPDATE SET release_no = EXCLUDED.release_no, switched_at = now()"),
            {"n": release_no})
        outcome = PublishOutcome("published", release_no, "all gate expectations passed")
    _record_attempt(conn, validation_run_id, outcome, ran_with=ran_with)
    return outcome


def _release_ran_with(conn: sa.Connection, validation_run_id: int, publish_ran_with: Mapping | None) -> dict:
    """What a release was made with: the context of the matching run that built the index (the last one
    that finished), of the gate run and of the publish."""
    match = conn.execute(sa.text(
        "SELECT run_id, ran_with FROM mpi.link_run WHERE finished_at IS NOT NULL ORDER BY run_id DESC LIMIT 1")).first()
    gate = conn.execute(sa.text("SELECT ran_with FROM audit.validation_run WHERE run_id = :v"),
                        {"v": validation_run_id}).scalar()
    return {"match": {"run_id": match.run_id, **(match.ran_with or {})} if match else None,
            "gate": {"run_id": validation_run_id, **(gate or {})},
            "publish": dict(publish_ran_with) if publish_ran_with is not None else None}


#: keys of a release's ``ran_with`` beside the steps (match, gate, publish): its manifest
SOURCE_BATCHES = "source_batches"
REDIRECTS = "redirects"
_MANIFEST_KEYS = (SOURCE_BATCHES, REDIRECTS)


def source_batches(conn: sa.Connection) -> dict[str, dict]:
    """The landing batches the index's standardized records came from, per source: each batch's id, mode,
    when it was received (``started_at``, ``finished_at``), what it counted (received, landed, quarantined)
    and how many of the release's records are the versions it landed; with the source's last batch that
    succeeded (``last_batch``: what had been loaded) and the total of records. Surrogate ids and counts only."""
    rows = conn.execute(sa.text(
        "SELECT r.source, r.batch_id, count(*) AS records, b.mode, b.status, b.started_at, b.finished_at, b.received,"
        " b.landed, b.quarantined FROM mpi.crosswalk c JOIN std.resident r USING (source, source_record_id)"
        " LEFT JOIN raw.load_batch b ON b.batch_id = r.batch_id"
        " GROUP BY r.source, r.batch_id, b.batch_id ORDER BY r.source, r.batch_id")).mappings().all()
    last = dict(conn.execute(sa.text(
        "SELECT source, max(batch_id) FROM raw.load_batch WHERE status = 'succeeded' GROUP BY source")).all())
    out: dict[str, dict] = {}
    for r in rows:
        source = out.setdefault(r["source"], {"records": 0, "last_batch": last.get(r["source"]), "batches": []})
        source["records"] += r["records"]
        source["batches"].append({
            "batch_id": r["batch_id"], "mode": r["mode"], "status": r["status"],
            "started_at": r["started_at"].isoformat() if r["started_at"] else None,
            "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
            "received": r["received"], "landed": r["landed"], "quarantined": r["quarantined"],
            "records": r["records"]})
    return out


def redirects(conn: sa.Connection) -> dict[str, str]:
    """retired master id → the id it was merged into, for the retired ids an earlier release published (those a
    department can have seen) whose survivor is in the index about to be published (``mpi.golden``).
    Redirects are kept one hop (:mod:`warehouse.master_index`): a chain of merges points at the last survivor.

    The ids published before are those of the latest release and the ones its redirects name (so each
    release carries them on); when the latest release has no redirects recorded, every release's ids."""
    return dict(conn.execute(sa.text(
        "WITH last AS (SELECT release_no, ran_with -> 'redirects' AS redirects FROM publish.release"
        "              ORDER BY release_no DESC LIMIT 1),"
        " seen AS (SELECT p.master_id FROM publish.master_person p JOIN last USING (release_no)"
        "          UNION SELECT jsonb_object_keys(last.redirects) FROM last WHERE last.redirects IS NOT NULL"
        "          UNION SELECT p.master_id FROM publish.master_person p"
        "                WHERE NOT EXISTS (SELECT FROM last WHERE last.redirects IS NOT NULL))"
        " SELECT m.master_id, m.retired_into FROM mpi.master m JOIN seen USING (master_id)"
        " JOIN mpi.golden g ON g.master_id = m.retired_into"
        " WHERE m.status = 'retired' AND NOT EXISTS (SELECT FROM mpi.golden o WHERE o.master_id = m.master_id)"
        " ORDER BY m.master_id")).all())


def redirects_recorded(conn: sa.Connection) -> bool:
    """Whether the current release recorded its redirects (releases published before the hub did: not)."""
    return bool(conn.execute(sa.text(
        "SELECT (rel.ran_with -> 'redirects') IS NOT NULL FROM publish.current_release c"
        " JOIN publish.release rel USING (release_no)")).scalar())


def survivor_in_release(conn: sa.Connection, master_id: str, *, department: str | None = None) -> str | None:
    """The master id of the current release that ``master_id`` was merged into, by the current release's
    redirects (None when it redirects nowhere); read through ``department``'s ``master_id_redirect`` view,
    as its role, when given (what the read API does)."""
    from warehouse import serving

    if department is None:
        return conn.execute(sa.text(
            "SELECT rel.ran_with -> 'redirects' ->> :m FROM publish.current_release c"
            " JOIN publish.release rel USING (release_no)"), {"m": master_id}).scalar()
    role = serving.department_role(conn, department)
    view = serving._view(conn, department, "master_id_redirect", ("retired_id", "survivor_id"))
    rows = serving._as_department(conn, role, sa.select(view.c.survivor_id).where(view.c.retired_id == master_id))
    return rows[0]["survivor_id"] if rows else None


def manifest(release: Mapping) -> dict:
    """What a release is made of, for people and for the read API: the matching model (version, SHA-256),
    the rules files' SHA-256 (survivorship read by matching, gate rules by the gate, sharing and purposes
    by publish), the code version, the Airflow run, and the source batches. Checksums, versions, batch ids,
    times and counts only: no personal data. None-valued parts were not recorded (an older release)."""
    ran_with = release.get("ran_with") or {}
    steps = {name: ran_with.get(name) or {} for name in ("match", "gate", "publish")}
    rules = {"survivorship": (steps["match"].get("rules") or {}).get("survivorship"),
             "gate_rules": (steps["gate"].get("rules") or {}).get("gate_rules")}
    rules |= {name: (steps["publish"].get("rules") or {}).get(name) for name in ("sharing", "purposes")}
    return {"release_no": release["release_no"], "published_at": release["published_at"],
            "content_hash": release["content_hash"], "master_count": release["master_count"],
            "record_count": release["record_count"], "validation_run_id": release["validation_run_id"],
            "matching_run_id": steps["match"].get("run_id"),
            "model": steps["match"].get("model") or steps["publish"].get("model"), "rules": rules,
            "code": steps["publish"].get("code") or steps["match"].get("code"),
            "airflow": {name: step.get("airflow") for name, step in steps.items() if step.get("airflow")},
            "source_batches": ran_with.get(SOURCE_BATCHES), "redirect_count": len(ran_with.get(REDIRECTS) or {}),
            "is_current": release.get("is_current"), "withdrawn_at": release.get("withdrawn_at"),
            "withdrawn_reason": release.get("withdrawn_reason")}


def department_manifest(m: Mapping, owners: Mapping[str, str], department: str) -> dict:
    """The manifest ``m`` as a department reads it: record counts and batches of its own sources only
    (``owners``: source → department, from the source registry); the other departments' sources are named
    under ``other_sources``, without counts or batches (how many records a programme holds is its own
    department's to tell). The operator's ``hub release show`` shows everything."""
    out = dict(m)
    batches = m.get("source_batches")
    if batches is not None:
        out["source_batches"] = {s: v for s, v in batches.items() if owners.get(s) == department}
        out["other_sources"] = sorted(s for s in batches if owners.get(s) != department)
    return out


def ran_with_lines(ran_with: Mapping | None) -> list[str]:
    """A release's ``ran_with`` as lines for people: the model and rules that made it (with a short
    checksum), the code version and the Airflow run. Steps that ran with different files or code are
    named with theirs."""
    if not ran_with:
        return ["not recorded (published before the hub recorded it)"]
    steps = {name: step for name, step in ran_with.items() if isinstance(step, Mapping) and name not in _MANIFEST_KEYS}

    def one(getter, show) -> str:
        values: dict[str, list[str]] = {}
        for name, step in steps.items():
            value = getter(step)
            if value is not None:
                values.setdefault(show(value), []).append(name)
        if len(values) == 1:
            return next(iter(values))
        return "; ".join(f"{text} ({', '.join(names)})" for text, names in values.items()) or "not recorded"

    def short(digest) -> str:
        return str(digest)[:12] if digest else "missing"

    model = one(lambda s: s.get("model"),
                lambda m: f"{m.get('version') or '?'} ({m.get('file') or 'model'} sha256 {short(m.get('sha256'))})")
    # each rules file counts where it is read: survivorship by matching, gate rules by the gate, sharing by publish
    rules = []
    for name, step_name in (("survivorship", "match"), ("gate_rules", "gate"), ("sharing", "publish"),
                            ("purposes", "publish")):
        step = steps.get(step_name) or {}
        if name != "purposes" or "purposes" in (step.get("rules") or {}):  # not recorded before purposes.yaml was
            rules.append(f"{name} {short((step.get('rules') or {}).get(name))}")
    code = one(lambda s: s.get("code"),
               lambda c: f"{c.get('version') or '?'}" + (f" commit {str(c['commit'])[:12]}" if c.get("commit")
                                                          else " (commit unknown)"))
    runs = one(lambda s: s.get("airflow"), lambda a: f"{a.get('dag_id')} {a.get('run_id')}")
    lines = [f"model {model}", "rules " + ", ".join(rules), f"code {code}"]
    if any(step.get("airflow") for step in steps.values()):
        lines.append(f"Airflow run {runs}")
    if steps.get("match") and steps["match"].get("run_id") is not None:
        lines.append(f"matching run {steps['match']['run_id']}")
    return lines


def record_blocked(conn: sa.Connection, validation_run_id: int, reason: str,
                   ran_with: Mapping | None = None) -> PublishOutcome:
    """Record that the gate blocked a release; the current release stays in place."""
    current = current_release(conn)
    outcome = PublishOutcome("blocked", current["release_no"] if current else None, reason)
    _record_attempt(conn, validation_run_id, outcome, ran_with=ran_with)
    return outcome


def _record_attempt(conn: sa.Connection, validation_run_id: int | None, outcome: PublishOutcome,
                    actor: str | None = None, ran_with: Mapping | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO audit.publish_attempt (validation_run_id, outcome, release_no, reason, actor, ran_with)"
        " VALUES (:v, :o, :n, :r, :a, :w)"),
        {"v": validation_run_id, "o": outcome.outcome, "n": outcome.release_no, "r": outcome.reason, "a": actor,
         "w": json.dumps(dict(ran_with)) if ran_with is not None else None})


def last_publish_attempt(conn: sa.Connection) -> dict | None:
    """The latest attempt to publish or roll back: ``outcome``, ``release_no``, ``reason``, ``attempted_at``,
    ``ran_with`` (None before the first)."""
    attempt = audit_publish_attempt.c
    row = conn.execute(sa.select(attempt.outcome, attempt.release_no, attempt.reason, attempt.attempted_at,
                                 attempt.ran_with)
                       .order_by(attempt.attempt_id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def list_releases(conn: sa.Connection) -> list[dict]:
    """Every release with ``is_current``; ``ran_with`` holds the steps only (a release's manifest, with its
    source batches and redirects, is :func:`show_release`'s)."""
    rows = conn.execute(sa.text(
        "SELECT r.*, (c.release_no IS NOT NULL) AS is_current FROM publish.release r"
        " LEFT JOIN publish.current_release c USING (release_no) ORDER BY r.release_no")).mappings().all()
    return [dict(r, ran_with=_steps(r["ran_with"])) for r in rows]


def _steps(ran_with: Mapping | None) -> dict | None:
    return {k: v for k, v in ran_with.items() if k not in _MANIFEST_KEYS} if ran_with else ran_with


def release_row(conn: sa.Connection, release_no: int) -> dict:
    """The release's row with ``is_current``; ``LookupError`` for an unknown release number."""
    row = conn.execute(sa.text(
        "SELECT r.*, (c.release_no IS NOT NULL) AS is_current FROM publish.release r"
        " LEFT JOIN publish.current_release c USING (release_no) WHERE r.release_no = :n"),
        {"n": release_no}).mappings().first()
    if row is None:
        known = [r["release_no"] for r in list_releases(conn)]
        raise LookupError(f"there is no release {release_no}"
                          + (f" (releases: {known[0]}–{known[-1]})" if len(known) > 1 else
                             f" (the only release is {known[0]})" if known else " (nothing is published yet)"))
    return dict(row)


def show_release(conn: sa.Connection, release_no: int) -> dict:
    """One release: its figures, the gate run that let it through, its changes against the release before
    (``changes`` of masters, ``enrolment_changes`` of enrolments), and what it was made with (``ran_with``,
    and as lines for people ``ran_with_lines``: model, rules, code version, Airflow run); ``manifest`` is
    :func:`manifest` (with the source batches).

    Raises ``LookupError`` for an unknown release number.
    """
    release = release_row(conn, release_no)
    release["manifest"] = manifest(release)
    release["ran_with"] = _steps(release.get("ran_with"))  # the steps; the manifest's parts are under "manifest"
    release["ran_with_lines"] = ran_with_lines(release.get("ran_with"))
    release["suites"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT suite, success, evaluated, successful, failed, row_count FROM audit.validation_suite"
        " WHERE run_id = :v ORDER BY suite"), {"v": release["validation_run_id"]}).mappings()]
    release["gate"] = conn.execute(sa.text(
        "SELECT run_id, started_at, success, evaluated, successful, failed, docs_path FROM audit.validation_run"
        " WHERE run_id = :v"), {"v": release["validation_run_id"]}).mappings().first()
    release["by_source"] = {r.source: r.masters for r in conn.execute(sa.text(
        "SELECT unnest(sources) AS source, count(*) AS masters FROM publish.master_person WHERE release_no = :n"
        " GROUP BY 1 ORDER BY 1"), {"n": release_no})}
    before = conn.execute(sa.text("SELECT max(release_no) FROM publish.release WHERE release_no < :n"),
                          {"n": release_no}).scalar()
    release["previous"] = before
    if before is not None:
        values = ", ".join(PUBLISHED_COLUMNS)
        release["changes"] = dict(conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE o.master_id IS NULL) AS added,"
            "       count(*) FILTER (WHERE n.master_id IS NULL) AS removed,"
            "       count(*) FILTER (WHERE o.master_id IS NOT NULL AND n.master_id IS NOT NULL"
            f"                       AND ROW(o.{values.replace(', ', ', o.')}) IS DISTINCT FROM"
            f"                           ROW(n.{values.replace(', ', ', n.')})) AS changed"
            " FROM (SELECT * FROM publish.master_person WHERE release_no = :old) o"
            " FULL JOIN (SELECT * FROM publish.master_person WHERE release_no = :new) n"
            "   ON n.master_id = o.master_id"), {"old": before, "new": release_no}).mappings().one())
        release["enrolment_changes"] = _enrolment_changes(conn, before, release_no)
    return release


def _enrolment_changes(conn: sa.Connection, old: int, new: int) -> dict:
    """Enrolments added, removed and changed (master id, status, dates, address, fields) from ``old`` to ``new``."""
    values = [c for c in ENROLMENT_COLUMNS if c not in ("source", "source_record_id")]
    return dict(conn.execute(sa.text(
        "SELECT count(*) FILTER (WHERE o.source IS NULL) AS added, count(*) FILTER (WHERE n.source IS NULL) AS removed,"
        "       count(*) FILTER (WHERE o.source IS NOT NULL AND n.source IS NOT NULL"
        f"                       AND ROW({', '.join('o.' + c for c in values)}) IS DISTINCT FROM"
        f"                           ROW({', '.join('n.' + c for c in values)})) AS changed"
        " FROM (SELECT * FROM publish.enrolment WHERE release_no = :old) o"
        " FULL JOIN (SELECT * FROM publish.enrolment WHERE release_no = :new) n"
        "   ON n.source = o.source AND n.source_record_id = o.source_record_id"),
        {"old": old, "new": new}).mappings().one())


def rollback(conn: sa.Connection, release_no: int, *, reason: str, actor: str | None = None) -> PublishOutcome:
    """Make release ``release_no`` current again and withdraw the releases after it (caller's transaction).

    Raises ``LookupError`` for an unknown release and ``ValueError`` for a withdrawn one or one that is
    already current.
    """
    if not reason.strip():
        raise ValueError("a rollback needs a reason (it is kept in audit.publish_attempt)")
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK})
    target = release_row(conn, release_no)
    if target["is_current"]:
        raise ValueError(f"release {release_no} is already the current release")
    if target["withdrawn_at"] is not None:
        raise ValueError(f"release {release_no} was withdrawn on"
                         f" {target['withdrawn_at'].astimezone(_BEIJING):%Y-%m-%d %H:%M} 北京时间 (UTC+8)"
                         f" ({target['withdrawn_reason']}); roll back to a release that was not")
    withdrawn = conn.execute(sa.text(
        "UPDATE publish.release SET withdrawn_at = now(), withdrawn_reason = :r"
        " WHERE release_no > :n AND withdrawn_at IS NULL RETURNING release_no"),
        {"n": release_no, "r": f"rolled back to release {release_no}: {reason}"}).scalars().all()
    conn.execute(sa.text("UPDATE publish.current_release SET release_no = :n, switched_at = now()"),
                 {"n": release_no})
    outcome = PublishOutcome("rolled_back", release_no,
                             f"rolled back to release {release_no}"
                             + (f", withdrawing {', '.join(map(str, sorted(withdrawn)))}" if withdrawn else "")
                             + f": {reason}")
    _record_attempt(conn, None, outcome, actor)
    return outcome
