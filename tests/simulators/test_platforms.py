"""Every subsystem fetched over its real protocol — socket, file, SQL — against the generator."""

import base64
import json

import openpyxl
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from simulators.platforms import start_platforms
from simulators.rest_server import PLATFORMS, FaultPlan
from simulators.subsystems import SUBSYSTEMS


def _login(server) -> dict:
    conf = PLATFORMS[server.state.platform]
    body = requests.post(server.url + conf["login"], json={"username": server.username, "password": server.password},
                         timeout=10).json()
    token = body["result"]["token"] if server.state.platform == "health" else body["access_token"]
    return {conf["token_header"]: conf["token_prefix"] + token}


def _fetch_all(server, path: str, since: str | None = None, size: int = 97) -> tuple[list[dict], int]:
    """Page through a resource in the platform's own paging style; returns (records, reported total)."""
    headers, rows, extra = _login(server), [], ({"updated_since": since} if since else {})
    platform = server.state.platform
    start, cursor = 0, None
    while True:
        if platform == "civil_affairs":
            params = {"page": start // size + 1, "size": size}
        elif platform == "health":
            params = {"offset": start, "limit": size}
        else:
            params = {"limit": size, **({"cursor": cursor} if cursor else {})}
        body = requests.get(server.url + path, params={**params, **extra}, headers=headers, timeout=10).json()
        if platform == "civil_affairs":
            chunk, total = body["data"], body["total"]
        elif platform == "health":
            chunk, total = body["result"]["rows"], body["result"]["totalCount"]
        else:
            chunk, total, cursor = body["items"], body["count"], body["next_cursor"]
        rows += chunk
        start += size
        if not chunk or len(rows) >= total or (platform == "social_security" and cursor is None):
            return rows, total


@pytest.fixture(scope="module")
def running(county, tmp_path_factory):
    p = start_platforms(county, tmp_path_factory.mktemp("platforms"))
    yield p
    p.stop()


@pytest.mark.parametrize("name", [n for n, s in SUBSYSTEMS.items() if s.protocol == "rest"])
def test_rest_subsystems_serve_the_generated_records(running, county, name):
    sub = SUBSYSTEMS[name]
    rows, total = _fetch_all(running.rest[sub.platform], sub.resource)
    expected = county.served(name).to_dict(orient="records")
    assert total == len(expected) and rows == expected


def test_login_is_required(running):
    server = running.rest["civil_affairs"]
    assert requests.get(server.url + "/api/v1/dibao", timeout=5).status_code == 401
    bad = requests.post(server.url + "/api/v1/auth/token", json={"username": "hub", "password": "x"}, timeout=5)
    assert bad.status_code == 401


@pytest.mark.parametrize("name", [n for n, s in SUBSYSTEMS.items() if s.protocol == "csv"])
def test_csv_drops_are_chinese_headed_in_their_encoding(running, county, name):
    sub = SUBSYSTEMS[name]
    [path] = (running.drops / name).glob("*.csv")
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    frame = pd.read_csv(path, encoding=sub.encoding, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(county.served(name).columns)
    assert frame.columns[1] == "姓名"
    expected = county.served(name, include_deleted=False).fillna("").astype(str)
    # characters the encoding lacks come out as '?', as they do from the real exports
    expected = expected.apply(lambda c: c.str.encode(sub.encoding, errors="replace").str.decode(sub.encoding))
    pd.testing.assert_frame_equal(frame, expected.reset_index(drop=True), check_dtype=False)


def test_xlsx_ledger_has_title_and_merged_headers(running, county):
    [path] = (running.drops / "mz_canji").glob("*.xlsx")
    ws = openpyxl.load_workbook(path).active
    merged = {str(r) for r in ws.merged_cells.ranges}
    assert "霍邱县残疾人基本信息台账" in ws.cell(1, 1).value
    assert any(r.startswith("A1:") for r in merged)  # the title spans the sheet
    assert ws.cell(2, 3).value == "基本信息" and ws.cell(3, 3).value == "姓名"
    assert "A2:A3" in merged  # 序号 spans both header rows
    served = county.served("mz_canji", include_deleted=False)
    rows = list(ws.iter_rows(min_row=4, values_only=True))
    assert len(rows) == len(served)
    header = [ws.cell(2, c).value if ws.cell(3, c).value is None else ws.cell(3, c).value
              for c in range(1, ws.max_column + 1)]
    got = pd.DataFrame(rows, columns=header).drop(columns="序号")
    serials = got["出生日期"].map(lambda v: isinstance(v, int))
    assert serials.any() and (~serials).any()  # some dates are Excel serial numbers
    assert got["姓名"].tolist() == served["姓名"].tolist()
    assert got["残疾证号"].tolist() == served["残疾证号"].tolist()


def test_legacy_sql_database_through_sqlalchemy(running, county):
    engine = sa.create_engine(running.sql_url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text('SELECT * FROM "CSDJ" ORDER BY "CSDJ_ID"'), conn)
    engine.dispose()
    expected = county.served("wj_chusheng").sort_values("CSDJ_ID").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame.fillna("").astype(str), expected.fillna("").astype(str), check_dtype=False)
    assert set(frame["SCBZ"]) <= {"0", "1"}


def test_next_day_is_served_incrementally(county, tmp_path):
    platforms = start_platforms(county, tmp_path)
    try:
        since = county.as_of.isoformat()
        day1 = county.next_day()
        platforms.advance(day1)
        for name in ("mz_gaoling", "rs_yanglao", "wj_yuling"):
            sub = SUBSYSTEMS[name]
            rows, total = _fetch_all(platforms.rest[sub.platform], sub.resource, since=since)
            changed = day1.rolls[name]["_updated"] > county.as_of
            assert total == int(changed.sum())
            assert {r[sub.fields["record_id"]] for r in rows} == set(day1.rolls[name].loc[changed, "record_id"])
        # tombstones: a deleted mz record comes back with its 有效标志 set to '0'
        gone = day1.rolls["mz_dibao"]["_deleted"]
        rows, _ = _fetch_all(platforms.rest["civil_affairs"], "/api/v1/dibao", since=since)
        assert {r["id"] for r in rows if r["yxbz"] == "0"} == set(day1.rolls["mz_dibao"].loc[gone, "record_id"])
        assert (tmp_path / "drops" / "wj_liudong" / f"LDRK_{day1.as_of:%Y%m%d}.csv").exists()
    finally:
        platforms.stop()


def _raw_get(server, path, **params):
    return requests.get(server.url + path, params=params, headers=_login(server), timeout=10)


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "truncated", "html", "duplicate_page", "skip_page",
                                  "slow"])
def test_faults_can_be_switched_on(county, tmp_path, kind):
    platforms = start_platforms(county, tmp_path, faults=FaultPlan(**{kind: 1.0}, slow_seconds=0.2))
    try:
        server = platforms.rest["civil_affairs"]
        resp = _raw_get(server, "/api/v1/dibao", page=2, size=10)
        clean = county.served("mz_dibao").to_dict(orient="records")
        if kind == "rate_limit":
            assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
        elif kind == "server_error":
            assert resp.status_code == 500
        elif kind == "truncated":
            assert resp.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(resp.text)
        elif kind == "html":
            assert resp.status_code == 200 and resp.text.startswith("<!DOCTYPE html>")
        elif kind == "duplicate_page":
            assert resp.json()["data"] == clean[0:10]
        elif kind == "skip_page":
            assert resp.json()["data"] == clean[20:30]
        else:
            assert resp.elapsed.total_seconds() >= 0.2 and resp.json()["data"] == clean[10:20]
        assert server.state.faults.counts[kind] >= 1
        platforms.set_faults(None)
        assert _raw_get(server, "/api/v1/dibao", page=2, size=10).json()["data"] == clean[10:20]
    finally:
        platforms.stop()


def test_cursor_is_opaque_but_stable(running, county):
    server = running.rest["social_security"]
    first = _raw_get(server, "/si/api/v2/pension/insured", limit=5).json()
    assert base64.urlsafe_b64decode(first["next_cursor"]).decode() == "5"
    second = _raw_get(server, "/si/api/v2/pension/insured", limit=5, cursor=first["next_cursor"]).json()
    assert second["items"] == county.served("rs_yanglao").to_dict(orient="records")[5:10]
