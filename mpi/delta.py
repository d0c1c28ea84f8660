"""Matching a delta against a stored index: only what changed is scored, only what it can reach is re-clustered.

A stored index (:class:`StoredIndex`: the warehouse's ``mpi`` tables, or :class:`mpi.memory_index.MemoryIndex`)
keeps the features of every record, every scored pair at or above the review threshold, the
term-frequency snapshot and the clusters of the last run. A delta run

1. builds the features of the records that are new or re-standardized, and keeps only those whose
   matching values changed (the others just get their new time stamp);
2. takes in the stored records that share an ID number (old or new) with them or with a record a
   steward decided on since the last run, since their deterministic anchors may change, and anchors
   the lot again (a record whose ID number a steward detached arrives as re-standardized: its
   features are built again);
3. scores them among themselves and against the stored records their blocking keys reach, and
   stores their features and links in place of the old ones;
4. re-clusters the region of the index those links, ids, anchors and previous clusters reach
   (:meth:`StoredIndex.region`), with every stored link inside it.

With the same snapshot the outcome is the one :meth:`mpi.matcher.Matcher.match_all` gives on the
whole set, for the records of the region.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from mpi.matcher import MatchOutcome, Progress, StepTimer, progress

if TYPE_CHECKING:
    from mpi.matcher import Matcher

# the values a record is matched on: when none of them changed, the record did not change for matching
MATCH_VALUES = ("name_key", "name_pinyin", "surname", "given_key", "given_pinyin", "id_valid", "id_body",
                "id_claimed", "dob", "birth_year", "sex", "phone", "address_key", "village")
# what a stored index keeps of each record
STORED_FEATURES = ("record_key", "source", "source_record_id", *MATCH_VALUES, "anchor_key", "standardized_at")


@dataclass
class Delta:
    """What changed in the standardized records since the stored index was built (record keys).

    ``records``: the standardized rows of the ``new`` and ``restandardized`` records (with
    ``standardized_at``; None when there are none); ``decided``: records a steward decided on since the last run."""

    records: pd.DataFrame | None
    new: set[str] = field(default_factory=set)
    restandardized: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    decided: set[str] = field(default_factory=set)


class StoredIndex(Protocol):
    """What a delta run reads from and writes to the index it is matched against.

    Features come with :data:`STORED_FEATURES`; links with record_key_l < record_key_r,
    match_probability, match_weight and the evidence columns (mw_*, gamma_*)."""

    def features(self, keys: Iterable[str] | None = None, *, ids: Iterable[str] = ()) -> pd.DataFrame:
        """Stored features of ``keys`` (all when None and no ``ids``) and of records carrying one of ``ids``."""

    def candidates(self, probe: pd.DataFrame, rules: Sequence[str], exclude: Iterable[str]) -> pd.DataFrame:
        """Stored records a blocking rule pairs with a record of ``probe`` (another anchor), but ``exclude``."""

    def term_frequencies(self, values: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], int]:
        """The snapshot's frequencies of the values in ``values``, and the record count it was taken on."""

    def links(self, touching: Iterable[str]) -> pd.DataFrame:
        """Stored links with a record of ``touching`` at either end."""

    def restamp(self, stamps: pd.DataFrame) -> None:
        """Move the standardized_at of records re-standardized to the same values."""

    def save_features(self, feats: pd.DataFrame, *, remove: Iterable[str] = ()) -> None:
        """Store ``feats`` in place of their earlier rows, and forget the ``remove`` records."""

    def save_links(self, links: pd.DataFrame, *, touching: Iterable[str]) -> None:
        """Store ``links`` in place of every stored link touching ``touching``."""

    def region(self, seeds: Iterable[str], threshold: float, must: Sequence[tuple[str, str]]) -> set[str]:
        """Every record whose cluster may change when ``seeds`` change: the closure over previous
        clusters, links at or above ``threshold``, anchors, trusted ID numbers and ``must`` pairs."""

    def record_count(self) -> int:
        """How many records the index holds."""


def with_anchors(feats: pd.DataFrame, cannot: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """``feats`` in record-key order with their deterministic ``anchor_key``."""
    from mpi.deterministic import anchor_keys

    feats = feats.sort_values("record_key", kind="stable").reset_index(drop=True)
    feats["anchor_key"] = anchor_keys(feats, cannot).to_numpy()
    return feats


def _changed(fresh: pd.DataFrame | None, old: pd.DataFrame, restandardized: set[str],
             stored: StoredIndex) -> set[str]:
    """The re-standardized records whose matching values changed; the others are restamped."""
    if fresh is None:
        return set()
    if not len(old):
        return set(restandardized)
    cols = list(MATCH_VALUES)
    a = fresh[fresh["record_key"].isin(restandardized)].set_index("record_key")[cols].astype("string").fillna("\x00")
    b = old.set_index("record_key").reindex(a.index)[cols].astype("string").fillna("\x00")
    same = (a == b).all(axis=1)
    unchanged = sorted(set(same.index[same]))
    if unchanged:  # re-standardized to the same values: only the time stamp moves on
        stored.restamp(fresh[fresh["record_key"].isin(unchanged)][["record_key", "standardized_at"]])
    return set(same.index[~same])


def _affected(delta: Delta, fresh: pd.DataFrame | None, old: pd.DataFrame, changed: set[str],
              stored: StoredIndex, cannot: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records to score again, anchored (and the stored rows among them, as they were stored)."""
    decided = stored.features(delta.decided) if delta.decided else None
    known = set(decided["record_key"]) if decided is not None else set()
    seeds = set(delta.new) | changed | (delta.decided & known)
    fresh_rows = fresh[fresh["record_key"].isin(seeds)] if fresh is not None else None
    # records sharing an ID number (old or new) with a changed record, or with a record a steward
    # decided on (a split or move-out takes it out of its anchor): their anchors may change
    old_changed = old[old["record_key"].isin(changed | delta.removed)]
    ids = set(old_changed["id_valid"].dropna()) | (set(decided["id_valid"].dropna()) if decided is not None else set())
    if fresh_rows is not None:
        ids |= set(fresh_rows["id_valid"].dropna())
    kept = stored.features(seeds - set(delta.new), ids=ids)
    replaced = delta.removed | (set(fresh_rows["record_key"]) if fresh_rows is not None else set())
    kept = kept[~kept["record_key"].isin(replaced)]
    frames = [f for f in (fresh_rows, kept) if f is not None and len(f)]
    affected = (pd.concat(frames, ignore_index=True) if frames else kept).drop(columns=["anchor_key"], errors="ignore")
    return with_anchors(affected, cannot), kept


def _positions(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    out, start = [], 0
    for frame in frames:
        out.append(frame.assign(unique_id=np.arange(start, start + len(frame), dtype=np.int64)))
        start += len(frame)
    return out


def _rescore(matcher: Matcher, affected: pd.DataFrame, removed: set[str], stored: StoredIndex,
             timer: StepTimer) -> tuple[pd.DataFrame, int]:
    """Links of the affected records among themselves and to the stored records their blocking keys
    reach (by record key), and how many stored candidates there were."""
    from mpi.model import BLOCKING_RULES
    from mpi.scoring import Frequencies, distinct_rows, keyed_links

    a_distinct = distinct_rows(affected)
    cands = distinct_rows(stored.candidates(a_distinct, BLOCKING_RULES, set(affected["record_key"]) | removed))
    timer("candidates")
    left, right = _positions([a_distinct.reset_index(drop=True), cands.reset_index(drop=True)])
    frequencies = matcher.frequencies or Frequencies(*stored.term_frequencies(pd.concat([left, right])))
    edges = matcher.score(left, right, frequencies=frequencies)
    keys = np.concatenate([left["record_key"].astype(str).to_numpy(), right["record_key"].astype(str).to_numpy()])
    return keyed_links(edges, keys), len(cands)


def _store(affected: pd.DataFrame, kept: pd.DataFrame, links: pd.DataFrame, removed: set[str],
           stored: StoredIndex) -> pd.DataFrame:
    """Store the affected records' features and links; returns the links they replace."""
    # stored records are written again only when their anchor moved; the rest are stored as they are
    prior = pd.Series(kept["anchor_key"].astype(object).to_numpy(), index=kept["record_key"].astype(object).to_numpy())
    was = affected["record_key"].astype(object).map(prior).astype(object)
    now = affected["anchor_key"].astype(object)
    same = (was.notna() & now.notna() & (was == now)).to_numpy(dtype=bool)
    stored.save_features(affected.loc[~same, list(STORED_FEATURES)], remove=removed)
    touching = set(affected["record_key"]) | removed
    dropped = stored.links(touching)
    stored.save_links(links, touching=touching)
    return dropped


def match_delta(matcher: Matcher, delta: Delta, stored: StoredIndex, *, must: list, cannot: list,
                on_progress: Progress | None = None) -> MatchOutcome:
    """See :meth:`mpi.matcher.Matcher.match_delta` and the steps above."""
    from mpi.clustering import cluster_records
    from mpi.scoring import positional_links

    timer = StepTimer()
    removed = set(delta.removed)
    fresh = matcher.features(delta.records) if delta.records is not None else None
    old = stored.features(delta.restandardized | removed)
    changed = _changed(fresh, old, delta.restandardized, stored)
    affected, kept = _affected(delta, fresh, old, changed, stored, cannot)
    progress(on_progress, "deterministic", records=len(affected))
    timer("features")
    links, candidates = _rescore(matcher, affected, removed, stored, timer)
    timer("score")
    progress(on_progress, "predicted", pairs=len(links))
    dropped = _store(affected, kept, links, removed, stored)
    timer("write_state")

    # grey links move no record: their far ends join the clustering only to keep their reviews
    moved = pd.concat([links, dropped])
    moved = moved[moved["match_probability"].astype(float) >= matcher.threshold]
    seeds = set(affected["record_key"]) | removed | set(moved["record_key_l"]) | set(moved["record_key_r"])
    region = stored.region(seeds, matcher.threshold, must) - removed
    timer("region")
    around = stored.links(region)
    outside = (set(around["record_key_l"]) | set(around["record_key_r"])) - region
    frame = stored.features(region | outside).sort_values("record_key").reset_index(drop=True)
    timer("read_region")
    clustered, reviews, stats = cluster_records(frame, positional_links(around, frame), matcher.threshold,
                                                must=must, cannot=cannot)
    timer("cluster")
    progress(on_progress, "clustered", clusters=stats["clusters"], reviews=stats["reviews"])
    inside = clustered["record_key"].isin(region).to_numpy()
    stats.update({"records": stored.record_count(), "rescored": int(affected["record_key"].nunique()), "candidates": candidates})
    return MatchOutcome(clusters=clustered[inside].reset_index(drop=True), reviews=reviews,
                        features=frame[inside].reset_index(drop=True), region=region, changed=changed,
                        stats=stats, seconds=timer.seconds)
