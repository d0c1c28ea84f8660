"""REST pages at the edges of real data: bad records are quarantined and the rest lands; an
unreachable or slow platform ends in one line; decimals in ID fields arrive as sent; reverts are changes.

A tiny platform on loopback (http.server in a thread) speaks the 民政 platform's protocol (token login,
page/size paging, ``{"total", "data"}``) for the ``mz_dibao`` source, with a few dozen records
written here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from connectors.base import ExtractError
from connectors.connections import ConnectionParts
from connectors.rest import Endpoint, fetch, make_session
from hub import pipeline
from warehouse import landing

HUB = str(Path(sys.executable).with_name("hub"))
SOURCE = "mz_dibao"
ID_A = "341522199001017783"  # an ID number of the test data: it must never show in a message


def person(n: int, **change) -> dict:
    record = {"id": f"DB{n:04d}", "xm": f"测试{n}", "sfzh": f"3415221990{n:08d}", "xb": "男", "csrq": "19900101",
              "lxdh": "13800000000", "jtdz": "安徽省六安市霍邱县城关镇", "bzzt": "在保", "gxsj": "2026-11-01 08:00:00",
              "yxbz": "1"}
    return {**record, **change}


class Platform:
    """The platform's state: the records it serves (or a raw page text), and how it misbehaves."""

    def __init__(self):
        self.records: list = []
        self.raw_page: str | None = None  # served as is for every page request
        self.repeat_page: int | None = None  # this page number answers with the previous page's records
        self.retry_after: str | None = None  # answer pages with 429 and this Retry-After ...
        self.refusals = 0  # ... this many times (a large number: always)
        self.silent_login = False
        self.page_requests = 0


def _handler(state: Platform):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def _send(self, status: int, text: str, headers: dict | None = None) -> None:
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if state.silent_login:
                time.sleep(3)
                return
            self._send(200, json.dumps({"access_token": "t0k", "token_type": "bearer"}))

        def do_GET(self):  # noqa: N802
            state.page_requests += 1
            if self.headers.get("Authorization") != "Bearer t0k":
                return self._send(401, '{"code": 401}')
            if state.retry_after and state.refusals > 0:
                state.refusals -= 1
                return self._send(429, '{"code": 429, "msg": "请求过于频繁"}', {"Retry-After": state.retry_after})
            if state.raw_page is not None:
                return self._send(200, state.raw_page)
            q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            page, size = int(q.get("page", 1)), int(q.get("size", 500))
            if page == state.repeat_page:
                page -= 1
            rows = state.records[(page - 1) * size: page * size]
            body = {"code": 0, "total": len(state.records), "page": page, "size": size, "data": rows}
            self._send(200, json.dumps(body, ensure_ascii=False))

    return Handler


@pytest.fixture
def platform(monkeypatch):
    state = Platform()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.conn = ConnectionParts("mz_platform", "http", "127.0.0.1", server.server_address[1], "hub", "pw")
    state.endpoint = Endpoint(f"http://127.0.0.1:{server.server_address[1]}", "hub", "pw")
    monkeypatch.setattr(pipeline.get_source(SOURCE).pagination, "page_size", 5)
    yield state
    server.shutdown()
    server.server_close()


def _ingest(state: Platform) -> dict:
    return pipeline.ingest_source(SOURCE, state.conn, full=True)


def _quarantine(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT reason_code, detail, source_record_id FROM raw.quarantine WHERE source = :s ORDER BY quarantine_id"),
            {"s": SOURCE}).mappings()]


def _current(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_record_id, payload, deleted FROM raw.current_record"
                                    " WHERE source = :s"), {"s": SOURCE}).all()
    return {k: {**p, "_deleted": d} for k, p, d in rows}


def _no_personal_data(text: str, records: list) -> None:
    for r in records:
        if isinstance(r, dict):
            assert str(r.get("xm")) not in text and str(r.get("sfzh")) not in text, text


# 1. two versions of one key, a non-object, records without a key -------------------------------------

def test_bad_records_are_quarantined_and_the_rest_of_the_page_lands(platform, clean_warehouse):
    good = [person(n) for n in range(1, 13)]
    platform.records = good
    assert _ingest(platform)["landed"] == 12
    # the platform now sends a second, different version of DB0003, a bare string and two keyless records
    platform.records = [*good[:6], person(3, bzzt="停保"), "oops", {**person(99), "id": None},
                        {**person(98), "id": " "}, *good[6:]]
    result = _ingest(platform)
    assert (result["received"], result["landed"], result["quarantined"], result["duplicates"]) == (16, 0, 4, 12)
    assert result["tombstones"] == 0  # the key with two versions counts as received: it is not deleted
    rows = _quarantine(clean_warehouse)
    assert sorted(r["reason_code"] for r in rows) == ["duplicate_key_conflict", "missing_primary_key",
                                                      "missing_primary_key", "not_an_object"]
    conflict = next(r for r in rows if r["reason_code"] == "duplicate_key_conflict")
    assert "page 2, record 1" in conflict["detail"]
    assert next(r for r in rows if r["reason_code"] == "not_an_object")["detail"].startswith(
        "/api/v1/dibao page 2, record 2")
    for r in rows:
        _no_personal_data(r["detail"], platform.records)
    current = _current(clean_warehouse)
    assert len(current) == 12 and not any(r["_deleted"] for r in current.values())
    assert current["DB0003"]["bzzt"] == "在保"  # the version received first stays; the other waits in quarantine


def test_a_complete_extract_with_a_conflicting_key_deletes_nothing(platform, clean_warehouse):
    good = [person(n) for n in range(1, 13)]
    platform.records = good
    _ingest(platform)
    # the platform's order shifted between pages: DB0003 comes twice (changed meanwhile), DB0007 never comes
    platform.records = [*good[:6], person(3, bzzt="停保"), *good[7:]]
    result = _ingest(platform)
    assert (result["received"], result["quarantined"], result["tombstones"]) == (12, 1, 0)
    assert not _current(clean_warehouse)["DB0007"]["_deleted"]  # skipped, not deleted at the source
    platform.records = [*good[:6], *good[7:]]  # the next complete extract without conflicts finds the deletion
    assert _ingest(platform)["tombstones"] == 1
    assert _current(clean_warehouse)["DB0007"]["_deleted"]


def test_a_deletion_received_again_is_recorded_once(platform, clean_warehouse):
    platform.records = [person(1), person(2, yxbz="0")]
    assert _ingest(platform)["tombstones"] == 1
    assert _ingest(platform)["tombstones"] == 0  # the same deleted record again (an overlap window, a rerun)
    platform.records = [person(1), person(2, yxbz="0", bzzt="停保")]  # a new version, still deleted
    assert _ingest(platform)["tombstones"] == 1
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw.tombstone WHERE source = :s"),
                            {"s": SOURCE}).scalar_one() == 2
    assert _current(clean_warehouse)["DB0002"]["_deleted"]


def test_a_page_repeated_in_transit_still_fails_the_extract(platform, clean_warehouse):
    platform.records = [person(n) for n in range(1, 13)]
    platform.repeat_page = 2  # page 2 answers with page 1's records: 5 records of the extract never arrive
    with pytest.raises(ExtractError, match="pages were skipped or repeated"):
        _ingest(platform)
    assert _current(clean_warehouse) == {}


# 2. NUL characters and over-long fields -----------------------------------------------------------------

def test_nul_characters_and_over_long_fields_quarantine_the_record_not_the_load(platform, clean_warehouse):
    bad = [person(2, xm="张\u0000三"), {**person(4), "备\u0000注": "x"},
           person(6, jtdz="长" * (landing.MAX_FIELD_BYTES // 3 + 1))]  # 3 bytes a character: just over 64 KiB
    platform.records = [person(1), bad[0], person(3), bad[1], person(5), bad[2], person(7)]
    result = _ingest(platform)
    assert (result["landed"], result["quarantined"], result["tombstones"]) == (4, 3, 0)
    rows = _quarantine(clean_warehouse)
    assert [r["reason_code"] for r in rows] == ["nul_character", "nul_character", "field_too_long"]
    assert "page 1, record 1" in rows[0]["detail"] and "'xm'" in rows[0]["detail"]
    assert "page 2, record 0" in rows[2]["detail"] and "'jtdz'" in rows[2]["detail"]
    assert rows[0]["source_record_id"] == "DB0002"
    for r in rows:
        _no_personal_data(r["detail"], bad)
    assert sorted(_current(clean_warehouse)) == ["DB0001", "DB0003", "DB0005", "DB0007"]


def test_a_file_record_with_a_nul_is_quarantined_by_the_landing_step(clean_warehouse):
    rows = [{"zjhm": ID_A, "xm": "王\u0000五"}, {"zjhm": "341522199001017791", "xm": "李四"}]
    with clean_warehouse.begin() as conn:
        batch = landing.open_batch(conn, "mz_canji")
        counts = landing.land_records(conn, source="mz_canji", batch_id=batch, records=rows, primary_key="zjhm",
                                      fetched_at=dt.datetime.now(dt.UTC), label="canji_20261201.csv")
        detail = conn.execute(sa.text("SELECT detail FROM raw.quarantine WHERE batch_id = :b"), {"b": batch}).scalar()
    assert (counts.landed, counts.quarantined) == (1, 1)
    assert detail.startswith("canji_20261201.csv, record 0 (key 341522************)")
    assert ID_A not in detail and "王" not in detail


# 3. a platform that cannot be reached --------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_platform_refusing_connections_is_one_line_from_the_cli(database_url):
    port = _closed_port()
    env = {**os.environ, "AIRFLOW_CONN_MZ_PLATFORM": json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": port, "login": "hub", "password": "pw"})}
    started = time.monotonic()
    result = subprocess.run([HUB, "ingest", SOURCE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]  # not the progress bar
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert SOURCE in lines[0] and f"http://127.0.0.1:{port}/api/v1/auth/token" in lines[0]
    assert "connection refused" in lines[0]
    assert time.monotonic() - started < 60


def test_an_unknown_host_or_a_silent_login_is_one_line(platform):
    source = pipeline.get_source(SOURCE)
    with pytest.raises(ExtractError) as unknown:
        next(fetch(source, Endpoint("http://no-such-platform.invalid"), session=make_session(retries=0)))
    assert str(unknown.value).startswith(f"{SOURCE}: cannot reach http://no-such-platform.invalid/api/v1/auth/token")
    platform.silent_login = True
    with pytest.raises(ExtractError) as silent:
        next(fetch(source, platform.endpoint, timeout=0.3, session=make_session(retries=0)))
    assert str(silent.value) == (f"{SOURCE}: cannot reach {platform.endpoint.base_url}/api/v1/auth/token: "
                                 "no answer within 0.3 s")
    assert "\n" not in str(unknown.value) + str(silent.value)


# 4. Retry-After and the extract's deadline ---------------------------------------------------------------

def test_a_long_retry_after_is_waited_only_up_to_the_cap(platform):
    platform.records = [person(n) for n in range(1, 4)]
    platform.retry_after, platform.refusals = "3600", 1
    started = time.monotonic()
    chunks = list(fetch(pipeline.get_source(SOURCE), platform.endpoint, retry_after_cap=0.2))
    assert time.monotonic() - started < 10
    assert sum(len(c.records) for c in chunks) == 3


def test_a_platform_that_keeps_asking_to_wait_fails_at_the_deadline(platform, clean_warehouse, monkeypatch):
    platform.records = [person(n) for n in range(1, 4)]
    platform.retry_after, platform.refusals = "3600", 10**6
    monkeypatch.setenv("HUB_RETRY_AFTER_CAP", "0.3")
    monkeypatch.setenv("HUB_EXTRACT_DEADLINE", "1.5")
    started = time.monotonic()
    with pytest.raises(ExtractError) as failed:
        _ingest(platform)
    assert time.monotonic() - started < 15
    message = str(failed.value)
    assert message.startswith(f"{SOURCE}: the extract did not finish within 1.5 s (stopped at /api/v1/dibao page 1)")
    assert "\n" not in message
    with clean_warehouse.connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM raw.load_batch WHERE source = :s"),
                                     {"s": SOURCE}).one()
    assert status == "failed" and error == message


# 5. decimals in ID fields ---------------------------------------------------------------------------------

def test_json_decimals_reach_raw_as_the_text_the_platform_sent(platform, clean_warehouse):
    first, second = json.dumps(person(1)), json.dumps(person(2))
    first = first.replace(f'"sfzh": "{person(1)["sfzh"]}"', '"sfzh": 3.41522E+17')
    second = second.replace(f'"sfzh": "{person(2)["sfzh"]}"', '"sfzh": 341522199001017783.0')
    platform.raw_page = '{"code": 0, "total": 2, "data": [' + first + ", " + second + "]}"
    assert _ingest(platform)["landed"] == 2
    current = _current(clean_warehouse)
    assert current["DB0001"]["sfzh"] == "3.41522E+17"  # not 341522000000000000
    assert current["DB0002"]["sfzh"] == "341522199001017783.0"  # not 3.4152219900101779e+17 re-rendered


# 6. reverts ----------------------------------------------------------------------------------------------

def test_a_record_reverted_a_b_a_lands_a_again_and_std_takes_it(platform, clean_warehouse):
    others = [person(n) for n in range(2, 6)]
    a, b = person(1), person(1, bzzt="停保", gxsj="2026-11-02 08:00:00")
    landed = []
    for version in (a, b, dict(a)):
        platform.records = [version, *others]
        landed.append(_ingest(platform)["landed"])
        pipeline.standardize_sources([SOURCE])
    assert landed == [5, 1, 1]
    with clean_warehouse.connect() as conn:
        versions = conn.execute(sa.text("SELECT payload ->> 'bzzt' FROM raw.record WHERE source = :s"
                                        " AND source_record_id = 'DB0001' ORDER BY record_id"), {"s": SOURCE}).scalars()
        assert list(versions) == ["在保", "停保", "在保"]
        std = conn.execute(sa.text(
            "SELECT s.status_raw, s.raw_record_id = c.record_id FROM std.resident s JOIN raw.current_record c"
            " USING (source, source_record_id) WHERE s.source = :s AND s.source_record_id = 'DB0001'"),
            {"s": SOURCE}).one()
    assert tuple(std) == ("在保", True)
    assert _ingest(platform)["duplicates"] == 5  # the same content again is no new version


def test_a_revert_differing_only_in_volatile_fields_is_a_duplicate(clean_warehouse):
    def land(record: dict) -> int:
        with clean_warehouse.begin() as conn:
            batch = landing.open_batch(conn, "wj_liudong")
            return landing.land_records(conn, source="wj_liudong", batch_id=batch, records=[record],
                                        primary_key="key", fetched_at=dt.datetime.now(dt.UTC),
                                        volatile_fields=("xh",)).landed

    a, b = {"key": "L1", "zt": "在册"}, {"key": "L1", "zt": "迁出"}
    assert [land({**a, "xh": 1}), land({**b, "xh": 2}), land({**a, "xh": 3}), land({**a, "xh": 4})] == [1, 1, 1, 0]


def test_a_later_file_in_the_same_load_may_change_a_record(clean_warehouse):
    """Two versions of a key in one file conflict; a newer file of the same load is an update."""
    def land(conn, batch, records, label):
        return landing.land_records(conn, source="mz_canji", batch_id=batch, records=records, primary_key="key",
                                    fetched_at=dt.datetime.now(dt.UTC), label=label)

    with clean_warehouse.begin() as conn:
        batch = landing.open_batch(conn, "mz_canji")
        first = land(conn, batch, [{"key": "C1", "dj": "一级"}], "canji_1.csv part 1")
        conflict = land(conn, batch, [{"key": "C1", "dj": "二级"}], "canji_1.csv part 2")
        landing.record_ingested_file(conn, source="mz_canji", file_hash="h1", file_name="canji_1.csv",
                                     batch_id=batch, records=1)
        update = land(conn, batch, [{"key": "C1", "dj": "二级"}], "canji_2.csv")
    assert (first.landed, conflict.quarantined, update.landed) == (1, 1, 1)
