"""Matching runs against the warehouse: a full rebuild or an incremental run, one outcome.

Both modes score pairs with the same model and the same term-frequency snapshot, cluster with the
same function and assign master ids with :func:`mpi.ids.assign_master_ids`, so on the same data
they give the same index:

* **full** — every standardized record is scored and clustered; the stored features and links
  are replaced. It runs when asked, on the first run, and when the model or the snapshot changed.
* **incremental** — only records that are new, changed or gone since the last run (plus the
  records sharing their ID numbers) are scored, against the stored records their blocking keys
  reach; then the part of the index those links, ids and anchors can reach is clustered again.

Steward decisions (``mpi.review_pair`` rows with a decision) are must-link / cannot-link pairs in
every run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from hub.errors import HubError

log = logging.getLogger(__name__)

# the std.resident columns the matching features are built from
STD_FOR_MATCHING = ("source", "source_record_id", "name_key", "name_pinyin", "name_surname", "id_number_raw",
                    "id_number", "id_number_status", "id_birth_date", "id_sex", "sex", "birth_date", "phone",
                    "address_key", "address_house_no", "address_village", "address_town")
THRESHOLD = 0.99
REVIEW_THRESHOLD = 0.5


class _Steps:
    """Seconds per step of a run, reported with its counts."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 2)
        self._t = now


def model_version(path: str | Path | None = None) -> str:
    from mpi.model import DEFAULT_MODEL

    return hashlib.sha256(Path(path or DEFAULT_MODEL).read_bytes()).hexdigest()[:12]


def _features(std: pd.DataFrame) -> pd.DataFrame:
    from mpi.features import build_features

    feats = build_features(std)
    feats["source"] = std["source"].astype(str).to_numpy()
    feats["source_record_id"] = std["source_record_id"].astype(str).to_numpy()
    feats["standardized_at"] = std["standardized_at"].to_numpy()
    return feats


def _with_anchors(feats: pd.DataFrame, cannot) -> pd.DataFrame:
    from mpi.deterministic import anchor_keys

    feats = feats.sort_values("record_key", kind="stable").reset_index(drop=True)
    feats["anchor_key"] = anchor_keys(feats, cannot).to_numpy()
    return feats


def _positions(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    out, start = [], 0
    for frame in frames:
        out.append(frame.assign(unique_id=np.arange(start, start + len(frame), dtype=np.int64)))
        start += len(frame)
    return out


def _edges_by_position(stored: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Stored links (record keys, evidence JSON) → positions in ``frame`` with mw_/gamma_ columns."""
    import json

    pos = pd.Series(np.arange(len(frame)), index=frame["record_key"].astype(str).to_numpy())
    keep = stored[stored["record_key_l"].isin(pos.index) & stored["record_key_r"].isin(pos.index)]
    evidence = pd.DataFrame([json.loads(e) for e in keep["evidence"]], index=keep.index)
    out = pd.DataFrame({"unique_id_l": pos[keep["record_key_l"]].to_numpy(),
                        "unique_id_r": pos[keep["record_key_r"]].to_numpy(),
                        "match_probability": keep["match_probability"].astype(float).to_numpy(),
                        "match_weight": keep["match_weight"].astype(float).to_numpy()}, index=keep.index)
    return pd.concat([out, evidence], axis=1).reset_index(drop=True)


def run_matching(conn: sa.Connection, *, mode: str = "auto", model_path: str | Path | None = None,
                 refresh_frequencies: bool = False, on_progress: Callable[[str, dict], None] | None = None,
                 golden: Callable[[sa.Connection, list[str] | None], int] | None = None,
                 backend_options: dict | None = None) -> dict:
    """Run matching in ``mode`` (``auto``: incremental when possible) and store the outcome.

    ``golden(conn, master_ids)`` rebuilds golden records (``None``: all)."""
    from mpi.link import Frequencies
    from warehouse import matching_state as ms

    if mode not in ("auto", "full", "incremental"):
        raise ValueError(f"unknown matching mode {mode!r}")
    version = model_version(model_path)
    state, last = ms.read_model_state(conn), ms.last_run(conn)
    model_changed = last is not None and (last["model_version"] != version or (state and state[0] != version))
    possible = last is not None and state is not None and not model_changed and not refresh_frequencies
    if mode == "incremental" and not possible:
        why = ("no earlier run" if last is None or state is None else
               "the model changed since the last run" if model_changed else "new term frequencies were asked for")
        raise HubError(f"an incremental run is not possible: {why}; run a full rebuild (hub match --full)")
    mode = "incremental" if mode == "auto" and possible else ("full" if mode == "auto" else mode)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('hub:matching'))"))
    run_id = ms.start_run(conn, mode, version)
    must, cannot, steward = ms.decisions(conn, since=last["started_at"] if last else None)
    t0 = time.perf_counter()
    step = _Steps()
    new, restd, gone = ms.delta(conn)
    step("delta")
    if mode == "full":
        std = ms.read_std(conn, STD_FOR_MATCHING)
        step("read")
        feats = _with_anchors(_features(std), cannot)
        del std
        step("features")
        frequencies = None
        if state is None or model_changed or refresh_frequencies:
            from mpi.link import distinct_rows, term_frequencies

            frequencies = term_frequencies(distinct_rows(feats))
            ms.save_frequencies(conn, frequencies.tables, frequencies.records, version)
            model_changed = model_changed or state is not None
        outcome = _full(conn, feats, frequencies or Frequencies(ms.read_frequencies(conn), state[1]),
                        model_path, must, cannot, on_progress, backend_options, step)
        region = set(outcome["frame"]["record_key"])
        changed = {k for k in restd if k in region}
    else:
        outcome = _incremental(conn, new, restd, gone, steward, state[1], model_path, must, cannot, on_progress,
                               backend_options, step)
        region, changed = outcome["region"], outcome["changed"]
    from mpi.anchors import cluster_anchors
    from mpi.ids import Causes, assign_master_ids
    from warehouse.master_index import apply_assignment, mint_master_ids, store_reviews

    clustered = outcome["clustered"]
    previous = ms.read_previous(conn, None if mode == "full" else region | gone)
    step("read_previous")
    causes = Causes(new=new, changed=changed, deleted=gone, steward=steward, model_changed=model_changed)
    assignment = assign_master_ids(clustered[["record_key", "cluster_key"]], previous,
                                   mint=lambda n: mint_master_ids(conn, n), causes=causes)
    step("assign_ids")
    frame = outcome["frame"].set_index("record_key").loc[clustered["record_key"]]
    anchor = cluster_anchors(clustered["cluster_key"], pd.Series(frame["id_valid"].to_numpy(), index=clustered.index))
    crosswalk = assignment.crosswalk.assign(match_rule=clustered["reason"].to_numpy())
    anchors = pd.DataFrame({"master_id": crosswalk["master_id"].to_numpy(), "anchor": anchor.to_numpy()}) \
        .drop_duplicates("master_id")
    counts = apply_assignment(conn, run_id, crosswalk, sorted(gone), assignment.retired, assignment.events, anchors)
    step("write_index")
    counts["reviews"] = store_reviews(conn, outcome["reviews"], None if mode == "full" else sorted(region | gone))
    # golden records to rebuild: masters that gained, lost or kept a record that changed in any way,
    # retired ones, and those whose anchor moved
    was = previous.set_index("record_key")["master_id"]
    now = assignment.crosswalk.set_index("record_key")["master_id"]
    moved = now.index[now.to_numpy() != was.reindex(now.index).to_numpy()]
    concerned = set(new) | set(restd) | set(moved)
    touched = set(now[now.index.isin(concerned)]) | set(was[was.index.isin(concerned | gone)]) \
        | set(assignment.retired["master_id"]) | set(counts.pop("anchors_changed"))
    if mode == "incremental":  # re-standardized records outside the region (a new status, say)
        touched |= set(ms.read_previous(conn, restd - region)["master_id"])
    touched = sorted(touched)
    counts["golden"] = golden(conn, None if mode == "full" else touched) if golden else 0
    step("golden")
    counts.update(assignment.counts())
    counts["masters_created"] = counts.get("events_created", 0)
    counts.update({k: outcome[k] for k in ("rescored", "candidates") if k in outcome})
    counts.update({"mode": mode, "records": int(outcome["records"]), "affected": int(len(region)),
                   "new": len(new), "changed": len(changed), "removed": len(gone), "run_id": run_id,
                   "clusters_in_region": int(clustered["cluster_key"].nunique()),
                   "seconds": round(time.perf_counter() - t0, 2), "step_seconds": step.seconds})
    counts.update({f"linked_{k}": int(v) for k, v in clustered["reason"].value_counts().items()})
    if mode == "full":  # fresh statistics, so that the next incremental run's lookups plan well
        conn.execute(sa.text("ANALYZE mpi.match_feature, mpi.match_edge, mpi.crosswalk, mpi.master, mpi.golden,"
                             " mpi.golden_value, mpi.golden_conflict, mpi.review_pair"))
        step("analyze")
    ms.finish_run(conn, run_id, counts["records"], counts["affected"], counts)
    log.info("matching run %d (%s): %s", run_id, mode, counts)
    return counts


def _full(conn, feats, frequencies, model_path, must, cannot, on_progress, backend_options, step) -> dict:
    from mpi.link import cluster_records, distinct_rows, score
    from warehouse import matching_state as ms

    if on_progress:
        on_progress("deterministic", {"records": len(feats)})
    distinct = distinct_rows(feats).assign(unique_id=lambda f: f.index.to_numpy(dtype=np.int64))
    edges = score(distinct, frequencies=frequencies, model_path=model_path, review_threshold=REVIEW_THRESHOLD,
                  backend_options=backend_options)
    step("score")
    if on_progress:
        on_progress("predicted", {"pairs": len(edges)})
    clustered, reviews, stats = cluster_records(feats, edges, THRESHOLD, must=must, cannot=cannot)
    step("cluster")
    if on_progress:
        on_progress("clustered", {"clusters": stats["clusters"], "reviews": stats["reviews"]})
    ms.write_features(conn, feats, replace_all=True)
    ms.write_edges(conn, ms.edges_frame(edges, feats["record_key"].astype(str).to_numpy()), replace_all=True)
    step("write_state")
    return {"clustered": clustered, "reviews": reviews, "frame": feats, "records": len(feats)}


def _incremental(conn, new, restd, gone, steward, prior_records, model_path, must, cannot, on_progress,
                 backend_options, step) -> dict:
    from mpi.link import Frequencies, cluster_records, distinct_rows, score
    from mpi.model import BLOCKING_RULES
    from warehouse import matching_state as ms

    fresh = _features(ms.read_std(conn, STD_FOR_MATCHING, new | restd)) if new | restd else None
    old = ms.read_features(conn, restd | gone)
    changed = set()
    if fresh is not None and len(old):
        cols = list(ms.MATCH_VALUES[:-1])  # every matching value but the anchor
        a = fresh[fresh["record_key"].isin(restd)].set_index("record_key")[cols].astype("string").fillna("\x00")
        b = old.set_index("record_key").reindex(a.index)[cols].astype("string").fillna("\x00")
        same = (a == b).all(axis=1)
        changed = set(same.index[~same])
        unchanged = sorted(set(same.index[same]))
        if unchanged:  # re-standardized to the same values: only the time stamp moves on
            keep = fresh[fresh["record_key"].isin(unchanged)][["record_key", "standardized_at"]]
            ms.touch_features(conn, keep)
    elif fresh is not None:
        changed = set(restd)
    known = set(ms.read_features(conn, steward)["record_key"]) if steward else set()
    seeds = set(new) | changed | (steward & known)
    fresh_rows = fresh[fresh["record_key"].isin(seeds)] if fresh is not None else None
    # records sharing an ID number (old or new) with a changed record: their anchors may change
    old_changed = old[old["record_key"].isin(changed | gone)]
    ids = set(old_changed["id_valid"].dropna()) | (set(fresh_rows["id_valid"].dropna()) if fresh_rows is not None else set())
    stored = ms.read_features(conn, seeds - set(new), ids=ids)
    stored = stored[~stored["record_key"].isin(gone | (set(fresh_rows["record_key"]) if fresh_rows is not None else set()))]
    frames = [f for f in (fresh_rows, stored) if f is not None and len(f)]
    affected = (pd.concat(frames, ignore_index=True) if frames else stored).drop(columns=["anchor_key"], errors="ignore")
    affected = _with_anchors(affected, cannot)
    if on_progress:
        on_progress("deterministic", {"records": len(affected)})
    step("features")
    a_keys = set(affected["record_key"])
    a_distinct = distinct_rows(affected)
    cands = distinct_rows(ms.candidates(conn, a_distinct, BLOCKING_RULES, a_keys | gone))
    step("candidates")
    left, right = _positions([a_distinct.reset_index(drop=True), cands.reset_index(drop=True)])
    frequencies = Frequencies(ms.read_frequencies(conn, only=pd.concat([left, right])), prior_records)
    edges = score(left, right, frequencies=frequencies, model_path=model_path, review_threshold=REVIEW_THRESHOLD,
                  backend_options=backend_options)
    keys = np.concatenate([left["record_key"].astype(str).to_numpy(), right["record_key"].astype(str).to_numpy()])
    new_edges = ms.edges_frame(edges, keys)
    step("score")
    if on_progress:
        on_progress("predicted", {"pairs": len(new_edges)})
    # stored records are written again only when their anchor moved; the rest are stored as they are
    prior = pd.Series(stored["anchor_key"].astype(object).to_numpy(), index=stored["record_key"].astype(object).to_numpy())
    was, now = affected["record_key"].astype(object).map(prior).astype(object), affected["anchor_key"].astype(object)
    kept = (was.notna() & now.notna() & (was == now)).to_numpy(dtype=bool)
    ms.write_features(conn, affected.loc[~kept, list(ms.FEATURE_COLUMNS)], remove=gone)
    # the records at the other end of links that change (or go) are concerned too
    dropped = ms.read_edges(conn, touching=a_keys | gone)
    ms.write_edges(conn, new_edges, touching=a_keys | gone)
    step("write_state")

    # grey links move no record: their far ends join the clustering only to keep their reviews
    changed_links = pd.concat([new_edges, dropped])
    changed_links = changed_links[changed_links["match_probability"].astype(float) >= THRESHOLD]
    seeds_r = a_keys | gone | set(changed_links["record_key_l"]) | set(changed_links["record_key_r"])
    region = ms.region(conn, seeds_r, THRESHOLD, must) - gone
    step("region")
    links = ms.read_edges(conn, touching=region)
    outside = (set(links["record_key_l"]) | set(links["record_key_r"])) - region
    frame = ms.read_features(conn, region | outside).sort_values("record_key").reset_index(drop=True)
    step("read_region")
    clustered, reviews, stats = cluster_records(frame, _edges_by_position(links, frame), THRESHOLD,
                                                must=must, cannot=cannot)
    step("cluster")
    if on_progress:
        on_progress("clustered", {"clusters": stats["clusters"], "reviews": stats["reviews"]})
    inside = clustered["record_key"].isin(region).to_numpy()
    records = conn.execute(sa.text("SELECT count(*) FROM mpi.match_feature")).scalar_one()
    return {"clustered": clustered[inside].reset_index(drop=True), "reviews": reviews,
            "frame": frame[inside].reset_index(drop=True), "region": region, "changed": changed,
            "records": records, "rescored": len(a_keys), "candidates": len(cands)}
