"""The access log's hash chain against the real warehouse (append-only trigger, tampering found, concurrent
writers), ``hub access report`` / ``verify``, and the purpose catalogue's checks."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.api_keys import create_key, key_id_of
from hub.cli import app
from tests.helpers import empty_warehouse
from warehouse.access_log import Access, access_report, log_access, verify_chain
from warehouse.purposes import load_purposes
from warehouse.sharing import SHARING_FILE, SharingError, load_sharing

LONG_LABEL = "birth follow-up team of the maternal and child health station, Fengyang county, second office"


@pytest.fixture(scope="module")
def fresh(engine):
    empty_warehouse(engine)
    return engine


def _write(engine: sa.Engine, n: int, **fields) -> None:
    for i in range(n):
        with engine.begin() as conn:
            log_access(conn, Access(endpoint="GET /v1/persons/M000000001", client="127.0.0.1", key_id="ak_test",
                                    department="civil_affairs", purpose="mz-dibao-review", requested=1, results=1,
                                    master_ids=[f"M{i:09d}"], **fields), 200)


def _verify(engine: sa.Engine) -> tuple[bool, int | None, int]:
    with engine.connect() as conn:
        return verify_chain(conn)


def test_rows_chain_and_the_trigger_refuses_changes(fresh):
    _write(fresh, 5)
    with fresh.connect() as conn:
        rows = conn.execute(sa.text("SELECT access_id, prev_hash, row_hash, master_ids FROM audit.access_log"
                                    " ORDER BY access_id")).all()
    assert [r.master_ids for r in rows][-5:] == [[f"M{i:09d}"] for i in range(5)]
    assert all(b.prev_hash == a.row_hash for a, b in zip(rows, rows[1:])) and len({r.row_hash for r in rows}) == len(rows)
    assert _verify(fresh) == (True, None, len(rows))
    for statement in ("UPDATE audit.access_log SET purpose = NULL", "DELETE FROM audit.access_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), fresh.begin() as conn:
            conn.execute(sa.text(statement))


@pytest.mark.parametrize("change", [
    "UPDATE audit.access_log SET master_ids = '{}' WHERE access_id = :a",           # hide who was read
    "UPDATE audit.access_log SET purpose = 'mz-tekun-support' WHERE access_id = :a",  # another purpose
    "DELETE FROM audit.access_log WHERE access_id = :a",                            # remove the access
])
def test_a_row_changed_behind_the_trigger_is_found(fresh, change):
    """A superuser disables the trigger and edits a row: verify_chain names that row (or, for a removed
    row, the one after it). Done in a transaction rolled back, so the log stays whole for the other tests."""
    _write(fresh, 3)
    with fresh.connect() as conn, conn.begin() as tx:
        ids = conn.execute(sa.text("SELECT access_id FROM audit.access_log ORDER BY access_id")).scalars().all()
        target = ids[-2]
        conn.execute(sa.text("ALTER TABLE audit.access_log DISABLE TRIGGER access_log_is_append_only"))
        conn.execute(sa.text(change), {"a": target})
        ok, first_bad, _ = verify_chain(conn)
        tx.rollback()
    assert (ok, first_bad) == (False, ids[-1] if change.startswith("DELETE") else target)
    assert _verify(fresh)[0] is True


def test_concurrent_writers_do_not_fork_the_chain(fresh):
    errors: list[BaseException] = []

    def writer():
        try:
            _write(fresh, 15)
        except BaseException as exc:  # noqa: BLE001 — reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with fresh.connect() as conn:
        prevs = conn.execute(sa.text("SELECT prev_hash FROM audit.access_log WHERE prev_hash IS NOT NULL")).scalars().all()
    assert len(prevs) == len(set(prevs))  # no two rows follow the same row
    ok, first_bad, checked = _verify(fresh)
    assert (ok, first_bad) == (True, None) and checked >= 60


def _hub(*args: str):
    return CliRunner().invoke(app, list(args), prog_name="hub")


def test_access_report_gives_the_months_figures_per_key_and_purpose(fresh):
    with fresh.begin() as conn:
        key = create_key(conn, "health", "birth follow-up team", departments=list(load_sharing()))
        wide = create_key(conn, "health", LONG_LABEL, departments=list(load_sharing()))
    kid = key_id_of(key)

    def log(purpose, status, master_ids):
        with fresh.begin() as conn:
            log_access(conn, Access("GET /v1/persons/M000000001", "127.0.0.1", kid, "health", purpose, 1,
                                    len(master_ids), master_ids=master_ids), status)

    log("wj-birth-followup", 200, ["M000000001"])
    log("wj-birth-followup", 200, ["M000000001", "M000000002"])
    log("(not a purpose code)", 200, ["M000000003"])
    log(None, 404, [])
    log(None, 429, [])
    month = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m")
    with fresh.connect() as conn:
        figures = access_report(conn, "health", month)
    rows = {r["purpose"]: r for r in figures["by_key_and_purpose"]}
    assert set(rows) == {None, "wj-birth-followup", "(not a purpose code)"}
    follow = rows["wj-birth-followup"]
    assert (follow["key_id"], follow["label"], follow["requests"], follow["refused"], follow["persons"]) == (
        kid, "birth follow-up team", 2, 0, 2)
    assert (rows[None]["requests"], rows[None]["refused"], rows[None]["persons"]) == (2, 2, 0)
    assert figures["totals"] == {"requests": 5, "refused": 2, "persons": 3}

    printed = _hub("access", "report", "--department", "health", "--month", month)
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("access log: the hash chain holds ("), printed.output
    assert "wj-birth-followup" in printed.output and "新生儿访视" in printed.output and kid in printed.output, printed.output
    assert "total: 5 requests, 2 refused, 3 distinct persons" in printed.output and "谁使用谁负责" in printed.output
    as_json = json.loads(_hub("access", "report", "-d", "health", "-m", month, "--json").output)
    assert as_json["totals"] == figures["totals"]
    assert as_json["chain"]["ok"] is True and as_json["chain"]["rows_checked"] >= 5
    # a report that is mailed (stdout not a terminal) is printed in full, however wide
    with fresh.begin() as conn:
        log_access(conn, Access("GET /v1/persons/M000000001", "127.0.0.1", key_id_of(wide), "health",
                                "wj-birth-followup", 1, 1, master_ids=["M000000004"]), 200)
    mailed = _hub("access", "report", "--department", "health", "--month", month)
    assert LONG_LABEL in mailed.output and key_id_of(wide) in mailed.output and "…" not in mailed.output
    listed = _hub("api-key", "list")
    assert listed.exit_code == 0 and "…" not in listed.output, listed.output
    assert LONG_LABEL in listed.output and kid in listed.output and "birth follow-up team" in listed.output
    empty = _hub("access", "report", "--department", "health", "--month", "2020-01")
    assert empty.exit_code == 0 and "no request" in empty.output
    for bad, says in ((["--department", "police", "--month", month], "'police' is not in the sharing configuration"),
                      (["--department", "health", "--month", "2026-13"], "give it as YYYY-MM")):
        refused = _hub("access", "report", *bad)
        assert refused.exit_code == 1 and says in refused.output, refused.output


def test_access_verify_says_whether_the_chain_holds(fresh):
    held = _hub("access", "verify")
    assert held.exit_code == 0 and "the hash chain holds" in held.output, held.output
    assert json.loads(_hub("access", "verify", "--json").output)["ok"] is True
    with fresh.begin() as conn:  # a superuser's edit, left in place for the command to find
        target = conn.execute(sa.text("SELECT min(access_id) FROM audit.access_log")).scalar_one()
        conn.execute(sa.text("ALTER TABLE audit.access_log DISABLE TRIGGER access_log_is_append_only"))
        conn.execute(sa.text("UPDATE audit.access_log SET results = 0 WHERE access_id = :a"), {"a": target})
        conn.execute(sa.text("ALTER TABLE audit.access_log ENABLE TRIGGER access_log_is_append_only"))
    try:
        broken = _hub("access", "verify")
        assert broken.exit_code == 1 and f"breaks at access {target}" in broken.output, broken.output
        month = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m")
        warned = _hub("access", "report", "--department", "health", "--month", month)
        assert warned.output.startswith(f"WARNING: the access log's hash chain breaks at access {target}")
        assert "may not be what was logged" in warned.output, warned.output
        as_json = json.loads(_hub("access", "report", "-d", "health", "-m", month, "--json").output)
        assert as_json["chain"]["ok"] is False and as_json["chain"]["first_bad_access_id"] == target
    finally:
        empty_warehouse(fresh)


# ---------------------------------------------------------------------------------------------- the catalogue

def _catalogue(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sharing.yaml").write_text(SHARING_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "purposes.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "sharing.yaml"


def test_the_shipped_catalogue_loads_and_every_purpose_is_in_force():
    sharing = load_sharing()
    assert {d: sorted(s.purposes) for d, s in sharing.items()} == {
        "civil_affairs": ["mz-canji-subsidy", "mz-dibao-review", "mz-tekun-support"],
        "health": ["wj-birth-followup", "wj-family-planning-award"],
        "social_security": ["rs-death-stop-payment", "rs-pension-qualification"]}
    for s in sharing.values():
        for p in s.purposes.values():
            assert p.in_force() and p.legal_basis and set(p.fields) <= set(s.conditional())
    assert "母婴保健法" in sharing["health"].purposes["wj-birth-followup"].legal_basis
    assert sharing["civil_affairs"].unlocked("mz-canji-subsidy") == ("name", "id_number", "phone")
    assert sharing["civil_affairs"].unlocked("rs-pension-qualification") == ()


def test_a_field_that_is_not_conditional_for_the_department_is_refused_by_name(tmp_path):
    path = _catalogue(tmp_path, """
departments:
  social_security:
    - {code: rs-home-visit, title: 入户 home visit, legal_basis: 社会保险法, fields: [name, address], expires: 2027-01-01}
  police:
    - {code: ga-check, title: x, legal_basis: y, fields: [name], expires: 2027-01-01}
  health:
    - {code: wj-a, title: a, legal_basis: b, fields: [name], expires: someday}
    - {code: wj-a, title: a, legal_basis: b, fields: [name], expires: 2027-01-01}
    - {code: Free Text, title: a, legal_basis: b, fields: [name], expires: 2027-01-01}
""")
    with pytest.raises(SharingError) as refused:
        load_sharing(path)
    message = str(refused.value)
    assert (f"{tmp_path / 'purposes.yaml'}: departments.social_security: purpose rs-home-visit: fields: 'address' is"
            " not a 有条件 field of social_security") in message
    assert "departments.police: not a department of the sharing configuration" in message
    assert "purpose wj-a: expires: 'someday' is not a date" in message
    assert "code 'Free Text': a purpose code is lower-case" in message


def test_an_expired_purpose_is_loaded_but_unlocks_nothing(tmp_path):
    path = _catalogue(tmp_path, """
departments:
  health:
    - {code: wj-old, title: 旧 old, legal_basis: 母婴保健法, fields: [name], expires: 2020-12-31}
""")
    health = load_sharing(path)["health"]
    assert health.purpose("wj-old").expires == dt.date(2020, 12, 31) and health.unlocked("wj-old") == ()
    assert health.unlocked("wj-old", today=dt.date(2020, 12, 31)) == ("name",)  # in force through its last day
    conditional = {"health": ("name",)}
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("departments:\n  health:\n"
                         "    - {code: wj-x, title: a, legal_basis: b, fields: [name], expires: 2027-01-01}\n"
                         "    - {code: wj-x, title: a, legal_basis: b, fields: [name], expires: 2027-01-01}\n")
    with pytest.raises(ValueError, match="purpose wj-x: the code is used already"):
        load_purposes(duplicate, conditional)
