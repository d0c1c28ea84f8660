"""The matcher: the model, the thresholds and the term-frequency snapshot in one object, with two
entry points that give one outcome.

    matcher = Matcher.from_model()                  # the repository's model and thresholds
    outcome = matcher.match_all(std)                # every record: features → anchors → score → cluster
    outcome = matcher.match_delta(delta, stored)    # what changed, against a stored index
    outcome.clusters   # record_key, cluster_key, match_probability, reason — the records re-clustered
    outcome.reviews    # grey-zone and constraint-refused pairs, with per-comparison match weights
    outcome.region     # the record keys re-clustered (all of them for match_all)
    outcome.stats      # counts; outcome.seconds: seconds per step

``hub link`` and the warehouse's runs (:mod:`hub.matching`) both call it, so a file linked ad hoc and
the same records run through the master-index DAG fall into the same clusters. ``std`` is the frame
:func:`schemas.resident.standardize_frame` produces.

Steps: features → deterministic pass (trusted valid ID + agreeing name) → Splink prediction on
the pairs the blocking rules generate between records not already anchored together → clustering
under hard constraints (:mod:`mpi.clustering`). The delta entry point is in :mod:`mpi.delta`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mpi.model import DEFAULT_MODEL
from mpi.scoring import Frequencies

if TYPE_CHECKING:
    from mpi.delta import Delta, StoredIndex

# a link at or above THRESHOLD merges (unless a hard constraint refuses it); links from
# REVIEW_THRESHOLD up to THRESHOLD go to review
THRESHOLD = 0.99
REVIEW_THRESHOLD = 0.5
CROSSWALK_COLUMNS = ("source", "source_record_id", "cluster_key", "match_probability", "reason")

Progress = Callable[[str, dict], None]


class StepTimer:
    """Seconds per step of a run, in the order the steps first ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        """Charge the time since the last step to ``name``."""
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 2)
        self._t = now

    def merge(self, seconds: dict[str, float]) -> None:
        """Add steps timed elsewhere (a matcher's) and start the clock again."""
        for name, value in seconds.items():
            self.seconds[name] = round(self.seconds.get(name, 0.0) + value, 2)
        self._t = time.perf_counter()


def progress(on_progress: Progress | None, step: str, **info: Any) -> None:
    if on_progress is not None:
        on_progress(step, info)


@dataclass
class MatchOutcome:
    """What one matching run decided, for the records it re-clustered.

    ``clusters`` and ``features`` have one row per re-clustered record, in the same order;
    ``links`` (match_all only) holds every scored pair by record key with its evidence;
    ``frequencies`` is the snapshot the pairs were scored with; ``changed`` (match_delta only)
    the re-standardized records whose matching values changed."""

    clusters: pd.DataFrame
    reviews: pd.DataFrame
    features: pd.DataFrame
    region: set[str]
    links: pd.DataFrame | None = None
    frequencies: Frequencies | None = None
    changed: set[str] = field(default_factory=set)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def crosswalk(self) -> pd.DataFrame:
        """source, source_record_id, cluster_key, match_probability, reason of every re-clustered record."""
        out = pd.DataFrame({"source": self.features["source"].astype(str).to_numpy(),
                            "source_record_id": self.features["source_record_id"].astype(str).to_numpy()})
        for col in CROSSWALK_COLUMNS[2:]:
            out[col] = self.clusters[col].to_numpy()
        return out

    def anchors(self) -> pd.Series:
        """The master-id anchor of each re-clustered record's cluster (see :mod:`mpi.anchors`).

        Every record carrying one of the clusters' ID numbers must be in the region for it to be right."""
        from mpi.anchors import cluster_anchors

        trusted = pd.Series(self.features["id_valid"].to_numpy(), index=self.clusters.index)
        return cluster_anchors(self.clusters["cluster_key"], trusted)


def detach_ids(feats: pd.DataFrame, std: pd.DataFrame, detached: Iterable[str]) -> pd.DataFrame:
    """``feats`` (of ``std``, same order) with the ID numbers of the ``detached`` records treated as
    contradicted by their record: neither anchoring nor compared (no ``id_valid``, no ``id_body``), the
    birth date and sex only the record's own; the number stays ``id_claimed``."""
    from mpi.features import build_features

    hit = feats["record_key"].isin(set(detached)).to_numpy()
    if not hit.any():
        return feats
    own = build_features(std[hit].assign(id_number_status="detached"))
    feats = feats.copy()
    for col in ("id_valid", "id_body", "dob", "birth_year", "sex"):
        feats.loc[hit, col] = own[col].to_numpy()
    feats.loc[hit, "id_conflict"] = feats.loc[hit, "id_claimed"].notna().to_numpy()
    return feats


@dataclass(frozen=True)
class Matcher:
    """The model file, the thresholds and the term-frequency snapshot matching runs with.

    ``frequencies``: the snapshot to score with (default: taken from the records of
    :meth:`match_all`, or from the stored index for :meth:`match_delta`); ``backend``: ``duckdb`` (in this
    process) or ``spark`` (features, scoring and the constrained clustering per connected component on
    Spark, see :mod:`mpi.spark`; same clusters); ``backend_options`` go to the Splink database API
    (``memory_limit=`` for DuckDB; ``spark_session=``, or ``master=`` and ``spark_config=``, for Spark);
    ``detached``: record keys whose ID number a steward said belongs to someone else (:func:`detach_ids`)."""

    model_path: Path = DEFAULT_MODEL
    threshold: float = THRESHOLD
    review_threshold: float = REVIEW_THRESHOLD
    frequencies: Frequencies | None = None
    backend: str = "duckdb"
    backend_options: dict | None = None
    detached: frozenset = frozenset()

    def __post_init__(self):
        if not 0 < self.review_threshold <= self.threshold <= 1:
            raise ValueError("expected 0 < review_threshold <= threshold <= 1")

    @classmethod
    def from_model(cls, path: str | Path | None = None, **options: Any) -> Matcher:
        """A matcher on the model file ``path`` (default: the repository's)."""
        return cls(model_path=Path(path or DEFAULT_MODEL), **options)

    @property
    def version(self) -> str:
        """A short digest of the model file: runs with another version cannot be incremental."""
        return hashlib.sha256(Path(self.model_path).read_bytes()).hexdigest()[:12]

    def with_frequencies(self, frequencies: Frequencies | None) -> Matcher:
        """The same matcher scoring with ``frequencies``."""
        return dataclasses.replace(self, frequencies=frequencies)

    def features(self, std: pd.DataFrame) -> pd.DataFrame:
        """Matching features of standardized records (same order) with their provenance
        (source, source_record_id, standardized_at when ``std`` has it); no anchors yet."""
        if self.backend == "spark":
            from mpi.spark import features

            feats = features(self.spark(), std)
        else:
            from mpi.features import build_features

            feats = build_features(std)
        feats["source"] = std["source"].astype(str).to_numpy()
        feats["source_record_id"] = std["source_record_id"].astype(str).to_numpy()
        feats["standardized_at"] = std["standardized_at"].to_numpy() if "standardized_at" in std else pd.NaT
        return detach_ids(feats, std, self.detached) if self.detached else feats

    def spark(self):
        """The Spark session of a ``backend="spark"`` matcher (see :func:`mpi.spark.session_from`)."""
        from mpi.spark import session_from

        return session_from(self.backend_options)

    def score(self, left: pd.DataFrame, right: pd.DataFrame | None = None, *,
              frequencies: Frequencies) -> pd.DataFrame:
        """Scored pairs (see :func:`mpi.scoring.score`) with this matcher's model and backend."""
        from mpi.scoring import score

        return score(left, right, frequencies=frequencies, model_path=self.model_path,
                     review_threshold=self.review_threshold, backend=self.backend,
                     backend_options=self.backend_options)

    def match_all(self, records: pd.DataFrame, *, must: Iterable[tuple[str, str]] = (),
                  cannot: Iterable[tuple[str, str]] = (), on_progress: Progress | None = None) -> MatchOutcome:
        """Link every record into clusters of one person each.

        ``records``: standardized records, or their :meth:`features` (so that a caller holding
        many records can let the standardized frame go before matching). Every row appears exactly
        once in the outcome, in input order. ``must`` / ``cannot``: record-key pairs a steward
        decided (see :mod:`mpi.clustering`)."""
        from mpi.clustering import cluster_records
        from mpi.deterministic import anchor_keys
        from mpi.scoring import distinct_rows, keyed_links, term_frequencies

        cannot = list(cannot)
        timer = StepTimer()
        feats = records.copy(deep=False) if "record_key" in records else self.features(records)
        feats["anchor_key"] = anchor_keys(feats, cannot).to_numpy()
        distinct = distinct_rows(feats)
        frequencies = self.frequencies or term_frequencies(distinct)
        stats: dict[str, Any] = {"records": int(len(feats)), "records_scored": int(len(distinct)),
                                 "id_conflicts": int(feats["id_conflict"].sum())}
        timer("features")
        progress(on_progress, "deterministic", records=len(feats))

        edges = self.score(distinct, frequencies=frequencies)
        stats["pairs_scored_at_or_above_review_threshold"] = int(len(edges))
        timer("score")
        progress(on_progress, "predicted", pairs=len(edges))

        solve = None
        if self.backend == "spark":  # per connected component, on Spark
            from mpi.spark import clusterer

            solve = clusterer(self.spark())
        clustered, reviews, cstats = cluster_records(feats, edges, self.threshold, must=must, cannot=cannot,
                                                     solve=solve)
        stats.update(cstats)
        stats["reasons"] = clustered["reason"].value_counts().to_dict()
        keys = feats["record_key"].astype(str).to_numpy()
        links = keyed_links(edges, keys)
        timer("cluster")
        progress(on_progress, "clustered", clusters=stats["clusters"], reviews=stats["reviews"])
        return MatchOutcome(clusters=clustered, reviews=reviews, features=feats, region=set(keys), links=links,
                            frequencies=frequencies, stats=stats, seconds=timer.seconds)

    def match_delta(self, delta: Delta, stored: StoredIndex, *, must: Iterable[tuple[str, str]] = (),
                    cannot: Iterable[tuple[str, str]] = (), on_progress: Progress | None = None) -> MatchOutcome:
        """Match what changed since ``stored`` was built (see :mod:`mpi.delta`): score the records
        that are new or changed against the stored records their blocking keys reach, store the
        new features and links, and cluster again the part of the index they can reach.

        A delta region is small: on a ``spark`` matcher the features and scoring run on Spark, and the
        region is clustered in this process (:func:`mpi.clustering.constrained_clusters`, the same rules)."""
        from mpi.delta import match_delta

        return match_delta(self, delta, stored, must=list(must), cannot=list(cannot), on_progress=on_progress)
