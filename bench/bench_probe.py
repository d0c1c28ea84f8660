"""Probe search (match without create) on a published simulated county: does a clerk find the person?

Usage: uv run python bench/bench_probe.py [--persons 20000] [--sample 1000] [--seed 20261121]
                                          [--department social_security --purpose rs-pension-qualification]

Steps: serve the simulated county, ingest, standardize, match, gate and publish it into a warehouse
(the embedded PostgreSQL under a cached HUB_HOME per county size, seed and simulator version, reused on
the next run; or HUB_DATABASE_URL as given); then take a held-out sample of records whose master holds
at least one other record, with a usable name and birth date. Each is probed with its name, sex, birth
date, phone and address and an ID number that is blanked, has one digit changed or two adjacent digits
swapped (a third each) — and **without the record itself** among the candidates (``exclude``), as a
clerk's new registration would be: the person must be found through their other records. A department's
probe uses only the fields its purpose releases to it (by default 人社 social security for
rs-pension-qualification: name, sex, birth date and ID number; its phone and address are 不予共享 and left
out); ``--department operator`` probes with every field, as the hub's operator does.

The true master is the one the published index holds the record in. Prints the share of probes with
the true master first and within the top 3 / top 5, per kind of ID number, and the latency per probe
(p50 / p95, the operator's path of ``hub probe``: candidates, scoring and the release check).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_matching import CACHE, simulator_digest  # noqa: E402

KINDS = ("blank", "one digit changed", "two digits swapped")


def _publish(persons: int, seed: int, home: Path) -> None:
    from hub import pipeline
    from hub.simulation import connection_env
    from simulators.county import SimulatedCounty
    from simulators.platforms import start_platforms
    from simulators.population import CountySpec

    t = time.perf_counter()
    county = SimulatedCounty.create(CountySpec(persons=persons, seed=seed))
    platforms = start_platforms(county, home / "sim")
    os.environ.update(connection_env(platforms))
    try:
        pipeline.prepare_warehouse()
        for name in pipeline.source_names():
            pipeline.ingest_source(name)
        pipeline.standardize_sources()
        pipeline.build_master_index(mode="full")
        gate = pipeline.run_gate()
        release = pipeline.publish_release(gate["validation_run_id"])
    finally:
        platforms.stop()
    if release["outcome"] != "published":
        raise SystemExit(f"the county was not published: {release}")
    print(f"county of {persons:,} persons served, matched and published in {time.perf_counter() - t:.0f} s")


def _mistype(number: str, kind: str, rng: random.Random) -> str:
    digits = list(number)
    if kind == "one digit changed":
        i = rng.randrange(17)
        digits[i] = rng.choice([d for d in "0123456789" if d != digits[i]])
    else:
        pairs = [i for i in range(16) if digits[i] != digits[i + 1]]
        i = rng.choice(pairs)
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
    return "".join(digits)


def _sample(engine, size: int, seed: int) -> pd.DataFrame:
    """Records with a usable name and birth date whose master holds another record, with their master."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(
            "SELECT r.source || '/' || r.source_record_id AS record_key, r.name, r.sex, r.birth_date, r.phone,"
            " r.address_raw, r.id_number, r.id_number_status, c.master_id"
            " FROM std.resident r JOIN mpi.crosswalk c USING (source, source_record_id)"
            " JOIN publish.master_person_current p ON p.master_id = c.master_id"
            " WHERE r.name_status = 'valid' AND r.birth_date IS NOT NULL"
            " AND (SELECT count(*) FROM mpi.crosswalk o WHERE o.master_id = c.master_id) > 1"), conn)
    return frame.sample(n=min(size, len(frame)), random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--department", default="social_security", help="whose fields (operator: all)")
    parser.add_argument("--purpose", default="rs-pension-qualification")
    args = parser.parse_args()
    home = CACHE / f"probe-{args.persons}-{args.seed}-{simulator_digest()}"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HUB_HOME", str(home))

    from dataclasses import replace

    from hub import settings
    from hub.probe import PROBE_FIELDS, ProbeQuery, check_purpose, probe, released_fields
    from warehouse import serving
    from warehouse.sharing import load_sharing

    use = set(PROBE_FIELDS)
    if args.department != "operator":
        sharing = load_sharing()[args.department]
        check_purpose(sharing, args.purpose)
        use = {f for f in PROBE_FIELDS if f in released_fields(sharing, args.purpose)[0]}
    print(f"probing as {args.department} ({args.purpose if args.department != 'operator' else 'no purpose'}) with"
          f" {', '.join(f for f in PROBE_FIELDS if f in use)}")

    engine = settings.engine()
    try:
        with engine.connect() as conn:
            published = serving.current_release_no(conn) is not None
    except Exception:  # noqa: BLE001 — a fresh warehouse without tables
        published = False
    if not published:
        _publish(args.persons, args.seed, home)
    else:
        print(f"reusing the published county in {os.environ['HUB_HOME']} (or HUB_DATABASE_URL)")

    sample = _sample(engine, args.sample, args.seed)
    rng = random.Random(args.seed)
    rows = []
    for i, r in sample.iterrows():
        kind = KINDS[i % 3]
        usable = isinstance(r["id_number"], str) and r["id_number_status"] in ("valid", "upgraded_from_15")
        number = None if kind == "blank" or not usable else _mistype(r["id_number"], kind, rng)
        query = ProbeQuery(name=r["name"], birth_date=str(r["birth_date"]), sex=str(int(r["sex"])) if pd.notna(r["sex"])
                           else None, phone=r["phone"] if isinstance(r["phone"], str) else None,
                           address=r["address_raw"] if isinstance(r["address_raw"], str) else None, id_number=number)
        query = replace(query, **{f: None for f in PROBE_FIELDS if f not in use})  # as the department's probe is cut
        t = time.perf_counter()
        with engine.connect() as conn:
            answer = probe(conn, query, sharing=None, purpose=None, limit=5, exclude=[r["record_key"]])
        seconds = time.perf_counter() - t
        ranked = [c["master_id"] for c in answer["candidates"]]
        rank = ranked.index(r["master_id"]) + 1 if r["master_id"] in ranked else None
        rows.append({"kind": kind if number or kind == "blank" else "blank (no usable number)", "rank": rank,
                     "seconds": seconds, "top_probability": answer["candidates"][0]["match_probability"]
                     if ranked else None})
    out = pd.DataFrame(rows)
    print(f"\n{len(out):,} held-out probes on a county of {args.persons:,} persons; {os.cpu_count()} CPUs;"
          f" fields used: {', '.join(f for f in PROBE_FIELDS if f in use)}\n")
    print(f"| {'ID number in the probe':<28} | {'probes':>6} | {'top 1':>7} | {'top 3':>7} | {'top 5':>7} "
          f"| {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 30}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for label, part in [*out.groupby("kind", sort=False), ("all", out)]:
        ranks = part["rank"]
        print(f"| {label:<28} | {len(part):>6,} | {(ranks == 1).mean():7.1%} | {(ranks <= 3).mean():7.1%} "
              f"| {(ranks <= 5).mean():7.1%} | {np.percentile(part['seconds'], 50) * 1000:7.0f} "
              f"| {np.percentile(part['seconds'], 95) * 1000:7.0f} |")
    missed = out[~(out["rank"] <= 3)]
    print(f"\nnot in the top 3: {len(missed)} ({', '.join(f'{k} {n}' for k, n in missed['kind'].value_counts().items())})")


if __name__ == "__main__":
    main()
