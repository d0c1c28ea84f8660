"""``hub train``: retrain the matching model into a candidate, and judge it before it counts.

    report = retrain(model=None, candidate=None, charts=None, accept=False)

1. **Train** on the warehouse's standardized records with :func:`mpi.model.train_model` (fixed
   seeds), into a *candidate* file — by default ``HUB_HOME/training/candidate_model.json`` — never
   over the model in use. What Splink logs while training (levels it could not estimate, EM notes)
   is collected, not printed.
2. **Compare the parameters**: per comparison level, m, u and the match weight ``log2(m/u)`` of the
   model in use and of the candidate; the levels whose weight moved by more than ``threshold`` bits
   (or that exist in one model only), largest change first; and the prior (the probability that two
   random records match).
3. **Shadow run**: every standardized record matched with the candidate, as the next full rebuild
   would (steward decisions honoured), and the master ids carried over from the current index
   (``mpi.crosswalk``) by :func:`mpi.ids.assign_master_ids`: how many current masters would merge,
   split or lose records to another master, overall and per department, with a few examples
   (record keys and master ids only).
4. **Charts**: the candidate's m/u parameter chart and match-weight chart (and the match weights of
   the model in use) in one HTML page that runs no script and loads nothing (:mod:`mpi.charts`).
5. With ``accept``, the candidate replaces the model in use. Matching runs record the model's
   version (a digest of the file, :attr:`mpi.Matcher.version`), so the next ``hub match`` is a full
   rebuild.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from hub import settings
from hub.errors import HubError

MIN_RECORDS = 1000
WEIGHT_THRESHOLD = 0.5  # bits: a level whose match weight moved less is not listed
EXAMPLES = 3

Progress = Callable[[str], None]


def training_dir() -> Path:
    """Where candidates and charts go by default: ``HUB_HOME/training``."""
    return settings.hub_home() / "training"


# -- parameters ---------------------------------------------------------------------------------------

def _weight(m: float | None, u: float | None) -> float | None:
    if not m or not u:
        return None
    return math.log2(m / u)


def model_levels(model: dict) -> dict[tuple[str, str], dict]:
    """(comparison, level label) → m, u and match weight of every non-null level of a saved model."""
    out = {}
    for comparison in model.get("comparisons", []):
        name = comparison.get("output_column_name")
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            label = level.get("label_for_charts") or level.get("sql_condition")
            m, u = level.get("m_probability"), level.get("u_probability")
            out[(name, label)] = {"m": m, "u": u, "weight": _weight(m, u)}
    return out


def _prior(model: dict, records: int | None) -> float | None:
    """The prior as matching ``records`` records uses it (rescaled from the training set's size, as
    :func:`mpi.model.load_model` does)."""
    prior, trained_on = model.get("probability_two_random_records_match"), model.get("hub_training", {}).get("records")
    if prior is None or not records or not trained_on:
        return prior
    return prior * trained_on / max(records, 2)


def parameter_changes(old: dict, new: dict, threshold: float = WEIGHT_THRESHOLD, *, records: int | None = None
                      ) -> dict:
    """The levels whose match weight moved by more than ``threshold`` bits (or that one model lacks),
    largest change first, and the prior of both models (at ``records`` records, as matching uses it)."""
    before, after = model_levels(old), model_levels(new)
    moved = []
    for key in [*before, *(k for k in after if k not in before)]:
        a, b = before.get(key), after.get(key)
        wa, wb = (a or {}).get("weight"), (b or {}).get("weight")
        change = None if wa is None or wb is None else wb - wa
        if a is not None and b is not None and change is not None and abs(change) <= threshold:
            continue
        moved.append({"comparison": key[0], "level": key[1],
                      "m_old": (a or {}).get("m"), "m_new": (b or {}).get("m"),
                      "u_old": (a or {}).get("u"), "u_new": (b or {}).get("u"),
                      "weight_old": wa, "weight_new": wb, "change": change,
                      "status": "new level" if a is None else "level removed" if b is None else "moved"})
    moved.sort(key=lambda r: (-(abs(r["change"]) if r["change"] is not None else math.inf), r["comparison"],
                              str(r["level"])))
    return {"threshold_bits": threshold, "levels_compared": len(set(before) | set(after)), "moved": moved,
            "prior_old": _prior(old, records), "prior_new": _prior(new, records), "prior_at_records": records}


# -- training -----------------------------------------------------------------------------------------

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage().strip())


@contextlib.contextmanager
def captured_splink_output():
    """Collect what Splink logs, warns or prints (WARNING and up) instead of letting it reach the terminal."""
    handler = _Collect()
    logger = logging.getLogger("splink")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed), \
                contextlib.redirect_stderr(printed):
            warnings.simplefilter("always")
            yield handler.messages
        handler.messages.extend(str(w.message).strip() for w in caught)
        handler.messages.extend(line.strip() for line in printed.getvalue().splitlines()
                                if line.strip().lower().startswith(("warning", "error")))
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


_NOT_OBSERVED = re.compile(r"^Level (?P<level>.+) on comparison (?P<comparison>\S+) not observed in dataset, "
                           r"unable to train (?P<parameter>[mu]) value")


def train_candidate(std: pd.DataFrame, candidate: Path, *, max_u_pairs: float = 5e6) -> dict:
    """Train the model on ``std`` into ``candidate`` (:func:`mpi.model.train_model`); returns what
    Splink noted while training: ``not_estimated`` (comparison, level and parameter it could not
    estimate: the expert floors of :data:`mpi.model.M_FLOORS` stand in) and any ``other`` message."""
    from mpi.model import train_model

    with captured_splink_output() as messages:
        train_model(std, candidate, max_pairs=max_u_pairs)
    notes: dict[str, list] = {"not_estimated": [], "other": []}
    for message in dict.fromkeys(" ".join(m.split()) for m in messages):
        message = re.sub(r"^WARNING:\s*", "", message)
        found = _NOT_OBSERVED.match(message)
        if found:
            notes["not_estimated"].append(found.groupdict())
        elif message:
            notes["other"].append(message)
    return notes


# -- shadow run ---------------------------------------------------------------------------------------

def _department(record_key: str, departments: dict[str, str]) -> str:
    source = record_key.split("/", 1)[0]
    return departments.get(source, source)


def compare_with_index(candidate_crosswalk: pd.DataFrame, retired: pd.DataFrame, current: pd.DataFrame,
                       departments: dict[str, str], *, fresh: set[str], examples: int = EXAMPLES) -> dict:
    """What replacing the current index (``current``: record_key, master_id) by the candidate's
    (``candidate_crosswalk``: record_key, master_id after :func:`mpi.ids.assign_master_ids`, ``retired``
    its retired ids, ``fresh`` the ids it minted) would change, overall and per department."""
    both = current.merge(candidate_crosswalk.rename(columns={"master_id": "now"}), on="record_key", how="inner")
    both = both.rename(columns={"master_id": "was"})
    both["department"] = [_department(k, departments) for k in both["record_key"]]
    into = {m: s for m, s in retired[["master_id", "retired_into"]].itertuples(index=False) if s is not None}

    merging = set(into) | set(into.values())
    changed = both[(both["was"] != both["now"]) & ~both["was"].isin(set(into))]
    split_off = changed[changed["now"].isin(fresh)]
    moved = changed[~changed["now"].isin(fresh)]
    split_masters, moved_masters = set(split_off["was"]), set(moved["was"])

    per_department: dict[str, dict[str, int]] = {}
    for dept, part in both.groupby("department", sort=True):
        masters = set(part["was"])
        per_department[dept] = {
            "records": int(len(part)),
            "masters": len(masters),
            "masters_merging": len(masters & merging),
            "masters_split": len(masters & split_masters),
            "masters_losing_records": len(masters & moved_masters),
            "records_changing_master": int(part["record_key"].isin(set(changed["record_key"])).sum()),
        }

    members = current.groupby("master_id")["record_key"].apply(lambda s: sorted(s)[:4]).to_dict()
    merge_examples = []
    for survivor in sorted(set(into.values()))[:examples]:
        gone = sorted(m for m, s in into.items() if s == survivor)
        merge_examples.append({"into": survivor, "masters": [survivor, *gone],
                               "records": {m: members.get(m, []) for m in [survivor, *gone]}})
    split_examples = [{"master": was, "records_leaving": sorted(part["record_key"])[:4],
                       "new_master": "(new)", "records_staying": sorted(set(members.get(was, []))
                                                                        - set(part["record_key"]))[:4]}
                      for was, part in list(split_off.groupby("was", sort=True))[:examples]]
    move_examples = [{"record": key, "from": was, "to": now}
                     for key, was, now in moved[["record_key", "was", "now"]].sort_values("record_key")
                     .head(examples).itertuples(index=False)]
    return {
        "records_in_index": int(current["record_key"].nunique()),
        "records_not_in_index": int((~candidate_crosswalk["record_key"].isin(set(current["record_key"]))).sum()),
        "masters_now": int(current["master_id"].nunique()),
        "masters_after": int(candidate_crosswalk["master_id"].nunique()),
        "masters_merging": len(merging),
        "masters_retired_by_merge": len(into),
        "masters_split": len(split_masters),
        "masters_losing_records": len(moved_masters),
        "records_split_off": int(len(split_off)),
        "records_moved": int(len(moved)),
        "per_department": per_department,
        "examples": {"merge": merge_examples, "split": split_examples, "move": move_examples},
    }


def shadow_run(conn, candidate: Path, *, examples: int = EXAMPLES, on_progress: Progress | None = None) -> dict:
    """Match every standardized record with ``candidate`` as a full rebuild would (a fresh
    term-frequency snapshot, the steward decisions in force) and compare with the current index.
    Nothing is written."""
    import dataclasses

    from connectors.registry import source_departments
    from mpi.features import INPUT_COLUMNS
    from mpi.ids import Causes, assign_master_ids
    from mpi.matcher import Matcher
    from warehouse import matching_state as ms

    current = ms.read_previous(conn)
    if current.empty:
        return {"skipped": "the warehouse has no master index yet (run hub match first)"}
    decided = ms.decisions(conn)
    matcher = Matcher.from_model(candidate, backend_options=settings.match_options())
    if decided.detached:
        matcher = dataclasses.replace(matcher, detached=frozenset(decided.detached))
    std = ms.read_std(conn, INPUT_COLUMNS)
    feats = matcher.features(std).sort_values("record_key", kind="stable").reset_index(drop=True)
    del std
    if on_progress:
        on_progress(f"shadow run: matching {len(feats)} records with the candidate")
    with captured_splink_output():
        outcome = matcher.match_all(feats, must=decided.must, cannot=decided.cannot)
    minted: list[str] = []

    def mint(n: int) -> list[str]:
        ids = [f"new-{len(minted) + i + 1}" for i in range(n)]
        minted.extend(ids)
        return ids

    assignment = assign_master_ids(outcome.clusters[["record_key", "cluster_key"]], current, mint=mint,
                                   causes=Causes(model_changed=True), leaving=decided.leaving)
    result = compare_with_index(assignment.crosswalk, assignment.retired, current, source_departments(),
                                fresh=set(minted), examples=examples)
    result["reviews"] = int(len(outcome.reviews))
    return result


# -- charts -------------------------------------------------------------------------------------------

def _linker(model_path: Path):
    from splink import Linker

    from mpi.model import SPLINK_COLUMNS, db_api, load_model

    empty = pd.DataFrame({c: pd.Series([], dtype="int64" if c in ("unique_id", "anchor") else "object")
                          for c in SPLINK_COLUMNS})
    api = db_api()
    return Linker(api.register(empty, dataset_display_name="charts"), load_model(model_path),
                  log_level=logging.ERROR)


_XML_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="http://www\.w3\.org/[^"]*"')


def _inline_svg(chart) -> str:
    """The chart as SVG for an HTML page: without the XML namespace declarations, which HTML does not
    need (its parser knows ``<svg>``), so that the page names no http address at all."""
    import copy

    from mpi.charts import chart_spec, chart_svg

    spec = copy.deepcopy(chart_spec(chart))
    title = spec.get("title")
    if isinstance(title, dict) and "mouse" in str(title.get("subtitle", "")).lower():
        title.pop("subtitle")  # "use mousewheel to zoom": not on a drawing
    return _XML_NAMESPACES.sub("", chart_svg(spec))


def write_charts(candidate: Path, in_use: Path | None, out: Path) -> Path:
    """The candidate's match-weight and m/u charts (and the model in use's match weights) as one
    offline HTML page (no script, nothing loaded) at ``out``."""
    from mpi.charts import offline_page

    with captured_splink_output():
        new = _linker(candidate).visualisations
        sections = [("候选模型 · 各比较级别的匹配权重 — candidate: match weight per comparison level",
                     _inline_svg(new.match_weights_chart())),
                    ("候选模型 · m 与 u 概率 — candidate: m and u probabilities",
                     _inline_svg(new.m_u_parameters_chart()))]
        if in_use is not None and in_use.exists():
            sections.append(("在用模型 · 匹配权重 — model in use: match weights",
                             _inline_svg(_linker(in_use).visualisations.match_weights_chart())))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(offline_page("匹配模型参数 — matching model parameters", sections,
                                note=f"candidate {candidate.name}; in use {in_use.name if in_use else '—'}"),
                   encoding="utf-8")
    return out


# -- the whole run ------------------------------------------------------------------------------------

def _replace(target: Path, source: Path) -> None:
    """Write ``source``'s bytes over ``target`` atomically (a reader sees the old file or the new one)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(source.read_bytes())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise HubError(f"cannot replace the model in use {target}: {exc.strerror or exc}; the candidate stays at "
                       f"{source} (in a container the project's files are read-only: retrain in a checkout, "
                       "or give hub match and hub train --model a writable file)") from None


def retrain(*, model: Path | None = None, candidate: Path | None = None, charts: Path | None = None,
            accept: bool = False, threshold: float = WEIGHT_THRESHOLD, max_u_pairs: float = 5e6,
            examples: int = EXAMPLES, on_progress: Progress | None = None) -> dict:
    """Train a candidate, compare it with the model in use (``model``, default the repository's),
    shadow-run it against the current index, draw its charts, and with ``accept`` put it in use.

    ``candidate``: where to write it (default ``HUB_HOME/training/candidate_model.json``);
    ``charts``: a folder for ``model_charts.html`` (default: beside the candidate)."""
    from mpi.matcher import Matcher, StepTimer
    from mpi.model import DEFAULT_MODEL
    from warehouse import matching_state as ms
    from warehouse.standardized import read_for_matching

    def step(message: str) -> None:
        if on_progress:
            on_progress(message)

    model = Path(model or DEFAULT_MODEL)
    candidate = Path(candidate or training_dir() / "candidate_model.json")
    if candidate.resolve() == model.resolve():
        raise HubError(f"the candidate {candidate} would overwrite the model in use: give --out another file "
                       "(the candidate replaces the model in use only with --accept)")
    if not model.exists():
        raise HubError(f"the model in use {model} does not exist: give the model file hub match uses with --model")
    timer = StepTimer()
    with settings.engine().connect() as conn:
        step("reading the standardized records")
        std = read_for_matching(conn)
        timer("read")
        if len(std) < MIN_RECORDS:
            raise HubError(f"only {len(std)} standardized records: ingest and standardize at least {MIN_RECORDS} "
                           "before training")
        step(f"training on {len(std)} records")
        candidate.parent.mkdir(parents=True, exist_ok=True)
        notes = train_candidate(std, candidate, max_u_pairs=max_u_pairs)
        del std
        timer("train")
        old, new = (json.loads(p.read_text(encoding="utf-8")) for p in (model, candidate))
        records = int(new.get("hub_training", {}).get("records", 0))
        report: dict[str, Any] = {"records": records, "model": str(model), "candidate": str(candidate),
                                  "splink_notes": notes,
                                  "parameters": parameter_changes(old, new, threshold, records=records)}
        step("shadow run")
        report["shadow"] = shadow_run(conn, candidate, examples=examples, on_progress=on_progress)
        last = ms.last_run(conn)
        timer("shadow")
    step("drawing the charts")
    report["charts"] = str(write_charts(candidate, model, Path(charts or candidate.parent) / "model_charts.html"))
    timer("charts")
    report["seconds"] = timer.seconds
    version_old, version_new = Matcher.from_model(model).version, Matcher.from_model(candidate).version
    report.update({"version_in_use": version_old, "version_candidate": version_new, "identical": version_old ==
                   version_new, "accepted": False, "next_match_full_rebuild": False})
    if accept:
        if version_old != version_new:
            _replace(model, candidate)
        report["accepted"] = True
        report["next_match_full_rebuild"] = last is not None and last["model_version"] != version_new
    return report
