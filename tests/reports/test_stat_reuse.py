"""Statistical report forms of a new release: those whose content did not change are copied from the
release before with the new release's labels, and equal what rendering them again writes."""

from __future__ import annotations

import datetime as dt
import zipfile
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from reports import stat_reuse
from reports.stat_form import write_all
from warehouse.audit import record_gate_run
from warehouse.releases import publish

KINDS = ["pyramid", "dibao", "gaoling"]


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    from tests.helpers import publish_day0

    release = publish_day0(engine, _served_platforms, county)
    return {"engine": engine, "release_no": release["release_no"]}


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_unchanged_forms_are_copied_with_the_new_release_labels(published, tmp_path):
    engine, first = published["engine"], published["release_no"]
    zone = ZoneInfo("Asia/Shanghai")
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            before = write_all(conn, tmp_path / "r1", kinds=KINDS, release_no=first, workers=1,
                               generated=dt.datetime(2026, 11, 20, 9, 30, tzinfo=zone))
            assert before["carried"] == 0 and (tmp_path / "r1" / stat_reuse.MANIFEST).is_file()
            # the next release: one person decades older or younger (the county's, its town's and village's pyramids change)
            moved = conn.execute(sa.text(
                "SELECT g.master_id, g.address FROM mpi.golden g JOIN publish.master_person p"
                " ON p.master_id = g.master_id AND p.release_no = :n WHERE g.birth_date IS NOT NULL"
                " AND g.address LIKE '%村%' ORDER BY g.master_id LIMIT 1"), {"n": first}).one()
            conn.execute(sa.text("UPDATE mpi.golden SET birth_date = CASE WHEN birth_date < DATE '1960-01-01'"
                                 " THEN DATE '2015-06-01' ELSE DATE '1935-06-01' END WHERE master_id = :m"),
                         {"m": moved.master_id})
            run = record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 0,
                                          "outcomes": []}], docs_path=None)
            second = publish(conn, run).release_no
            assert second == first + 1
            generated = dt.datetime(2026, 11, 21, 10, 5, tzinfo=zone)
            carried = write_all(conn, tmp_path / "r2", kinds=KINDS, release_no=second, workers=2,
                                earlier=tmp_path / "r1", generated=generated)
            fresh = write_all(conn, tmp_path / "fresh", kinds=KINDS, release_no=second, workers=2,
                              generated=generated)
        finally:
            tx.rollback()
    assert fresh["carried"] == 0 and carried["files"] == fresh["files"] == before["files"]
    # most forms are the same; the changed person's pyramids (county, town, village) and every form whose
    # period runs from the release before are rendered
    assert 0 < carried["carried"] < carried["files"]
    names = sorted(p.name for p in (tmp_path / "fresh").glob("*.xlsx"))
    assert names == sorted(p.name for p in (tmp_path / "r2").glob("*.xlsx"))
    assert all(f"_第{second}版" in n for n in names)
    manifest = stat_reuse.read_manifest(tmp_path / "r2")
    first_forms = stat_reuse.read_manifest(tmp_path / "r1")
    same = {k for k, e in manifest.items() if first_forms[k]["key"] == e["key"]}
    assert len(same) == carried["carried"]
    county = next(k for k in manifest if k.startswith("pyramid/county/"))
    assert county not in same  # the changed person is counted in the county's pyramid
    for name in names:
        a, b = _members(tmp_path / "r2" / name), _members(tmp_path / "fresh" / name)
        assert a.keys() == b.keys(), name
        for part in a:
            if part != "docProps/core.xml":  # its times are each workbook's own
                assert a[part] == b[part], (name, part)
        sheet = load_workbook(tmp_path / "r2" / name).active
        text = " ".join(str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None)
        assert f"第{second}版" in text and f"第{first}版" not in text and "2026-11-21" in text, name
        assert "2026-11-20" not in text, name
    # a form is never copied from a file that is not the one recorded
    victim = next(e for k, e in manifest.items() if k in same)
    (tmp_path / "r2" / victim["file"]).write_bytes(b"not the form")
    assert not stat_reuse.carry(tmp_path / "r2" / victim["file"], victim, tmp_path / "x.xlsx",
                                victim["labels"], generated)
