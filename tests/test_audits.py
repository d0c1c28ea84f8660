"""Cross-department audits on the simulated county, through the real pipeline, against its planted truth.

One module fixture runs the pipeline twice (day 0 → release 1; day 1 → release 2, with deaths, and with
one dead pensioner struck off and one double medical insurance ended at the source), audits both
releases and writes the exports; the tests check what it produced.

Precision and recall are measured per kind at the **person** level (the persons behind a finding's
records, by the simulator's truth, against the persons the simulator planted the kind on) and at the
**record** level (a finding's records against the planted records). ``deceased_active`` is measured
against the planted persons whose death the served data registers (a 停发 record in 高龄津贴, the
death registration): the simulator also plants deceased persons aged 70–79, whom no served source
records as dead, so no audit on the served data can find them; their share is reported, not asserted.
"""

from __future__ import annotations

import html
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from hub.audits import export_all, run_audits
from reports.audit import XLSX_COLUMNS
from tests.browser import colour_census, dump_dom, read_png, require_browser, screenshot
from tests.helpers import publish_day0, publish_served_county
from warehouse.findings import BIRTH_DATE_CONFLICT, KINDS, list_findings
from warehouse.sharing import department_titles

PLANTED_KINDS = ("deceased_active", "exclusive_programs", "sex_conflict", "shared_id_number", "birth_date_conflict")
MIN_PRECISION = MIN_RECALL = 0.95


def _release() -> int:
    return publish_served_county()["release_no"]


def _detected(engine, release_no: int) -> pd.DataFrame:
    """The findings detected in a release: one row per finding and subject record."""
    with engine.connect() as conn:
        rows = list_findings(conn, status=None)
    out = []
    for f in rows:
        if f["last_release"] < release_no:
            continue
        subjects = [e for e in f["evidence"] if e.get("role") in
                    ("active_record", "enrolment", "disagreeing_record", "carrying_record")]
        out += [(f["finding_id"], f["kind"], f["department"], e["source"], e["source_record_id"]) for e in subjects]
    return pd.DataFrame(out, columns=["finding_id", "kind", "department", "source", "source_record_id"])


def _day_one(county):
    """The next day, with more deaths, one dead pensioner struck off the pension roll and one person's
    employees' medical insurance ended at the source."""
    from simulators.county import DeltaSpec

    day1 = county.next_day(DeltaSpec(deaths=0.003))
    planted = county.planted_inconsistencies()
    dead = planted[(planted["kind"] == "deceased_active") & (planted["source"] == "rs_yanglao")].iloc[0]
    pension = day1.rolls["rs_yanglao"]
    hit = pension["record_id"] == dead["source_record_id"]
    pension.loc[hit, ["pension", "_updated"]] = ["0", day1.as_of]
    double = planted[planted["kind"] == "exclusive_programs"].iloc[0]
    yiliao = day1.rolls["rs_yiliao"]
    ended = (yiliao["_person_id"] == double["person_id"]) & (yiliao["scheme"] == "职工基本医疗保险")
    yiliao.loc[ended, ["_deleted", "_updated"]] = [True, day1.as_of]
    struck = {("rs_yanglao", dead["source_record_id"]),
              *(("rs_yiliao", r) for r in yiliao.loc[yiliao["_person_id"] == double["person_id"], "record_id"])}
    return day1, struck


@pytest.fixture(scope="module")
def audited(engine, _served_platforms, county, tmp_path_factory):
    platforms = _served_platforms
    try:
        first_no = publish_day0(engine, platforms, county)["release_no"]
        first = run_audits(engine, first_no)
        detected1 = _detected(engine, first_no)
        day1, struck = _day_one(county)
        platforms.advance(day1)
        second_no = _release()
        second = run_audits(engine, second_no)
        detected2 = _detected(engine, second_no)
        out = tmp_path_factory.mktemp("audit")
        paths = export_all(engine, out)
        with engine.connect() as conn:
            stored = {f["finding_id"]: f for f in list_findings(conn, status=None)}
            counts = pd.read_sql(sa.text("SELECT * FROM audit.finding_count"), conn)
            departments = sorted(conn.execute(sa.text(
                "SELECT DISTINCT department FROM publish.enrolment")).scalars())
        yield {"county": county, "day1": day1, "struck": struck, "runs": (first, second),
               "releases": (first_no, second_no), "detected": (detected1, detected2), "stored": stored,
               "counts": counts, "paths": paths, "departments": departments}
    finally:
        platforms.advance(county)


def _measure(detected: pd.DataFrame, county, kind: str) -> dict:
    truth = county.truth().set_index(["source", "source_record_id"])["person_id"]
    planted = county.planted_inconsistencies()
    planted = planted[planted["kind"] == kind]
    found = detected[detected["kind"] == kind]
    found_records = set(zip(found["source"], found["source_record_id"]))
    found_persons = {truth[r] for r in found_records}
    planted_records = set(zip(planted["source"], planted["source_record_id"]))
    planted_persons = set(planted["person_id"])

    def ratio(a: set, b: set) -> float:
        return len(a & b) / len(a) if a else 1.0

    return {"planted": len(planted_persons), "found": len(found_persons),
            "person_precision": ratio(found_persons, planted_persons),
            "person_recall": ratio(planted_persons, found_persons),
            "record_precision": ratio(found_records, planted_records),
            "record_recall": ratio(planted_records, found_records)}


@pytest.mark.parametrize("day", [0, 1])
@pytest.mark.parametrize("kind", PLANTED_KINDS)
def test_precision_and_recall_per_kind_against_the_planted_truth(audited, kind, day):
    county = audited["county"] if day == 0 else audited["day1"]
    m = _measure(audited["detected"][day], county, kind)
    assert m["planted"] > 0, f"the simulated county plants no {kind} on day {day}"
    for level in ("person", "record"):
        assert m[f"{level}_precision"] >= MIN_PRECISION, (kind, day, m)
        assert m[f"{level}_recall"] >= MIN_RECALL, (kind, day, m)


def test_only_deaths_civil_affairs_registered_are_planted(audited):
    """A death no served roll records is no inconsistency between departments: the simulator plants
    deceased_active only for deaths registered on the civil-affairs 高龄 roll (停发)."""
    county = audited["county"]
    planted = county.planted_inconsistencies()
    planted = planted[planted["kind"] == "deceased_active"]
    gl = county.rolls["mz_gaoling"]
    assert planted["person_id"].isin(set(gl.loc[gl["status"] == "停发", "_person_id"])).all()
    dead = county.population["deceased_on"].notna()
    assert dead.sum() > planted["person_id"].nunique()  # deaths aged 70–79 are on no served roll


def test_every_birth_date_conflict_is_a_typed_date_not_a_wrong_merge(audited):
    """Dates written in other formats or as Excel serials standardize back to the same day, so a birth-date
    finding must sit on a record whose date was planted wrong (lunar, swapped, a digit …): one on a
    correctly typed record would be a wrong merge."""
    for county, detected in zip((audited["county"], audited["day1"]), audited["detected"]):
        truth = county.truth().set_index(["source", "source_record_id"])["errors"]
        found = detected[detected["kind"] == BIRTH_DATE_CONFLICT]
        assert len(found) > 0
        typed = [truth[(s, r)] for s, r in zip(found["source"], found["source_record_id"])]
        assert [e for e in typed if "dob_" not in e] == []


def test_finding_ids_are_stable_and_gone_findings_are_resolved(audited):
    detected1, detected2 = audited["detected"]
    stored, struck = audited["stored"], audited["struck"]
    planted1 = audited["day1"].planted_inconsistencies()
    still = set(zip(planted1["kind"], planted1["source"], planted1["source_record_id"]))
    ids1, ids2 = set(detected1["finding_id"]), set(detected2["finding_id"])
    kept = {f for f, g in detected1.groupby("finding_id")
            if all((k, s, r) in still for k, s, r in zip(g["kind"], g["source"], g["source_record_id"]))}
    assert len(kept) > 30
    assert kept <= ids2, "findings that still hold on day 1 changed their id"
    for fid in kept:
        assert (stored[fid]["status"], stored[fid]["first_release"], stored[fid]["last_release"]) == ("open", 1, 2)
    gone = ids1 - ids2
    struck_ids = set(detected1.loc[[(s, r) in struck for s, r in zip(detected1["source"], detected1["source_record_id"])],
                                   "finding_id"])
    assert len(struck_ids) == 2 and struck_ids <= gone
    for fid in gone:
        assert (stored[fid]["status"], stored[fid]["last_release"]) == ("resolved", 1)
    first, second = audited["runs"]
    assert first["new"] == first["detected"] == len(ids1)
    assert second["resolved"] == len(gone) and second["new"] == len(ids2 - ids1)
    assert second["open"] == len(ids2) == sum(1 for f in stored.values() if f["status"] == "open")


def test_owners_and_counts_per_release(audited):
    detected1, _ = audited["detected"]
    owners = detected1.drop_duplicates("finding_id").groupby("kind")["department"].agg(set).to_dict()
    assert owners["exclusive_programs"] == {"social_security"}
    assert owners["deceased_active"] <= {"social_security", "civil_affairs"}
    # the record carrying a foreign number, or a deviating sex, belongs to the department that must fix it
    by_source = detected1[detected1["kind"].isin(["sex_conflict", "shared_id_number"])]
    from connectors.registry import source_departments

    departments = source_departments()
    assert (by_source["source"].map(departments) == by_source["department"]).all()

    counts = audited["counts"]
    assert set(counts["release_no"]) == set(audited["releases"])
    for n, run in zip(audited["releases"], audited["runs"]):
        mine = counts[counts["release_no"] == n]
        assert len(mine) == len(KINDS) * len(audited["departments"])  # zeros included: a trend has no gaps
        assert mine["findings"].sum() == run["detected"]
        assert mine.groupby("kind")["findings"].sum().to_dict() == run["by_kind"]


def _pii_values(county) -> list[str]:
    truth = county.truth()
    persons = county.population[county.population["person_id"].isin(truth["person_id"])]
    ids = [str(v) for v in persons["id_number"].dropna()]
    names = [str(v) for v in persons["name"].dropna() if len(str(v)) >= 2]
    return sorted(set(ids) | {i[:17] for i in ids} | set(names))


def _needles(values: list[str]) -> list[bytes]:
    out: set[bytes] = set()
    for v in values:
        out |= {v.encode(), json.dumps(v).strip('"').encode(), html.escape(v).encode(),
                v.encode("ascii", "xmlcharrefreplace")}
    return sorted(out)


def test_no_full_id_number_or_name_in_evidence_xlsx_or_html(audited):
    values = _pii_values(audited["county"]) + _pii_values(audited["day1"])
    needles = _needles(values)
    stored = audited["stored"]
    text = json.dumps([[f["summary"], f["evidence"]] for f in stored.values()], ensure_ascii=False).encode()
    text_ascii = json.dumps([[f["summary"], f["evidence"]] for f in stored.values()]).encode()
    blobs = {"evidence": text + text_ascii}
    for key, path in audited["paths"].items():
        data = Path(path).read_bytes()
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        blobs[str(key)] = data
    for label, data in blobs.items():
        leaked = [n for n in needles if n in data]
        assert not leaked, f"{len(leaked)} personal values in {label}, e.g. {leaked[0][:4]!r}…"
    shared = [e for f in stored.values() if f["kind"] == "shared_id_number" for e in f["evidence"]
              if "id_number_masked" in e]
    assert shared and all("********" in e["id_number_masked"] for e in shared)


def test_department_xlsx_lists_its_open_findings(audited):
    from openpyxl import load_workbook

    from connectors.registry import source_departments

    stored, owners = audited["stored"], source_departments()
    for department in audited["departments"]:
        path = audited["paths"][department]
        book = load_workbook(path, read_only=True)
        rows = list(book["findings"].iter_rows(values_only=True))
        assert list(rows[0]) == [label for _, label, _ in XLSX_COLUMNS]
        expected = {i for i, f in stored.items() if f["department"] == department and f["status"] == "open"}
        got = {r[0] for r in rows[1:]}
        assert got == expected, department
        by_id = {r[0]: dict(zip([k for k, _, _ in XLSX_COLUMNS], r)) for r in rows[1:]}
        for fid in got:
            f = stored[fid]
            row = by_id[fid]
            assert (row["kind"], row["master_id"], row["first_release"], row["last_release"], row["status"]) == (
                f["kind"], f["master_id"], f["first_release"], f["last_release"], "open")
            others = [e for e in f["evidence"] if "source" in e and owners[e["source"]] != department]
            if not others:
                assert row["summary"] == f["summary"]
            for e in f["evidence"]:
                if "source" not in e:
                    continue
                if owners[e["source"]] == department:  # the department's own records, named
                    assert f"{e['source']}/{e['source_record_id']}" in row["records"]
                else:  # another department's: its department and role only, never its source or record id
                    assert e["source_record_id"] not in row["records"] + row["evidence"] + row["summary"]
                    assert e["source"] not in row["records"] + row["evidence"]
        assert [r[0] for r in book["about"].iter_rows(min_row=2, max_row=1 + len(KINDS), values_only=True)] == list(KINDS)
        about = {r[0]: r[1] for r in book["about"].iter_rows(values_only=True)}
        assert about["部门 Department"] == department_titles()[department]  # the title in warehouse/sharing.yaml
        book.close()
    report = audited["paths"]["report"].read_text(encoding="utf-8")
    assert all(title in report for title in department_titles().values())
    assert sum(1 for f in stored.values() if f["status"] == "open") > 0


def test_html_report_renders_in_chromium(audited, tmp_path):
    browser = require_browser()  # noqa: F841 - skips with the package to install when there is none
    report = audited["paths"]["report"]
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    dom = dump_dom(report)
    for kind in KINDS:
        assert kind in dom
    for n in audited["releases"]:
        assert f'id="release-{n}"' in dom
    assert "跨部门一致性审计" in dom and "Cross-department consistency audit" in dom
    assert "<svg" in dom or "data:image/png;base64," in dom
    image = read_png(screenshot(report, tmp_path / "audit.png", window=(1280, 1400)))
    census = colour_census(image, step=4)
    background = max(census.values())
    assert len(census) > 20, "the page rendered as (almost) one colour"
    assert background < 0.97 * sum(census.values()), "the page is (almost) blank"
