"""Master-id assignment in columns gives what the rules say, record by record, on random clusterings.

``reference_assignment`` states the rules of :mod:`mpi.ids` one cluster and one record at a time (the
way they were first written); the column version used by every run must give the same crosswalk,
retirements and events, in the same order, on clusterings with merges, splits, moves, new and
deleted records, steward take-outs and ties.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pandas as pd
import pytest

from mpi.ids import EVENT_COLUMNS, Causes, assign_master_ids


def reference_assignment(clusters: pd.DataFrame, previous: pd.DataFrame, *, mint: Callable[[int], list[str]],
                      age: Callable[[str], object] | None = None, causes: Causes | None = None,
                      leaving: dict[str, str] | None = None) -> tuple:
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
    return crosswalk, pd.DataFrame(retired, columns=["master_id", "retired_into"]), pd.DataFrame(events, columns=EVENT_COLUMNS)


def _minter():
    counter = iter(range(1000, 100000))
    return lambda n: [f"N{next(counter):05d}" for _ in range(n)]


def _random_case(seed: int):
    rnd = random.Random(seed)
    keys = [f"{rnd.choice('abc')}/{i}" for i in range(rnd.randint(0, 60))]
    keys = sorted(set(keys))
    prev_ids = [f"M{rnd.randint(1, 20):03d}" for _ in keys]
    previous = pd.DataFrame({"record_key": keys, "master_id": prev_ids})
    previous = previous.sample(frac=rnd.uniform(0.3, 1.0), random_state=seed)  # some records are new
    kept = [k for k in keys if rnd.random() > 0.15] + [f"d/{i}" for i in range(rnd.randint(0, 8))]  # deleted, new
    rnd.shuffle(kept)
    cluster_of = {k: rnd.choice(kept[: max(1, len(kept) // 3)]) if rnd.random() < 0.7 else k for k in kept}
    clusters = pd.DataFrame({"record_key": kept, "cluster_key": [cluster_of[k] for k in kept]})
    everyone = keys + kept

    def some(p):
        return {k for k in everyone if rnd.random() < p}

    causes = Causes(new=some(0.2), changed=some(0.1), deleted=some(0.05), steward=some(0.05),
                    model_changed=rnd.random() < 0.5)
    leaving = {k: m for k, m in zip(previous["record_key"], previous["master_id"]) if rnd.random() < 0.05}
    return clusters, previous, causes, leaving


@pytest.mark.parametrize("seed", range(200))
def test_column_assignment_matches_the_rules_record_by_record(seed):
    clusters, previous, causes, leaving = _random_case(seed)
    age = (lambda m: -int(m[1:])) if seed % 3 == 0 else None
    got = assign_master_ids(clusters, previous, mint=_minter(), age=age, causes=causes, leaving=leaving)
    crosswalk, retired, events = reference_assignment(clusters, previous, mint=_minter(), age=age, causes=causes,
                                                      leaving=leaving)
    assert _rows(got.crosswalk) == _rows(crosswalk)
    assert _rows(got.retired) == _rows(retired)  # a missing redirect is missing either way (None or NaN)
    assert list(got.events.columns) == EVENT_COLUMNS
    assert _rows(got.events) == _rows(events)


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_a_million_records_take_seconds():
    import time

    n = 1_000_000
    clusters = pd.DataFrame({"record_key": [f"s/{i}" for i in range(n)], "cluster_key": [f"s/{i // 2}" for i in range(n)]})
    previous = pd.DataFrame({"record_key": clusters["record_key"][: n // 2],
                             "master_id": [f"M{i // 2:09d}" for i in range(n // 2)]})
    t0 = time.perf_counter()
    result = assign_master_ids(clusters, previous, mint=_minter_big(), causes=Causes(new=set(clusters["record_key"][n // 2:])))
    assert time.perf_counter() - t0 < 60
    assert result.counts()["events_created"] == n // 4 and "events_record_added" not in result.counts()


def _minter_big():
    counter = iter(range(10**9))
    return lambda n: [f"N{next(counter):09d}" for _ in range(n)]
