"""``hub link --review-out``: the pairs the matcher leaves to a person, written beside the crosswalk."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

HUB = str(Path(sys.executable).with_name("hub"))
HEADER = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address"]

# 张伟 and 张强: brothers of one household with the same birth date (twins). One of 张伟's
# records carries 张强's ID number (a number typed on the wrong record), so the brothers meet
# in one candidate cluster and the twins rule refuses it; 张伟's own record with no ID number is a
# probable, not certain, match of 张强's (same house, phone and date): grey zone.
ROWS = [
    ["mz", "1", "张伟", "", "男", "1990-03-04", "13812345678", "城关镇东湖村3组12号"],
    ["rs", "=2+3", "张强", "", "男", "1990-03-04", "13812345678", "城关镇东湖村3组12号"],
    ["mz", "11", "张伟", "340524199003040014", "男", "1990-03-04", "13812345679", "临水镇南塘村2组8号"],
    ["rs", "12", "张强", "340524199003040014", "男", "1990-03-04", "", "临水镇南塘村2组8号"],
    ["mz", "9", "赵丽", "", "女", "1960-05-06", "", "石店镇西岗村1组3号"],
    ["rs", "10", "赵丽", "", "女", "1960-05-06", "", "城关镇东湖村7组1号"],
    ["mz", "3", "刘明", "", "男", "1985-06-07", "", "城关镇东湖村3组15号"],
]


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def test_review_out_writes_grey_zone_and_twins_pairs_with_both_keys(tmp_path):
    src = tmp_path / "records.csv"
    pd.DataFrame(ROWS, columns=HEADER).to_csv(src, index=False)
    out, reviews_path = tmp_path / "xw.csv", tmp_path / "reviews.csv"

    result = _hub("link", str(src), "--out", str(out), "--review-out", str(reviews_path))
    assert result.returncode == 0, result.stderr
    reviews = pd.read_csv(reviews_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(reviews.columns) == ["source_l", "source_record_id_l", "master_id_l", "source_r",
                                     "source_record_id_r", "master_id_r", "match_probability", "match_weight",
                                     "reason"]
    assert f"{len(reviews)} pairs for review → {reviews_path}" in result.stdout

    xw = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    master = dict(zip(xw["source"] + "/" + xw["source_record_id"], xw["master_id"]))
    pairs = {}
    for row in reviews.itertuples(index=False):
        # both records' keys, and the master ids the crosswalk gives them (two different ones)
        left, right = f"{row.source_l}/{row.source_record_id_l}", f"{row.source_r}/{row.source_record_id_r}"
        assert (row.master_id_l, row.master_id_r) == (master[left], master[right])
        assert row.master_id_l != row.master_id_r
        assert 0.5 <= float(row.match_probability) <= 1 and float(row.match_weight) == float(row.match_weight)
        pairs[frozenset((left, right))] = row.reason
    assert "grey_zone" in pairs.values() and "constraint:twins" in pairs.values(), pairs
    # the record id "=2+3" is written formula-safe, as in the crosswalk
    assert "'=2+3" in set(reviews["source_record_id_l"]) | set(reviews["source_record_id_r"])
    assert pairs[frozenset(("mz/1", "rs/'=2+3"))] == "grey_zone"
    twins = next(p for p, reason in pairs.items() if reason == "constraint:twins")
    assert "mz/1" in twins
    assert master["mz/9"] == master["rs/10"]  # a clear match is decided, not reviewed
    assert not any("mz/9" in p or "mz/3" in p for p in pairs)
    assert "340524199003040014" not in result.stdout + result.stderr

    # without --review-out the summary counts the same pairs and names the option that writes them
    plain = _hub("link", str(src), "--out", str(tmp_path / "xw2.csv"))
    assert plain.returncode == 0, plain.stderr
    assert f"{len(reviews)} pairs for review (write them with --review-out FILE)" in plain.stdout


def test_review_out_of_header_only_file_has_its_header(tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text(",".join(HEADER) + "\n", encoding="utf-8")
    same = _hub("link", str(src), "--out", str(tmp_path / "xw.csv"), "--review-out", str(tmp_path / "xw.csv"))
    assert same.returncode == 1 and "a file of their own" in same.stderr and not (tmp_path / "xw.csv").exists()
    result = _hub("link", str(src), "--out", str(tmp_path / "xw.csv"), "--review-out", str(tmp_path / "rv.csv"))
    assert result.returncode == 0, result.stderr
    assert "0 pairs for review" in result.stdout
    assert (tmp_path / "rv.csv").read_text(encoding="utf-8-sig").startswith("source_l,source_record_id_l,")
