"""Exports with personal data: into the hub's own folder by default, owner-only, and recorded.

The ``hub ledger`` and ``hub audit export`` commands run as a user runs them (a subprocess, in a
working folder of their own) against a county ingested, matched and published once for the module;
:func:`hub.exports.write_export` (what ``hub explain --html`` writes with) is tried directly.
"""

from __future__ import annotations

import getpass
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from hub import exports
from schemas.masking import mask_id_number
from tests.helpers import publish_day0

HUB = str(Path(sys.executable).with_name("hub"))
ID_NUMBER = "34152219800307123X"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hub(*args, cwd: Path, env: dict[str, str]):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **env})


def _log(engine, path: Path | None = None) -> list[dict]:
    sql = "SELECT actor, department, kind, what, purpose, path, rows FROM audit.export_log"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql + (" WHERE path = :p" if path else "") + " ORDER BY export_id"),
                            {"p": str(path)} if path else {}).mappings().all()
    return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    """The county on day 0, published as release 1 and audited (once for this module)."""
    from hub.pipeline import audit_release

    release = publish_day0(engine, _served_platforms, county)
    audit_release(release["release_no"])
    return engine


@pytest.fixture
def user_env(tmp_path):
    """A working folder and a hub home of the test's own; no export folder configured."""
    work = tmp_path / "work"
    work.mkdir()
    env = {"HUB_HOME": str(tmp_path / "hub"), "HUB_EXPORT_DIR": ""}
    return work, env, tmp_path / "hub" / "exports"


def _town(work: Path, env: dict) -> str:
    listed = _hub("ledger", "--list", cwd=work, env=env)
    assert listed.returncode == 0, listed.stderr
    return re.search(r"communities \(\d+\): (\S+)", listed.stdout).group(1)


def test_a_ledger_goes_to_the_export_folder_owner_only_and_is_recorded(published, user_env):
    work, env, folder = user_env
    town = _town(work, env)
    purpose = f"年度核查 {ID_NUMBER} 13800138000"
    made = _hub("ledger", "gaoling", "--community", town, "--purpose", purpose, cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    rows = int(re.search(r"gaoling ledger for \S+: (\d+) persons", made.stdout).group(1))
    (path,) = folder.glob("*.xlsx")
    assert list(work.iterdir()) == []  # nothing lands where the command ran
    assert mode(folder) == 0o700 and mode(path) == 0o600
    numbered = [r for r in load_workbook(path).worksheets[0].iter_rows(values_only=True) if isinstance(r[0], int)]
    assert rows > 0 and len(numbered) == rows
    (logged,) = _log(published, path)
    assert logged["actor"] == getpass.getuser() and logged["kind"] == "ledger"
    assert logged["department"] == "civil_affairs" and logged["rows"] == rows
    assert logged["what"].startswith(f"ledger kind=gaoling community={town} release=1 as_of=")
    assert logged["purpose"] == f"年度核查 {mask_id_number(ID_NUMBER)} 138****8000"  # why, with no number in full
    assert ID_NUMBER not in str(_log(published))


def test_an_explicit_out_is_honoured_but_still_owner_only_and_recorded(published, user_env, tmp_path):
    work, env, folder = user_env
    town = _town(work, env)
    chosen = tmp_path / "chosen" / "高龄.xlsx"
    made = _hub("ledger", "gaoling", "--community", town, "--out", str(chosen), cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    assert chosen.is_file() and mode(chosen) == 0o600 and mode(chosen.parent) == 0o700
    assert not folder.exists() and list(work.iterdir()) == []
    (logged,) = _log(published, chosen)
    assert logged["purpose"] is None and logged["kind"] == "ledger"


def test_a_ledger_that_fails_writes_nothing_and_records_nothing(published, user_env):
    work, env, folder = user_env
    before = len(_log(published))
    failed = _hub("ledger", "gaoling", "--community", "月球镇", cwd=work, env=env)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert list(folder.glob("*")) == [] and len(_log(published)) == before


def test_a_findings_workbook_is_exported_owner_only_and_recorded(published, user_env):
    work, env, folder = user_env
    made = _hub("audit", "export", "civil_affairs", "--purpose", "季度核查", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    path = folder / "findings_civil_affairs.xlsx"
    assert mode(folder) == 0o700 and mode(path) == 0o600 and list(work.iterdir()) == []
    findings = load_workbook(path)["findings"].max_row - 1  # below the header row
    with published.connect() as conn:
        open_findings = conn.execute(sa.text("SELECT count(*) FROM audit.finding WHERE department = 'civil_affairs'"
                                             " AND status = 'open'")).scalar_one()
    (logged,) = _log(published, path)
    assert logged["rows"] == findings == open_findings and open_findings > 0
    assert (logged["kind"], logged["department"], logged["purpose"]) == ("findings", "civil_affairs", "季度核查")
    assert logged["what"] == "findings department=civil_affairs status=open"
    unknown = _hub("audit", "export", "moon_office", cwd=work, env=env)
    assert unknown.returncode == 1 and "unknown department 'moon_office'" in unknown.stderr
    assert "civil_affairs" in unknown.stderr


def test_write_export_is_owner_only_even_under_an_open_umask(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_EXPORT_DIR", str(tmp_path / "exports"))
    old = os.umask(0)
    try:
        path = exports.write_export("explain", "explain_a_b.html", "<html>页</html>", rows=2, by="ak_test",
                                    arguments={"left": "mz_dibao/DB0001", "right": "wj_yuling/YL0002"})
    finally:
        os.umask(old)
    assert path == tmp_path / "exports" / "explain_a_b.html"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_text(encoding="utf-8") == "<html>页</html>"
    (logged,) = _log(engine, path)
    assert logged["actor"] == "ak_test" and logged["what"] == "explain left=mz_dibao/DB0001 right=wj_yuling/YL0002"


def test_an_export_whose_record_fails_is_removed(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_EXPORT_DIR", str(tmp_path / "exports"))
    before = len(_log(engine))
    with pytest.raises(ValueError, match="unknown export kind 'photo'"):
        exports.write_export("photo", "a.html", "<html></html>", arguments={})
    assert list((tmp_path / "exports").iterdir()) == [] and len(_log(engine)) == before
    with pytest.raises(sa.exc.DBAPIError):
        with exports.recorded(engine) as export:
            export.write("report", tmp_path / "exports" / "b.html", "<html></html>", arguments={}, rows=1)
            export.conn.execute(sa.text("SELECT 1/0"))  # the read fails after the file was written
    assert list((tmp_path / "exports").iterdir()) == [] and len(_log(engine)) == before


def test_masked_arguments_hide_id_numbers_and_phones():
    old_number = ID_NUMBER[:15]  # a first-generation number
    assert exports.describe("ledger", {"community": f"东湖村 {old_number}", "phone": "13912345678", "none": None}
                            ) == f"ledger community=东湖村 {mask_id_number(old_number)} phone=139****5678"
    for text in (f"ID{old_number}", f"ID{ID_NUMBER}号", f"身份证{ID_NUMBER.lower()}"):
        assert old_number not in exports.mask_text(text) and "1980030" not in exports.mask_text(text)
    assert len(exports.mask_text("x" * 500)) == exports.MAX_TEXT
