"""``hub link``: link ad-hoc resident files into master ids, without a warehouse.

It runs the pipeline's own steps — the standardizers, the matcher's whole-set entry point
(:meth:`mpi.Matcher.match_all`) and :func:`mpi.ids.assign_master_ids` — so a file linked here and the
same records run through the master-index DAG fall into the same clusters, and ``--previous`` keeps
ids the way the warehouse does.

Files with a header row and no records are accepted: with no records at all the crosswalk has
its header row only. Text cells a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
tab, carriage return at the start) are written with a leading ``'``; ``--previous`` reads them back.

With ``review_out`` the pairs the matcher left for a person to decide are written too: links in
the grey zone (probable, not certain) and links a hard constraint refused (two different valid ID
numbers, twins, parent and child), one row per pair with both records' keys and master ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from hub import settings
from hub.errors import HubError
from schemas.text import formula_safe_frame, formula_unsafe

OUTPUT_COLUMNS = ("source", "source_record_id", "master_id", "match_probability", "reason", "id_number_status")
REVIEW_COLUMNS = ("source_l", "source_record_id_l", "master_id_l", "source_r", "source_record_id_r", "master_id_r",
                  "match_probability", "match_weight", "reason")


def _read(paths: list[Path]) -> pd.DataFrame:
    from hub.standardize_file import read_resident_file

    frames = []
    for path in paths:
        try:
            frame = read_resident_file(path)
        except ValueError as exc:
            raise HubError(str(exc)) from None
        frame["_file"], frame["_line"] = path.name, range(2, len(frame) + 2)
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True)
    blank = (raw["source"].str.strip() == "") | (raw["source_record_id"].str.strip() == "")
    if blank.any():
        where = ", ".join(f"{f} line {n}" for f, n in raw.loc[blank, ["_file", "_line"]].head(5).itertuples(index=False))
        raise HubError(f"{int(blank.sum())} row(s) have no source or source_record_id, so they could not be "
                       f"reported in the crosswalk: {where}{' …' if blank.sum() > 5 else ''}")
    dup = raw.duplicated(["source", "source_record_id"], keep=False)
    if dup.any():
        where = ", ".join(f"{f} line {n}" for f, n in raw.loc[dup, ["_file", "_line"]].head(6).itertuples(index=False))
        raise HubError(f"{int(dup.sum())} rows share a (source, source_record_id) with another row: {where}"
                       f"{' …' if dup.sum() > 6 else ''}")
    return raw.drop(columns=["_file", "_line"])


def _previous(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise HubError(f"cannot read the previous crosswalk {path}: {exc}") from None
    missing = {"source", "source_record_id", "master_id"} - set(frame.columns)
    if missing:
        raise HubError(f"the previous crosswalk {path} lacks the column(s) {', '.join(sorted(missing))}")
    bad = frame["master_id"].str.strip() == ""
    if bad.any():
        raise HubError(f"the previous crosswalk {path} has {int(bad.sum())} row(s) without a master_id "
                       f"(first at line {int(bad.to_numpy().argmax()) + 2})")
    frame[["source", "source_record_id"]] = frame[["source", "source_record_id"]].map(formula_unsafe)
    return pd.DataFrame({"record_key": frame["source"] + "/" + frame["source_record_id"],
                         "master_id": frame["master_id"].str.strip()}).drop_duplicates("record_key")


def review_rows(reviews: pd.DataFrame, crosswalk: pd.DataFrame, record_keys) -> pd.DataFrame:
    """The review pairs as :data:`REVIEW_COLUMNS`: each side's source, source_record_id and master id
    (from ``crosswalk``, whose rows are the records of ``record_keys`` in order), probability, match
    weight and reason (``grey_zone`` or ``constraint:<which>``), most probable first."""
    side = crosswalk[["source", "source_record_id", "master_id"]].set_axis(pd.Index(record_keys, dtype=object))
    out = {}
    for s in ("l", "r"):
        found = side.reindex(reviews[f"record_key_{s}"].astype(object).to_numpy())
        for col in ("source", "source_record_id", "master_id"):
            out[f"{col}_{s}"] = found[col].to_numpy()
    out["match_probability"] = reviews["match_probability"].to_numpy()
    out["match_weight"] = reviews["match_weight"].to_numpy()
    out["reason"] = reviews["review_reason"].astype(str).to_numpy()
    return pd.DataFrame(out, columns=list(REVIEW_COLUMNS))


def matcher_backend(backend: str | None = None) -> tuple[str, dict]:
    """The matcher's backend (``backend``, default the setting ``HUB_MATCH_BACKEND``) and its options:
    DuckDB's memory bound, or the Spark master (``HUB_SPARK_MASTER``). Spark's absence (no pyspark, no
    Java) is reported here, before any work, as an error saying what to install."""
    backend = (backend or settings.match_backend()).strip().lower()
    if backend not in settings.MATCH_BACKENDS:
        raise HubError(f"unknown matching backend {backend!r}: expected one of {', '.join(settings.MATCH_BACKENDS)}")
    if backend == "duckdb":
        return backend, settings.match_options()
    from mpi.spark import SparkUnavailable, require_spark

    try:
        require_spark()
    except SparkUnavailable as exc:
        raise HubError(str(exc)) from None
    return backend, {"master": settings.spark_master()}


def link_files(inputs: list[Path], out: Path, *, on_progress: Callable[[str, dict], None] | None = None,
               previous: Path | None = None, review_out: Path | None = None, backend: str | None = None) -> dict:
    """Link the records of ``inputs`` (CSV or XLSX with the canonical columns) and write the crosswalk to ``out``.

    Every input row appears in the crosswalk: ``source, source_record_id, master_id,
    match_probability, reason, id_number_status`` (the status tells why an ID number was not used:
    ``precision_lost`` for a number typed into a numeric cell, ``checksum_error``, …). With
    ``previous`` (a crosswalk written earlier), its master ids are kept: merged, split and new
    clusters are handled as in the warehouse. ``backend``: ``duckdb`` or ``spark`` (default: the setting,
    see :func:`matcher_backend`); both give the same clusters. With ``review_out`` the pairs left for review are
    written there (:data:`REVIEW_COLUMNS`, see :func:`review_rows`). Returns counts; ``reviews`` is
    the number of pairs (the review file's rows).
    """
    import re

    from mpi.ids import assign_master_ids
    from mpi.matcher import Matcher
    from schemas.resident import standardize_frame

    backend, options = matcher_backend(backend)
    if review_out is not None and review_out.resolve() == out.resolve():
        raise HubError(f"--review-out {review_out} is the crosswalk's file too: give the review pairs a file of their own")
    old = _previous(previous) if previous else pd.DataFrame(columns=["record_key", "master_id"])
    raw = _read(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if review_out:
        review_out.parent.mkdir(parents=True, exist_ok=True)
    if raw.empty:  # header-only files: nothing to link, an empty crosswalk
        pd.DataFrame(columns=list(OUTPUT_COLUMNS)).to_csv(out, index=False, encoding="utf-8-sig")
        if review_out:
            pd.DataFrame(columns=list(REVIEW_COLUMNS)).to_csv(review_out, index=False, encoding="utf-8-sig")
        return {"records": 0, "masters": 0, "masters_kept": 0, "reviews": 0, "precision_lost": 0}
    std = standardize_frame(raw)
    if on_progress:
        on_progress("standardized", {"records": len(std)})
    linked = Matcher.from_model(backend=backend, backend_options=options).match_all(std, on_progress=on_progress)
    record_key = linked.clusters["record_key"].astype(str).to_numpy()
    numbers = [int(m.group(1)) for m in map(re.compile(r"^M(\d+)$").match, old["master_id"]) if m]
    start = max(numbers, default=0) + 1

    def mint(n: int) -> list[str]:
        return [f"M{i:09d}" for i in range(start, start + n)]

    assignment = assign_master_ids(pd.DataFrame({"record_key": record_key,
                                                 "cluster_key": linked.clusters["cluster_key"].to_numpy()}),
                                   old, mint=mint)
    crosswalk = linked.crosswalk.assign(master_id=assignment.crosswalk["master_id"].to_numpy())
    status = std.set_index(["source", "source_record_id"])["id_number_status"].astype(str)
    crosswalk["id_number_status"] = pd.MultiIndex.from_frame(crosswalk[["source", "source_record_id"]]).map(status)
    formula_safe_frame(crosswalk[list(OUTPUT_COLUMNS)]).to_csv(out, index=False, encoding="utf-8-sig")
    if review_out:
        reviews = review_rows(linked.reviews, crosswalk, record_key)
        formula_safe_frame(reviews).to_csv(review_out, index=False, encoding="utf-8-sig")
    kept = int(crosswalk["master_id"].isin(set(old["master_id"])).groupby(crosswalk["master_id"]).any().sum())
    return {"records": len(crosswalk), "masters": int(crosswalk["master_id"].nunique()), "masters_kept": kept,
            "reviews": len(linked.reviews), **crosswalk["reason"].value_counts().to_dict(),
            "precision_lost": int((crosswalk["id_number_status"] == "precision_lost").sum()),
            **assignment.counts()}
