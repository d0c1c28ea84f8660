"""The matcher on Spark: a session for matching, features, connected components and constrained clustering.

``Matcher(backend="spark")`` runs the same steps as on DuckDB (:mod:`mpi.matcher`), with the heavy
ones on Spark:

* **features**: :func:`mpi.features.build_features` over batches of records (``mapInPandas``); the
  positional ``unique_id`` is given afterwards, in input order;
* **scoring**: Splink's Spark API with the same model, blocking rules and term-frequency snapshot;
* **connected components** of the anchor groups joined by strong links (at or above the
  threshold) and by a steward's "match" pairs: minimum-label propagation in DataFrame operations;
* **constrained clustering per connected component**: the components are packed into buckets
  (a component never straddles two) and each bucket's records and links are clustered by
  :func:`mpi.clustering.constrained_clusters` (``cogroup(...).applyInPandas``), so the rules
  live in one place and the clusters are those DuckDB gives. The decisions come back to the driver in bulk,
  where :func:`mpi.clustering.cluster_records` derives reasons, probabilities and reviews as for DuckDB.

The hub's process is the driver: the outcome is collected to it. Nothing here starts a web UI.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_MASTER = "local[*]"
# local mode: a few shuffle partitions per core; Spark's default (200) only adds overhead on one machine
LOCAL_SHUFFLE_PARTITIONS = 8
APP_NAME = "resident-hub-matching"

_sessions: dict[str, Any] = {}


class SparkUnavailable(RuntimeError):
    """The Spark backend cannot start on this machine (no Java runtime, or pyspark not installed)."""


def java_home() -> str | None:
    """The Java runtime Spark would start: ``$JAVA_HOME/bin/java`` or ``java`` on PATH (None: none)."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return home
    found = shutil.which("java")
    return str(Path(found).resolve().parent.parent) if found else None


def require_spark() -> None:
    """Raise :class:`SparkUnavailable`, saying what to install, unless pyspark and a Java runtime are here."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(
            "matching on Spark needs pyspark, which is not installed: install the hub's 'spark' extra "
            "(uv sync --extra spark, or pip install 'resident-hub[spark]'), or match with the default "
            "backend (--backend duckdb)") from None
    if java_home() is None:
        raise SparkUnavailable(
            "matching on Spark needs a Java runtime and none was found (JAVA_HOME is not set and there is no "
            "java on PATH): install a Java 17 or 21 runtime (on Debian or Ubuntu: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME; the default backend needs no Java (--backend duckdb)")


def local_driver_memory() -> str:
    """A quarter of this machine's memory (at least 2g): Spark's driver heap in local mode, unless
    ``spark.driver.memory`` is set (``spark_config=``, or spark-defaults.conf under ``SPARK_CONF_DIR``)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "2g"
    return f"{max(2, total // 4 // 2**30)}g"


def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hub-spark-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def spark_session(master: str | None = None, *, config: dict[str, str] | None = None):
    """A Spark session for matching on ``master`` (default ``local[*]``), made once per master.

    No web UI, Arrow transfers, a few shuffle partitions in local mode, scratch and warehouse
    folders under a temporary folder, log level WARN, and Splink's similarity functions (its jar)
    registered. ``config``: more Spark settings (``spark.driver.memory``, ``spark.executor.memory``, …)."""
    require_spark()
    master = master or DEFAULT_MASTER
    if master in _sessions:
        return _sessions[master]
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    if master.startswith("local"):  # the workers are this interpreter (its packages)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    scratch = _scratch()
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.jars": similarity_jar_location(),
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={scratch}",
    }
    if master.startswith("local"):
        settings["spark.sql.shuffle.partitions"] = str(LOCAL_SHUFFLE_PARTITIONS)
        settings["spark.default.parallelism"] = str(LOCAL_SHUFFLE_PARTITIONS)
        if not os.environ.get("SPARK_CONF_DIR"):  # the driver is everything in local mode: Spark's 1g is too little
            settings["spark.driver.memory"] = local_driver_memory()
    settings.update(config or {})
    builder = SparkSession.builder.master(master).appName(APP_NAME)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    session.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    _sessions[master] = session
    return session


def stop_sessions() -> None:
    """Stop the sessions :func:`spark_session` made (their JVM ends; the next call starts a new one)."""
    while _sessions:
        _, session = _sessions.popitem()
        session.stop()


def session_from(options: dict | None):
    """The session a matcher's ``backend_options`` name: ``spark_session=``, or one on ``master=``
    (with ``spark_config=``)."""
    options = options or {}
    if options.get("spark_session") is not None:
        return options["spark_session"]
    return spark_session(options.get("master"), config=options.get("spark_config"))


def _arrow(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


# -- features -------------------------------------------------------------------------------------------------

_FEATURE_TYPES = {"unique_id": "long", "id_conflict": "boolean", "sex": "short"}


def features(spark, std: pd.DataFrame) -> pd.DataFrame:
    """:func:`mpi.features.build_features` of ``std`` computed on Spark: the same frame, in the same order."""
    from mpi.features import FEATURE_COLUMNS, INPUT_COLUMNS, build_features

    cols = [c for c in INPUT_COLUMNS if c in std.columns]
    frame = std[cols].reset_index(drop=True).copy()
    for col in ("birth_date", "id_birth_date"):  # dates travel as ISO text: build_features parses them
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], errors="coerce").dt.strftime("%Y-%m-%d").astype("string")
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("string")
    frame["_pos"] = np.arange(len(frame), dtype=np.int64)
    schema = ", ".join(f"{c} {_FEATURE_TYPES.get(c, 'string')}" for c in FEATURE_COLUMNS)

    def batches(chunks):
        for chunk in chunks:
            out = build_features(chunk.reset_index(drop=True))
            out["unique_id"] = chunk["_pos"].to_numpy(dtype=np.int64)
            yield out

    slices = max(1, min(int(spark.sparkContext.defaultParallelism) * 2, len(frame) // 5000 + 1))
    sdf = spark.createDataFrame(_arrow(frame)).repartition(slices, "_pos")
    table = sdf.mapInPandas(batches, schema).toArrow()
    feats = table.to_pandas().sort_values("unique_id", kind="stable").reset_index(drop=True)
    return _typed(feats)


def _typed(feats: pd.DataFrame) -> pd.DataFrame:
    """The dtypes :func:`mpi.features.build_features` gives, for frames that went through Arrow."""
    for col in feats.columns:
        if col == "unique_id":
            feats[col] = feats[col].astype(np.int64)
        elif col == "id_conflict":
            feats[col] = feats[col].astype(bool)
        elif col == "sex":
            feats[col] = feats[col].astype("Int16")
        else:
            feats[col] = feats[col].astype("string")
    return feats


# -- connected components --------------------------------------------------------------------------------------

def components(spark, pairs: pd.DataFrame):
    """Connected components of the graph whose edges are ``pairs`` (columns a, b: node ids, int64):
    a Spark DataFrame (node, label) where label is the smallest node of the node's component.

    Minimum-label propagation: every node takes the smallest label among itself and its
    neighbours until no label changes (as many rounds as the widest component is across)."""
    from pyspark.sql import functions as F

    edges = spark.createDataFrame(_arrow(pairs[["a", "b"]].astype(np.int64)))
    both = edges.union(edges.select(F.col("b").alias("a"), F.col("a").alias("b"))).distinct().localCheckpoint()
    labels = both.groupBy("a").agg(F.least(F.min("b"), F.first("a")).alias("label")) \
        .withColumnRenamed("a", "node").localCheckpoint()
    while True:
        proposed = both.join(labels.withColumnRenamed("node", "b").withColumnRenamed("label", "nb"), "b") \
            .groupBy("a").agg(F.min("nb").alias("nb")).withColumnRenamed("a", "node")
        updated = labels.join(proposed, "node", "left") \
            .select("node", F.least("label", F.coalesce("nb", "label")).alias("label"), F.col("label").alias("was")) \
            .localCheckpoint()
        changed = updated.filter(F.col("label") != F.col("was")).limit(1).count()
        labels = updated.select("node", "label")
        if not changed:
            return labels


# -- constrained clustering per component ------------------------------------------------------------------------

_RECORD_COLUMNS = ("unique_id", "record_key", "anchor", "id_valid", "id_claimed", "dob", "address_key", "phone",
                   "name_key", "name_pinyin")
_OUT_SCHEMA = "kind string, a long, b long, decision string, constraint string"


def _cluster_bucket(records: pd.DataFrame, links: pd.DataFrame, threshold: float, must: list, cannot: list
                    ) -> pd.DataFrame:
    """Cluster the records of whole components (global unique_id and anchor codes) with
    :func:`mpi.clustering.constrained_clusters`: each record's root as a global anchor code, and the
    decision on every link."""
    from mpi.clustering import constrained_clusters

    if not len(links):  # a bucket of records kept apart by a steward, with no link
        links = pd.DataFrame({"eid": [], "unique_id_l": [], "unique_id_r": [], "match_probability": []})
    records = records.sort_values("unique_id", kind="stable").reset_index(drop=True)
    local = pd.Series(np.arange(len(records)), index=records["unique_id"].to_numpy())
    anchors, uniques = pd.factorize(records["anchor"], sort=True)
    feats = records.assign(anchor=anchors)
    edges = pd.DataFrame({"unique_id_l": local[links["unique_id_l"].to_numpy()].to_numpy(),
                          "unique_id_r": local[links["unique_id_r"].to_numpy()].to_numpy(),
                          "match_probability": links["match_probability"].to_numpy(float)},
                         index=links["eid"].to_numpy())
    roots, decided = constrained_clusters(feats, edges, threshold, must=must, cannot=cannot)
    recs = pd.DataFrame({"kind": "r", "a": records["unique_id"].to_numpy(np.int64),
                         "b": np.asarray(uniques)[roots].astype(np.int64), "decision": None, "constraint": None})
    decs = pd.DataFrame({"kind": "e", "a": decided.index.to_numpy(np.int64), "b": np.int64(0),
                         "decision": decided["decision"].astype(object).to_numpy(),
                         "constraint": decided["constraint"].astype(object).where(decided["constraint"].notna(), None)})
    out = pd.concat([recs, decs], ignore_index=True)
    for col in ("kind", "decision", "constraint"):  # plain Python strings: what Spark's Arrow writer takes
        out[col] = np.asarray(out[col].astype(object).where(out[col].notna(), None), dtype=object)
    return out


def clusterer(spark):
    """A ``solve`` for :func:`mpi.clustering.cluster_records` that runs the constrained clustering on Spark:
    same arguments and result as :func:`mpi.clustering.constrained_clusters`."""

    def solve(feats: pd.DataFrame, edges: pd.DataFrame, threshold: float, *, must=(), cannot=()):
        return constrained_on_spark(spark, feats, edges, threshold, must=list(must), cannot=list(cannot))

    return solve


def constrained_on_spark(spark, feats: pd.DataFrame, edges: pd.DataFrame, threshold: float, *,
                         must: list, cannot: list) -> tuple[np.ndarray, pd.DataFrame]:
    """See :func:`clusterer`: components of the strong links and "match" pairs on Spark, then each
    bucket of whole components clustered under the hard constraints."""
    group = feats["anchor"].to_numpy(np.int64)
    edges = edges.copy()
    edges["decision"] = "below_threshold"
    edges["constraint"] = pd.Series(pd.NA, index=edges.index, dtype="string")
    keys = feats["record_key"].astype(str).to_numpy()
    position = pd.Series(np.arange(len(feats)), index=keys)
    strong = edges[edges["match_probability"] >= threshold]
    held = [(a, b) for a, b in must if a in position.index and b in position.index]
    parted = [(a, b) for a, b in cannot if a in position.index and b in position.index]
    pairs = pd.DataFrame({"a": np.concatenate([group[strong["unique_id_l"].to_numpy(np.int64)],
                                               group[position[[a for a, _ in held]].to_numpy(np.int64)]]),
                          "b": np.concatenate([group[strong["unique_id_r"].to_numpy(np.int64)],
                                               group[position[[b for _, b in held]].to_numpy(np.int64)]])})
    # a group with a "not a match" but no link keeps its steward partner set; it is its own component
    lonely = np.unique(group[position[[k for pair in parted for k in pair]].to_numpy(np.int64)]) \
        if parted else np.zeros(0, dtype=np.int64)
    pairs = pd.concat([pairs, pd.DataFrame({"a": lonely, "b": lonely})], ignore_index=True)
    roots = group.copy()
    if not len(pairs):
        return roots, edges
    # each component goes whole to one bucket (its label modulo the bucket count)
    labels = components(spark, pairs).toArrow().to_pandas()
    buckets = max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
    bucket_of = pd.Series(labels["label"].to_numpy(np.int64) % buckets, index=labels["node"].to_numpy(np.int64))
    rec = feats.assign(unique_id=np.arange(len(feats), dtype=np.int64))[list(_RECORD_COLUMNS)]
    rec = rec[np.isin(group, bucket_of.index.to_numpy())]
    rec = rec.assign(bucket=bucket_of[rec["anchor"].to_numpy(np.int64)].to_numpy())
    link = pd.DataFrame({"eid": strong.index.to_numpy(np.int64),
                         "unique_id_l": strong["unique_id_l"].to_numpy(np.int64),
                         "unique_id_r": strong["unique_id_r"].to_numpy(np.int64),
                         "match_probability": strong["match_probability"].to_numpy(float),
                         "bucket": bucket_of[group[strong["unique_id_l"].to_numpy(np.int64)]].to_numpy()})
    rec_sdf = spark.createDataFrame(_arrow(_texts(rec)))
    link_sdf = spark.createDataFrame(_arrow(link))
    t = float(threshold)

    def run(records: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
        return _cluster_bucket(records, links, t, held, parted)

    out = rec_sdf.groupBy("bucket").cogroup(link_sdf.groupBy("bucket")).applyInPandas(run, _OUT_SCHEMA) \
        .toArrow().to_pandas()
    recs = out[out["kind"] == "r"]
    roots[recs["a"].to_numpy(np.int64)] = recs["b"].to_numpy(np.int64)
    decs = out[out["kind"] == "e"].set_index("a")
    edges.loc[decs.index, "decision"] = decs["decision"].astype(object).to_numpy()
    edges.loc[decs.index, "constraint"] = decs["constraint"].astype("string").to_numpy()
    return roots, edges


def _texts(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in frame.columns:
        if col not in ("unique_id", "anchor", "bucket"):
            frame[col] = frame[col].astype("string")
    return frame
