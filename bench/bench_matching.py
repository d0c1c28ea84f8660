"""Matching accuracy and cost on the simulated county: the hub's matcher against two peers.

Peers, side by side in one run on the same standardized records:
  raw-id   records whose raw ID number (trimmed) is equal are one person (today's practice);
  generic  a generic Splink setup: Jaro-Winkler on names, Levenshtein on ID numbers, exact dates and
           phones, EM-trained, connected components at 0.95;
  hub      ``mpi.Matcher.match_all`` (deterministic pass, Chinese-aware Splink model, constrained clustering).

Usage: .venv/bin/python bench/bench_matching.py [--persons 200000] [--seed 20261121] [--only hub,generic,raw-id]
Prints pairwise precision / recall / F1 (record pairs within clusters against the true person),
over-merged clusters (as % of persons), split persons, wall time and peak RSS per system.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_simulators import PeakRss  # noqa: E402

CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/bench-matching"))
SIMULATORS = Path(__file__).resolve().parents[1] / "simulators"


def simulator_digest() -> str:
    """A digest of the simulator's code (error profiles included): a cached county is reused only
    when the simulator that made it is the one checked out."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(SIMULATORS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def build_std(persons: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Standardized records of every subsystem, and the truth (source, source_record_id, person_id)."""
    from connectors.registry import load_registry
    from schemas.resident import standardize_frame
    from simulators.county import SimulatedCounty
    from simulators.population import CountySpec

    CACHE.mkdir(parents=True, exist_ok=True)
    tag = f"{persons}-{seed}-{simulator_digest()}"
    std_path, truth_path = CACHE / f"std-{tag}.parquet", CACHE / f"truth-{tag}.parquet"
    if std_path.exists() and truth_path.exists():
        return pd.read_parquet(std_path), pd.read_parquet(truth_path)
    county = SimulatedCounty.create(CountySpec(persons=persons, seed=seed))
    registry = load_registry()
    frames = []
    for name, source in registry.items():
        served = county.served(name, include_deleted=False)
        raw = pd.DataFrame({"source": name, "source_record_id": served[source.primary_key].astype(str)})
        for field, column in source.mapping.items():
            raw[field] = served[column]
        std = standardize_frame(raw, sex_codes=source.codes.get("sex"), date_formats=source.date_formats or None,
                                today=county.as_of.date())
        frames.append(std)
    std = pd.concat(frames, ignore_index=True)
    truth = county.truth()
    truth = truth[~truth["deleted"]][["source", "source_record_id", "person_id", "errors"]].reset_index(drop=True)
    truth["source_record_id"] = truth["source_record_id"].astype(str)
    std.to_parquet(std_path)
    truth.to_parquet(truth_path)
    return std, truth


def pairwise_metrics(truth_person: np.ndarray, cluster: np.ndarray) -> dict:
    """Pairwise precision/recall/F1, over-merged clusters (as % of persons) and split persons."""
    df = pd.DataFrame({"p": pd.factorize(truth_person)[0], "c": pd.factorize(cluster)[0]})

    def pairs(counts: pd.Series) -> int:
        c = counts.to_numpy(dtype=np.int64)
        return int((c * (c - 1) // 2).sum())

    true_pairs = pairs(df.groupby("p").size())
    pred_pairs = pairs(df.groupby("c").size())
    both = pairs(df.groupby(["p", "c"]).size())
    precision = both / pred_pairs if pred_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    persons = df["p"].nunique()
    over = int((df.groupby("c")["p"].nunique() > 1).sum())
    split = int((df.groupby("p")["c"].nunique() > 1).sum())
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true_pairs, "pred_pairs": pred_pairs,
            "false_pairs": pred_pairs - both, "missed_pairs": true_pairs - both, "persons": persons,
            "over_merged": over, "over_merged_pct": 100 * over / persons, "split_persons": split}


def raw_id_clusters(std: pd.DataFrame) -> np.ndarray:
    """Today's practice: equal raw ID strings (trimmed) are one person; an empty ID is its own cluster."""
    raw = std["id_number_raw"].astype("string").str.strip()
    own = "rec:" + std["source"].astype(str) + "/" + std["source_record_id"].astype(str)
    return ("id:" + raw).where(raw.notna() & (raw != ""), own).astype(str).to_numpy()


def generic_splink_clusters(std: pd.DataFrame, threshold: float = 0.95, seed: int = 1) -> np.ndarray:
    """A generic Splink setup: Jaro-Winkler names, Levenshtein IDs, exact dates and phones, EM, components."""
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    df = pd.DataFrame({
        "unique_id": np.arange(len(std)),
        "name": std["name"].astype("string").to_numpy(),
        "id_number": std["id_number_raw"].astype("string").str.strip().str.upper().to_numpy(),
        "birth_date": pd.to_datetime(std["birth_date"], errors="coerce").dt.strftime("%Y-%m-%d").to_numpy(),
        "phone": std["phone"].astype("string").to_numpy(),
    })
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[block_on("id_number"), block_on("birth_date"),
                                                block_on("name", "phone")],
        comparisons=[cl.JaroWinklerAtThresholds("name", [0.92, 0.8]),
                     cl.LevenshteinAtThresholds("id_number", [1, 2]),
                     cl.ExactMatch("birth_date"), cl.ExactMatch("phone")],
    )
    api = DuckDBAPI()
    linker = Linker(api.register(df, dataset_display_name="std"), settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match([block_on("id_number", "birth_date")], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=seed)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("id_number"))
    pred = linker.inference.predict(threshold_match_probability=threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=threshold)
    out = clusters.as_pyarrow_table().select(["unique_id", "cluster_id"]).to_pandas().sort_values("unique_id")
    return out["cluster_id"].astype(str).to_numpy()


def hub_clusters(std: pd.DataFrame, **options) -> tuple[np.ndarray, dict]:
    from mpi import Matcher

    outcome = Matcher.from_model(**options).match_all(std)
    return outcome.clusters["cluster_key"].to_numpy(), {**outcome.stats, "seconds": outcome.seconds}


def candidate_pairs(std: pd.DataFrame) -> dict:
    """Candidate pairs per blocking rule of the hub's model (exact counts, after the deterministic pass)."""
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    from mpi.deterministic import deterministic_anchors
    from mpi.features import build_features
    from mpi.model import blocking_rules

    feats = build_features(std)
    feats["anchor"] = deterministic_anchors(feats)
    api = DuckDBAPI()
    sdf = api.register(feats, dataset_display_name="std")
    records = count_comparisons_from_blocking_rules(sdf, blocking_rules=blocking_rules(), link_type="dedupe_only",
                                                    record_sample_proportion=1.0)
    return {str(getattr(r, "blocking_rule", r)): r for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--only", default="raw-id,generic,hub")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", action="store_true", help="also count candidate pairs per blocking rule")
    args = parser.parse_args()
    t = time.perf_counter()
    std, truth = build_std(args.persons, args.seed)
    if not args.child:
        print(f"{len(std):,} standardized records of {truth['person_id'].nunique():,} persons "
              f"({time.perf_counter() - t:.0f} s to build or load)")
    keyed = std[["source", "source_record_id"]].astype(str).merge(truth, on=["source", "source_record_id"],
                                                                   how="left", validate="1:1")
    person = keyed["person_id"].to_numpy()
    systems = {"raw-id": lambda: (raw_id_clusters(std), {}),
               "generic": lambda: (generic_splink_clusters(std), {}),
               "hub": lambda: hub_clusters(std)}
    if args.child:  # one system, in a fresh process: its peak RSS is its own
        gc.collect()
        with PeakRss() as mem:
            base = mem.peak_mb
            t0 = time.perf_counter()
            clusters, stats = systems[args.child]()
            wall = time.perf_counter() - t0
        m = pairwise_metrics(person, clusters)
        print("RESULT " + json.dumps({"m": m, "wall": wall, "peak": mem.peak_mb, "base": base, "stats": stats},
                                     default=str))
        return
    rows = []
    for name in args.only.split(","):
        proc = subprocess.run([sys.executable, __file__, "--persons", str(args.persons), "--seed", str(args.seed),
                               "--child", name], capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{name} failed:\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(line[-1][7:])
        rows.append((name, r["m"], r["wall"], r["peak"], r["peak"] - r["base"]))
        if r["stats"]:
            print(f"{name} stats: {r['stats']}")
    print(f"\nMatching, {args.persons:,} persons, {len(std):,} records, seed {args.seed}, {os.cpu_count()} CPUs; "
          f"{rows[0][1]['true_pairs']:,} true pairs\n")
    head = (f"| {'system':<11} | {'precision':>9} | {'recall':>8} | {'F1':>8} | {'false pairs':>11} | {'missed pairs':>12} "
            f"| {'over-merged':>16} | {'split persons':>13} | {'wall s':>7} | {'peak RSS MB':>11} | {'Δ RSS MB':>8} |")
    print(head)
    print("|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|")
    for name, m, wall, peak, delta in rows:
        over = f"{m['over_merged']:,} ({m['over_merged_pct']:.4f}%)"
        print(f"| {name:<11} | {m['precision']:9.6f} | {m['recall']:8.6f} | {m['f1']:8.6f} | {m['false_pairs']:>11,} "
              f"| {m['missed_pairs']:>12,} | {over:>16} | {m['split_persons']:>13,} | {wall:7.1f} | {peak:11.0f} "
              f"| {delta:8.0f} |")
    if args.pairs:
        print("\nCandidate pairs per blocking rule (hub, after the deterministic pass):")
        total = 0
        for rec in candidate_pairs(std).values():
            total += rec["marginal_comparison_count"]
            print(f"  {rec['marginal_comparison_count']:>12,}  {rec['blocking_rule']}")
        print(f"  {total:>12,}  in all, for {len(std):,} records")


if __name__ == "__main__":
    main()
