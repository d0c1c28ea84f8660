"""``hub link``: link ad-hoc resident files into master ids, without a warehouse.

It runs the pipeline's own steps — the standardizers, :func:`mpi.link.link_records` and
:func:`mpi.anchors.master_anchors` — so a file linked here and the same records run through the
master-index DAG fall into the same clusters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from hub import settings
from hub.errors import HubError

OUTPUT_COLUMNS = ("source", "source_record_id", "master_id", "match_probability", "reason")


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


def link_files(inputs: list[Path], out: Path, *, on_progress: Callable[[str, dict], None] | None = None) -> dict:
    """Link the records of ``inputs`` (CSV or XLSX with the canonical columns) and write the crosswalk to ``out``.

    Every input row appears in the crosswalk: ``source, source_record_id, master_id,
    match_probability, reason``. Returns counts.
    """
    from mpi.anchors import master_anchors
    from mpi.link import link_records
    from schemas.resident import standardize_frame

    raw = _read(inputs)
    std = standardize_frame(raw)
    if on_progress:
        on_progress("standardized", {"records": len(std)})
    linked = link_records(std, on_progress=on_progress, backend_options=settings.match_options())
    anchors = master_anchors(std, linked.crosswalk)
    # master ids in order of first appearance, so the same input gives the same ids
    order = pd.unique(anchors["anchor"])
    ids = pd.Series([f"M{i:09d}" for i in range(1, len(order) + 1)], index=order)
    crosswalk = linked.crosswalk.assign(master_id=anchors["anchor"].map(ids).to_numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    crosswalk[list(OUTPUT_COLUMNS)].to_csv(out, index=False, encoding="utf-8-sig")
    return {"records": len(crosswalk), "masters": int(crosswalk["master_id"].nunique()),
            "reviews": len(linked.reviews), **crosswalk["reason"].value_counts().to_dict()}
