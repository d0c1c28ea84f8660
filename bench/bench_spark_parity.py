"""The matcher on DuckDB and on Spark (local mode), side by side on the simulated county.

Usage: .venv/bin/python bench/bench_spark_parity.py [--persons 50000] [--seed 20261121] [--master local[*]]

Both backends match the same standardized records (built once and cached, as bench_matching.py does),
each in a fresh process. Prints, per backend: seconds per step (Spark's session start apart), peak
memory (PSS) of the process and everything it started (Spark's JVM and Python workers included),
and how many records were put in a different cluster, with a different reason, and how many review pairs
differ from DuckDB's (target: none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_end_to_end import PeakTree as TreeRss  # noqa: E402  (this process and what it started)
from bench.bench_matching import build_std  # noqa: E402

BACKENDS = ("duckdb", "spark")


def child(backend: str, persons: int, seed: int, master: str, out: Path) -> None:
    """Match on one backend; write its clusters and reviews to ``out`` and print a RESULT line."""
    from mpi import Matcher

    std, _ = build_std(persons, seed)
    with TreeRss() as mem:
        t0 = time.perf_counter()
        options = {}
        start = 0.0
        if backend == "spark":
            from mpi.spark import spark_session

            options = {"spark_session": spark_session(master)}
            start = time.perf_counter() - t0
        outcome = Matcher.from_model(backend=backend, backend_options=options).match_all(std)
        wall = time.perf_counter() - t0
    outcome.clusters.to_parquet(out / f"clusters-{backend}.parquet")
    cols = ["record_key_l", "record_key_r", "review_reason"]
    outcome.reviews[cols].to_parquet(out / f"reviews-{backend}.parquet")
    print("RESULT " + json.dumps({"seconds": outcome.seconds, "start": round(start, 2), "wall": round(wall, 2),
                                  "peak": mem.peak_mb, "records": len(std), "clusters": outcome.stats["clusters"],
                                  "reviews": len(outcome.reviews)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--master", default="local[*]", help="the Spark master (default: local[*], this machine)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.persons, args.seed, args.master, Path(args.out))
        return
    t = time.perf_counter()
    std, truth = build_std(args.persons, args.seed)
    print(f"{len(std):,} standardized records of {truth['person_id'].nunique():,} persons "
          f"({time.perf_counter() - t:.0f} s to build or load)")
    del std, truth
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as folder:
        out = Path(folder)
        for backend in BACKENDS:
            proc = subprocess.run([sys.executable, __file__, "--persons", str(args.persons), "--seed", str(args.seed),
                                   "--master", args.master, "--child", backend, "--out", folder],
                                  capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{backend} failed:\n{proc.stderr[-3000:]}")
                continue
            results[backend] = json.loads(line[-1][7:])
        if set(results) != set(BACKENDS):
            sys.exit(1)
        duck, spark = (pd.read_parquet(out / f"clusters-{b}.parquet") for b in BACKENDS)
        rev_duck, rev_spark = (pd.read_parquet(out / f"reviews-{b}.parquet") for b in BACKENDS)
    assert (duck["record_key"].to_numpy() == spark["record_key"].to_numpy()).all()
    cluster_diff = int((duck["cluster_key"].to_numpy() != spark["cluster_key"].to_numpy()).sum())
    reason_diff = int((duck["reason"].to_numpy() != spark["reason"].to_numpy()).sum())
    pairs = [set(map(tuple, r.to_numpy().tolist())) for r in (rev_duck, rev_spark)]
    review_diff = len(pairs[0] ^ pairs[1])

    print(f"\nMatching on DuckDB and on Spark ({args.master}), {args.persons:,} persons, "
          f"{results['duckdb']['records']:,} records, seed {args.seed}, {os.cpu_count()} CPUs\n")
    head = (f"| {'backend':<7} | {'start s':>7} | {'features s':>10} | {'score s':>7} | {'cluster s':>9} | {'total s':>7} "
            f"| {'peak MB':>11} | {'clusters':>8} | {'reviews':>7} | {'records in another cluster':>26} |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for backend, r in results.items():
        s = r["seconds"]
        differs = 0 if backend == "duckdb" else cluster_diff
        print(f"| {backend:<7} | {r['start']:7.1f} | {s.get('features', 0):10.1f} | {s.get('score', 0):7.1f} "
              f"| {s.get('cluster', 0):9.1f} | {r['wall']:7.1f} | {r['peak']:11.0f} | {r['clusters']:>8,} "
              f"| {r['reviews']:>7,} | {differs:>26,} |")
    print(f"\nagainst DuckDB: {cluster_diff:,} records in another cluster, {reason_diff:,} with another reason, "
          f"{review_diff:,} review pairs not on both (target: none)")
    print("peak MB: PSS of the process and everything it started (Spark's JVM and Python workers included)")


if __name__ == "__main__":
    main()
