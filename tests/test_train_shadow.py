"""``hub train``: a candidate model judged before it counts — parameters that moved, a shadow run
against the current index, offline charts — and put in use only with ``--accept``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HUB = str(Path(sys.executable).with_name("hub"))


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def matched_county(clean_warehouse, platforms):
    """The small simulated county ingested (all but its largest roll, to keep the test fast; every
    department still has records), standardized and matched into an index."""
    from hub import pipeline

    for name in pipeline.source_names():
        if name != "rs_yiliao":
            pipeline.ingest_source(name)
    pipeline.standardize_sources()
    pipeline.build_master_index()
    return clean_warehouse


def test_train_leaves_the_model_in_use_until_accepted(matched_county, tmp_path):
    from mpi.model import DEFAULT_MODEL

    repository_model = _digest(DEFAULT_MODEL)
    in_use = tmp_path / "in_use.json"
    shutil.copyfile(DEFAULT_MODEL, in_use)
    before = in_use.read_bytes()
    candidate, charts = tmp_path / "candidate.json", tmp_path / "charts"

    result = _hub("train", "--model", str(in_use), "--out", str(candidate), "--charts", str(charts),
                  "--threshold", "0", "--max-u-pairs", "2e5")
    assert result.returncode == 0, result.stderr
    assert in_use.read_bytes() == before  # not replaced without --accept
    assert candidate.exists() and json.loads(candidate.read_text(encoding="utf-8"))["comparisons"]
    out = result.stdout
    assert "prior (two random records match, at the warehouse's" in out
    assert "levels whose match weight moved more than 0" in out
    assert re.search(r"shadow run against the current index \(\d+ records, \d+ masters → \d+\): \d+ masters would "
                     r"merge \(\d+ retired\), \d+ would split \(\d+ records to new masters\), \d+ would lose records",
                     out), out
    assert "per department" in out and "civil_affairs" in out and "health" in out
    assert "is unchanged" in out and "--accept" in out
    # Splink's own warnings are summarized, not printed
    assert "WARNING" not in result.stderr and "Splink noted" in out or "Splink" not in result.stderr

    page = (charts / "model_charts.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 3
    assert "<script" not in page.lower()
    assert not re.search(r"https?:", page), re.findall(r"https?://[^\s\"'<>]+", page)[:5]

    # with --accept (as JSON): the same summary, then the candidate replaces the model in use
    as_json = _hub("train", "--model", str(in_use), "--out", str(candidate), "--charts", str(charts),
                   "--threshold", "0", "--max-u-pairs", "2e5", "--accept", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    moved = report["parameters"]["moved"]
    changes = [abs(r["change"]) for r in moved if r["change"] is not None]
    assert changes and changes == sorted(changes, reverse=True)
    assert {"comparison", "level", "m_old", "m_new", "u_old", "u_new", "weight_old", "weight_new"} <= set(moved[0])
    shadow = report["shadow"]
    assert shadow["records_in_index"] > 1000
    assert set(shadow["per_department"]) == {"civil_affairs", "health", "social_security"}
    assert sum(d["records"] for d in shadow["per_department"].values()) == shadow["records_in_index"]
    assert report["accepted"] is True and report["next_match_full_rebuild"] is True
    assert in_use.read_bytes() == candidate.read_bytes() != before
    assert _digest(DEFAULT_MODEL) == repository_model  # the repository's model never touched

    from hub.cli_review import _print_training, console

    with console.capture() as printed:
        _print_training(report, verbose=False)
    assert "accepted" in printed.get() and "the next hub match will be a full rebuild" in printed.get()

    rebuilt = _hub("match", "--model", str(in_use))  # as it said: the new model, a full rebuild
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("full run"), rebuilt.stdout


def test_train_refuses_to_write_the_candidate_over_the_model_in_use(tmp_path):
    in_use = tmp_path / "model.json"
    in_use.write_text("{}", encoding="utf-8")
    result = _hub("train", "--model", str(in_use), "--out", str(in_use))
    assert result.returncode == 1
    assert "would overwrite the model in use" in result.stderr and "Traceback" not in result.stderr
    assert in_use.read_text(encoding="utf-8") == "{}"


def test_shadow_comparison_counts_merges_splits_and_moves_per_department():
    """The comparison of a candidate clustering with the current index, on a hand-built index."""
    import pandas as pd

    from hub.training import compare_with_index
    from mpi.ids import assign_master_ids

    current = pd.DataFrame([("mz_dibao/1", "M000000001"), ("wj_jiankang/1", "M000000001"),
                            ("mz_dibao/2", "M000000002"), ("rs_yibao/2", "M000000003"),  # 2 and 3 merge
                            ("rs_yibao/4", "M000000004"), ("wj_jiankang/4", "M000000004"),
                            ("rs_yibao/5", "M000000004"),  # 4 splits: rs_yibao/5 leaves for a new master
                            ("rs_yibao/6", "M000000006"), ("wj_jiankang/6", "M000000006"),
                            ("wj_jiankang/7", "M000000007"), ("rs_yibao/7", "M000000007"),
                            ("mz_dibao/7", "M000000007")],  # mz_dibao/6 moves from 7 to 6
                           columns=["record_key", "master_id"])
    clusters = pd.DataFrame({"record_key": [*current["record_key"], "mz_dibao/9"],
                             "cluster_key": ["a", "a", "b", "b", "c", "c", "d", "e", "e", "f", "f", "e", "g"]})
    minted: list[str] = []

    def mint(n):
        minted.extend(f"new-{len(minted) + i + 1}" for i in range(n))
        return minted[-n:] if n else []

    assignment = assign_master_ids(clusters, current, mint=mint)
    departments = {"mz_dibao": "civil_affairs", "wj_jiankang": "health", "rs_yibao": "social_security"}
    result = compare_with_index(assignment.crosswalk, assignment.retired, current, departments, fresh=set(minted))
    assert (result["masters_now"], result["masters_after"]) == (6, 7)
    assert (result["masters_merging"], result["masters_retired_by_merge"]) == (2, 1)
    assert (result["masters_split"], result["records_split_off"]) == (1, 1)
    assert (result["masters_losing_records"], result["records_moved"]) == (1, 1)
    assert result["records_not_in_index"] == 1
    assert result["per_department"]["civil_affairs"] == {
        "records": 3, "masters": 3, "masters_merging": 1, "masters_split": 0, "masters_losing_records": 1,
        "records_changing_master": 1}
    assert result["per_department"]["social_security"]["masters_split"] == 1
    assert result["per_department"]["social_security"]["masters_merging"] == 1
    assert result["examples"]["merge"] == [{"into": "M000000002", "masters": ["M000000002", "M000000003"],
                                            "records": {"M000000002": ["mz_dibao/2"], "M000000003": ["rs_yibao/2"]}}]
    assert result["examples"]["split"][0]["master"] == "M000000004"
    assert result["examples"]["split"][0]["records_leaving"] == ["rs_yibao/5"]
    assert result["examples"]["move"] == [{"record": "mz_dibao/7", "from": "M000000007", "to": "M000000006"}]


def test_accept_into_a_place_it_cannot_write_says_where_the_candidate_is(tmp_path):
    from hub.errors import HubError
    from hub.training import _replace

    candidate = tmp_path / "candidate.json"
    candidate.write_text("{}", encoding="utf-8")
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    with pytest.raises(HubError, match="cannot replace the model in use .*the candidate stays at"):
        _replace(tmp_path / "not-a-folder" / "model.json", candidate)
    assert candidate.read_text(encoding="utf-8") == "{}"
