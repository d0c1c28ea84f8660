"""``hub explain --html`` records its page in ``audit.export_log`` under the department of the two records'
sources when they share one, and under none when they do not (real warehouse, the real ``hub`` command)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.test_waterfall_offline import _hub, _load


def _exports(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT kind, department, rows FROM audit.export_log ORDER BY export_id")).mappings()]


def test_an_explanation_page_is_recorded_under_its_records_department(clean_warehouse, tmp_path):
    _load(clean_warehouse)
    matched = _hub("match")
    assert matched.returncode == 0, matched.stderr
    one = _hub("explain", "--pair", "mz_dibao/W-1", "--pair", "mz_dibao/W-4", "--html", str(tmp_path / "one.html"))
    assert one.returncode == 0, one.stderr
    two = _hub("explain", "--pair", "mz_dibao/W-1", "--pair", "rs_yanglao/W-2", "--html", str(tmp_path / "two.html"))
    assert two.returncode == 0, two.stderr
    assert _exports(clean_warehouse) == [{"kind": "explain", "department": "civil_affairs", "rows": 2},
                                         {"kind": "explain", "department": None, "rows": 2}]
