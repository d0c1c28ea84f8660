"""An incremental matching run against a full rebuild, on the simulated county after a next-day delta.

Usage: uv run python bench/bench_incremental.py [--persons 200000] [--delta 1.0]

Steps: serve the county, ingest and standardize every subsystem into a fresh warehouse (embedded
PostgreSQL in a temporary HUB_HOME, or HUB_DATABASE_URL), build the index in full; move the county
one day on with about ``--delta`` percent of the records new, changed or deleted, ingest and
standardize it; then time an incremental run, and a full rebuild on the same data (which must
change nothing). Prints the table of figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_simulators import PeakRss  # noqa: E402


def _load(pipeline) -> float:
    t = time.perf_counter()
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--delta", type=float, default=1.0, help="percent of records changed by the next day")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hub-bench-")
    os.environ.setdefault("HUB_HOME", home)

    from hub import pipeline
    from hub.simulation import connection_env
    from simulators.county import DeltaSpec, SimulatedCounty
    from simulators.platforms import start_platforms
    from simulators.population import CountySpec

    t0 = time.perf_counter()
    county = SimulatedCounty.create(CountySpec(persons=args.persons, seed=args.seed))
    platforms = start_platforms(county, Path(home) / "sim")
    os.environ.update(connection_env(platforms))
    pipeline.prepare_warehouse()
    t_load = _load(pipeline)
    print(f"county of {args.persons:,} persons served and loaded in {time.perf_counter() - t0:.0f} s "
          f"(ingest + standardize {t_load:.0f} s)")
    with PeakRss() as mem:
        t = time.perf_counter()
        first = pipeline.build_master_index(mode="full")
        t_first = time.perf_counter() - t
    peak_first = mem.peak_mb

    # a next day with about --delta percent of the records touched
    share = args.delta / 1.0
    day1 = county.next_day(DeltaSpec(births=0.0018 * share, deaths=0.0012 * share, moves=0.003 * share,
                                     corrections=0.5, deletions=0.003 * share))
    platforms.advance(day1)
    t_load1 = _load(pipeline)
    with PeakRss() as mem:
        t = time.perf_counter()
        inc = pipeline.build_master_index()
        t_inc = time.perf_counter() - t
    peak_inc = mem.peak_mb
    with PeakRss() as mem:
        t = time.perf_counter()
        full = pipeline.build_master_index(mode="full")
        t_full = time.perf_counter() - t
    peak_full = mem.peak_mb
    platforms.stop()

    touched = inc["new"] + inc["changed"] + inc["removed"]
    print(f"\nnext day: {inc['new']:,} new, {inc['changed']:,} changed, {inc['removed']:,} deleted records = "
          f"{touched:,} ({100 * touched / first['records']:.2f}% of {first['records']:,}); "
          f"ingest + standardize {t_load1:.0f} s; {os.cpu_count()} CPUs\n")
    print(f"| {'run':<26} | {'mode':<11} | {'records':>9} | {'re-clustered':>12} | {'events':>7} | {'seconds':>7} "
          f"| {'vs full':>7} | {'peak RSS MB':>11} |")
    print(f"|{'-' * 28}|{'-' * 13}|{'-' * 11}|{'-' * 14}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 13}|")
    for label, r, s, peak in (("day 0, first build", first, t_first, peak_first),
                              ("day 1, incremental", inc, t_inc, peak_inc),
                              ("day 1, full rebuild", full, t_full, peak_full)):
        print(f"| {label:<26} | {r['mode']:<11} | {r['records']:>9,} | {r['affected']:>12,} | {r['events']:>7,} "
              f"| {s:7.1f} | {s / t_full:6.1%} | {peak:11.0f} |")
    print("\nseconds per step:")
    for label, r in (("first build", first), ("incremental", inc), ("full rebuild", full)):
        print(f"  {label:<13} " + ", ".join(f"{k} {v}" for k, v in r["step_seconds"].items()))
    same = full["events"] == 0 and full["crosswalk_changed"] == 0
    print(f"\nfull rebuild after the incremental run changed {full['crosswalk_changed']} crosswalk rows and made "
          f"{full['events']} events: the two runs {'agree' if same else 'DISAGREE'}.")


if __name__ == "__main__":
    main()
