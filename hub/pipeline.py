"""The pipeline steps. The DAGs and the CLI call these same functions; there is no second path.

Each step takes and returns small summaries (counts, ids), never personal data, so its result
can travel through XCom and logs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from connectors import cursors
from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionParts, connection_from_env
from connectors.kinds import extractor
from connectors.registry import get_source, load_registry, source_departments
from hub import settings
from hub.errors import GateFailed, HubError
from schemas.masking import mask_id_number
from warehouse import landing
from warehouse.landing import LoadCounts, LoadIdentityError

log = logging.getLogger("hub.pipeline")


def prepare_warehouse() -> str:
    """Create or upgrade the warehouse layers; returns the schema revision."""
    from warehouse.migrate import upgrade

    return upgrade(settings.engine())


def source_names() -> list[str]:
    """The registered sources, by name."""
    return sorted(load_registry())


class _Drift:
    """Columns the source sends that the registry does not declare, and declared ones it stopped sending."""

    def __init__(self, declared: list[str]):
        self.declared, self.seen = set(declared), set()

    def observe(self, chunk: Chunk) -> None:
        if chunk.columns is not None:
            self.seen.update(c for c in chunk.columns if c)
        else:
            for record in chunk.records:
                if isinstance(record, dict):
                    self.seen.update(record)

    def report(self) -> dict | None:
        if not self.seen:
            return None
        added, removed = sorted(self.seen - self.declared), sorted(self.declared - self.seen)
        return {"added": added, "removed": removed} if added or removed else None


class FilesHeld(HubError):
    """A load committed, but a file could not be used or moved aside (it is named); running again does not help."""


class _Load:
    """One batch of one source in the making: its counts, the keys of the snapshot so far, the cursor reached."""

    def __init__(self, source, batch_id: int, cursor: cursors.Stamp | None):
        self.source, self.batch_id, self.best = source, batch_id, cursor  # best: the greatest update time landed
        self.counts, self.drift, self.seen, self.after = LoadCounts(), _Drift(source.fields), set(), []
        self.fetched_at = dt.datetime.now(dt.UTC)
        self.held: list[tuple[str, bool, bool]] = []  # files that are not a snapshot: (reason, waits, unreadable)
        self.last_snapshot: int | None = None  # records of the source's last complete file (read when needed)

    def land(self, db, chunk: Chunk) -> LoadCounts:
        """Land one chunk in the batch's transaction; the last part of a file ends a snapshot of the source."""
        source, name, batch_id = self.source, self.source.name, self.batch_id
        deleted_flag = (source.deleted.field, source.deleted.value) if source.deleted else None
        records, set_aside = self._screen_update_times(db, chunk)
        c = landing.land_records(db, source=name, batch_id=batch_id, records=records,
                                 primary_key=source.primary_key, fetched_at=self.fetched_at,
                                 deleted_flag=deleted_flag, volatile_fields=source.volatile_fields, label=chunk.label)
        c.quarantined += landing.quarantine(db, source=name, batch_id=batch_id, rows=chunk.bad_rows) + set_aside
        c.received += len(chunk.bad_rows) + set_aside
        c.files_unchanged += chunk.unchanged
        self.drift.observe(chunk)
        self.seen |= {str(r[source.primary_key]) for r in chunk.records
                      if isinstance(r, dict) and r.get(source.primary_key) not in (None, "")}
        self.seen.update(chunk.bad_row_keys)  # a bad row whose key could be read deletes nothing
        if chunk.snapshot_key or chunk.problem:  # the end of a file
            c.tombstones += self._end_file(db, chunk)
        self.counts.add(c)
        if chunk.after_commit and not (chunk.snapshot_key or chunk.problem):
            self.after.append((chunk.after_commit, "moved into processed/"))
        return c

    def _end_file(self, db, chunk: Chunk) -> int:
        """End a file. A whole one is a full snapshot of the source: what it lacks was deleted (returns the
        tombstones). One that did not read whole, or holds far fewer records than the last complete file,
        deletes nothing and goes into rejected/ once the load commits."""
        name, seen, self.seen = self.source.name, self.seen, set()
        problem = chunk.problem or self._shrunk(db, chunk.file_name, len(seen))
        if problem:
            waits = getattr(self.source, "on_incomplete", "fail") == "wait" and not chunk.unreadable
            self.held.append((problem, waits, chunk.unreadable))
            kept = "nothing of it was landed" if chunk.unreadable else "its good rows landed, nothing was deleted"
            kept += ", waiting for the next complete file" if waits else ""
            log.log(logging.WARNING if waits else logging.INFO, "%s: %s; %s", name, problem, kept)  # a failure ends
            if chunk.reject:  # the load with it
                self.after.append((lambda: chunk.reject(f"{name}: {problem} ({kept})"), "moved into rejected/"))
            landing.file_ended(db)
            return 0
        tombstones = landing.record_absent(db, source=name, batch_id=self.batch_id, seen=seen)
        landing.record_ingested_file(db, source=name, file_hash=chunk.snapshot_key, file_name=chunk.file_name,
                                     batch_id=self.batch_id, records=len(seen), stamp=chunk.file_stamp)
        self.last_snapshot = len(seen)
        if chunk.after_commit:
            self.after.append((chunk.after_commit, "committed; the next run only moves it"))
        return tombstones

    def _shrunk(self, db, file_name: str | None, count: int) -> str | None:
        """Why a file is not a snapshot when it holds far fewer records than the source's last complete file."""
        share = getattr(self.source, "min_snapshot_share", 0)
        if self.last_snapshot is None:
            self.last_snapshot = landing.last_snapshot_records(db, self.source.name) or 0
        if count < share * self.last_snapshot:
            return (f"{file_name}: holds {count} records, fewer than {share:.0%} of the {self.last_snapshot} of the"
                    " last complete file")
        return None

    def outcome(self) -> tuple[str, str | None]:
        """The batch's status and note. A file that cannot be read, or is incomplete where the source says
        ``on_incomplete: fail``, fails the batch; the good rows it landed stay committed with their counts.
        Files waiting for a complete one leave it 'succeeded', named in the note."""
        failed = [reason for reason, waits, _ in self.held if not waits]
        waiting = [reason for reason, waits, _ in self.held if waits]
        if failed:
            return "failed", "; ".join(failed + waiting)[:2000]
        if waiting:
            return "succeeded", ("not a snapshot, waiting for the next complete file: " + "; ".join(waiting))[:2000]
        return "succeeded", None

    def finish(self) -> None:
        """Once the load is committed: move the files aside, then end with one line for each file that could
        not be used (unless it only waits for the next complete one) or moved."""
        lines = []
        for move, done in self.after:
            try:
                move()
            except ExtractError as exc:  # names the file and the folder
                lines.append(f"{exc}; its records are {done}" if done.startswith("committed") else str(exc))
        for reason, waits, unreadable in self.held:
            kept = "nothing of it was landed" if unreadable else "its good rows landed, nothing was deleted"
            if not waits:
                lines.append(f"{reason} ({kept}; see rejected/)")
        if lines:
            raise FilesHeld(f"{self.source.name}: " + "; ".join(lines))

    def _screen_update_times(self, db, chunk: Chunk) -> tuple[list, int]:
        """The chunk's records to land, and how many were quarantined here because their update time cannot
        be read or lies after the extract began (they do not move the cursor). The cursor follows the rest."""
        inc = self.source.incremental
        if inc is None:
            return chunk.records, 0
        keep, aside, best = cursors.screen(chunk.records, inc.field, started=self.fetched_at, zone=inc.timezone,
                                           fmt=inc.format)
        self.best = cursors.later(self.best, best)
        rows = []
        for position, reason, what in aside:
            record = chunk.records[position]
            key = record.get(self.source.primary_key)
            key = None if key is None or str(key).strip() == "" else str(key)
            where = f"{chunk.label}, record {position}" + (f" (key {mask_id_number(key)})" if key else "")
            rows.append((key, reason, f"{where}: {what}", record))
        if rows:
            landing.quarantine_set_aside(db, source=self.source.name, batch_id=self.batch_id, rows=rows)
            log.warning("%s %s: %d record(s) quarantined for their update time: %s", self.source.name, chunk.label,
                        len(rows), rows[0][2])
        return keep, len(rows)

    def cursor(self) -> str | None:
        """The cursor this batch reached, never later than when it began."""
        return cursors.stored_text(self.best, self.fetched_at)


def ingest_source(name: str, conn: ConnectionParts | None = None, *, full: bool = False,
                  on_chunk: Callable[[Chunk, LoadCounts], None] | None = None) -> dict:
    """Extract source ``name`` and land what it sends in raw, as one load batch.

    Sources whose kind reads a cursor (REST, SQL) run incrementally from the stored cursor, less the
    source's overlap window (``full`` forces a complete extract, which also finds records deleted at
    the source; a source's ``full_extract_every_days`` schedules one); file sources take every new
    file. Records whose update time cannot be read or lies after the extract began are quarantined
    and never move the cursor. The batch and the cursor commit together, or not at all; a failed
    batch is recorded with its error. The result gives the ``mode`` and why (``mode_reason``).
    """
    source = get_source(name)
    conn = conn or connection_from_env(source.conn_id)
    eng = settings.engine()
    with landing.source_lock(eng, name) as held:
        # one load of a source at a time; a batch left 'running' without the lock was interrupted
        if not held:
            raise HubError(f"{name}: another load of this source is running")
        return _ingest_locked(source, conn, eng, full=full, on_chunk=on_chunk)


def _ingest_locked(source, conn, eng, *, full: bool, on_chunk) -> dict:
    name, kind = source.name, extractor(source.kind)
    with eng.begin() as db:
        landing.fail_interrupted_batches(db, name)
        batch_id = landing.open_batch(db, name)
        stored = landing.source_cursor(db, name)
        last_full = landing.last_full_extract(db, name) if source.full_extract_every_days else None
        already = frozenset(landing.ingested_files(db, name))
        stamps = landing.ingested_file_stamps(db, name)
        last_file = landing.last_snapshot_file(db, name)
    mode, since, cursor, why = _plan_extract(source, kind, stored, last_full, full=full)
    log.info("%s: %s extract: %s", name, mode, why)
    state = ExtractState(since=since, ingested_files=already, file_stamps=stamps, last_file=last_file,
                         timeout=settings.http_timeout(),
                         retry_after_cap=settings.retry_after_cap(), deadline=settings.extract_deadline())
    load = _Load(source, batch_id, cursor)
    try:
        with eng.begin() as db:
            for chunk in kind.extract(source, conn, state):
                c = load.land(db, chunk)
                log.info("%s %s: received %d, landed %d, quarantined %d, duplicates %d, tombstones %d%s", name,
                         chunk.label, c.received, c.landed, c.quarantined, c.duplicates, c.tombstones,
                         f" (total {load.counts.received} of {chunk.total})" if chunk.total else "")
                if on_chunk:
                    on_chunk(chunk, c)
            if not kind.marks_snapshots and mode == "full":  # a complete extract: what is missing was deleted
                load.counts.tombstones += _absent_from_extract(db, name, batch_id, load.seen)
            load.counts.check(name)
            if source.incremental:
                landing.advance_cursor(db, name, load.cursor(), batch_id)
            report = load.drift.report()
            if report:
                log.warning("%s: schema drift: columns added %s, declared but missing %s", name, report["added"],
                            report["removed"])
            landing.close_batch(db, batch_id, load.counts, *load.outcome(), mode=mode, schema_drift=report)
    except Exception as exc:
        # messages of our own errors name source and page only; others are reduced to their type
        reason = str(exc) if isinstance(exc, ExtractError | LoadIdentityError) else type(exc).__name__
        with eng.begin() as db:
            landing.close_batch(db, batch_id, LoadCounts(), "failed", reason[:2000], mode=mode)
        raise
    load.finish()  # only once the data is committed: files moved aside, and what could not be used reported
    counts = load.counts
    log.info("%s: batch %d (%s) received %d, landed %d, quarantined %d, duplicates %d, tombstones %d", name,
             batch_id, mode, counts.received, counts.landed, counts.quarantined, counts.duplicates, counts.tombstones)
    return {"source": name, "batch_id": batch_id, "mode": mode, "mode_reason": why, **asdict(counts),
            "schema_drift": load.drift.report()}


def _absent_from_extract(db, name: str, batch_id: int, seen: set[str]) -> int:
    """Tombstone what a complete extract did not send, unless it sent one key twice with different content:
    a platform whose order shifted between pages can repeat a record and skip another, and the skipped
    one would be deleted here. Deletions then wait for the next complete extract without conflicts."""
    conflicts = landing.conflicting_keys(db, batch_id)
    if conflicts:
        log.warning("%s: deletions not inferred from this complete extract: it sent %d key(s) twice with different"
                    " content (see raw.quarantine), so a record it skipped could look deleted", name, conflicts)
        return 0
    return landing.record_absent(db, source=name, batch_id=batch_id, seen=seen)


def _plan_extract(source, kind, stored: str | None, last_full: dt.datetime | None, *,
                  full: bool) -> tuple[str, str | None, cursors.Stamp | None, str]:
    """How the next extract of ``source`` runs: (mode, what to ask the source for since, the cursor to start
    from, why). A stored cursor that cannot be read or lies in the future is dropped for a complete extract;
    a source with ``full_extract_every_days`` gets a complete extract when its last one is that old."""
    inc = source.incremental
    if not (kind.reads_cursor and inc):
        return "full", None, None, "every extract of this source is complete"
    now = dt.datetime.now(dt.UTC)
    cursor = cursors.read_stamp(stored, zone=inc.timezone, fmt=inc.format) if stored else None
    if stored and cursor is None:
        return "full", None, None, "the stored cursor is not an update time in a known format"
    if cursor and cursor.at > now + cursors.CLOCK_SKEW:
        return "full", None, None, f"the stored cursor {cursor.text[:40]!r} is later than now"
    if full:
        return "full", None, cursor, "a complete extract was asked for"
    if cursor is None:
        return "full", None, None, "first load: there is no cursor yet"
    every = source.full_extract_every_days
    if every and last_full is None:
        return "full", None, cursor, f"scheduled every {every} days: no complete extract yet"
    if every and now - last_full >= dt.timedelta(days=every):
        from reports.render import beijing_time

        return "full", None, cursor, (f"scheduled every {every} days: the last complete extract finished "
                                      f"{beijing_time(last_full)}")
    since = cursor.write(cursor.at - dt.timedelta(minutes=inc.overlap_minutes))
    return "incremental", since, cursor, f"changes since {since} (the cursor less {inc.overlap_minutes:g} minutes)"


def standardize_sources(names: list[str] | None = None, *, full: bool = False) -> dict:
    """Bring std.resident up to date with raw, for each source (all registered sources by default).

    Only new and changed raw records are standardized; records deleted at the source leave std.
    ``full`` rebuilds every source from raw (after a change of mappings or standardizers).
    Provenance (raw record, load batch) stays with every std record. A second run at the same time,
    or one while matching, a gate or a publish runs, waits for it (:mod:`warehouse.locks`).
    """
    from schemas.resident import standardize_frame
    from warehouse.locks import lock_index
    from warehouse.standardized import clear_source, drop_stale, insert_standardized, pending_raw

    result: dict[str, dict] = {}
    with settings.engine().begin() as conn:
        lock_index(conn)  # one at a time, and never while matching, a gate or a publish reads std
        for name in names or source_names():
            source = get_source(name)
            removed = clear_source(conn, name) if full else drop_stale(conn, name)
            raw = pending_raw(conn, name, source.mapping)
            std = standardize_frame(raw, sex_codes=source.codes.get("sex"), date_formats=source.date_formats or None,
                                    default_county=settings.default_county())
            std["program"] = source.program
            written = insert_standardized(conn, std)
            statuses = std["id_number_status"].value_counts().to_dict() if written else {}
            result[name] = {"standardized": written, "removed": removed,
                            "id_number_status": {k: int(v) for k, v in statuses.items()}}
            log.info("%s: %d records standardized, %d stale or deleted removed; ID number statuses %s", name, written,
                     removed, result[name]["id_number_status"])
    return result


def build_master_index(on_progress: Callable[[str, dict], None] | None = None, *, mode: str = "auto",
                       model_path: str | Path | None = None, refresh_frequencies: bool = False,
                       backend: str | None = None) -> dict:
    """Match standardized records into master ids (incremental when possible; see :mod:`hub.matching`),
    store the review pairs and events, and rebuild the golden records the run touched. ``backend``: the
    matcher's (default ``HUB_MATCH_BACKEND``; Spark runs on ``HUB_SPARK_MASTER``)."""
    from hub.link_files import matcher_backend
    from hub.matching import run_matching
    from mpi.survivorship import load_rules
    from warehouse.figures import master_count
    from warehouse.golden import rebuild_golden

    rules = load_rules()
    departments = source_departments()
    backend, options = matcher_backend(backend)
    with settings.engine().begin() as conn:
        counts = run_matching(conn, mode=mode, model_path=model_path, refresh_frequencies=refresh_frequencies,
                              on_progress=on_progress,
                              golden=lambda c, ids: rebuild_golden(c, rules, departments, ids),
                              backend=backend, backend_options=options)
        counts["masters"] = master_count(conn)
    log.info("master index: %s", counts)
    return counts


def run_gate() -> dict:
    """Run the publish gate: a suite per standardized source (with the records it deleted since the
    last gate run that passed) and the master-index suites, in one Great Expectations checkpoint on
    PostgreSQL. Records the run for auditors, rebuilds the Data Docs,
    and raises :class:`GateFailed` (recording why, keeping the current release) if any expectation
    fails. The scorecards show the outcome once :func:`build_reports` runs.

    One gate run at a time (a second waits); while it runs, no standardizing or matching commits, so it
    validates one state of the index, whose digest it records: a publish of anything else is held. The run
    records what it ran with (:mod:`hub.provenance`)."""
    from warehouse.locks import INDEX_LOCK, held

    with held(settings.engine(), "hub:gate", shared=(INDEX_LOCK,)):
        return _run_gate_locked()


def _run_gate_locked() -> dict:
    from expectations.gate import load_gate_rules, run_gate_suites
    from hub.audits import refresh_gate_findings
    from hub.provenance import ran_with
    from warehouse.audit import last_passed_gate_at, last_passed_row_counts, record_gate_run
    from warehouse.releases import content_state, current_release, record_blocked
    from warehouse.validation import deletions_since, source_row_counts

    context = ran_with()
    with settings.engine().connect() as conn:
        validated, state = content_state(conn, source_departments())
        rows = source_row_counts(conn)
        # every registered source, so that one whose load came back empty is checked against its last count
        sources = sorted(set(load_registry()) | set(rows))
        previous_rows = last_passed_row_counts(conn)
        current = current_release(conn)
        # what each source deleted since the last gate run that passed, or the current release (none before)
        since = last_passed_gate_at(conn) or (current["published_at"] if current else None)
        deleted = deletions_since(conn, since) if since is not None else {}
    summaries = run_gate_suites(settings.database_url(), settings.gx_dir(), sources=sources,
                                previous_row_counts=previous_rows,
                                previous_master_count=current["master_count"] if current else None,
                                rules=load_gate_rules(), row_counts=rows,
                                deletions={name: deleted.get(name, (0, 0, 0)) for name in sources} if since else None)
    docs = next((s.docs_index for s in summaries if s.docs_index), None)
    failing = [(s.suite, o) for s in summaries for o in s.outcomes if not o.success]
    evaluated = sum(s.evaluated for s in summaries)
    with settings.engine().begin() as conn:
        run_id = record_gate_run(conn, ({"suite": s.suite, "success": s.success, "row_count": s.row_count,
                                         "outcomes": [asdict(o) for o in s.outcomes]} for s in summaries),
                                 docs_path=str(docs or ""), ran_with=context, content_hash=validated,
                                 index_state=state)
        refresh_gate_findings(conn, run_id)  # its failed expectations in the auditors' inbox, the fixed ones resolved
        reason = "; ".join(f"{suite}: {o.table or '-'}.{o.column or '*'} {o.expectation}: {o.observed}"
                           for suite, o in failing)
        if failing:
            record_blocked(conn, run_id, f"gate failed: {reason}", ran_with=context)
    result = {"validation_run_id": run_id, "evaluated": evaluated, "successful": evaluated - len(failing),
              "failed": len(failing), "suites": len(summaries), "docs": str(docs or "")}
    if failing:
        for suite, o in failing:
            log.error("gate: %s: %s on %s.%s failed: %s", suite, o.expectation, o.table or "-", o.column or "*",
                      o.observed)
        raise GateFailed(f"the publish gate failed {len(failing)} of {evaluated} expectations "
                         f"(validation run {run_id}); the current release stays in place: {reason}")
    log.info("gate passed: %d expectations in %d suites (validation run %d)", evaluated, len(summaries), run_id)
    return result


def publish_release(validation_run_id: int) -> dict:
    """Publish the master index as a new release (or keep the current one when nothing changed).

    Publishes only what gate run ``validation_run_id`` validated; one publish at a time. The attempt and the
    release record what they were made with (model, rules, code version, Airflow run)."""
    from hub.provenance import ran_with
    from warehouse.changes import record_changes
    from warehouse.releases import publish

    with settings.engine().begin() as conn:
        outcome = publish(conn, validation_run_id, source_departments(), ran_with=ran_with())
        if outcome.outcome == "published":  # the departments' change feed and webhook outbox, with the release
            record_changes(conn, outcome.release_no)
    log.info("release: %s %s (%s)", outcome.outcome, outcome.release_no, outcome.reason)
    if outcome.outcome == "published":
        from hub.webhooks import deliver_after_publish

        deliver_after_publish(settings.engine())
    return asdict(outcome)


def audit_release(release_no: int | None = None) -> dict:
    """Run the cross-department consistency audits on a release (default: the current one) and refresh
    the findings; :func:`build_reports` writes the findings workbooks and the audit report from them."""
    from hub.audits import run_audits

    counts = run_audits(settings.engine(), release_no)
    log.info("audits of release %s: %d open findings (%d new, %d resolved)", counts["release_no"],
             counts["open"], counts["new"], counts["resolved"])
    return counts


def build_reports() -> dict:
    """Write what people read after a run, once: each department's findings workbook and the audit
    report (``HUB_HOME/audit``), and beside the Data Docs the data-quality scorecard ``scorecard.html``
    with one ``scorecard_<department>.html`` per department holding only its own sources.
    Returns the paths and page counts (text and numbers only). A second run at the same time waits for
    the first (they write the same files)."""
    from warehouse.locks import held

    with held(settings.engine(), "hub:reports"):
        return _build_reports_locked()


def _statistical_reports() -> int:
    """Write the statistical reports (统计报表) of the current release that the reporting calendar says are due
    (:mod:`reports.report_calendar`; ``HUB_REPORTS_DUE``) for the county and every community into
    HUB_HOME/reports/<release>/ with an index.html (``HUB_REPORTS`` says which kinds); the number of files."""
    from zoneinfo import ZoneInfo

    from reports import report_calendar
    from reports.report_spec import shipped_statistics
    from reports.stat_form import write_all
    from reports.stat_reuse import earlier_folder
    from reports.statistics import kind_spec
    from warehouse.releases import current_release

    kinds = settings.statistical_reports()
    every_release = settings.reports_every_release()
    with settings.engine().connect() as conn:
        release = current_release(conn)
        if kinds == [] or release is None:
            return 0
        config = shipped_statistics()
        for kind in kinds or ():
            kind_spec(kind, config)  # an unknown kind is named before anything is written
        zone = ZoneInfo(config.timezone)
        root = settings.hub_home() / "reports"
        plan = report_calendar.plan(root, list(config.kinds) if kinds is None else kinds, config,
                                    release_no=release["release_no"],
                                    release_date=release["published_at"].astimezone(zone).date(),
                                    every_release=every_release)
        if plan.not_due:
            log.info("reports: not due for release %d: %s (%s)", plan.release_no, plan.describe(config), root)
        if not plan.due:
            return 0
        folder = root / str(release["release_no"])
        # forms whose content is the same as in the latest other release's folder are copied from there with
        # this release's labels; the others are rendered
        done = write_all(conn, folder, kinds=plan.due, release_no=release["release_no"],
                         earlier=earlier_folder(root, release["release_no"]), since=plan.since)
    report_calendar.record(root, plan)
    log.info("reports: %d statistical reports (%s) of release %d in %s (%d unchanged since the release before,"
             " copied with this release's labels)", done["files"], ", ".join(plan.due), done["release_no"], folder,
             done["carried"])
    return done["files"]


def _build_reports_locked() -> dict:
    from expectations.sources import load_gate_rules
    from hub.audits import export_all
    from reports.department_scorecard import build_department_scorecards
    from reports.scorecard import build_scorecard, collect_scorecard
    from warehouse.sharing import department_titles

    audit = export_all(settings.engine())
    result = {"audit_report": str(audit.get("report", "")), "findings_workbooks": len(audit) - ("report" in audit),
              "scorecard": "", "department_scorecards": 0, "statistical_reports": _statistical_reports()}
    docs = settings.gx_dir() / "gx" / "uncommitted" / "data_docs" / "local_site"
    if not docs.is_dir():  # the scorecards sit beside the gate's Data Docs: none before the first gate run
        log.info("reports: audit report %s; no scorecard before the first gate run", result["audit_report"])
        return result
    registry = load_registry()
    departments: dict[str, list[str]] = {}
    for name, source in registry.items():
        departments.setdefault(source.department, []).append(name)
    titles = {name: source.title for name, source in registry.items()}
    department_names = department_titles()
    thresholds = load_gate_rules().scorecard_thresholds()
    with settings.engine().begin() as conn:  # committed: the enrolment figures of releases counted for the first time
        card = collect_scorecard(conn, departments, department_names, source_titles=titles,
                                 source_thresholds=thresholds)
        path = build_scorecard(conn, docs, departments, card=card)
        pages = build_department_scorecards(conn, docs, departments, department_names, source_titles=titles,
                                            source_thresholds=thresholds, overall=card)
    log.info("reports: audit report %s, scorecard %s and %d department pages", result["audit_report"], path,
             len(pages))
    return {**result, "scorecard": str(path), "department_scorecards": len(pages)}
