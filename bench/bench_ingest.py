"""Ingesting the simulated county: records per second and peak memory of the hub's side.

Usage: uv run python bench/bench_ingest.py [--persons 1000000]
The platforms run in a child process (so their memory is not counted); the hub lands every
subsystem into a fresh warehouse (embedded PostgreSQL in a temporary HUB_HOME, or HUB_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_simulators import PeakRss  # noqa: E402


def _serve(persons: int, seed: int, workdir: str, queue, stop) -> None:
    from hub.simulation import connection_env, start_simulation

    platforms = start_simulation(persons=persons, seed=seed, workdir=Path(workdir))
    queue.put(connection_env(platforms))
    stop.wait()
    platforms.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hub-bench-")
    os.environ.setdefault("HUB_HOME", home)

    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    t0 = time.perf_counter()
    child = ctx.Process(target=_serve, args=(args.persons, args.seed, str(Path(home) / "sim"), queue, stop))
    child.start()
    env = queue.get(timeout=1800)
    t_sim = time.perf_counter() - t0
    os.environ.update(env)

    from hub import pipeline

    pipeline.prepare_warehouse()
    rows = []
    with PeakRss() as mem:
        t_all = time.perf_counter()
        for name in pipeline.source_names():
            t = time.perf_counter()
            r = pipeline.ingest_source(name)
            s = time.perf_counter() - t
            rows.append((name, r["received"], r["landed"], s, r["received"] / s, mem.peak_mb))
        total_s = time.perf_counter() - t_all
    stop.set()
    child.join(timeout=60)

    received = sum(r[1] for r in rows)
    print(f"\nIngesting a simulated county of {args.persons:,} persons ({os.cpu_count()} CPUs); "
          f"platforms ready in {t_sim:.0f} s\n")
    print(f"| {'source':<12} | {'received':>9} | {'landed':>9} | {'seconds':>7} | {'records/s':>9} | {'peak RSS MB':>11} |")
    print(f"|{'-' * 14}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 11}|{'-' * 13}|")
    for name, rec, landed, s, rate, peak in rows:
        print(f"| {name:<12} | {rec:>9,} | {landed:>9,} | {s:7.1f} | {rate:9,.0f} | {peak:11.0f} |")
    print(f"| {'all':<12} | {received:>9,} | {sum(r[2] for r in rows):>9,} | {total_s:7.1f} | "
          f"{received / total_s:9,.0f} | {mem.peak_mb:11.0f} |")


if __name__ == "__main__":
    main()
