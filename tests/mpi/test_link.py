"""Matching on small hand-built cases: hard negatives stay apart, typos still link, every row once.

The hard negatives and the typo run through both entry points of the matcher: the whole set
(``match_all``), and a delta (``match_delta``) in which the second half of the case's records
arrive against a stored index holding the background and the first half."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mpi import Delta, Matcher, MemoryIndex, explain_pair
from schemas.id_number import check_character
from schemas.resident import standardize_frame

TODAY = dt.date(2026, 11, 20)


def make_id(birth: str, seq: str, region: str = "341522") -> str:
    body = region + birth.replace("-", "") + seq
    return body + check_character(body)


def typo(number: str, pos: int = 10) -> str:
    return number[:pos] + str((int(number[pos]) + 3) % 10) + number[pos + 1:]


def std_of(rows: list[dict]) -> pd.DataFrame:
    raw = pd.DataFrame(rows)
    raw.insert(0, "source_record_id", [f"R{i:03d}" for i in range(len(raw))])
    if "source" not in raw:
        raw.insert(0, "source", "test")
    return standardize_frame(raw, sex_codes={"男": 1, "女": 2}, today=TODAY)


HOUSE = "城关镇张庄村3组12号"
PHONE = "13800000001"
# a small background population, so that the case records are not the whole county
BACKGROUND = [
    {"name": n, "id_number": make_id(b, s), "sex": x, "birth_date": b, "address": f"临水镇南塘村{i % 9 + 1}组{i}号",
     "phone": f"1390000{i:04d}"}
    for i, (n, b, s, x) in enumerate([
        ("李娜", "1985-04-02", "004", "女"), ("王芳", "1979-11-30", "026", "女"), ("刘洋", "1992-07-15", "011", "男"),
        ("陈静", "1988-01-09", "048", "女"), ("杨勇", "1970-03-21", "031", "男"), ("赵敏", "2001-12-12", "062", "女"),
        ("黄磊", "1965-06-06", "013", "男"), ("周杰", "1999-09-19", "055", "男"), ("吴丽", "1983-02-28", "086", "女"),
    ])]


PATHS = ["all", "delta"]


def as_delta(matcher: Matcher, std: pd.DataFrame, cut: int):
    """The records from ``cut`` on arrive as a delta against the index of those before it; the crosswalk
    of every record afterwards (std order), and the delta's outcome."""
    stored = matcher.match_all(std.iloc[:cut].reset_index(drop=True))
    index = MemoryIndex.from_outcome(stored)
    arriving = std.iloc[cut:].reset_index(drop=True)
    keys = set(arriving["source"] + "/" + arriving["source_record_id"])
    outcome = matcher.match_delta(Delta(records=arriving, new=keys), index)
    assert keys <= outcome.region
    index.apply(outcome)
    assert len(index.clusters()) == len(std)
    latest = pd.concat([stored.clusters, outcome.clusters]).drop_duplicates("record_key", keep="last")
    latest = latest.set_index("record_key").loc[(std["source"] + "/" + std["source_record_id"]).to_numpy()]
    crosswalk = std[["source", "source_record_id"]].astype(str).reset_index(drop=True)
    for col in ("cluster_key", "match_probability", "reason"):
        crosswalk[col] = latest[col].to_numpy()
    return crosswalk, outcome


def link(rows: list[dict], path: str = "all", **kwargs):
    """(the case's rows of the crosswalk, the outcome, the whole crosswalk) on the entry point ``path``."""
    std = std_of(BACKGROUND + rows)
    matcher = Matcher(**kwargs)
    if path == "all":
        outcome = matcher.match_all(std)
        full = outcome.crosswalk
    else:
        full, outcome = as_delta(matcher, std, len(BACKGROUND) + len(rows) // 2)
    return full.iloc[len(BACKGROUND):].reset_index(drop=True), outcome, full


def same_cluster(cw: pd.DataFrame, i: int, j: int) -> bool:
    return cw.loc[i, "cluster_key"] == cw.loc[j, "cluster_key"]


def test_every_row_once_and_exact_id_pass():
    a = make_id("1975-05-20", "013")
    rows = [
        {"source": "mz", "name": "张建国", "id_number": a, "sex": "男", "birth_date": "1975-05-20", "address": HOUSE},
        {"source": "rs", "name": "張建國", "id_number": a, "sex": "男", "birth_date": "19750520", "phone": PHONE},
        {"source": "wj", "name": "张建国", "id_number": a.lower(), "sex": "男", "birth_date": "1975/5/20"},
        {"source": "wj", "name": "无", "id_number": "", "sex": None, "birth_date": None},
    ]
    cw, _, full = link(rows)
    assert len(full) == len(BACKGROUND) + len(rows)
    assert not full.duplicated(["source", "source_record_id"]).any()
    assert list(full["source_record_id"]) == list(std_of(BACKGROUND + rows)["source_record_id"])
    assert same_cluster(cw, 0, 1) and same_cluster(cw, 0, 2)
    assert set(cw.loc[:2, "reason"]) == {"exact_id"} and (cw.loc[:2, "match_probability"] == 1.0).all()
    assert cw.loc[3, "reason"] == "singleton" and not same_cluster(cw, 0, 3)
    assert set(full["reason"]) <= {"exact_id", "probabilistic", "split_constraint", "singleton"}


@pytest.mark.parametrize("path", PATHS)
def test_twins_are_not_merged(path):
    a, b = make_id("2015-08-01", "031"), make_id("2015-08-01", "053")
    rows = [
        {"name": "王子涵", "id_number": a, "sex": "男", "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
        {"name": "王子涵", "id_number": a, "sex": "男", "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
        {"name": "王子轩", "id_number": b, "sex": "男", "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
        # the second twin again, without an ID number (a birth registration)
        {"name": "王子轩", "id_number": None, "sex": "男", "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1)
    assert not same_cluster(cw, 0, 2) and not same_cluster(cw, 0, 3) and not same_cluster(cw, 1, 3)


@pytest.mark.parametrize("path", PATHS)
def test_twins_without_id_numbers_are_not_merged(path):
    rows = [
        {"name": "李欣怡", "id_number": None, "sex": "女", "birth_date": "2024-03-03", "address": HOUSE, "phone": PHONE},
        {"name": "李欣悦", "id_number": None, "sex": "女", "birth_date": "2024-03-03", "address": HOUSE, "phone": PHONE},
    ]
    cw, _, _ = link(rows, path)
    assert not same_cluster(cw, 0, 1)


@pytest.mark.parametrize("path", PATHS)
def test_parent_and_child_with_the_same_name_are_not_merged(path):
    father = make_id("1962-02-14", "015")
    rows = [
        {"name": "张伟", "id_number": father, "sex": "男", "birth_date": "1962-02-14", "address": HOUSE, "phone": PHONE},
        {"name": "张伟", "id_number": father, "sex": "男", "birth_date": "1962-02-14", "address": HOUSE},
        # the son: same name, same house and phone; one record even carries the father's ID number
        {"name": "张伟", "id_number": None, "sex": "男", "birth_date": "1988-02-14", "address": HOUSE, "phone": PHONE},
        {"name": "张伟", "id_number": father, "sex": "男", "birth_date": "1988-02-14", "address": HOUSE, "phone": PHONE},
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1)
    assert not any(same_cluster(cw, i, j) for i in (0, 1) for j in (2, 3))


@pytest.mark.parametrize("path", PATHS)
def test_spouse_id_on_a_record_is_not_merged_into_the_spouse(path):
    husband, wife = make_id("1970-10-01", "017"), make_id("1972-04-18", "024")
    rows = [
        {"name": "刘建军", "id_number": husband, "sex": "男", "birth_date": "1970-10-01", "address": HOUSE, "phone": PHONE},
        {"name": "刘建军", "id_number": husband, "sex": "男", "birth_date": "19701001", "address": HOUSE},
        {"name": "陈秀英", "id_number": wife, "sex": "女", "birth_date": "1972-04-18", "address": HOUSE, "phone": PHONE},
        # the wife's record with the husband's ID number typed in
        {"name": "陈秀英", "id_number": husband, "sex": "女", "birth_date": "1972-04-18", "address": HOUSE, "phone": PHONE},
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1)
    assert not same_cluster(cw, 0, 3) and not same_cluster(cw, 1, 3)
    assert not same_cluster(cw, 0, 2)
    # the husband's number contradicts her own birth date and sex: it does not keep her record
    # out of her own cluster
    assert same_cluster(cw, 2, 3)


@pytest.mark.parametrize("path", PATHS)
def test_placeholder_ids_never_link_on_the_id(path):
    rows = [
        {"name": "赵明", "id_number": "000000000000000000", "sex": "男", "birth_date": "1980-01-01"},
        {"name": "钱红", "id_number": "000000000000000000", "sex": "女", "birth_date": "1991-05-05"},
        {"name": "孙强", "id_number": "000000000000000000", "sex": "男", "birth_date": "1980-01-02"},
        {"name": "周丽", "id_number": "无", "sex": "女", "birth_date": "1991-05-05"},
    ]
    cw, _, _ = link(rows, path)
    assert cw["cluster_key"].nunique() == 4
    assert (cw["reason"] == "singleton").all()


@pytest.mark.parametrize("path", PATHS)
def test_two_different_valid_ids_never_share_a_cluster(path):
    # common-name strangers: same name, same birthday, same village — different ID numbers
    a, b = make_id("1990-06-01", "013"), make_id("1990-06-01", "037")
    rows = [
        {"name": "张伟", "id_number": a, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村3组12号"},
        {"name": "张伟", "id_number": b, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村5组40号"},
        # a record of the first with no ID number: it may join one of them, never bridge both
        {"name": "张伟", "id_number": None, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村3组12号"},
        {"name": "章伟", "id_number": typo(b), "sex": "男", "birth_date": "1990-06-01"},
    ]
    cw, _, full = link(rows, path)
    std = std_of(BACKGROUND + rows)
    full = full.assign(id_number=std["id_number"].to_numpy())
    ids_per_cluster = full.dropna(subset=["id_number"]).groupby("cluster_key")["id_number"].nunique()
    assert (ids_per_cluster <= 1).all()
    assert not same_cluster(cw, 0, 1)


@pytest.mark.parametrize("path", PATHS)
def test_typo_id_with_same_name_and_birth_date_links_probabilistically(path):
    a = make_id("1958-12-03", "019")
    rows = [
        {"name": "马桂兰", "id_number": a, "sex": "女", "birth_date": "1958-12-03", "address": HOUSE},
        {"name": "马桂兰", "id_number": a, "sex": "女", "birth_date": "1958-12-03", "phone": PHONE},
        {"name": "马桂兰", "id_number": typo(a), "sex": "女", "birth_date": "1958/12/03"},
        # adjacent digits transposed
        {"name": "马桂兰", "id_number": a[:8] + a[9] + a[8] + a[10:], "sex": "女", "birth_date": "19581203"},
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 2) and same_cluster(cw, 0, 3)
    assert cw.loc[2, "reason"] == "probabilistic" and cw.loc[2, "match_probability"] >= 0.99


def test_results_are_deterministic():
    rows = [
        {"name": "孙浩然", "id_number": make_id("2010-01-05", "035"), "sex": "男", "birth_date": "2010-01-05",
         "address": HOUSE},
        {"name": "孙浩然", "id_number": None, "sex": "男", "birth_date": "2010-01-05", "address": HOUSE},
        {"name": "孙浩燃", "id_number": None, "sex": "男", "birth_date": "2010-01-05", "phone": PHONE},
    ]
    _, r1, _ = link(rows)
    _, r2, _ = link(rows)
    pd.testing.assert_frame_equal(r1.crosswalk, r2.crosswalk)
    pd.testing.assert_frame_equal(r1.reviews, r2.reviews)


def test_reviews_carry_evidence_without_names_or_ids():
    rows = [
        {"name": "何建华", "id_number": None, "sex": "男", "birth_date": "1966-07-07", "address": HOUSE},
        {"name": "何建桦", "id_number": None, "sex": "男", "birth_date": "1966-07-17"},
    ]
    _, result, _ = link(rows, threshold=0.999999, review_threshold=0.000001)
    reviews = result.reviews
    assert {"record_key_l", "record_key_r", "match_probability", "match_weight", "review_reason"} <= set(reviews)
    assert any(c.startswith("mw_") for c in reviews.columns)
    text = reviews.astype(str).to_string()
    assert "何建" not in text


def test_explain_pair_lists_every_comparison():
    a = make_id("1975-05-20", "013")
    left = std_of([{"name": "张建国", "id_number": a, "sex": "男", "birth_date": "1975-05-20"}]).iloc[0].to_dict()
    right = std_of([{"name": "章建国", "id_number": typo(a), "sex": "男", "birth_date": "1975-05-20"}]).iloc[0].to_dict()
    table = explain_pair(left, right)
    assert list(table.columns) == ["comparison", "level", "match_weight"]
    assert {"id", "name", "dob", "sex", "phone", "address"} <= set(table["comparison"])
    assert table.set_index("comparison").loc["id", "level"] == "one digit differs"
    assert table.set_index("comparison").loc["name", "level"] == "same pinyin (homophone)"


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError):
        Matcher(threshold=0.5, review_threshold=0.9)


@pytest.mark.parametrize("path", PATHS)
def test_valid_ids_that_disagree_with_their_record_still_keep_clusters_apart(path):
    # the ID numbers encode female (even 17th digit) on records that say male: not trusted, still a constraint
    a, b = make_id("1990-06-01", "012"), make_id("1990-06-01", "038")
    rows = [
        {"name": "张伟", "id_number": a, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村3组12号"},
        {"name": "张伟", "id_number": b, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村5组40号"},
        {"name": "张伟", "id_number": None, "sex": "男", "birth_date": "1990-06-01", "address": "城关镇张庄村3组12号"},
    ]
    cw, _, _ = link(rows, path)
    assert not same_cluster(cw, 0, 1)


def county_std(persons: int, seed: int) -> pd.DataFrame:
    """The standardized records of every subsystem of a simulated county."""
    from connectors.registry import load_registry
    from simulators.county import SimulatedCounty
    from simulators.population import CountySpec

    county = SimulatedCounty.create(CountySpec(persons=persons, seed=seed))
    frames = []
    for name, source in load_registry().items():
        served = county.served(name, include_deleted=False)
        raw = pd.DataFrame({"source": name, "source_record_id": served[source.primary_key].astype(str)})
        for field, column in source.mapping.items():
            raw[field] = served[column]
        frames.append(standardize_frame(raw, sex_codes=source.codes.get("sex"),
                                        date_formats=source.date_formats or None, today=TODAY))
    return pd.concat(frames, ignore_index=True)


def test_a_delta_against_a_stored_index_gives_the_whole_set_clusters():
    import numpy as np

    std = county_std(2000, 11)
    keys = (std["source"] + "/" + std["source_record_id"]).to_numpy()
    rng = np.random.default_rng(3)
    arriving = rng.random(len(std)) < 0.1  # a tenth of the records come the next day
    leaving = ~arriving & (rng.random(len(std)) < 0.02)  # and a few of the stored ones go
    # one term-frequency snapshot for every run, as the warehouse keeps one
    snapshot = Matcher().match_all(std[~leaving]).frequencies
    matcher = Matcher(frequencies=snapshot)
    index = MemoryIndex.from_outcome(matcher.match_all(std[~arriving].reset_index(drop=True)))
    delta = Delta(records=std[arriving].reset_index(drop=True), new=set(keys[arriving]), removed=set(keys[leaving]))
    outcome = matcher.match_delta(delta, index)
    index.apply(outcome)
    assert 0 < len(outcome.region) < (~leaving).sum() / 2
    assert outcome.stats["rescored"] >= arriving.sum() and outcome.stats["records"] == (~leaving).sum()

    whole = matcher.match_all(std[~leaving].reset_index(drop=True)).clusters
    after = index.clusters().set_index("record_key")["cluster_key"]
    assert sorted(after.index) == sorted(whole["record_key"])
    pd.testing.assert_series_equal(after.loc[whole["record_key"]].reset_index(drop=True), whole["cluster_key"],
                                   check_names=False)


def test_training_is_reproducible(tmp_path):
    from mpi import train_model

    std = county_std(3000, 7)
    first = train_model(std, tmp_path / "a.json", max_pairs=2e5)
    second = train_model(std, tmp_path / "b.json", max_pairs=2e5)
    assert first.read_bytes() == second.read_bytes()
    outcome = Matcher.from_model(first).match_all(std)
    assert len(outcome.crosswalk) == len(std)
