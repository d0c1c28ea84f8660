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


def assign_master_ids(clusters: pd.DataFrame, previous: pd.DataFrame, *, mint: Callable[[int], list[str]],
                      age: Callable[[str], object] | None = None, causes: Causes | None = None,
                      leaving: dict[str, str] | None = None) -> Assignment:
    """Master ids for ``clusters`` (record_key, cluster_key), carried over from ``previous`` (record_key, master_id).

    ``previous`` holds the earlier assignment of every record that may be concerned (records now gone
    included); ``mint(n)`` returns ``n`` fresh ids in order; ``age(master_id)`` sorts older ids first
    (default: the id itself); ``leaving`` maps records a steward took out of a master id (a split or
    a move-out) to that id: while they are still under it, they do not count in claiming it.
    """
    causes = causes or Causes()
    age = age or (lambda m: m)
    clusters = clusters[["record_key", "cluster_key"]].astype({"record_key": str, "cluster_key": str})
    previous = previous[["record_key", "master_id"]].astype({"record_key": str, "master_id": str})
    members = clusters.groupby("cluster_key", sort=True)["record_key"].apply(list).to_dict()

    both = clusters.merge(previous, on="record_key", how="inner")
    if leaving:
        both = both[both["record_key"].map(leaving).astype(object).to_numpy() != both["master_id"].to_numpy()]
    overlap = both.groupby(["master_id", "cluster_key"]).size().rename("n").reset_index()
    # each previous id is claimed by the cluster holding most of its records (ties: smallest key)
    claims = overlap.sort_values(["master_id", "n", "cluster_key"], ascending=[True, False, True]) \
        .drop_duplicates("master_id")
    by_cluster: dict[str, list[tuple[int, str]]] = {}
    for m, c, n in claims[["master_id", "cluster_key", "n"]].itertuples(index=False):
        by_cluster.setdefault(c, []).append((n, m))

    keys = sorted(members)
    unclaimed = [c for c in keys if c not in by_cluster]
    fresh = iter(mint(len(unclaimed)))
    master_of: dict[str, str] = {}
    events: list[tuple] = []
    retired: list[tuple[str, str | None]] = []
    for c in keys:
        if c in by_cluster:
            ranked = sorted(by_cluster[c], key=lambda t: (-t[0], age(t[1])))
            survivor = ranked[0][1]
            master_of[c] = survivor
            if len(ranked) > 1:
                why = causes.of(members[c])
                for n, m in ranked[1:]:
                    retired.append((m, survivor))
                    events.append((m, "merged", why, survivor, None, {"records": n}))
        else:
            master_of[c] = next(fresh)
            events.append((master_of[c], "created", causes.of(members[c]), None, None,
                           {"records": len(members[c])}))

    crosswalk = pd.DataFrame({"record_key": clusters["record_key"].to_numpy(),
                              "master_id": clusters["cluster_key"].map(master_of).to_numpy()})
    moves = crosswalk.merge(previous.rename(columns={"master_id": "was"}), on="record_key", how="left")
    survivors = dict(retired)
    added = moves[moves["was"].isna()]
    created = {m for m, e, *_ in events if e == "created"}
    for rk, m in added[["record_key", "master_id"]].itertuples(index=False):
        if m not in created:
            events.append((m, "record_added", causes.of([rk]), None, rk, {}))
    moved = moves[moves["was"].notna() & (moves["was"] != moves["master_id"])]
    # records that left an id by a merge follow it: the merge event says so
    moved = moved[moved["was"].map(lambda m: survivors.get(m, "")) != moved["master_id"]]
    cluster_of = dict(zip(clusters["record_key"], clusters["cluster_key"]))
    splits: dict[tuple[str, str], list[str]] = {}
    for rk, m, was in moved[["record_key", "master_id", "was"]].itertuples(index=False):
        splits.setdefault((was, m), []).append(rk)
    kept = set(master_of.values())
    for (was, m), records in sorted(splits.items()):
        why = causes.of(set(records) | set(members[cluster_of[records[0]]]))
        if was in kept:
            events.append((was, "split", why, m, None, {"records": len(records)}))
        for rk in records:
            events.append((m, "record_moved", why, was, rk, {}))

    gone = previous[~previous["record_key"].isin(cluster_of)]
    for rk, m in gone[["record_key", "master_id"]].itertuples(index=False):
        events.append((m, "record_removed", causes.of([rk], lost=True), None, rk, {}))
    emptied = sorted(set(previous["master_id"]) - set(claims["master_id"]))
    for m in emptied:
        retired.append((m, None))
        events.append((m, "retired", "source_deletion", None, None, {}))
    return Assignment(crosswalk, pd.DataFrame(retired, columns=["master_id", "retired_into"]),
                      pd.DataFrame(events, columns=EVENT_COLUMNS))
