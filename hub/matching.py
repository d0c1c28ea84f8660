"""Matching runs against the warehouse: a full rebuild or an incremental run, one outcome.

Both modes go through one :class:`mpi.Matcher` (the model, its thresholds and the warehouse's
term-frequency snapshot) and assign master ids with :func:`mpi.ids.assign_master_ids`, so on the
same data they give the same index:

* **full** — :meth:`mpi.Matcher.match_all` on every standardized record; the stored features and
  links are replaced. It runs when asked, on the first run, and when the model or the snapshot changed.
* **incremental** — :meth:`mpi.Matcher.match_delta` on the records that are new, changed or gone
  since the last run, against the stored state (:class:`warehouse.matching_state.MatchingStore`).

This module does the I/O around the matcher: reading std and the stored state, writing the
crosswalk, master ids, review pairs, events and golden records — in bulk (COPY, set-based statements;
a first run fills its empty tables and builds their indexes afterwards). Both modes rebuild only the
golden records of masters whose records or anchor changed (and every one when the survivorship rules
did: :func:`warehouse.golden.rebuild_golden`). Steward decisions
(:func:`warehouse.matching_state.decisions`, the latest per pair of records and per record) are honoured by
every run: must-link / cannot-link pairs, ID numbers detached from their record (the record's features
are built again), and records a split or move-out took out of a master, which never claim its id.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from hub.errors import HubError
from mpi.delta import Delta
from mpi.features import INPUT_COLUMNS
from mpi.ids import Causes, assign_master_ids
from mpi.matcher import Matcher, MatchOutcome, StepTimer
from mpi.scoring import Frequencies
from warehouse import matching_state as ms
from warehouse.bulk import deferred_when_empty
from warehouse.master_index import apply_assignment, mint_master_ids, store_reviews

log = logging.getLogger(__name__)

Golden = Callable[[sa.Connection, list[str] | None], int]


def _plan(conn: sa.Connection, matcher: Matcher, mode: str, refresh_frequencies: bool
          ) -> tuple[str, bool, tuple[str, int] | None, dict | None]:
    """The mode to run in (``auto``: incremental when possible), whether the model changed, the
    stored model state (version, snapshot records) and the last finished run."""
    if mode not in ("auto", "full", "incremental"):
        raise ValueError(f"unknown matching mode {mode!r}")
    version = matcher.version
    state, last = ms.read_model_state(conn), ms.last_run(conn)
    model_changed = last is not None and (last["model_version"] != version or (state and state[0] != version))
    possible = last is not None and state is not None and not model_changed and not refresh_frequencies
    if mode == "incremental" and not possible:
        why = ("no earlier run" if last is None or state is None else
               "the model changed since the last run" if model_changed else "new term frequencies were asked for")
        raise HubError(f"an incremental run is not possible: {why}; run a full rebuild (hub match --full)")
    mode = "incremental" if mode == "auto" and possible else ("full" if mode == "auto" else mode)
    return mode, bool(model_changed), state, last


def _full(conn: sa.Connection, matcher: Matcher, snapshot_records: int | None, must, cannot, on_progress,
          step: StepTimer) -> MatchOutcome:
    """Match every standardized record and replace the stored features and links. With
    ``snapshot_records`` the stored term-frequency snapshot is used, else a new one is taken and stored."""
    std = ms.read_std(conn, INPUT_COLUMNS)
    step("read")
    # features in record-key order, as they are stored; the standardized frame can go before matching
    feats = matcher.features(std).sort_values("record_key", kind="stable").reset_index(drop=True)
    del std
    step("features")
    if snapshot_records is not None:
        matcher = matcher.with_frequencies(Frequencies(ms.read_frequencies(conn), snapshot_records))
    outcome = matcher.match_all(feats, must=must, cannot=cannot, on_progress=on_progress)
    del feats
    step.merge(outcome.seconds)
    if snapshot_records is None:
        ms.save_frequencies(conn, outcome.frequencies.tables, outcome.frequencies.records, matcher.version)
    ms.write_features(conn, outcome.features, replace_all=True)
    ms.write_edges(conn, outcome.links, replace_all=True)
    step("write_state")
    return outcome


def _incremental(conn: sa.Connection, matcher: Matcher, new: set[str], restd: set[str], gone: set[str],
                 steward: set[str], must, cannot, on_progress, step: StepTimer) -> MatchOutcome:
    """Match what changed since the last run against the stored state. Records whose ID number a
    steward detached since then are read again, as if re-standardized: their features change."""
    restd = restd | ((steward & matcher.detached) - new - gone)
    records = ms.read_std(conn, INPUT_COLUMNS, new | restd) if new | restd else None
    step("read")
    delta = Delta(records=records, new=new, restandardized=restd, removed=gone, decided=steward)
    outcome = matcher.match_delta(delta, ms.MatchingStore(conn), must=must, cannot=cannot, on_progress=on_progress)
    step.merge(outcome.seconds)
    return outcome


def run_matching(conn: sa.Connection, *, mode: str = "auto", model_path: str | Path | None = None,
                 refresh_frequencies: bool = False, on_progress: Callable[[str, dict], None] | None = None,
                 golden: Golden | None = None, backend: str = "duckdb", backend_options: dict | None = None) -> dict:
    """Run matching in ``mode`` (``auto``: incremental when possible) and store the outcome.

    ``golden(conn, master_ids)`` rebuilds golden records (``None``: all). ``backend``: the matcher's
    (``duckdb`` or ``spark``), ``backend_options`` go to it (:class:`mpi.Matcher`). One run at a time: a second one
    waits for the first to commit (the index lock, :mod:`warehouse.locks`). The run records what it ran
    with (model, rules, code version, Airflow run: :mod:`hub.provenance`) in ``mpi.link_run.ran_with``."""
    from hub.provenance import ran_with

    matcher = Matcher.from_model(model_path, backend=backend, backend_options=backend_options)
    ms.lock_matching(conn)  # before planning: a run that waited for another plans on what that one stored
    mode, model_changed, state, last = _plan(conn, matcher, mode, refresh_frequencies)
    run_id = ms.start_run(conn, mode, matcher.version, ran_with(matcher.model_path))
    decided = ms.decisions(conn, since=last["started_at"] if last else None)
    must, cannot, steward = decided.must, decided.cannot, decided.recent
    matcher = dataclasses.replace(matcher, detached=frozenset(decided.detached))
    t0 = time.perf_counter()
    step = StepTimer()
    new, restd, gone = ms.delta(conn)
    step("delta")
    if mode == "full":
        new_snapshot = state is None or model_changed or refresh_frequencies
        outcome = _full(conn, matcher, None if new_snapshot else state[1], must, cannot, on_progress, step)
        model_changed = model_changed or (new_snapshot and state is not None)
        changed = restd & outcome.region
    else:
        outcome = _incremental(conn, matcher, new, restd, gone, steward, must, cannot, on_progress, step)
        changed = outcome.changed
    causes = Causes(new=new, changed=changed, deleted=gone, steward=steward, model_changed=model_changed)
    counts = _store_index(conn, run_id, mode, outcome, causes, restd, golden, step, decided.leaving)
    counts.update({k: outcome.stats[k] for k in ("rescored", "candidates") if k in outcome.stats})
    counts.update({"mode": mode, "records": int(outcome.stats["records"]), "affected": int(len(outcome.region)),
                   "new": len(new), "changed": len(changed), "removed": len(gone), "run_id": run_id,
                   "clusters_in_region": int(outcome.clusters["cluster_key"].nunique()),
                   "seconds": round(time.perf_counter() - t0, 2), "step_seconds": step.seconds})
    counts.update({f"linked_{k}": int(v) for k, v in outcome.clusters["reason"].value_counts().items()})
    if mode == "full":  # fresh statistics, so that the next incremental run's lookups plan well
        ms.analyze_index(conn)
        step("analyze")
    ms.finish_run(conn, run_id, counts["records"], counts["affected"], counts)
    log.info("matching run %d (%s): %s", run_id, mode, counts)
    return counts


def _store_index(conn: sa.Connection, run_id: int, mode: str, outcome: MatchOutcome, causes: Causes,
                 restd: set[str], golden: Golden | None, step: StepTimer, leaving: dict[str, str]) -> dict:
    """Carry master ids over to the outcome's clusters and write the crosswalk, masters, events,
    review pairs and the golden records the run touched."""
    full = mode == "full"
    region, gone = outcome.region, set(causes.deleted)
    clusters = outcome.clusters
    previous = ms.read_previous(conn, None if full else region | gone)
    step("read_previous")
    with deferred_when_empty(conn, "mpi.master"):  # a first run: the masters' indexes built once, at the end
        assignment = assign_master_ids(clusters[["record_key", "cluster_key"]], previous,
                                       mint=lambda n: mint_master_ids(conn, n), causes=causes, leaving=leaving)
        step("assign_ids")
        crosswalk = assignment.crosswalk.assign(match_rule=clusters["reason"].to_numpy())
        anchors = pd.DataFrame({"master_id": crosswalk["master_id"].to_numpy(),
                                "anchor": outcome.anchors().to_numpy()}).drop_duplicates("master_id")
        counts = apply_assignment(conn, run_id, crosswalk, sorted(gone), assignment.retired, assignment.events,
                                  anchors)
    step("write_index")
    counts["reviews"] = store_reviews(conn, outcome.reviews, None if full else sorted(region | gone))
    # golden records to rebuild: masters that gained, lost or kept a record that changed in any way,
    # retired ones, and those whose anchor moved — on a full run too, so that a run finding the same
    # masters on the same records rebuilds none (and one that finds a master without its golden record
    # rebuilds that one)
    touched = _touched(previous, assignment.crosswalk, set(causes.new) | set(restd), gone) \
        | set(assignment.retired["master_id"]) | set(counts.pop("anchors_changed"))
    if full:
        touched |= set(ms.masters_without_golden(conn))
    else:  # re-standardized records outside the region (a new status, say)
        touched |= set(ms.read_previous(conn, restd - region)["master_id"])
    counts["golden"] = golden(conn, sorted(touched)) if golden else 0
    step("golden")
    counts.update(assignment.counts())
    counts["masters_created"] = counts.get("events_created", 0)
    return counts


def _touched(previous: pd.DataFrame, crosswalk: pd.DataFrame, changed: set[str], gone: set[str]) -> set[str]:
    """Masters that gain or lose a record, or hold (or held) one of ``changed`` or ``gone``, in columns."""
    was = pd.Series(previous["master_id"].to_numpy(dtype=object), dtype=object,  # object columns: fast set lookups
                    index=pd.Index(previous["record_key"].to_numpy(dtype=object), dtype=object))
    now = pd.Series(crosswalk["master_id"].to_numpy(dtype=object), dtype=object,
                    index=pd.Index(crosswalk["record_key"].to_numpy(dtype=object), dtype=object))
    before = was.reindex(now.index).to_numpy(dtype=object)
    moved_mask = now.to_numpy(dtype=object) != before
    moved = set(now.index[moved_mask])
    concerned_was = _in(was.index, changed | gone) | _in(was.index, moved)
    return set(now[moved_mask | _in(now.index, changed)].unique()) | set(was[concerned_was].unique())


def _in(index: pd.Index, keys: set[str]) -> np.ndarray:
    return index.isin(np.fromiter(keys, dtype=object, count=len(keys))) if keys else np.zeros(len(index), bool)
