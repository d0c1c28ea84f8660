"""End to end: where a county's full run and its next-day delta spend their time.

Usage: uv run python bench/bench_end_to_end.py [--persons 200000] [--seed 20261121] [--delta 1.0|sim]
       [--backend duckdb|spark] [--reports-due calendar|every_release] [--days 1]

simulate → serve + ingest → standardize → match → gate → publish → audit → audit workbooks → statistical
reports → scorecards, first in full on a fresh warehouse (embedded PostgreSQL in a temporary HUB_HOME, or
HUB_DATABASE_URL), then once more after the county moves one day on (the simulator's own next-day changes,
scaled so that about ``--delta`` percent of the records are new, changed or deleted; ``--delta sim`` keeps the
simulator's default day). Prints, for the full run and the delta, each step's seconds, its peak memory and its
rows, with the totals and the targets beside them.

Each step is the function the DAGs call (``hub.pipeline``: ingest_source per source, standardize_sources,
build_master_index, run_gate, publish_release, audit_release, build_reports with ``HUB_REPORTS=all``), and each runs
as a task of the DAGs runs under the LocalExecutor: in a process of its own, forked from a forkserver that has
imported what the scheduler's forkserver imports (``hub.airflow_processes.TASK_MODULES`` less Airflow's own; what
a step imports beyond that, it imports itself, every time). A step's peak memory is that of its task process and
the worker processes it starts (PSS, see PeakTree; the PostgreSQL server's processes are not counted, nor this
process, which holds the simulated county and serves its platforms). Airflow's own start-up (≈ 20 s per
ingestion DAG, measured under the scheduler) is not included. The ingestion tasks run side by side, as the
scheduler runs the ingestion DAGs (the step's peak: all of them together). The three parts of the report task
(build_reports) are timed separately as it runs them, in one task. The simulated county is cached in BENCH_CACHE (default
/tmp/bench-reports, shared with bench_reports.py).

The statistical reports follow the reporting calendar (``--reports-due calendar``, the default, as a deployment
does: the full run's release writes every kind, and the next day, in the same month, writes none — what 29 days
of a month cost); ``--reports-due every_release`` writes every kind after both releases (what the first release
of a month costs).

``--days N`` runs N next days one after the other (the later ones with the simulator's birth rate, a sixth of a
1 % day's), and prints each later day's steps beside the first's: what a deployment pays on its tenth day rather
than its second, where anything that grows with the releases kept (release rows, findings, the scorecards' trend,
the Data Docs) shows as a rising total.

``--backend spark`` matches on Spark (``HUB_SPARK_MASTER``, default local[*]: this machine's cores; needs the
``spark`` extra and Java); the other steps are the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_matching import simulator_digest  # noqa: E402
from bench.bench_reports import CACHE, simulated  # noqa: E402
from hub.airflow_processes import TASK_MODULES, task_parallelism  # noqa: E402

#: the targets: persons → (full run seconds, peak memory MB or None)
TARGETS = {1_000_000: (300, 6 * 1024), 200_000: (75, None)}
DELTA_TARGET = 0.10  # the delta's seconds as a share of the full run's


class PeakTree:
    """Samples the memory of this process (unless ``include_self`` is false) plus its child processes, leaving out
    PostgreSQL's: each process's proportional set size (PSS: its own pages, and its share of the pages it shares
    with others, such as what a forked task process shares with the forkserver), so that processes running side by
    side add up to the memory they take together (their resident sizes would count shared pages once each)."""

    def __init__(self, interval: float = 0.1, *, include_self: bool = True):
        self.proc, self.interval, self.peak, self._stop = psutil.Process(os.getpid()), interval, 0, threading.Event()
        self.include_self = include_self

    @staticmethod
    def _size(proc: psutil.Process) -> int:
        try:
            return proc.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):  # no PSS on this system: the resident size
            return proc.memory_info().rss

    def _total(self) -> int:
        total = self._size(self.proc) if self.include_self else 0
        try:
            children = self.proc.children(recursive=True)
        except psutil.Error:
            return total
        for child in children:
            try:
                if "postgres" not in child.name() and "pg_ctl" not in child.name():
                    total += self._size(child)
            except psutil.Error:
                pass
        return total

    def __enter__(self):
        self.peak = self._total()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


#: what the task processes start with: what the LocalExecutor's forkserver preloads, less Airflow's own modules
TASK_PRELOAD = [m for m in TASK_MODULES if not m.startswith(("airflow", "pendulum", "hub.dag_config"))]
_TASKS = multiprocessing.get_context("forkserver")
_TASKS.set_forkserver_preload(TASK_PRELOAD)


def _task(env: dict, target: str, args: tuple, kwargs: dict) -> tuple[object, float]:
    """In the task process: ``module:function(*args, **kwargs)`` with the bench's environment; the result (or the exception
    raised) and the peak memory MB of this process and its workers."""
    os.environ.clear()
    os.environ.update(env)
    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    with PeakTree() as mem:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # e.g. the gate failing: shown in the table, the run goes on
            result = exc
    return result, mem.peak_mb


def in_task(target: str, *args, **kwargs) -> tuple[object, float]:
    """Run ``module:function(*args, **kwargs)`` as a DAG task runs: in a new process forked from the forkserver. Returns the
    result (or the exception it raised) and the task's peak memory MB."""
    with ProcessPoolExecutor(1, mp_context=_TASKS, max_tasks_per_child=1) as pool:
        return pool.submit(_task, dict(os.environ), target, args, kwargs).result()


class Steps:
    """The rows of one run: (step, seconds, peak memory MB, rows)."""

    def __init__(self, label: str):
        self.label, self.rows = label, []

    def run(self, step: str, fn, rows=None):
        """Time ``fn()``, which returns (result, peak MB) from :func:`in_task`; ``rows(result)`` gives the rows column.
        Returns the result (or the exception raised)."""
        t = time.perf_counter()
        result, peak_mb = fn()
        seconds = time.perf_counter() - t
        shown = f"failed: {type(result).__name__}" if isinstance(result, Exception) else (rows(result) if rows else "")
        self.add(step, seconds, peak_mb, shown)
        return result

    def here(self, step: str, fn, rows=None):
        """Time ``fn()`` in this process (the simulator's steps); its peak is this process's and its children's."""
        with PeakTree() as mem:
            t = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - t
        self.add(step, seconds, mem.peak_mb, rows(result) if rows else "")
        return result

    def add(self, step: str, seconds: float, peak_mb: float, shown: str) -> None:
        self.rows.append((step, seconds, peak_mb, shown))
        print(f"  {self.label}: {step:<16} {seconds:8.1f} s  {peak_mb:7.0f} MB  {shown}", flush=True)

    @property
    def seconds(self) -> float:
        return sum(r[1] for r in self.rows)

    @property
    def without_simulating(self) -> float:
        """The hub's seconds: the total less the simulator's step."""
        return self.seconds - sum(r[1] for r in self.rows if r[0] == "simulate")

    @property
    def peak_mb(self) -> float:
        return max(r[2] for r in self.rows)


def _ingest_all(pipeline) -> tuple[dict, float]:
    """Every source's ingestion task, side by side as the scheduler runs the ingestion DAGs (as many task processes
    at once as the LocalExecutor's parallelism allows: all eight here): the results and the peak of the task
    processes together, with the forkserver's."""
    names = pipeline.source_names()
    with PeakTree(include_self=False) as mem, ProcessPoolExecutor(
            min(len(names), task_parallelism()), mp_context=_TASKS, max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(_task, dict(os.environ), "hub.pipeline:ingest_source", (name,), {})
                   for name in names}
        per = {name: future.result()[0] for name, future in futures.items()}
    for result in per.values():
        if isinstance(result, Exception):
            raise result
    return per, mem.peak_mb


def report_task() -> tuple[dict, dict]:
    """In the task process: build_reports() as the DAG's report task runs it, its three parts timed as they run."""
    from hub import audits, pipeline

    parts: dict[str, tuple[float, float, object]] = {}
    export_all, statistical = audits.export_all, pipeline._statistical_reports

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            with PeakTree() as mem:
                t = time.perf_counter()
                out = fn(*args, **kwargs)
                parts[name] = (time.perf_counter() - t, mem.peak_mb, out)
            return out
        return wrapper

    audits.export_all = timed("audit workbooks", export_all)
    pipeline._statistical_reports = timed("reports", statistical)
    result = pipeline.build_reports()
    return result, {name: (seconds, mb, len(out) if isinstance(out, dict) else out)
                    for name, (seconds, mb, out) in parts.items()}


def _reports(steps: Steps) -> dict:
    """The report task, in a task process; its three parts shown as three steps."""
    t = time.perf_counter()
    (result, parts), peak_mb = in_task("bench.bench_end_to_end:report_task")
    total = time.perf_counter() - t
    workbook_s, workbook_mb, workbooks = parts["audit workbooks"]
    steps.add("audit workbooks", workbook_s, workbook_mb, f"{workbooks} files")
    report_s, report_mb, files = parts["reports"]
    due = os.environ.get("HUB_REPORTS_DUE", "calendar")
    steps.add("reports", report_s, report_mb,
              f"{files:,} files (HUB_REPORTS=all, HUB_REPORTS_DUE={due})" if files else f"none due ({due})")
    steps.add("scorecards", total - workbook_s - report_s, peak_mb,  # the peak: of the whole report task
              f"1 + {result['department_scorecards']} department pages")
    return result


def _after_match(steps: Steps) -> None:
    """gate → publish → audit → report, as the master-index DAG runs them after matching."""
    gate = steps.run("gate", lambda: in_task("hub.pipeline:run_gate"),
                     lambda g: f"{g['evaluated']:,} expectations, {g['suites']} suites")
    if isinstance(gate, Exception):
        print(f"  the gate failed, nothing published: {str(gate)[:300]}")
    else:
        outcome = steps.run("publish", lambda: in_task("hub.pipeline:publish_release", gate["validation_run_id"]),
                            lambda o: f"{o['outcome']} release {o['release_no']}")
        if not isinstance(outcome, Exception) and outcome["outcome"] == "published":
            steps.run("audit", lambda: in_task("hub.pipeline:audit_release", outcome["release_no"]),
                      lambda a: f"{a['detected']:,} findings, {a['open']:,} open")
    _reports(steps)  # a teardown in the DAG: runs whatever happened before


def _match_rows(m: dict) -> str:
    return f"{m['mode']}: {m['records']:,} → {m['masters']:,} masters, {m['affected']:,} re-clustered"


def _table(persons: int, full: Steps, delta: Steps, touched: int, records: int, backend: str = "duckdb") -> None:
    print(f"\n{persons:,} persons, {records:,} records, backend {backend}, {os.cpu_count()} CPUs "
          "(Airflow's own start-up not included)\n")
    print(f"| {'step':<16} | {'full s':>8} | {'full MB':>8} | {'full rows':<52} | {'delta s':>8} | {'delta MB':>8} "
          f"| {'delta rows':<52} |")
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 10}|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 54}|")
    drows = {r[0]: r for r in delta.rows}
    names = [r[0] for r in full.rows] + [r[0] for r in delta.rows if r[0] not in {f[0] for f in full.rows}]
    frows = {r[0]: r for r in full.rows}
    for name in names:
        f, d = frows.get(name), drows.get(name)
        cells = [f"{f[1]:8.1f} | {f[2]:8.0f} | {f[3][:52]:<52}" if f else f"{'':>8} | {'':>8} | {'':<52}",
                 f"{d[1]:8.1f} | {d[2]:8.0f} | {d[3][:52]:<52}" if d else f"{'':>8} | {'':>8} | {'':<52}"]
        print(f"| {name:<16} | {cells[0]} | {cells[1]} |")
    print(f"| {'total':<16} | {full.seconds:8.1f} | {full.peak_mb:8.0f} | {'':<52} | {delta.seconds:8.1f} "
          f"| {delta.peak_mb:8.0f} | {'':<52} |")
    hub_full, hub_delta = full.without_simulating, delta.without_simulating
    print(f"| {'total w/o sim.':<16} | {hub_full:8.1f} | {'':>8} | {'':<52} | "
          f"{hub_delta:8.1f} | {'':>8} | {'':<52} |")
    share = hub_delta / hub_full if hub_full else 0.0
    print(f"\nnext day: {touched:,} records new, changed or deleted = {100 * touched / records:.2f}% of {records:,} "
          f"({'near' if 0.5 <= 100 * touched / records <= 1.5 else 'NOT near'} 1%)")
    target = TARGETS.get(persons)
    print("\ntargets (seconds without simulating):")
    if target:
        seconds, mb = target
        print(f"  full run ≤ {seconds} s: {hub_full:.0f} s {'met' if hub_full <= seconds else 'NOT met'}")
        if mb:
            print(f"  peak ≤ {mb / 1024:.0f} GB: {full.peak_mb / 1024:.1f} GB "
                  f"{'met' if full.peak_mb <= mb else 'NOT met'}")
    else:
        print(f"  (the full-run targets are set for {', '.join(f'{p:,}' for p in TARGETS)} persons: "
              "1M ≤ 300 s and ≤ 6 GB, 200k ≤ 75 s)")
    print(f"  delta ≤ {DELTA_TARGET:.0%} of the full run: {share:.1%} {'met' if share <= DELTA_TARGET else 'NOT met'}")


def _days_table(days: list[Steps]) -> None:
    """Each next day's seconds per step, side by side, with the totals (without simulating)."""
    names = [r[0] for r in days[0].rows]
    print(f"\nthe next days, seconds per step ({len(days)} days):\n")
    print(f"| {'step':<16} | " + " | ".join(f"{'day ' + str(k):>7}" for k in range(1, len(days) + 1)) + " |")
    print(f"|{'-' * 18}|" + "|".join("-" * 9 for _ in days) + "|")
    seconds = [{r[0]: r[1] for r in d.rows} for d in days]
    for name in names:
        cells = [f"{s[name]:7.1f}" if name in s else f"{'':>7}" for s in seconds]
        print(f"| {name:<16} | " + " | ".join(cells) + " |")
    print(f"| {'total w/o sim.':<16} | " + " | ".join(f"{d.without_simulating:7.1f}" for d in days) + " |")
    print(f"| {'peak MB':<16} | " + " | ".join(f"{d.peak_mb:7.0f}" for d in days) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--delta", default="1.0",
                        help="percent of records touched by the next day, or 'sim' for the simulator's default day")
    parser.add_argument("--backend", default="duckdb", choices=["duckdb", "spark"],
                        help="the matcher's backend: duckdb, or spark (on HUB_SPARK_MASTER, default local[*])")
    parser.add_argument("--reports-due", default="calendar", choices=["calendar", "every_release"],
                        help="statistical reports when the reporting calendar says (default) or after every release")
    parser.add_argument("--days", type=int, default=1,
                        help="next days to run one after the other (default 1); later days are shown beside the first")
    args = parser.parse_args()
    if args.days < 1:
        parser.error("--days: at least 1")
    home = tempfile.mkdtemp(prefix="hub-bench-e2e-")
    os.environ.setdefault("HUB_HOME", home)
    os.environ["HUB_REPORTS"] = "all"
    os.environ["HUB_REPORTS_DUE"] = args.reports_due

    from hub import pipeline
    from hub.simulation import connection_env
    from simulators.county import DeltaSpec, SimulatedCounty
    from simulators.platforms import start_platforms
    from simulators.population import CountySpec

    print(f"HUB_HOME {os.environ['HUB_HOME']}; warehouse "
          f"{'HUB_DATABASE_URL' if os.environ.get('HUB_DATABASE_URL') else 'embedded PostgreSQL'}", flush=True)
    pipeline.prepare_warehouse()
    in_task("os:getpid")  # the forkserver starts (loading the pipeline) before any run, as with the scheduler
    full, delta = Steps("full"), Steps("delta")
    spec = CountySpec(persons=args.persons, seed=args.seed)
    cached = (CACHE / f"county-{args.persons}-{args.seed}-{simulator_digest()}.pickle").exists()
    county = full.here("simulate", lambda: SimulatedCounty(spec, 0, *simulated(args.persons, args.seed), {}),
                      lambda c: f"{sum(map(len, c.rolls.values())):,} records ({'cached' if cached else 'generated'})")
    box = {}

    def serve_and_ingest():
        box["platforms"] = start_platforms(county, Path(home) / "sim")
        os.environ.update(connection_env(box["platforms"]))
        return _ingest_all(pipeline)

    def ingest_rows(per: dict) -> str:
        return (f"{sum(r['landed'] for r in per.values()):,} landed of {sum(r['received'] for r in per.values()):,}"
                f" received, {len(per)} src")

    full.run("serve + ingest", serve_and_ingest, ingest_rows)
    full.run("standardize", lambda: in_task("hub.pipeline:standardize_sources"),
             lambda s: f"{sum(v['standardized'] for v in s.values()):,} standardized")
    first = full.run("match", lambda: in_task("hub.pipeline:build_master_index", mode="full", backend=args.backend),
                     _match_rows)
    _after_match(full)

    if args.delta == "sim":
        day = DeltaSpec()
    else:
        share = float(args.delta)
        day = DeltaSpec(births=0.0018 * share, deaths=0.0012 * share, moves=0.003 * share, corrections=0.5,
                        deletions=0.003 * share)
    platforms = box["platforms"]
    days, inc = [], None
    for k in range(1, args.days + 1):
        steps = delta if k == 1 else Steps(f"day {k}")
        # later days: the simulator's own birth rate (a 1 % day's births, 0.18 % of the county, leave most of the
        # birth roll without ID numbers within a week, and the gate stops that)
        spec_k = day if k == 1 else dataclasses.replace(day, births=min(day.births, DeltaSpec().births))
        county = steps.here("simulate", lambda c=county, d=spec_k: c.next_day(d),
                            lambda d: " ".join(f"{k.split('_')[-1][:6]} {v}" for k, v in d.changes.items()))

        def advance_and_ingest(c=county):
            platforms.advance(c)
            return _ingest_all(pipeline)

        steps.run("serve + ingest", advance_and_ingest, ingest_rows)
        steps.run("standardize", lambda: in_task("hub.pipeline:standardize_sources"),
                  lambda s: f"{sum(v['standardized'] for v in s.values()):,} standardized, "
                            f"{sum(v['removed'] for v in s.values()):,} removed")
        matched = steps.run("match", lambda: in_task("hub.pipeline:build_master_index", backend=args.backend),
                            _match_rows)
        if k == 1:
            inc = matched
        _after_match(steps)
        days.append(steps)
    platforms.stop()

    records = first["records"] if isinstance(first, dict) else 0
    touched = inc["new"] + inc["changed"] + inc["removed"] if isinstance(inc, dict) else 0
    _table(args.persons, full, delta, touched, records or 1, args.backend)
    if len(days) > 1:
        _days_table(days)
    if isinstance(first, dict) and isinstance(inc, dict):
        print("\nmatching, seconds per step:")
        for label, r in (("full", first), ("delta", inc)):
            print(f"  {label:<6} " + ", ".join(f"{k} {v}" for k, v in r["step_seconds"].items()))


if __name__ == "__main__":
    main()
