"""Probe search (match without create): one person described by a clerk, scored against stored records
with the matcher's own model.

The probe is a standardized record (the frame :func:`schemas.resident.standardize_frame` makes, one
row). :func:`probe_features` turns it into the matching features every record has
(:func:`mpi.features.build_features`); the warehouse finds the stored records the model's blocking
rules pair with it (:data:`mpi.model.BLOCKING_RULES`); :func:`score_probe` scores the probe against
each of them with the model and the term-frequency snapshot of the last matching run, exactly as a
matching run scores a pair, and explains each score (:func:`mpi.explain.explanation`);
:func:`rank_masters` keeps the best-scoring record of each master and orders the masters.

Nothing here writes anything: the probe is never stored, never given a master id.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mpi.explain import Explanation, _splink_records, explanation
from mpi.scoring import Frequencies

PROBE_KEY = "probe/1"  # the probe's record key: no stored record has the source "probe"
PROBE_ANCHOR = "probe:"  # an anchor no stored record carries (stored anchors are record keys or ID numbers)

#: the published field each comparison compares: a comparison's level says something about that field
COMPARED_FIELDS = {"id": "id_number", "name": "name", "dob": "birth_date", "sex": "sex", "phone": "phone",
                   "address": "address"}


_LINKERS: dict[str, object] = {}  # settings (as JSON) → a Linker: building one costs most of a probe
_LINKER_LOCK = threading.Lock()  # one probe at a time per linker: its DuckDB connection is not shared


def _linker(table: pd.DataFrame, settings: dict):
    """A Linker with ``settings`` (kept for the next probe with the same settings: the model's and the
    snapshot's record count). ``score_pairs`` scores the records it is given, not the registered table."""
    from splink import DuckDBAPI, Linker

    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in _LINKERS:
        if len(_LINKERS) > 4:  # a new model or snapshot: drop the old ones
            _LINKERS.clear()
        api = DuckDBAPI()
        _LINKERS[key] = Linker(api.register(table.head(1), dataset_display_name="probe"), settings,
                               log_level=logging.WARNING)
    return _LINKERS[key]


@dataclass
class ScoredCandidate:
    """One stored record scored against the probe."""

    record_key: str
    explained: Explanation

    @property
    def match_probability(self) -> float:
        return self.explained.match_probability

    @property
    def match_weight(self) -> float:
        return self.explained.match_weight


def probe_features(std: pd.DataFrame) -> pd.DataFrame:
    """The matching features of a standardized probe (one row), with the anchor key candidates are
    compared against (:func:`warehouse.matching_state.candidates`)."""
    from mpi.features import build_features

    if len(std) != 1:
        raise ValueError(f"a probe is one record, got {len(std)}")
    feats = build_features(std.assign(source="probe", source_record_id="1"))
    feats["record_key"] = PROBE_KEY
    feats["anchor_key"] = PROBE_ANCHOR
    return feats


def score_probe(probe: pd.DataFrame, candidates: pd.DataFrame, *, frequencies: Frequencies | None,
                model_path: str | Path | None = None) -> list[ScoredCandidate]:
    """The probe (features from :func:`probe_features`) scored against every candidate (stored features,
    with ``record_key``), best first. Every pair is scored — the candidates were chosen by the blocking
    rules already — with the model's weights and the snapshot's term frequencies and prior."""
    from mpi.model import SPLINK_COLUMNS, load_model

    if candidates.empty:
        return []
    settings = load_model(model_path, records=frequencies.records if frequencies is not None else None)
    both = pd.concat([probe.head(1), candidates], ignore_index=True)
    table = both.assign(unique_id=range(len(both)), anchor=range(len(both)))[list(SPLINK_COLUMNS)]
    records = _splink_records(table, frequencies)
    with _LINKER_LOCK:
        pairs = _linker(table, settings).inference.score_pairs(records[:1], records[1:])
        scored = pairs.as_record_list()
        pairs.drop_table_from_database_and_remove_from_cache()
    keys = both["record_key"].astype(str).tolist()
    out = []
    for row in scored:
        other = int(row["unique_id_r"]) if int(row["unique_id_l"]) == 0 else int(row["unique_id_l"])
        out.append(ScoredCandidate(keys[other], explanation(row, settings=settings, match_weight=row["match_weight"],
                                                           match_probability=row["match_probability"])))
    out.sort(key=lambda s: (-s.match_weight, s.record_key))
    return out


def rank_masters(scored: list[ScoredCandidate], master_of: Mapping[str, str]) -> list[tuple[str, ScoredCandidate, int]]:
    """(master id, its best-scoring record, how many of its records were scored) per master, best first;
    records without a master (not matched yet) are left out."""
    best: dict[str, ScoredCandidate] = {}
    counts: dict[str, int] = {}
    for s in scored:
        master = master_of.get(s.record_key)
        if master is None:
            continue
        counts[master] = counts.get(master, 0) + 1
        if master not in best or s.match_weight > best[master].match_weight:
            best[master] = s
    ranked = sorted(best.items(), key=lambda kv: (-kv[1].match_weight, kv[0]))
    return [(m, s, counts[m]) for m, s in ranked]
