"""How fast the simulated county generates: population, rolls of all subsystems, one day of change.

Usage: uv run python bench/bench_simulators.py [--persons 1000000] [--seed 20261121]
Prints a table of wall time and peak memory (RSS) per step.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.county import SimulatedCounty  # noqa: E402
from simulators.population import CountySpec, generate_county  # noqa: E402
from simulators.subsystems import SUBSYSTEMS, build_roll  # noqa: E402


class PeakRss:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the highest seen."""

    def __init__(self, interval: float = 0.05):
        self.proc, self.interval, self.peak, self._stop = psutil.Process(os.getpid()), interval, 0, threading.Event()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args()
    spec = CountySpec(persons=args.persons, seed=args.seed)
    rows = []
    with PeakRss() as mem:
        t0 = time.perf_counter()
        pop = generate_county(spec)
        t_pop = time.perf_counter() - t0
        rows.append(("population", f"{len(pop):,} persons", t_pop, mem.peak_mb))
        t1 = time.perf_counter()
        rolls = {name: build_roll(sub, pop, spec.seed) for name, sub in SUBSYSTEMS.items()}
        t_rolls = time.perf_counter() - t1
        rows.append(("rolls of 8 subsystems", f"{sum(map(len, rolls.values())):,} records", t_rolls, mem.peak_mb))
        county = SimulatedCounty(spec, 0, pop, rolls, {})
        t2 = time.perf_counter()
        day1 = county.next_day()
        rows.append(("next-day delta", ", ".join(f"{k} {v}" for k, v in day1.changes.items()),
                     time.perf_counter() - t2, mem.peak_mb))
        rows.append(("total", "", time.perf_counter() - t0, mem.peak_mb))
    print(f"\nSimulated county, {args.persons:,} persons, seed {args.seed}, {os.cpu_count()} CPUs\n")
    print(f"| {'step':<22} | {'size':<58} | {'seconds':>8} | {'peak RSS MB':>11} |")
    print(f"|{'-' * 24}|{'-' * 60}|{'-' * 10}|{'-' * 13}|")
    for step, size, seconds, peak in rows:
        print(f"| {step:<22} | {size:<58} | {seconds:8.1f} | {peak:11.0f} |")


if __name__ == "__main__":
    main()
