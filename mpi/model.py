"""The probabilistic model: Splink settings built for Chinese resident data, training, loading.

Comparisons (on the features of :mod:`mpi.features`):

* ``id``: same trusted valid number · same 17-digit body (check-character typo, 15/18 forms) ·
  two *different* valid numbers (strong evidence against) · one digit differs · adjacent digits
  transposed · else;
* ``name``: same key (term-frequency adjusted: 张伟 is common) · same pinyin (homophones) · same
  surname and given name one character apart · same surname and similar given-name pinyin · else;
* ``dob``: exact · day and month swapped · within a day · one digit differs · within a week · same
  year with one date a year-only placeholder (1 January / 1 July) · same year and month · else.
  A record whose date differs from its own trusted ID number's as typed dates do carries the
  number's date (:mod:`mpi.features`), so these levels mostly weigh records without a usable number;
* ``sex``; ``phone`` (term-frequency adjusted: household phones are shared);
* ``address``: same house (``address_key``, TF adjusted) · same village or community · else.

Splink is imported inside the functions (DAG files must parse fast). The trained model lives in
``mpi/models/resident_model.json`` (versioned in the repository); :func:`train_model` rewrites it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from mpi.features import PLACEHOLDER_MONTH_DAYS

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "resident_model.json"
MODEL_VERSION = "resident-1"
SEED = 20261121

# every rule also requires the two records not to be anchored together already (deterministic pass)
_NOT_SAME_ANCHOR = "l.anchor <> r.anchor"
BLOCKING_RULES = (
    "l.dob = r.dob and l.surname = r.surname",
    "l.id_body = r.id_body",
    # an ID typo in the region part, or in the date/sequence part when the birth date is missing
    "substr(l.id_body, 7, 11) = substr(r.id_body, 7, 11)",
    "substr(l.id_body, 1, 6) = substr(r.id_body, 1, 6) and substr(l.id_body, 15, 3) = substr(r.id_body, 15, 3)"
    " and l.birth_year = r.birth_year and l.surname = r.surname",
    "l.name_pinyin = r.name_pinyin and l.birth_year = r.birth_year",
    "l.phone = r.phone and l.name_key = r.name_key",
    "l.address_key = r.address_key and l.birth_year = r.birth_year",
)


_PLACEHOLDERS = ", ".join(f"'{md}'" for md in PLACEHOLDER_MONTH_DAYS)  # as SQL

# the columns Splink sees (no record keys: the matcher maps unique_id back itself)
SPLINK_COLUMNS = ("unique_id", "anchor", "name_key", "name_pinyin", "surname", "given_key", "given_pinyin",
                  "id_valid", "id_body", "dob", "birth_year", "sex", "phone", "address_key", "village")


def blocking_rules() -> list[str]:
    return [f"({rule}) and {_NOT_SAME_ANCHOR}" for rule in BLOCKING_RULES]


def comparisons() -> list:
    """The comparisons; every level's ``label_for_charts`` is the English label reports show."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    id_cmp = cl.CustomComparison(output_column_name="id", comparison_levels=[
        cll.NullLevel("id_body"),
        cll.ExactMatchLevel("id_valid").configure(label_for_charts="same valid ID number"),
        cll.ExactMatchLevel("id_body").configure(label_for_charts="same ID body (check character or form differs)"),
        cll.CustomLevel("id_valid_l is not null and id_valid_r is not null", "two different valid ID numbers"),
        cll.LevenshteinLevel("id_body", 1).configure(label_for_charts="one digit differs"),
        cll.DamerauLevenshteinLevel("id_body", 1).configure(label_for_charts="adjacent digits transposed"),
        cll.ElseLevel(),
    ])
    name_cmp = cl.CustomComparison(output_column_name="name", comparison_levels=[
        cll.NullLevel("name_key"),
        cll.ExactMatchLevel("name_key", term_frequency_adjustments=True).configure(label_for_charts="same name"),
        cll.ExactMatchLevel("name_pinyin").configure(label_for_charts="same pinyin (homophone)"),
        cll.And(cll.ExactMatchLevel("surname"), cll.LevenshteinLevel("given_key", 1))
        .configure(label_for_charts="same surname, given name one character apart"),
        cll.And(cll.ExactMatchLevel("surname"), cll.JaroWinklerLevel("given_pinyin", 0.88))
        .configure(label_for_charts="same surname, similar given-name pinyin"),
        cll.ElseLevel(),
    ])
    dob_cmp = cl.CustomComparison(output_column_name="dob", comparison_levels=[
        cll.NullLevel("dob"),
        cll.ExactMatchLevel("dob").configure(label_for_charts="same birth date"),
        cll.CustomLevel("substr(dob_l, 1, 4) = substr(dob_r, 1, 4) and substr(dob_l, 6, 2) = substr(dob_r, 9, 2)"
                        " and substr(dob_l, 9, 2) = substr(dob_r, 6, 2)", "day and month swapped"),
        cll.AbsoluteDateDifferenceLevel("dob", input_is_string=True, threshold=1, metric="day")
        .configure(label_for_charts="within one day"),
        cll.LevenshteinLevel("dob", 1).configure(label_for_charts="one digit of the date differs"),
        cll.AbsoluteDateDifferenceLevel("dob", input_is_string=True, threshold=7, metric="day")
        .configure(label_for_charts="within a week"),
        cll.CustomLevel(f"substr(dob_l, 1, 4) = substr(dob_r, 1, 4) and (substr(dob_l, 6, 5) in ({_PLACEHOLDERS})"
                        f" or substr(dob_r, 6, 5) in ({_PLACEHOLDERS}))", "same year, one a year-only placeholder date"),
        cll.CustomLevel("substr(dob_l, 1, 7) = substr(dob_r, 1, 7)", "same year and month"),
        cll.ElseLevel(),
    ])
    sex_cmp = cl.ExactMatch("sex")
    phone_cmp = cl.ExactMatch("phone").configure(term_frequency_adjustments=True)
    address_cmp = cl.CustomComparison(output_column_name="address", comparison_levels=[
        cll.NullLevel("village"),
        cll.ExactMatchLevel("address_key", term_frequency_adjustments=True).configure(label_for_charts="same house"),
        cll.ExactMatchLevel("village").configure(label_for_charts="same village or community"),
        cll.ElseLevel(),
    ])
    return [id_cmp, name_cmp, dob_cmp, sex_cmp, phone_cmp, address_cmp]


def settings_creator():
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=blocking_rules(),
        comparisons=comparisons(),
        additional_columns_to_retain=[],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


# DuckDB keeps every intermediate table in memory up to 80% of RAM by default; matching a county
# needs far less. Past this limit it spills to the temporary folder (slower, bounded memory).
DUCKDB_MEMORY_LIMIT = "400MB"


def db_api(backend: str = "duckdb", *, memory_limit: str | None = DUCKDB_MEMORY_LIMIT, **kwargs: Any):
    """The Splink database API: ``duckdb`` (default, in memory) or ``spark``.

    ``memory_limit`` bounds DuckDB's memory (``None``: DuckDB's default), unless a ``connection=`` is given.
    Spark: ``spark_session=`` a session, or ``master=`` (default ``local[*]``) and ``spark_config=`` for one
    made by :func:`mpi.spark.spark_session`; ``break_lineage_method=`` as Splink's (default: parquet files
    under the session's checkpoint folder)."""
    if backend == "duckdb":
        import tempfile

        import duckdb
        from splink import DuckDBAPI

        if "connection" not in kwargs:
            con = duckdb.connect()
            con.execute(f"SET temp_directory = '{Path(tempfile.gettempdir()) / 'hub-duckdb'}'")
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            kwargs["connection"] = con
        return DuckDBAPI(**kwargs)
    if backend == "spark":
        from mpi.spark import session_from

        session = session_from(kwargs)  # raises SparkUnavailable, saying what to install, without pyspark or Java
        from splink import SparkAPI

        return SparkAPI(spark_session=session, break_lineage_method=kwargs.get("break_lineage_method"))
    raise ValueError(f"unknown matching backend {backend!r}; expected 'duckdb' or 'spark'")


def matching_table(std: pd.DataFrame, anchors: pd.Series | None = None) -> pd.DataFrame:
    """Features plus the deterministic anchor of each record (its own key when it has none)."""
    from mpi.features import build_features

    feats = build_features(std)
    feats["anchor"] = anchors.to_numpy() if anchors is not None else feats["unique_id"].to_numpy()
    return feats[list(SPLINK_COLUMNS)]


def train_model(std: pd.DataFrame, path: str | Path = DEFAULT_MODEL, *, seed: int = SEED,
                max_pairs: float = 5e6) -> Path:
    """Train the model on standardized records (reproducible: fixed seeds) and save it as JSON."""
    from splink import Linker, block_on

    feats = matching_table(std)
    api = db_api()
    linker = Linker(api.register(feats, dataset_display_name="std"), settings_creator(), log_level=logging.WARNING)
    training = linker.training
    training.estimate_probability_two_random_records_match(
        ["l.id_valid = r.id_valid and l.name_key = r.name_key"], recall=0.95)
    training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    training.estimate_parameters_using_expectation_maximisation(block_on("dob", "surname"),
                                                                estimate_without_term_frequencies=True)
    training.estimate_parameters_using_expectation_maximisation(block_on("id_valid"),
                                                                estimate_without_term_frequencies=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = apply_m_floors(linker.misc.save_model_to_json(None))
    model.pop("linker_uid", None)  # random per linker: keep retraining byte-reproducible
    model["hub_model_version"] = MODEL_VERSION
    model["hub_training"] = {"records": int(len(std)), "seed": seed, "max_u_pairs": int(max_pairs)}
    path.write_text(json.dumps(_round(model), ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# Expert floors on m (the share of true matches at a level), for levels the training data cannot
# estimate: errors the data rarely shows (a swapped day and month, an old address after a move)
# must cost a bounded weight, not an infinite one. "two different valid ID numbers" is capped, not
# floored: among true matches it is all but impossible (a family member's number that even agrees
# with the record's birth date and sex).
M_FLOORS = {
    ("id", "same ID body (check character or form differs)"): 0.001,
    ("id", "one digit differs"): 0.002,
    ("id", "adjacent digits transposed"): 0.001,
    ("id", "All other comparisons"): 0.0005,
    ("name", "same pinyin (homophone)"): 0.002,
    ("name", "same surname, given name one character apart"): 0.001,
    ("name", "same surname, similar given-name pinyin"): 0.0005,
    ("name", "All other comparisons"): 0.0002,
    ("dob", "day and month swapped"): 0.0005,
    ("dob", "within one day"): 0.001,
    # a date typo, a date a few days off, a year-only placeholder: each hits ~0.2% of records (see
    # simulators.errors.ErrorProfile), so about twice that of pairs; records with a trusted ID number
    # carry its date instead, and the training blocks rarely see the rest
    ("dob", "one digit of the date differs"): 0.004,
    ("dob", "within a week"): 0.003,
    ("dob", "same year, one a year-only placeholder date"): 0.002,
    ("dob", "same year and month"): 0.001,
    ("dob", "All other comparisons"): 0.001,
    ("sex", "All other comparisons"): 0.003,
    ("phone", "All other comparisons"): 0.05,
    ("address", "same village or community"): 0.03,
    ("address", "All other comparisons"): 0.05,
}
M_CAPS = {("id", "two different valid ID numbers"): 1e-4}


def apply_m_floors(model: dict) -> dict:
    """Bound each level's m by :data:`M_FLOORS` / :data:`M_CAPS`, renormalized within the comparison."""
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for level in levels:
            key = (name, level.get("label_for_charts"))
            m = level.get("m_probability")
            if key in M_FLOORS:
                level["m_probability"] = max(m or 0.0, M_FLOORS[key])
            if key in M_CAPS:
                level["m_probability"] = min(m if m is not None else 1.0, M_CAPS[key])
            if level.get("m_probability") is None:
                level["m_probability"] = 1e-4
            if level.get("u_probability") is None:  # never seen among random pairs: rare by chance
                level["u_probability"] = 1e-7
        fixed = sum(lv["m_probability"] for lv in levels if (name, lv.get("label_for_charts")) in {**M_FLOORS, **M_CAPS})
        free = [lv for lv in levels if (name, lv.get("label_for_charts")) not in {**M_FLOORS, **M_CAPS}]
        total_free = sum(lv["m_probability"] for lv in free)
        if free and total_free > 0:
            for lv in free:
                lv["m_probability"] = lv["m_probability"] / total_free * max(1e-6, 1.0 - fixed)
    return model


def _round(obj: Any) -> Any:
    """Round floats so that retraining on the same data gives a byte-identical file."""
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def load_model(path: str | Path | None = None, *, records: int | None = None, dialect: str = "duckdb") -> dict:
    """The saved model as a settings dict (current blocking rules; hub metadata removed).

    ``records``: the size of the set to be matched. The prior that two random records match falls
    with the size of the set (each person has a handful of records among ``records``), so it is
    rescaled from the training set's size. ``dialect``: the SQL the comparisons are written in —
    the file holds DuckDB's; for ``spark`` each level's condition is written again from
    :func:`comparisons` in Spark SQL (same levels, same trained weights).
    """
    model = json.loads(Path(path or DEFAULT_MODEL).read_text(encoding="utf-8"))
    trained_on = model.get("hub_training", {}).get("records")
    if records and trained_on:
        model["probability_two_random_records_match"] *= trained_on / max(records, 2)
    for key in [k for k in model if k.startswith("hub_")]:
        model.pop(key)
    model["blocking_rules_to_generate_predictions"] = blocking_rules()
    model["retain_intermediate_calculation_columns"] = True  # mw_* and gamma_* are the review evidence
    model["retain_matching_columns"] = False
    if dialect != model.get("sql_dialect", "duckdb"):
        _write_in_dialect(model, dialect)
    return model


def _write_in_dialect(model: dict, dialect: str) -> None:
    """Rewrite the comparison levels' SQL of ``model`` (a saved model) in ``dialect``, level by level."""
    fresh = {c.get_comparison(dialect).as_dict()["output_column_name"]: c.get_comparison(dialect).as_dict()
             for c in comparisons()}
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        levels = comparison["comparison_levels"]
        target = fresh.get(name, {}).get("comparison_levels", [])
        if len(target) != len(levels):
            raise ValueError(f"the model file's comparison {name!r} has {len(levels)} levels where mpi.model defines "
                             f"{len(target)}: retrain the model (mpi.train_model) before matching on {dialect}")
        for level, new in zip(levels, target):
            level["sql_condition"] = _byte_distances(new["sql_condition"]) if dialect == "spark" else new["sql_condition"]
    model["sql_dialect"] = dialect


# DuckDB's edit distances count UTF-8 bytes (two Chinese characters that differ are up to 3 apart), Spark's
# count characters: on Spark the strings are compared byte for byte too (each byte read as one Latin-1
# character), so that both backends put every pair at the same level
_DISTANCE_CALL = re.compile(r"\b(levenshtein|damerau_levenshtein)\((`[A-Za-z0-9_]+`), (`[A-Za-z0-9_]+`)\)")


def _byte_distances(sql: str) -> str:
    return _DISTANCE_CALL.sub(lambda m: f"{m.group(1)}(decode(encode({m.group(2)}, 'UTF-8'), 'ISO-8859-1'), "
                                        f"decode(encode({m.group(3)}, 'UTF-8'), 'ISO-8859-1'))", sql)
