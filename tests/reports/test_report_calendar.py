"""The reporting calendar: after a release the pipeline writes a statistical report kind's forms when its
period (month, quarter, year) has none yet, and the 本期 of a kind counted since the previous report runs
from the release it last wrote the kind for."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from reports import report_calendar, stat_reuse
from reports.errors import StatisticsError
from reports.report_spec import shipped_statistics
from warehouse.audit import record_gate_run
from warehouse.releases import publish

ZONE = ZoneInfo("Asia/Shanghai")
D = dt.date


def _written_as(root, plan, kinds: list[str]) -> None:
    """As the pipeline leaves a plan done: the kinds' forms in the release's folder and the calendar noting them."""
    folder = root / str(plan.release_no)
    folder.mkdir(parents=True, exist_ok=True)
    stat_reuse.write_manifest(folder, plan.release_no, {f"{k}/county/全县": {"form": f"{k}/county/全县"} for k in kinds})
    report_calendar.record(root, plan)


def _written(root, release_no: int, day: dt.date, kinds: list[str], config) -> None:
    _written_as(root, report_calendar.plan(root, kinds, config, release_no=release_no, release_date=day,
                                           every_release=True), kinds)


@pytest.mark.parametrize("due, same, next_period", [
    ("monthly", [D(2026, 12, 1), D(2026, 12, 31)], D(2027, 1, 1)),
    ("quarterly", [D(2026, 10, 1), D(2026, 12, 31)], D(2027, 1, 1)),
    ("yearly", [D(2026, 1, 1), D(2026, 12, 31)], D(2027, 1, 1)),
])
def test_a_kind_is_written_once_per_period(tmp_path, due, same, next_period):
    config = shipped_statistics().model_copy(update={"due": due})
    kind = "dibao"
    assert config.due_of(kind) == due
    _written(tmp_path, 3, same[0], [kind], config)
    for n, day in enumerate(same, start=4):
        plan = report_calendar.plan(tmp_path, [kind], config, release_no=n, release_date=day)
        assert plan.due == [] and plan.not_due == {kind: 3}, day
        assert "release 3" in plan.describe(config) and due in plan.describe(config)
    plan = report_calendar.plan(tmp_path, [kind], config, release_no=9, release_date=next_period)
    # the new period's forms: its 本期 starts after the previous report's date, not the previous release's
    assert plan.due == [kind] and plan.since == {kind: same[0]} and plan.not_due == {}


def test_kinds_follow_their_own_rule_and_the_setting_overrides_it(tmp_path):
    config = shipped_statistics()
    assert config.due == "monthly" and config.due_of("pyramid") == "yearly" and config.due_of("dibao") == "monthly"
    _written(tmp_path, 1, D(2026, 11, 20), ["dibao", "pyramid"], config)
    plan = report_calendar.plan(tmp_path, ["dibao", "pyramid"], config, release_no=2, release_date=D(2026, 12, 1))
    assert plan.due == ["dibao"] and plan.not_due == {"pyramid": 1}
    later = report_calendar.plan(tmp_path, ["dibao", "gaoling", "pyramid"], config, release_no=3,
                                 release_date=D(2026, 11, 30))
    assert later.describe(config) == ("dibao (monthly): the forms of 2026-11 are those of release 1; "
                                      "pyramid (yearly): the forms of 2026 are those of release 1")
    assert later.due == ["gaoling"]  # never written
    forced = report_calendar.plan(tmp_path, ["dibao", "pyramid"], config, release_no=2, release_date=D(2026, 12, 1),
                                  every_release=True)
    assert forced.due == ["dibao", "pyramid"] and forced.since == {"dibao": None, "pyramid": None}


def test_a_removed_folder_or_a_rerun_writes_the_forms_again(tmp_path):
    config = shipped_statistics()
    _written(tmp_path, 1, D(2026, 11, 1), ["gaoling"], config)
    _written(tmp_path, 2, D(2026, 12, 1), ["gaoling"], config)  # as if due (since: 2026-11-01)
    state = report_calendar.read_state(tmp_path)["gaoling"]
    assert state["release_no"] == 2 and state["date"] == "2026-12-01"
    # release 3 (a new month) written: a rerun of the report task writes it again, with the same 本期
    plan = report_calendar.plan(tmp_path, ["gaoling"], config, release_no=3, release_date=D(2027, 1, 1))
    assert plan.due == ["gaoling"] and plan.since == {"gaoling": D(2026, 12, 1)}
    _written_as(tmp_path, plan, ["gaoling"])
    rerun = report_calendar.plan(tmp_path, ["gaoling"], config, release_no=3, release_date=D(2027, 1, 1))
    assert rerun.due == ["gaoling"] and rerun.since == {"gaoling": D(2026, 12, 1)}
    assert report_calendar.plan(tmp_path, ["gaoling"], config, release_no=4, release_date=D(2027, 1, 2)).due == []
    # the folder removed, or holding other kinds' forms only: the kind is due again on the month's next release
    shutil.rmtree(tmp_path / "3")
    again = report_calendar.plan(tmp_path, ["gaoling"], config, release_no=4, release_date=D(2027, 1, 2))
    assert again.due == ["gaoling"] and again.not_due == {} and again.since == {"gaoling": D(2027, 1, 1)}
    (tmp_path / "3").mkdir()
    stat_reuse.write_manifest(tmp_path / "3", 3, {"dibao/county/全县": {}})
    assert report_calendar.plan(tmp_path, ["gaoling"], config, release_no=4, release_date=D(2027, 1, 2)).due \
        == ["gaoling"]
    # after a rollback to an earlier release, its forms are written anew
    rolled = report_calendar.plan(tmp_path, ["gaoling"], config, release_no=2, release_date=D(2027, 1, 2))
    assert rolled.due == ["gaoling"] and rolled.since == {"gaoling": None}


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    from tests.helpers import publish_day0

    release = publish_day0(engine, _served_platforms, county)
    return {"engine": engine, "release_no": release["release_no"]}


def _release_on(engine, published_at: dt.datetime, *, after: int) -> int:
    """A new release (one golden record changed), published at ``published_at``."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE mpi.golden SET phone = CASE WHEN phone = '13800000000' THEN '13900000000' ELSE '13800000000' END"
            " WHERE master_id = (SELECT min(master_id) FROM mpi.golden)"))
        run = record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 0, "outcomes": []}],
                              docs_path=None)
        release_no = publish(conn, run).release_no
        assert release_no == after + 1
        conn.execute(sa.text("UPDATE publish.release SET published_at = :t WHERE release_no = :n"),
                     {"t": published_at, "n": release_no})
    return release_no


def test_the_report_task_writes_what_is_due(published, tmp_path, monkeypatch, caplog):
    from hub import pipeline, settings
    from reports import statistics

    engine, first = published["engine"], published["release_no"]
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_REPORTS", "gaoling")
    monkeypatch.delenv("HUB_REPORTS_DUE", raising=False)
    root = tmp_path / "reports"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE publish.release SET published_at = :t WHERE release_no = :n"),
                     {"t": dt.datetime(2026, 11, 2, 9, tzinfo=ZONE), "n": first})
        places = 1 + len(statistics.load_release(conn).communities)
    assert pipeline._statistical_reports() == places  # the month's first release
    assert len(list((root / str(first)).glob("*.xlsx"))) == places

    second = _release_on(engine, dt.datetime(2026, 11, 30, 23, 30, tzinfo=ZONE), after=first)
    with caplog.at_level(logging.INFO, logger="hub.pipeline"):
        assert pipeline._statistical_reports() == 0  # November's forms are written
    assert not (root / str(second)).exists()
    assert f"the forms of 2026-11 are those of release {first}" in caplog.text

    # 7:00 on 1 December in Beijing is still 30 November by UTC: the local date decides
    third = _release_on(engine, dt.datetime(2026, 12, 1, 7, tzinfo=ZONE), after=second)
    assert pipeline._statistical_reports() == places
    forms = stat_reuse.read_manifest(root / str(third))
    county = forms[next(k for k in forms if k.startswith("gaoling/county/"))]
    # 高龄's 本期死亡 counts since the previous report (release 1's date), not since the release before
    assert "统计期：2026-11-02（不含） 至 2026-12-01" in county["labels"]["strings"]
    assert report_calendar.read_state(root)["gaoling"] == {"release_no": third, "date": "2026-12-01",
                                                           "since": "2026-11-02"}

    monkeypatch.setenv("HUB_REPORTS_DUE", "every_release")
    fourth = _release_on(engine, dt.datetime(2026, 12, 2, 8, tzinfo=ZONE), after=third)
    assert pipeline._statistical_reports() == places
    forms = stat_reuse.read_manifest(root / str(fourth))
    county = forms[next(k for k in forms if k.startswith("gaoling/county/"))]
    assert "统计期：2026-12-01（不含） 至 2026-12-02" in county["labels"]["strings"]  # since the release before
    monkeypatch.setenv("HUB_REPORTS", "gaoling,nope")
    with pytest.raises(StatisticsError, match="unknown report kind 'nope'"):
        pipeline._statistical_reports()
    monkeypatch.setenv("HUB_REPORTS_DUE", "weekly")
    with pytest.raises(ValueError, match="HUB_REPORTS_DUE='weekly': expected one of calendar, every_release"):
        settings.reports_every_release()
