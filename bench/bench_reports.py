"""Statistical reports (统计报表): every kind for the county and every community of a large county.

Usage: uv run python bench/bench_reports.py [--persons 200000] [--seed 20261121] [--kinds dibao,gaoling]

The county is simulated (cached in BENCH_CACHE, default /tmp/bench-reports, per simulator version)
and published cheaply: its golden records and enrolments are written straight into a release from
the simulator's truth (one master per simulated person; the matcher is measured by
bench_matching.py, not here), into a fresh warehouse (embedded PostgreSQL in a temporary HUB_HOME,
or HUB_DATABASE_URL). Then what the pipeline's report task does is timed: read the release once,
count each kind once, write the XLSX form of the county and of every town and village, and the
index page. Prints a table (kind, files, seconds) and the total; the target is under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_matching import simulator_digest  # noqa: E402
from bench.bench_simulators import PeakRss  # noqa: E402

CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/bench-reports"))
PROGRAMS = {"mz_dibao": ("dibao", "civil_affairs"), "mz_gaoling": ("gaoling", "civil_affairs"),
            "mz_canji": ("canji", "civil_affairs"), "wj_yuling": ("yuling", "health"),
            "wj_liudong": ("liudong", "health"), "wj_chusheng": ("chusheng", "health"),
            "rs_yanglao": ("yanglao", "social_security"), "rs_yiliao": ("yiliao", "social_security")}


def simulated(persons: int, seed: int):
    from simulators.county import SimulatedCounty
    from simulators.population import CountySpec

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"county-{persons}-{seed}-{simulator_digest()}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    county = SimulatedCounty.create(CountySpec(persons=persons, seed=seed))
    kept = (county.population, county.rolls)
    path.write_bytes(pickle.dumps(kept))
    return kept


def publish_truth(engine, population: pd.DataFrame, rolls: dict[str, pd.DataFrame]) -> int:
    """Write release 1 from the simulator's truth: a golden record per person, an enrolment per live record."""
    import sqlalchemy as sa

    from warehouse.bulk import copy_frame

    registered_dead = set(rolls["mz_gaoling"].loc[rolls["mz_gaoling"]["status"] == "停发", "_person_id"])
    pop = population.copy()
    dead = pop["person_id"].isin(registered_dead)
    sources = {}
    for name, roll in rolls.items():
        for pid in roll.loc[~roll["_deleted"], "_person_id"]:
            sources.setdefault(pid, []).append(name)
    master = pd.DataFrame({
        "release_no": 1, "master_id": "M" + pop["person_id"].str[1:], "name": pop["name"],
        "id_number": pop["id_number"], "id_number_status": "valid", "sex": pop["sex"], "birth_date": pop["birth_date"],
        "record_count": pop["person_id"].map(lambda p: len(sources.get(p, []))),
        "sources": pop["person_id"].map(lambda p: "{" + ",".join(sources.get(p, [])) + "}"),
        "phone": pop["phone"], "address": pop["address"], "status": dead.map({True: "deceased", False: "alive"}),
        "status_date": pop["deceased_on"].where(dead, None), "conflicts": 0})
    enrolments = []
    for name, roll in rolls.items():
        live = roll[~roll["_deleted"]]
        program, department = PROGRAMS[name]
        fields = live["level"].map(lambda v: json.dumps({"残疾等级": v}, ensure_ascii=False)) if "level" in live else None
        enrolments.append(pd.DataFrame({
            "release_no": 1, "master_id": "M" + live["_person_id"].str[1:], "source": name,
            "source_record_id": live["record_id"].astype(str), "department": department, "program": program,
            "status_raw": live["status"].astype(str), "status_date": pd.to_datetime(live["status_date"], errors="coerce")
            .dt.date, "record_fields": fields if fields is not None else "{}"}))
    enrolment = pd.concat(enrolments, ignore_index=True)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO publish.release (release_no, published_at, master_count, record_count,"
                             " content_hash, validation_run_id) VALUES (1, now(), :m, :r, 'bench', 0)"),
                     {"m": len(master), "r": len(enrolment)})
        copy_frame(conn, "publish.master_person", master, list(master.columns))
        copy_frame(conn, "publish.enrolment", enrolment, list(enrolment.columns))
        conn.execute(sa.text("INSERT INTO publish.current_release (singleton, release_no, switched_at)"
                             " VALUES (true, 1, now())"))
    return len(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--kinds", default=None, help="kinds separated by commas (default: all)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hub-bench-reports-")
    os.environ.setdefault("HUB_HOME", home)

    from hub import pipeline, settings
    from reports.stat_form import write_all

    t0 = time.perf_counter()
    population, rolls = simulated(args.persons, args.seed)
    t_sim = time.perf_counter() - t0
    pipeline.prepare_warehouse()
    t = time.perf_counter()
    masters = publish_truth(settings.engine(), population, rolls)
    print(f"county of {args.persons:,} persons simulated in {t_sim:.0f} s, {masters:,} masters published "
          f"in {time.perf_counter() - t:.0f} s")
    folder = Path(home) / "reports" / "1"
    workers = min(4, os.cpu_count() or 1)
    kinds = args.kinds.split(",") if args.kinds else None
    with PeakRss() as mem, settings.engine().connect() as conn:
        t = time.perf_counter()
        done = write_all(conn, folder, kinds=kinds, release_no=1, workers=workers)
        total = time.perf_counter() - t
    print(f"\n{'kind':<10} {'files':>6} {'seconds':>8}   (counting + writing, summed over {workers} processes)")
    print(f"{'(read)':<10} {'':>6} {done['read_seconds']:>8.1f}")
    for kind, (files, seconds) in done["kinds"].items():
        print(f"{kind:<10} {files:>6} {seconds:>8.1f}")
    print(f"{'total':<10} {done['files']:>6} {total:>8.1f}   (wall time, reading included; peak RSS "
          f"{mem.peak_mb:.0f} MB; target < 60 s)")


if __name__ == "__main__":
    main()
