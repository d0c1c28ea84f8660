"""The matcher on Spark gives what it gives on DuckDB: the same clusters, reasons and review pairs.

A simulated county is matched on both backends (Spark in local mode), in whole and as a delta against
a stored index; the warehouse's matching run on Spark keeps every master id the DuckDB run gave.
Without Java or pyspark these tests are skipped (saying which is missing), and the hub says what to
install instead of failing deep inside Spark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from mpi import Matcher
from mpi.spark import SparkUnavailable, require_spark

ROOT = Path(__file__).resolve().parents[2]


def _spark_or_skip() -> None:
    try:
        require_spark()
    except SparkUnavailable as exc:
        pytest.skip(f"the Spark backend cannot run here: {exc}")


@pytest.fixture(scope="module")
def spark_options():
    from mpi.spark import stop_sessions

    _spark_or_skip()
    yield {"master": "local[2]"}
    stop_sessions()  # the JVM does not outlive these tests


@pytest.fixture(scope="module")
def county_records() -> pd.DataFrame:
    from tests.mpi.test_link import county_std

    return county_std(2000, 11)


def test_spark_gives_the_duckdb_clusters_reasons_and_reviews(county_records, spark_options):
    std = county_records
    keys = (std["source"] + "/" + std["source_record_id"]).to_numpy()
    # a steward's decisions too: one "not a match" inside an ID-number anchor, one "match" on a review pair
    duck = Matcher.from_model().match_all(std)
    anchored = duck.clusters[duck.clusters["reason"] == "exact_id"].groupby("cluster_key")["record_key"].apply(list)
    pair = next(ks for ks in anchored if len(ks) >= 2)
    review = duck.reviews[duck.reviews["review_reason"] != "constraint:different_id"].iloc[0]
    singles = [review["record_key_l"], review["record_key_r"]]
    must, cannot = [tuple(sorted(singles))], [(pair[0], pair[1])]
    duck = Matcher.from_model().match_all(std, must=must, cannot=cannot)
    spark = Matcher.from_model(backend="spark", backend_options=spark_options).match_all(std, must=must, cannot=cannot)

    assert list(spark.clusters["record_key"]) == list(keys)
    assert len(duck.clusters) == len(std) and duck.stats["clusters"] < len(std)  # records were linked
    pd.testing.assert_frame_equal(spark.features.drop(columns=["standardized_at"]),
                                  duck.features.drop(columns=["standardized_at"]))
    differs = spark.clusters["cluster_key"].to_numpy() != duck.clusters["cluster_key"].to_numpy()
    assert not differs.any(), f"{differs.sum()} records clustered differently"
    assert (spark.clusters["reason"].to_numpy() == duck.clusters["reason"].to_numpy()).all()
    pd.testing.assert_series_equal(spark.clusters["match_probability"], duck.clusters["match_probability"])
    # the steward's decisions held on both
    by_key = spark.clusters.set_index("record_key")["cluster_key"]
    assert by_key[singles[0]] == by_key[singles[1]] and by_key[pair[0]] != by_key[pair[1]]

    def pairs(reviews: pd.DataFrame) -> pd.DataFrame:
        cols = ["record_key_l", "record_key_r", "cluster_key_l", "cluster_key_r", "review_reason"]
        return reviews[cols].sort_values(cols[:2]).reset_index(drop=True)

    pd.testing.assert_frame_equal(pairs(spark.reviews), pairs(duck.reviews))
    assert spark.stats["reasons"] == duck.stats["reasons"]
    assert spark.stats["links_refused_by_constraint"] == duck.stats["links_refused_by_constraint"]


def test_a_delta_on_spark_gives_what_it_gives_on_duckdb(spark_options):
    import numpy as np

    from mpi import Delta, MemoryIndex
    from tests.mpi.test_link import county_std

    std = county_std(800, 12)
    keys = (std["source"] + "/" + std["source_record_id"]).to_numpy()
    arriving = np.random.default_rng(5).random(len(std)) < 0.1  # a tenth of the records come the next day
    snapshot = Matcher().match_all(std).frequencies
    outcomes = {}
    for backend, options in (("duckdb", None), ("spark", spark_options)):
        matcher = Matcher(frequencies=snapshot, backend=backend, backend_options=options)
        index = MemoryIndex.from_outcome(matcher.match_all(std[~arriving].reset_index(drop=True)))
        outcomes[backend] = matcher.match_delta(
            Delta(records=std[arriving].reset_index(drop=True), new=set(keys[arriving])), index)
    duck, spark = outcomes["duckdb"], outcomes["spark"]
    assert duck.region == spark.region and len(duck.region) >= arriving.sum()
    a, b = (o.clusters.sort_values("record_key").reset_index(drop=True) for o in (duck, spark))
    pd.testing.assert_frame_equal(a, b)
    cols = ["record_key_l", "record_key_r", "review_reason"]
    pd.testing.assert_frame_equal(spark.reviews[cols], duck.reviews[cols])


def _no_java_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # the interpreter, and no java
    if shutil.which("java", path=env["PATH"]):
        pytest.skip("a java sits beside this Python interpreter: cannot make a PATH without one")
    return env


def test_without_java_matching_on_spark_says_what_to_install(tmp_path):
    pytest.importorskip("pyspark", reason="pyspark is not installed: the no-Java message is about a Java runtime")
    env = _no_java_env()
    probe = subprocess.run([sys.executable, "-c", "from mpi.spark import spark_session; spark_session()"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0
    assert "SparkUnavailable" in probe.stderr and "openjdk-17-jre-headless" in probe.stderr

    records = tmp_path / "residents.csv"
    records.write_text("source,source_record_id,name,id_number,sex,birth_date,phone,address\n"
                       "civil,1,张伟,,男,1990-06-01,,城关镇张庄村3组12号\n", encoding="utf-8")
    out = tmp_path / "crosswalk.csv"
    run = subprocess.run([sys.executable, "-c", "from hub.cli import app; app()", "link", str(records), "--out",
                          str(out), "--backend", "spark"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0, said
    assert "Java" in said and "openjdk-17-jre-headless" in said and "--backend duckdb" in said
    assert "Traceback" not in said and not out.exists()


def test_the_warehouse_matched_on_spark_keeps_the_duckdb_master_ids(engine, _served_platforms, county, spark_options):
    from hub.pipeline import build_master_index
    from tests.helpers import match_day0

    match_day0(engine, _served_platforms, county)
    query = sa.text("SELECT source, source_record_id, master_id, match_rule FROM mpi.crosswalk "
                    "ORDER BY source, source_record_id")
    reviews = sa.text("SELECT count(*) FROM mpi.review_pair")
    with engine.connect() as conn:
        before = pd.DataFrame(conn.execute(query).mappings().all())
    duck = build_master_index(mode="full", backend="duckdb")
    with engine.connect() as conn:
        after_duck = pd.DataFrame(conn.execute(query).mappings().all())
        duck_reviews = conn.execute(reviews).scalar()
    spark = build_master_index(mode="full", backend="spark")
    with engine.connect() as conn:
        after_spark = pd.DataFrame(conn.execute(query).mappings().all())
        spark_reviews = conn.execute(reviews).scalar()
    assert len(before) > 1000
    pd.testing.assert_frame_equal(after_duck, before)
    pd.testing.assert_frame_equal(after_spark, after_duck)
    assert spark["masters_created"] == duck["masters_created"] == 0
    assert spark["masters"] == duck["masters"] and spark["reviews"] == duck["reviews"]
    assert spark_reviews == duck_reviews
