"""Stable master ids: carry published ids over to a new clustering, and say why each changed.

One function serves the warehouse and ``hub link --previous``::

    result = assign_master_ids(clusters, previous, mint=..., age=..., causes=...)
    result.crosswalk   # record_key, master_id — every record of ``clusters``
    result.retired     # master_id, retired_into (None when every record of the id was deleted)
    result.events      # master_id, event, cause, other_master_id, record_key, detail

Rules:

* A previous master id is *claimed* by the new cluster holding most of its (surviving) records;
  ties go to the cluster with the smallest key, so the result never depends on input order.
* A cluster that claims one id keeps it. A cluster that claims several is a **merge**: it keeps
  the id carrying most of its records (ties: the older id) and the others retire with a redirect.
* A cluster that claims none gets a new id (**created**). When its records came from an id kept
  by another cluster, that id was **split**: the larger part kept it — except for records a steward
  took out of an id (``leaving``): they never claim the id they left, so the rest keeps it.
* Records moving between ids are ``record_moved``; new records joining an existing id are
  ``record_added``; records gone from the sources are ``record_removed``; an id left with no
  records at all is ``retired`` without a redirect.

Every event carries a cause, decided from the records of the cluster it concerns
(:class:`Causes`): a steward's decision first, then a deletion, a source correction, new data,
and when no record changed, a model change or else a rule change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

EVENTS = ("created", "merged", "split", "record_added", "record_moved", "record_removed", "retired")
CAUSES = ("steward_decision", "source_deletion", "source_correction", "new_data", "model_change", "rule_change")
EVENT_COLUMNS = ["master_id", "event", "cause", "other_master_id", "record_key", "detail"]


@dataclass
class Causes:
    """What changed since the previous assignment: record keys by kind, and whether the model did."""

    new: set = field(default_factory=set)
    changed: set = field(default_factory=set)
    deleted: set = field(default_factory=set)
    steward: set = field(default_factory=set)
    model_changed: bool = False

    def of(self, records: Iterable[str], *, lost: bool = False) -> str:
        records = set(records)
        if records & self.steward:
            return "steward_decision"
        if lost or records & self.deleted:
            return "source_deletion"
        if records & self.changed:
            return "source_correction"
        if records & self.new:
            return "new_data"
        return "model_change" if self.model_changed else "rule_change"


@dataclass
class Assignment:
    crosswalk: pd.DataFrame
    retired: pd.DataFrame
    events: pd.DataFrame

    def counts(self) -> dict[str, int]:
        out = {f"events_{k}": int(v) for k, v in self.events["event"].value_counts().items()}
        out["masters_retired"] = int(len(self.retired))
        return out


_CODES = {cause: code for code, cause in enumerate(CAUSES[:4])}  # steward, deletion, correction, new data


def _text(values: pd.Series) -> pd.Series:
    """Plain Python strings (an object column): hashed fast by every step below, unlike Arrow strings."""
    return pd.Series(values.astype(str).to_numpy(dtype=object), dtype=object)


def _obj(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object), dtype=object)


def _record_causes(records: pd.Series, causes: Causes) -> np.ndarray:
    """Per record, the code of the first cause in :meth:`Causes.of`'s order that it has (4: none of them)."""
    code = np.full(len(records), 4, dtype=np.int8)
    for kinds, c in ((causes.new, 3), (causes.changed, 2), (causes.deleted, 1), (causes.steward, 0)):
        if kinds:
            code[records.isin(np.fromiter(kinds, dtype=object, count=len(kinds))).to_numpy()] = c
    return code


def _cause_names(codes: np.ndarray, causes: Causes) -> np.ndarray:
    names = np.array([*CAUSES[:4], "model_change" if causes.model_changed else "rule_change"], dtype=object)
    return names[np.asarray(codes, dtype=np.int64)]


def _details(records: np.ndarray | None, n: int) -> list[dict]:
    return [{} for _ in range(n)] if records is None else [{"records": int(r)} for r in records]


def _events(master_id, event: str, cause, other, record_key, detail: list[dict]) -> pd.DataFrame:
    n = len(detail)

    def col(v) -> np.ndarray:
        return np.full(n, v, dtype=object) if v is None or isinstance(v, str) else np.asarray(v, dtype=object)

    return pd.DataFrame({"master_id": col(master_id), "event": col(event), "cause": col(cause),
                         "other_master_id": col(other), "record_key": col(record_key), "detail": detail},
                        columns=EVENT_COLUMNS, dtype=object)


def assign_master_ids(clusters: pd.DataFrame, previous: pd.DataFrame, *, mint: Callable[[int], list[str]],
                      age: Callable[[str], object] | None = None, causes: Causes | None = None,
                      leaving: dict[str, str] | None = None) -> Assignment:
    """Master ids for ``clusters`` (record_key, cluster_key), carried over from ``previous`` (record_key, master_id).

    ``previous`` holds the earlier assignment of every record that may be concerned (records now gone
    included); ``mint(n)`` returns ``n`` fresh ids in order; ``age(master_id)`` sorts older ids first
    (default: the id itself); ``leaving`` maps records a steward took out of a master id (a split or
    a move-out) to that id: while they are still under it, they do not count in claiming it.

    Column operations throughout (no Python loop over records or clusters), so that a county's
    two million records take seconds.
    """
    return _assign(clusters, previous, mint, age, causes or Causes(), leaving)


def _assign(clusters: pd.DataFrame, previous: pd.DataFrame, mint: Callable[[int], list[str]],
            age: Callable[[str], object] | None, causes: Causes, leaving: dict[str, str] | None) -> Assignment:
    clusters = pd.DataFrame({c: _text(clusters[c]) for c in ("record_key", "cluster_key")})
    previous = pd.DataFrame({c: _text(previous[c]) for c in ("record_key", "master_id")})
    record_code = _record_causes(clusters["record_key"], causes)
    # per cluster (in key order): its size and the cause its records give (Causes.of over its members)
    per_cluster = pd.DataFrame({"cluster_key": clusters["cluster_key"], "code": record_code}) \
        .groupby("cluster_key", sort=True)["code"].agg(["size", "min"])
    per_cluster.index = pd.Index(per_cluster.index.to_numpy(dtype=object), dtype=object)

    both = clusters.merge(previous, on="record_key", how="inner")
    if leaving:
        both = both[both["record_key"].map(leaving).astype(object).to_numpy() != both["master_id"].to_numpy()]
    overlap = both.groupby(["master_id", "cluster_key"]).size().rename("n").reset_index()
    # each previous id is claimed by the cluster holding most of its records (ties: smallest key)
    claims = overlap.sort_values(["master_id", "n", "cluster_key"], ascending=[True, False, True]) \
        .drop_duplicates("master_id")
    # a cluster claiming several ids keeps the one carrying most of its records (ties: the older id)
    claims = claims.assign(age=claims["master_id"] if age is None else claims["master_id"].map(age))
    ranked = claims.sort_values(["cluster_key", "n", "age"], ascending=[True, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("cluster_key", sort=False).cumcount()
    first_ranked = ranked[ranked["rank"] == 0]
    survivor = pd.Series(first_ranked["master_id"].to_numpy(dtype=object), dtype=object,
                         index=pd.Index(first_ranked["cluster_key"].to_numpy(dtype=object), dtype=object))
    merged = ranked[ranked["rank"] > 0]
    merged_into = merged["cluster_key"].map(survivor).to_numpy(dtype=object)

    unclaimed = per_cluster.index[~per_cluster.index.isin(survivor.index)]
    fresh = pd.Series(list(mint(len(unclaimed))), index=unclaimed, dtype=object)
    master_of = pd.concat([survivor.astype(object), fresh]).sort_index()

    # merges and creations, in cluster-key order (a cluster's merges in rank order)
    retired = pd.DataFrame({"master_id": merged["master_id"].to_numpy(dtype=object), "retired_into": merged_into},
                           dtype=object)
    merge_events = _events(merged["master_id"].to_numpy(), "merged",
                           _cause_names(per_cluster["min"].reindex(merged["cluster_key"]).to_numpy(), causes),
                           merged_into, None, _details(merged["n"].to_numpy(), len(merged)))
    made = per_cluster.loc[unclaimed]
    created_events = _events(fresh.to_numpy(), "created", _cause_names(made["min"].to_numpy(), causes), None, None,
                             _details(made["size"].to_numpy(), len(made)))
    first = pd.concat([merge_events.assign(_c=merged["cluster_key"].to_numpy(), _r=merged["rank"].to_numpy()),
                       created_events.assign(_c=unclaimed.to_numpy(), _r=0)], ignore_index=True) \
        .sort_values(["_c", "_r"], kind="stable").drop(columns=["_c", "_r"])

    crosswalk = pd.DataFrame({"record_key": clusters["record_key"].to_numpy(),
                              "master_id": clusters["cluster_key"].map(master_of).to_numpy(dtype=object)}, dtype=object)
    was = crosswalk["record_key"].map(previous.drop_duplicates("record_key").set_index("record_key")["master_id"])
    now = crosswalk["master_id"]
    cluster_code = clusters["cluster_key"].map(per_cluster["min"]).to_numpy()
    # new records joining an existing id
    added = (was.isna() & ~now.isin(fresh.to_numpy())).to_numpy()
    added_events = _events(now[added].to_numpy(), "record_added", _cause_names(record_code[added], causes), None,
                           crosswalk["record_key"][added].to_numpy(), _details(None, int(added.sum())))
    # records moving between ids; those that left an id by a merge follow it: the merge event says so
    followed = was.map(pd.Series(merged_into, index=merged["master_id"].to_numpy(), dtype=object)) \
        .astype(object).fillna("")
    moving = (was.notna() & (was != now) & (followed != now)).to_numpy()
    moves = pd.DataFrame({"was": _obj(was[moving]), "m": _obj(now[moving]),
                          "record_key": _obj(crosswalk["record_key"][moving]),
                          "code": cluster_code[moving]})  # the records moving belong to the cluster of m
    moves["_s"] = np.arange(len(moves))
    moves = moves.sort_values(["was", "m", "_s"], kind="stable")
    groups = moves.drop_duplicates(["was", "m"])
    groups = groups[groups["was"].isin(master_of.to_numpy())]
    sizes = moves.groupby(["was", "m"], sort=False).size()
    split_events = _events(groups["was"].to_numpy(), "split", _cause_names(groups["code"].to_numpy(), causes),
                           groups["m"].to_numpy(), None,
                           _details(sizes.reindex(pd.MultiIndex.from_frame(groups[["was", "m"]])).to_numpy(),
                                    len(groups)))
    moved_events = _events(moves["m"].to_numpy(), "record_moved", _cause_names(moves["code"].to_numpy(), causes),
                           moves["was"].to_numpy(), moves["record_key"].to_numpy(), _details(None, len(moves)))
    second = pd.concat([split_events.assign(_w=groups["was"].to_numpy(), _m=groups["m"].to_numpy(), _s=-1),
                        moved_events.assign(_w=moves["was"].to_numpy(), _m=moves["m"].to_numpy(),
                                            _s=moves["_s"].to_numpy())], ignore_index=True) \
        .sort_values(["_w", "_m", "_s"], kind="stable").drop(columns=["_w", "_m", "_s"])

    gone = previous[~previous["record_key"].isin(clusters["record_key"])]
    steward = gone["record_key"].isin(np.fromiter(causes.steward, dtype=object, count=len(causes.steward))).to_numpy()
    removed_events = _events(gone["master_id"].to_numpy(), "record_removed",
                             np.where(steward, "steward_decision", "source_deletion").astype(object), None,
                             gone["record_key"].to_numpy(), _details(None, len(gone)))
    emptied = np.sort(previous.loc[~previous["master_id"].isin(claims["master_id"]), "master_id"].unique())
    retired = pd.concat([retired, pd.DataFrame({"master_id": emptied.astype(object),
                                                "retired_into": np.full(len(emptied), None, dtype=object)},
                                               dtype=object)],
                        ignore_index=True)
    retired_events = _events(emptied, "retired", "source_deletion", None, None, _details(None, len(emptied)))
    events = pd.concat([e for e in (first, added_events, second, removed_events, retired_events)],
                       ignore_index=True)
    return Assignment(crosswalk, retired, events[EVENT_COLUMNS])
