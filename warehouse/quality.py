"""What the data-quality scorecards read: aggregates of std, raw, mpi, publish and audit, never a value.

Every function returns counts, shares' parts, status codes, source, suite and expectation names —
personal values are compared inside the database and only counted. The scorecards in
:mod:`reports.scorecard` and :mod:`reports.department_scorecard` grade and render these figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from warehouse.audit import SOURCE_SUITE_PREFIX

__all__ = [
    "current_release_no",
    "enrolled_overlaps",
    "enrolment_per_release",
    "findings_per_release",
    "gate_rows_per_release",
    "latest_publish_attempt",
    "latest_suite_runs",
    "load_figures",
    "open_findings",
    "release_history",
    "release_summary",
    "sources_held",
    "std_figures",
    "validation_run_count",
    "value_conflicts",
]

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


def _exists(conn: sa.Connection, relation: str) -> bool:
    return conn.execute(sa.text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation}).scalar_one()


def _has_column(conn: sa.Connection, schema: str, table: str, column: str) -> bool:
    return conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
        " WHERE table_schema = :s AND table_name = :t AND column_name = :c)"),
        {"s": schema, "t": table, "c": column}).scalar_one()


# --------------------------------------------------------------------------- the all-department scorecard


def std_figures(conn: sa.Connection, usable: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """Per source in ``std.resident``: ``records``; per key field ``usable_<field>`` (rows whose
    ``<field>_status`` is one of ``usable[field]``) and ``supplied_<field>`` (rows with a raw value);
    ``id_statuses`` (ID-number status → rows, most frequent first)."""
    parts = ["count(*) AS records"]
    params: dict[str, object] = {}
    for column, statuses in usable.items():
        if not _COLUMN.match(column):
            raise ValueError(f"{column!r} is not a std.resident field")
        params[f"u_{column}"] = list(statuses)
        parts.append(f"count(*) FILTER (WHERE {column}_status = ANY(:u_{column})) AS usable_{column}")
        parts.append(f"count({column}_raw) AS supplied_{column}")
    rows = conn.execute(sa.text(f"SELECT source, {', '.join(parts)} FROM std.resident GROUP BY source"), params).mappings()
    figures = {r["source"]: dict(r) for r in rows}
    for source, status, count in conn.execute(sa.text(
            "SELECT source, id_number_status, count(*) FROM std.resident GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")):
        figures[source].setdefault("id_statuses", {})[status] = count
    return figures


def load_figures(conn: sa.Connection) -> dict[str, dict]:
    """Per source over all load batches: received, landed, duplicates, the latest batch's time and status,
    and quarantined rows with their reason codes (most frequent first)."""
    figures: dict[str, dict] = {}
    if not _exists(conn, "raw.load_batch"):
        return figures
    for r in conn.execute(sa.text(
            "SELECT source, sum(received) AS received, sum(landed) AS landed, sum(duplicates) AS duplicates"
            " FROM raw.load_batch GROUP BY source")).mappings():
        figures[r["source"]] = {k: int(r[k] or 0) for k in ("received", "landed", "duplicates")}
    for r in conn.execute(sa.text(
            "SELECT DISTINCT ON (source) source, coalesce(finished_at, started_at) AS at, status"
            " FROM raw.load_batch ORDER BY source, batch_id DESC")).mappings():
        figures.setdefault(r["source"], {}).update(last_load_at=r["at"], last_load_status=r["status"])
    if _exists(conn, "raw.quarantine"):
        for source, reason, count in conn.execute(sa.text(
                "SELECT source, reason_code, count(*) FROM raw.quarantine GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")):
            entry = figures.setdefault(source, {})
            entry.setdefault("quarantine_reasons", {})[reason] = count
            entry["quarantined"] = entry.get("quarantined", 0) + count
    return figures


def latest_suite_runs(conn: sa.Connection, *, prefix: str | None = None, suite: str | None = None) -> list[dict]:
    """The latest run of each suite named ``suite`` or starting with ``prefix``, with its failing expectations.

    A suite's outcome is a whole ``audit.validation_run`` (``suite`` = the suite's name) or, when one
    gate run covers several suites, a row of ``audit.validation_suite`` with its expectations marked
    by ``audit.validation_result.suite``. Both are read; the newest wins. Each run is a dict of
    run_id, suite, started_at, success, evaluated, successful, failed, docs_path and ``failures``
    (expectation, table_name, column_name, observed, unexpected_count, unexpected_percent).
    """
    where = "suite = :suite" if suite is not None else "suite LIKE :prefix"
    params = {"suite": suite, "prefix": (prefix or "").replace("%", r"\%").replace("_", r"\_") + "%"}
    selects = [
        f"SELECT run_id, suite, started_at, success, evaluated, successful, failed, docs_path, 0 AS nested"
        f" FROM audit.validation_run WHERE {where}"]
    if _exists(conn, "audit.validation_suite") and _has_column(conn, "audit", "validation_result", "suite"):
        # a suite's own Data Docs page (its validation result), when the history keeps one: unlike the index,
        # GX renders those pages without its CDN scripts
        docs = "coalesce(nullif(s.docs_path, ''), r.docs_path)" if _has_column(
            conn, "audit", "validation_suite", "docs_path") else "r.docs_path"
        selects.append(
            f"SELECT s.run_id, s.suite, r.started_at, s.success, s.evaluated, s.successful, s.failed, {docs}, 1"
            f" FROM audit.validation_suite s JOIN audit.validation_run r USING (run_id) WHERE s.{where}")
    rows = conn.execute(sa.text(
        f"SELECT DISTINCT ON (suite) * FROM ({' UNION ALL '.join(selects)}) runs"
        " ORDER BY suite, started_at DESC, run_id DESC, nested"), params).mappings().all()
    runs = []
    for r in rows:
        suite_filter = " AND suite = :suite" if r["nested"] else ""
        failures = [dict(f) for f in conn.execute(sa.text(
            "SELECT expectation, table_name, column_name, observed, unexpected_count, unexpected_percent"
            f" FROM audit.validation_result WHERE run_id = :run AND NOT success{suite_filter} ORDER BY position"),
            {"run": r["run_id"], "suite": r["suite"]}).mappings()]
        runs.append({**{k: v for k, v in r.items() if k != "nested"}, "failures": failures})
    return runs


def release_summary(conn: sa.Connection) -> dict | None:
    """The current release: release_no, published_at, master_count, record_count and switched_at; None before any."""
    row = conn.execute(sa.text(
        "SELECT r.release_no, r.published_at, r.master_count, r.record_count, c.switched_at"
        " FROM publish.current_release c JOIN publish.release r USING (release_no)")).mappings().first()
    return dict(row) if row else None


def latest_publish_attempt(conn: sa.Connection) -> dict | None:
    """The latest publish attempt: attempted_at, outcome, release_no, reason, validation_run_id; None before any."""
    row = conn.execute(sa.text(
        "SELECT attempted_at, outcome, release_no, reason, validation_run_id FROM audit.publish_attempt"
        " ORDER BY attempted_at DESC, attempt_id DESC LIMIT 1")).mappings().first()
    return dict(row) if row else None


def validation_run_count(conn: sa.Connection) -> int:
    """How many gate runs the validation history holds."""
    return int(conn.execute(sa.text("SELECT count(*) FROM audit.validation_run")).scalar_one())


# --------------------------------------------------------------------------- one department's figures

# the department's records still in std: a crosswalk row of a record deleted since is no enrolment any more
_ENROLLED = ("SELECT c.source, c.master_id FROM mpi.crosswalk c JOIN std.resident r USING (source, source_record_id)"
             " WHERE c.source = ANY(:mine)")


def enrolled_overlaps(conn: sa.Connection, mine: Sequence[str]) -> tuple[dict[str, tuple[int, int, int]], int,
                                                                        dict[tuple[str, str], int]]:
    """The department's records still in std, in one pass: per source of ``mine`` with records (records with a
    master id, masters, masters with two or more records), the masters with records on two or more of ``mine``,
    and (source a, source b) with a < b → masters on both (pairs with none are left out)."""
    per_source: dict[str, tuple[int, int, int]] = {}
    cross = 0
    pairs: dict[tuple[str, str], int] = {}
    for r in conn.execute(sa.text(
            f"WITH e AS (SELECT source, master_id, count(*) AS n FROM ({_ENROLLED}) x GROUP BY 1, 2),"
            " m AS (SELECT master_id, array_agg(source) AS sources FROM e GROUP BY master_id HAVING count(*) > 1)"
            " SELECT 'source' AS kind, source AS a, CAST(NULL AS text) AS b, count(*) AS masters, sum(n) AS records,"
            "        count(*) FILTER (WHERE n > 1) AS twice FROM e GROUP BY source"
            " UNION ALL SELECT 'cross', NULL, NULL, count(*), NULL, NULL FROM m"
            " UNION ALL SELECT 'pair', a.s, b.s, count(*), NULL, NULL FROM m"
            "   CROSS JOIN LATERAL unnest(m.sources) AS a (s) CROSS JOIN LATERAL unnest(m.sources) AS b (s)"
            "   WHERE a.s < b.s GROUP BY a.s, b.s"), {"mine": list(mine)}):
        if r.kind == "source":
            per_source[r.a] = (int(r.records), int(r.masters), int(r.twice))
        elif r.kind == "cross":
            cross = int(r.masters)
        else:
            pairs[(r.a, r.b)] = int(r.masters)
    return per_source, cross, pairs


def value_conflicts(conn: sa.Connection, mine: Sequence[str], department_of: Mapping[str, str],
                    fields: Sequence[str], other: str) -> dict:
    """Masters where a value of one of ``fields`` given by a source of ``mine`` differs from the value a
    source of another department gives (``mpi.golden_conflict``); only counts come back.

    ``department_of``: source → department (sources not in it count as department ``other``).
    Returns ``totals`` (field → (masters, of those with none of ``mine``'s values chosen)),
    ``by_department`` (field → other department → masters), ``by_source`` (field → own source → masters)
    and ``masters`` (masters with any such conflict).
    """
    sources = sorted(department_of)
    params = {"mine": list(mine), "fields": list(fields), "src": sources,
              "dept": [department_of[s] for s in sources], "other": other}
    cte = (
        "WITH dept AS (SELECT * FROM unnest(CAST(:src AS text[]), CAST(:dept AS text[])) AS d (source, department)),"
        " v AS (SELECT master_id, field, value, chosen, sources FROM mpi.golden_conflict WHERE field = ANY(:fields)),"
        # one row per (master, field, my source, other department) whose values disagree
        " pair AS (SELECT DISTINCT a.master_id, a.field, ms.source AS my_source,"
        "                 coalesce(d.department, :other) AS other_department"
        "          FROM v a CROSS JOIN LATERAL unnest(a.sources) AS ms (source)"
        "          JOIN v b ON b.master_id = a.master_id AND b.field = a.field AND b.value <> a.value"
        "          CROSS JOIN LATERAL unnest(b.sources) AS os (source)"
        "          LEFT JOIN dept d ON d.source = os.source"
        "          WHERE ms.source = ANY(:mine) AND os.source <> ALL(:mine))")
    totals = {r.field: (int(r.masters), int(r.not_chosen)) for r in conn.execute(sa.text(
        cte + ", hit AS (SELECT DISTINCT master_id, field FROM pair)"
        " SELECT h.field, count(*) AS masters,"
        "        count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM v WHERE v.master_id = h.master_id"
        "                         AND v.field = h.field AND v.chosen AND v.sources && CAST(:mine AS text[])))"
        "          AS not_chosen"
        " FROM hit h GROUP BY h.field"), params)}
    by_department: dict[str, dict[str, int]] = {}
    for r in conn.execute(sa.text(
            cte + " SELECT field, other_department, count(DISTINCT master_id) AS n FROM pair GROUP BY 1, 2 ORDER BY 1, 2"),
            params):
        by_department.setdefault(r.field, {})[r.other_department] = int(r.n)
    by_source: dict[str, dict[str, int]] = {}
    for r in conn.execute(sa.text(
            cte + " SELECT field, my_source, count(DISTINCT master_id) AS n FROM pair GROUP BY 1, 2 ORDER BY 1, 2"),
            params):
        by_source.setdefault(r.field, {})[r.my_source] = int(r.n)
    masters = conn.execute(sa.text(cte + " SELECT count(DISTINCT master_id) FROM pair"), params).scalar_one()
    return {"totals": totals, "by_department": by_department, "by_source": by_source, "masters": int(masters)}


def open_findings(conn: sa.Connection, department: str) -> tuple[bool, dict[str, int], int | None]:
    """(whether any audit ran, finding kind → open findings ``department`` owns, the last audited release)."""
    if not (_exists(conn, "audit.finding") and _exists(conn, "audit.finding_count")):
        return False, {}, None
    audited = conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM audit.finding) OR EXISTS (SELECT 1 FROM audit.finding_count)")).scalar_one()
    if not audited:
        return False, {}, None
    open_ = {r.kind: int(r.n) for r in conn.execute(sa.text(
        "SELECT kind, count(*) AS n FROM audit.finding WHERE department = :d"
        " AND status IN ('open', 'acknowledged', 'assigned')"
        " GROUP BY kind ORDER BY kind"), {"d": department})}
    last = conn.execute(sa.text(
        "SELECT greatest((SELECT max(release_no) FROM audit.finding_count),"
        "                (SELECT max(last_release) FROM audit.finding))")).scalar_one()
    return True, open_, None if last is None else int(last)


def release_history(conn: sa.Connection) -> list[dict]:
    """Every release, oldest first: release_no, published_at, withdrawn, validation_run_id."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT release_no, published_at, withdrawn_at IS NOT NULL AS withdrawn, validation_run_id"
        " FROM publish.release ORDER BY release_no")).mappings()]


#: Per release of ``:releases``: records and masters per source of ``:mine``, and per release (source NULL) its
#: masters and those on two or more of the sources.
_ENROLMENT_FIGURES = (
    "WITH e AS (SELECT release_no, master_id, source, count(*) AS n FROM publish.enrolment"
    "           WHERE source = ANY(:mine) AND release_no = ANY(:releases) GROUP BY 1, 2, 3),"
    " m AS (SELECT release_no, count(*) AS sources FROM e GROUP BY release_no, master_id)"
    " SELECT release_no, source, sum(n) AS n, count(*) AS m FROM e GROUP BY 1, 2"
    " UNION ALL"
    " SELECT release_no, NULL, count(*), count(*) FILTER (WHERE sources > 1) FROM m GROUP BY 1")


def enrolment_per_release(conn: sa.Connection, mine: Sequence[str], since: int = 0) -> dict[str, dict]:
    """Published enrolments of the sources ``mine`` per release from release ``since`` on: ``records`` (release →
    source → records), ``duplicates`` (release → records beyond the first of a master within a source), ``masters``
    (release → masters) and ``cross`` (release → masters on two or more of the sources).

    A release's enrolments never change once published, so its figures are counted once per set of sources and
    kept in ``audit.enrolment_figure`` (written in the caller's transaction; a reader that does not commit counts
    again next time): a trend of 30 daily releases otherwise read 30 releases of enrolments every day (a county of
    a million has two million per release)."""
    key = ",".join(sorted(set(mine)))
    figures: dict[int, dict] = {}  # release → {records: {source: n}, duplicates, masters, cross}
    kept = _exists(conn, "audit.enrolment_figure")
    if kept:
        for r in conn.execute(sa.text(
                "SELECT release_no, records, duplicates, masters, cross_source AS cross FROM audit.enrolment_figure"
                " WHERE sources = :k AND release_no >= :since"), {"k": key, "since": since}).mappings():
            figures[r["release_no"]] = {"records": {s: int(n) for s, n in r["records"].items()},
                                        **{k: int(r[k]) for k in ("duplicates", "masters", "cross")}}
    missing = [n for n in conn.execute(sa.text("SELECT release_no FROM publish.release WHERE release_no >= :since"
                                               " ORDER BY release_no"), {"since": since}).scalars()
               if n not in figures]
    if missing:
        counted = {n: {"records": {}, "duplicates": 0, "masters": 0, "cross": 0} for n in missing}
        for r in conn.execute(sa.text(_ENROLMENT_FIGURES), {"mine": list(mine), "releases": missing}):
            f = counted[r.release_no]
            if r.source is None:  # the release's masters, and of those on two or more sources
                f["masters"], f["cross"] = int(r.n), int(r.m)
            else:
                f["records"][r.source] = int(r.n)
                f["duplicates"] += int(r.n) - int(r.m)
        if kept:
            conn.execute(sa.text(
                "INSERT INTO audit.enrolment_figure (release_no, sources, records, duplicates, masters, cross_source)"
                " VALUES (:n, :k, :records, :duplicates, :masters, :cross) ON CONFLICT DO NOTHING"),
                [{**f, "n": n, "k": key, "records": json.dumps(f["records"], sort_keys=True)}
                 for n, f in counted.items()])
        figures.update(counted)
    held = {n: f for n, f in figures.items() if f["masters"]}  # releases with enrolments of these sources
    return {"records": {n: f["records"] for n, f in held.items()},
            "duplicates": {n: f["duplicates"] for n, f in held.items()},
            "masters": {n: f["masters"] for n, f in held.items()},
            "cross": {n: f["cross"] for n, f in held.items() if f["cross"]}}


def gate_rows_per_release(conn: sa.Connection, mine: Sequence[str],
                          id_validity_expectation: str) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """At the gate run each release was published on, per source of ``mine``: the rows its suite saw, and
    of those the rows with a usable ID number (rows less ``id_validity_expectation``'s unexpected count,
    where that expectation was evaluated)."""
    rows: dict[int, dict[str, int]] = {}
    valid: dict[int, dict[str, int]] = {}
    if not _exists(conn, "audit.validation_suite"):
        return rows, valid
    for r in conn.execute(sa.text(
            "SELECT p.release_no, s.suite, s.row_count,"
            "       (SELECT sum(v.unexpected_count) FROM audit.validation_result v WHERE v.run_id = s.run_id"
            "        AND v.suite = s.suite AND v.expectation = :exp) AS invalid,"
            "       (SELECT count(*) FROM audit.validation_result v WHERE v.run_id = s.run_id"
            "        AND v.suite = s.suite AND v.expectation = :exp AND v.unexpected_count IS NOT NULL) AS checked"
            " FROM publish.release p JOIN audit.validation_suite s ON s.run_id = p.validation_run_id"
            " WHERE s.suite = ANY(:suites) AND s.row_count IS NOT NULL"),
            {"suites": [SOURCE_SUITE_PREFIX + s for s in mine], "exp": id_validity_expectation}):
        source = r.suite[len(SOURCE_SUITE_PREFIX):]
        rows.setdefault(r.release_no, {})[source] = int(r.row_count)
        if r.checked:
            valid.setdefault(r.release_no, {})[source] = int(r.row_count) - int(r.invalid or 0)
    return rows, valid


def findings_per_release(conn: sa.Connection, department: str) -> tuple[dict[int, dict[str, int]], set[int]]:
    """(release → finding kind → findings ``department`` owned in it, the releases any audit counted)."""
    if not _exists(conn, "audit.finding_count"):
        return {}, set()
    findings: dict[int, dict[str, int]] = {}
    for r in conn.execute(sa.text(
            "SELECT release_no, kind, findings FROM audit.finding_count WHERE department = :d"
            " ORDER BY release_no, kind"), {"d": department}):
        findings.setdefault(r.release_no, {})[r.kind] = int(r.findings)
    audited = set(conn.execute(sa.text("SELECT DISTINCT release_no FROM audit.finding_count")).scalars())
    return findings, audited


def sources_held(conn: sa.Connection) -> set[str]:
    """Every source with records in std or the crosswalk (from their keys' indexes, a probe per source)."""
    from warehouse.bulk import leading_values

    return {*leading_values(conn, "mpi.crosswalk", "source"), *leading_values(conn, "std.resident", "source")}


def current_release_no(conn: sa.Connection) -> int | None:
    """The current release's number, or None before the first release."""
    current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()
    return None if current is None else int(current)
