"""A stored index held in memory: what a delta is matched against when there is no warehouse.

    index = MemoryIndex.from_outcome(matcher.match_all(std))
    outcome = matcher.match_delta(Delta(records=more, new={...}), index)
    index.apply(outcome)
    index.clusters()        # record_key, cluster_key of every record held

It keeps what the warehouse's ``mpi`` tables keep (features, scored links, the term-frequency snapshot
and each record's cluster) and answers the same questions (:class:`mpi.delta.StoredIndex`); the
blocking rules run as SQL on DuckDB, as they run on PostgreSQL in the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from mpi.delta import STORED_FEATURES
from mpi.matcher import MatchOutcome
from mpi.scoring import LINK_COLUMNS, Frequencies

_PROBE_COLUMNS = ("record_key", "surname", "id_body", "dob", "birth_year", "name_pinyin", "name_key", "phone",
                  "address_key", "anchor_key")


class MemoryIndex:
    """Features, links, frequencies and clusters of a matched set, in memory."""

    def __init__(self, features: pd.DataFrame, links: pd.DataFrame, clusters: pd.Series, frequencies: Frequencies):
        self._features = features.reset_index(drop=True)
        self._links = links.reset_index(drop=True)
        self._clusters = clusters
        self._frequencies = frequencies

    @classmethod
    def from_outcome(cls, outcome: MatchOutcome) -> MemoryIndex:
        """The index a :meth:`mpi.matcher.Matcher.match_all` run leaves."""
        feats = outcome.features
        clusters = pd.Series(outcome.clusters["cluster_key"].to_numpy(),
                             index=outcome.clusters["record_key"].astype(str).to_numpy())
        links = outcome.links if outcome.links is not None else pd.DataFrame(columns=list(LINK_COLUMNS))
        return cls(feats[list(STORED_FEATURES)].copy(), links, clusters, outcome.frequencies)

    def apply(self, outcome: MatchOutcome) -> None:
        """Take the clusters of a delta run for the records it re-clustered; forget removed records."""
        held = self._clusters[self._clusters.index.isin(set(self._features["record_key"]))]
        fresh = pd.Series(outcome.clusters["cluster_key"].to_numpy(),
                          index=outcome.clusters["record_key"].astype(str).to_numpy())
        self._clusters = pd.concat([held[~held.index.isin(fresh.index)], fresh])

    def clusters(self) -> pd.DataFrame:
        """record_key, cluster_key of every record held."""
        return pd.DataFrame({"record_key": self._clusters.index.to_numpy(),
                             "cluster_key": self._clusters.to_numpy()})

    # -- :class:`mpi.delta.StoredIndex` -----------------------------------------------------------

    def features(self, keys: Iterable[str] | None = None, *, ids: Iterable[str] = ()) -> pd.DataFrame:
        f = self._features
        ids = set(ids)
        if keys is None and not ids:
            return f.sort_values("record_key").reset_index(drop=True)
        wanted = f["record_key"].isin(set(keys or ())) | (f["id_valid"].notna() & f["id_valid"].isin(ids))
        return f[wanted].sort_values("record_key").reset_index(drop=True)

    def candidates(self, probe: pd.DataFrame, rules: Sequence[str], exclude: Iterable[str]) -> pd.DataFrame:
        import duckdb

        if probe.empty:
            return self.features([])
        con = duckdb.connect()
        con.register("p", probe[list(_PROBE_COLUMNS)])
        con.register("f", self._features[list(_PROBE_COLUMNS)])
        found = [f"SELECT f.record_key FROM p JOIN f ON {rule.replace('l.', 'p.').replace('r.', 'f.')}"
                 " AND p.anchor_key <> f.anchor_key" for rule in rules]
        keys = set(con.execute(" UNION ".join(found)).fetchdf()["record_key"]) - set(exclude)
        con.close()
        return self.features(keys)

    def term_frequencies(self, values: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], int]:
        return self._frequencies.tables, self._frequencies.records

    def links(self, touching: Iterable[str]) -> pd.DataFrame:
        touching = set(touching)
        near = self._links["record_key_l"].isin(touching) | self._links["record_key_r"].isin(touching)
        return self._links[near].reset_index(drop=True)

    def restamp(self, stamps: pd.DataFrame) -> None:
        new = stamps.set_index("record_key")["standardized_at"]
        at = self._features["record_key"].isin(new.index)
        self._features.loc[at, "standardized_at"] = self._features.loc[at, "record_key"].map(new).to_numpy()

    def save_features(self, feats: pd.DataFrame, *, remove: Iterable[str] = ()) -> None:
        out = set(remove) | set(feats["record_key"])
        kept = self._features[~self._features["record_key"].isin(out)]
        self._features = pd.concat([kept, feats[list(STORED_FEATURES)]], ignore_index=True)

    def save_links(self, links: pd.DataFrame, *, touching: Iterable[str]) -> None:
        touching = set(touching)
        near = self._links["record_key_l"].isin(touching) | self._links["record_key_r"].isin(touching)
        self._links = pd.concat([self._links[~near], links], ignore_index=True)

    def region(self, seeds: Iterable[str], threshold: float, must: Sequence[tuple[str, str]]) -> set[str]:
        partners: dict[str, set[str]] = {}
        for a, b in must:
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
        f, clusters = self._features, self._clusters
        strong = self._links[self._links["match_probability"].astype(float) >= threshold]
        found: set[str] = set()
        frontier = set(seeds)
        while frontier:
            found |= frontier
            mine = f[f["record_key"].isin(frontier)]
            reached = set(clusters.index[clusters.isin(set(clusters[clusters.index.isin(frontier)]))])
            reached |= set(f.loc[f["anchor_key"].isin(set(mine["anchor_key"])), "record_key"])
            reached |= set(f.loc[f["id_valid"].notna() & f["id_valid"].isin(set(mine["id_valid"].dropna())),
                                 "record_key"])
            reached |= set(strong.loc[strong["record_key_l"].isin(frontier), "record_key_r"])
            reached |= set(strong.loc[strong["record_key_r"].isin(frontier), "record_key_l"])
            for k in frontier:
                reached |= partners.get(k, set())
            frontier = reached - found
        return found

    def record_count(self) -> int:
        return int(len(self._features))
