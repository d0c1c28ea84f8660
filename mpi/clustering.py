"""Clustering that does not chain strangers: strongest links first, under hard constraints.

Nodes are the deterministic anchors (one or more records). Links at or above the threshold are
taken strongest first (ties broken by record ids, so the result is deterministic); a link is
refused when the union of its two clusters would

* hold two different valid ID numbers (``different_id``). A number is *valid for its record* when
  its checksum holds and the birth date and sex it encodes agree with the record's own: two such
  numbers never share a cluster. A checksum-valid number that contradicts its own record (most
  often a spouse's or parent's number typed in) does not identify the record, so it may sit beside
  the cluster's own valid number; but a cluster with no number valid for its records never holds
  two different contradicted numbers either — nothing would say which person it is;
* hold birth dates 15 years or more apart — parent and child (``parent_child``);
* hold two records with the same birth date and the same house or phone but names that differ
  in writing and in sound — twins or siblings (``twins``).

A refused link is never merged; it goes to the review list with the constraint that refused it.
Because links are taken strongest first, the links a constraint refuses are the weakest ones.

A steward's decisions come first: "match" pairs (``must``) are merged before any scored link and
override the constraints above, but never put two different valid ID numbers together; "not a
match" pairs (``cannot``) are never put in one cluster, by a scored link or by a "match"
(``constraint = 'steward'``).

Ties between equally strong links are broken by the records' keys, never by their position, so
the clusters of a group of records do not depend on which other records are loaded with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PARENT_CHILD_DAYS = 15 * 365

# why a record sits in its cluster (the crosswalk's match rule)
EXACT_ID = "exact_id"
PROBABILISTIC = "probabilistic"
SINGLETON = "singleton"
SPLIT_CONSTRAINT = "split_constraint"
REASONS = (EXACT_ID, PROBABILISTIC, SPLIT_CONSTRAINT, SINGLETON)


@dataclass
class _Component:
    ids: set = field(default_factory=set)  # numbers valid for their records
    claimed: set = field(default_factory=set)  # checksum-valid numbers that contradict their record
    min_dob: int | None = None
    max_dob: int | None = None
    # (dob, address_key, phone, name_key, name_pinyin) of each record, for the twins check
    people: list = field(default_factory=list)
    cannot: set = field(default_factory=set)  # record keys of this cluster with a "not a match"


def _twins(a: _Component, b: _Component) -> bool:
    for dob, house, phone, key, pinyin in a.people:
        if dob is None or pinyin is None:
            continue
        for dob2, house2, phone2, key2, pinyin2 in b.people:
            if dob2 != dob or pinyin2 is None or pinyin2 == pinyin or key2 == key:
                continue
            if (house is not None and house == house2) or (phone is not None and phone == phone2):
                return True
    return False


def _kept_apart(a: _Component, b: _Component, partners: dict) -> bool:
    return any(partners[k] & b.cannot for k in a.cannot) if a.cannot and b.cannot else False


def violated(a: _Component, b: _Component, partners: dict | None = None) -> str | None:
    """The constraint that merging ``a`` and ``b`` would break, or None."""
    if partners and _kept_apart(a, b, partners):
        return "steward"
    if a.ids and b.ids and a.ids != b.ids:
        return "different_id"
    if not a.ids and not b.ids and a.claimed and b.claimed and a.claimed != b.claimed:
        return "different_id"
    dobs = [d for d in (a.min_dob, a.max_dob, b.min_dob, b.max_dob) if d is not None]
    if dobs and max(dobs) - min(dobs) >= PARENT_CHILD_DAYS:
        return "parent_child"
    if _twins(a, b):
        return "twins"
    return None


def _none(value):
    return None if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else value


def _components(feats: pd.DataFrame, group_codes: np.ndarray, touched, keys: np.ndarray,
                partners: dict) -> dict[int, _Component]:
    """The constraint data of each group in ``touched`` (Python values only for their records)."""
    rows = np.flatnonzero(np.isin(group_codes, touched)) if len(touched) else np.zeros(0, dtype=np.int64)
    sub = feats.iloc[rows]
    dob_days = (pd.to_datetime(sub["dob"], errors="coerce") - pd.Timestamp("1800-01-01")).dt.days
    cols = {c: sub[c].astype(object).where(sub[c].notna(), None).tolist()
            for c in ("id_valid", "id_claimed", "address_key", "phone", "name_key", "name_pinyin", "dob")}
    dd = dob_days.astype(object).where(dob_days.notna(), None).tolist()
    comps: dict[int, _Component] = {}
    for k, g in enumerate(group_codes[rows].tolist()):
        comp = comps.get(g)
        if comp is None:
            comp = comps[g] = _Component()
        if cols["id_valid"][k] is not None:
            comp.ids.add(cols["id_valid"][k])
        elif cols["id_claimed"][k] is not None:
            comp.claimed.add(cols["id_claimed"][k])
        d = dd[k]
        if d is not None:
            comp.min_dob = d if comp.min_dob is None else min(comp.min_dob, d)
            comp.max_dob = d if comp.max_dob is None else max(comp.max_dob, d)
        comp.people.append((cols["dob"][k], cols["address_key"][k], cols["phone"][k], cols["name_key"][k],
                            cols["name_pinyin"][k]))
        if keys[rows[k]] in partners:
            comp.cannot.add(keys[rows[k]])
    return comps


def constrained_clusters(feats: pd.DataFrame, edges: pd.DataFrame, threshold: float, *,
                         must: Iterable[tuple[str, str]] = (), cannot: Iterable[tuple[str, str]] = ()
                         ) -> tuple[np.ndarray, pd.DataFrame]:
    """Cluster records: returns (root index per record, edges with ``decision`` and ``constraint`` columns).

    ``feats``: the matching table (unique_id 0..n-1 in order, record_key, anchor, id_valid, dob, …);
    ``edges``: unique_id_l, unique_id_r, match_probability (any threshold; only those ≥ ``threshold``
    are considered for merging); ``must`` / ``cannot``: record-key pairs a steward decided.
    """
    n = len(feats)
    group_codes, _ = pd.factorize(feats["anchor"], sort=True)
    n_groups = int(group_codes.max()) + 1 if n else 0
    parent = np.arange(n_groups)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    # component data only for groups touched by a strong link
    edges = edges.copy()
    edges["g_l"] = group_codes[edges["unique_id_l"].to_numpy()] if len(edges) else []
    edges["g_r"] = group_codes[edges["unique_id_r"].to_numpy()] if len(edges) else []
    edges["decision"] = "below_threshold"
    edges["constraint"] = pd.Series(pd.NA, index=edges.index, dtype="string")
    keys = feats["record_key"].astype(str).to_numpy()
    position = {k: i for i, k in enumerate(keys)}
    must = [(position[a], position[b]) for a, b in must if a in position and b in position]
    cannot = [(a, b) for a, b in cannot if a in position and b in position]
    partners: dict[str, set] = {}
    for a, b in cannot:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    strong = edges[edges["match_probability"] >= threshold]
    strong = strong.assign(key_l=keys[strong["unique_id_l"].to_numpy(dtype=np.int64)],
                           key_r=keys[strong["unique_id_r"].to_numpy(dtype=np.int64)])
    strong = strong.sort_values(["match_probability", "key_l", "key_r"], ascending=[False, True, True])
    pinned = np.asarray([group_codes[i] for pair in must for i in pair]
                        + [group_codes[position[k]] for k in partners], dtype=np.int64)
    touched = np.unique(np.concatenate([strong["g_l"].to_numpy(), strong["g_r"].to_numpy(), pinned])) \
        if len(strong) or len(pinned) else []
    comps = _components(feats, group_codes, touched, keys, partners)

    def union(ra: int, rb: int) -> None:
        a, b = comps[ra], comps[rb]
        if len(a.people) < len(b.people):
            ra, rb, a, b = rb, ra, b, a
        parent[rb] = ra
        a.ids |= b.ids
        a.claimed |= b.claimed
        a.cannot |= b.cannot
        a.min_dob = min((d for d in (a.min_dob, b.min_dob) if d is not None), default=None)
        a.max_dob = max((d for d in (a.max_dob, b.max_dob) if d is not None), default=None)
        a.people.extend(b.people)
        del comps[rb]

    for i, j in sorted(must):  # a steward's "match" overrides the automatic constraints, but never two valid IDs
        ra, rb = find(int(group_codes[i])), find(int(group_codes[j]))
        if ra != rb and not _kept_apart(comps[ra], comps[rb], partners) and violated(comps[ra], comps[rb]) != "different_id":
            union(ra, rb)

    decisions = {}
    for idx, gl, gr in zip(strong.index, strong["g_l"].to_numpy(), strong["g_r"].to_numpy()):
        ra, rb = find(int(gl)), find(int(gr))
        if ra == rb:
            decisions[idx] = ("accepted", None)
            continue
        why = violated(comps[ra], comps[rb], partners)
        if why:
            decisions[idx] = ("refused", why)
            continue
        union(ra, rb)
        decisions[idx] = ("accepted", None)
    if decisions:
        dec = pd.DataFrame.from_dict(decisions, orient="index", columns=["decision", "constraint"])
        edges.loc[dec.index, "decision"] = dec["decision"]
        edges.loc[dec.index, "constraint"] = dec["constraint"].astype("string")
    roots = np.arange(n_groups)
    for g in touched:
        roots[int(g)] = find(int(g))
    return roots[group_codes] if n else np.zeros(0, dtype=np.int64), edges.drop(columns=["g_l", "g_r"])


def cluster_records(feats: pd.DataFrame, edges: pd.DataFrame, threshold: float, *,
                    must: Iterable[tuple[str, str]] = (), cannot: Iterable[tuple[str, str]] = (),
                    solve: Callable | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cluster ``feats`` (record_key, anchor_key, features; ``unique_id`` = position) on ``edges``.

    Returns (record_key, cluster_key, match_probability, reason per record in order; the reviews; counts).
    The cluster key is the smallest record key of the cluster. Pairs a steward decided are not
    reviewed again. ``solve``: what clusters under the hard constraints — :func:`constrained_clusters`
    in this process (the default), or :func:`mpi.spark.clusterer`'s on Spark, per connected component;
    the reasons, probabilities and reviews are derived here from its result either way."""
    must, cannot = list(must), list(cannot)
    feats = feats.assign(unique_id=np.arange(len(feats)),
                         anchor=pd.factorize(feats["anchor_key"], sort=True)[0])
    roots, edges = (solve or constrained_clusters)(feats, edges, threshold, must=must, cannot=cannot)
    keys = feats["record_key"].to_numpy(dtype=object)
    cluster_key = pd.Series(keys).groupby(roots).transform("min").to_numpy()
    anchor_size = feats["anchor"].map(feats["anchor"].value_counts()).to_numpy()

    # the strongest accepted link of each record into its cluster
    accepted = edges[edges["decision"] == "accepted"]
    best = pd.concat([accepted[["unique_id_l", "match_probability"]].rename(columns={"unique_id_l": "uid"}),
                      accepted[["unique_id_r", "match_probability"]].rename(columns={"unique_id_r": "uid"})])
    best_p = best.groupby("uid")["match_probability"].max()
    refused = edges[edges["decision"] == "refused"]
    refused_ids = set(refused["unique_id_l"]).union(refused["unique_id_r"])
    cluster_size = pd.Series(roots).map(pd.Series(roots).value_counts()).to_numpy()

    prob = pd.Series(np.nan, index=np.arange(len(feats)))
    if len(best_p):  # no accepted link at all (a single record, or nobody alike): every record alone
        prob.loc[best_p.index.astype(np.int64)] = best_p.to_numpy()
    prob[anchor_size > 1] = 1.0
    reason = np.full(len(feats), SINGLETON, dtype=object)
    reason[feats["unique_id"].isin(refused_ids).to_numpy()] = SPLIT_CONSTRAINT
    reason[(cluster_size > 1)] = PROBABILISTIC
    reason[anchor_size > 1] = EXACT_ID
    prob[(cluster_size == 1) & (reason != SPLIT_CONSTRAINT)] = np.nan
    out = pd.DataFrame({"record_key": keys, "cluster_key": cluster_key, "match_probability": prob.to_numpy(),
                        "reason": reason})
    reviews = _reviews(edges, feats, roots, cluster_key, threshold)
    decided = {tuple(sorted(p)) for p in list(must) + list(cannot)}
    if decided and len(reviews):
        pairs = list(zip(np.minimum(reviews["record_key_l"], reviews["record_key_r"]),
                         np.maximum(reviews["record_key_l"], reviews["record_key_r"])))
        reviews = reviews[[p not in decided for p in pairs]].reset_index(drop=True)
    stats = {"linked_deterministically": int((anchor_size > 1).sum()),
             "clusters": int(pd.Series(roots).nunique()),
             "links_refused_by_constraint": refused["constraint"].value_counts().to_dict(),
             "reviews": int(len(reviews))}
    return out, reviews, stats


def _reviews(edges: pd.DataFrame, feats: pd.DataFrame, roots: np.ndarray, cluster_key: np.ndarray,
             threshold: float) -> pd.DataFrame:
    """Grey-zone links between different clusters, and links a constraint refused — with their evidence."""
    if edges.empty:
        return pd.DataFrame(columns=["record_key_l", "record_key_r", "cluster_key_l", "cluster_key_r",
                                     "match_probability", "match_weight", "review_reason"])
    left, right = edges["unique_id_l"].to_numpy(), edges["unique_id_r"].to_numpy()
    apart = roots[left] != roots[right]
    grey = (edges["match_probability"] < threshold).to_numpy() & apart
    refused = (edges["decision"] == "refused").to_numpy() & apart
    sel = edges[grey | refused]
    keys = feats["record_key"].to_numpy(dtype=object)
    out = pd.DataFrame({
        "record_key_l": keys[sel["unique_id_l"].to_numpy()],
        "record_key_r": keys[sel["unique_id_r"].to_numpy()],
        "cluster_key_l": cluster_key[sel["unique_id_l"].to_numpy()],
        "cluster_key_r": cluster_key[sel["unique_id_r"].to_numpy()],
        "match_probability": sel["match_probability"].to_numpy(),
        "match_weight": sel["match_weight"].to_numpy(),
        "review_reason": np.where(sel["decision"].to_numpy() == "refused",
                                  ("constraint:" + sel["constraint"].astype(str)).to_numpy(), "grey_zone"),
    })
    for col in sel.columns:
        if col.startswith("mw_") or col.startswith("gamma_"):
            out[col] = sel[col].to_numpy()
    return out.sort_values(["match_probability", "record_key_l", "record_key_r"],
                           ascending=[False, True, True]).reset_index(drop=True)
