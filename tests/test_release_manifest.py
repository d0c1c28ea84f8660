"""Release manifests: each release records the model and rules it was made with, the code version and the
source batches its records came from; ``hub release show`` prints it (times in 北京时间) and
``GET /v1/releases/{n}`` answers it to any department's key (per-source counts of its own sources only),
read by the API's own database role and access-logged.

The simulated county is served on loopback, ingested, matched, gated and published once for the module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from connectors.registry import source_departments
from hub import pipeline, provenance
from hub.api import RateLimit, create_app
from hub.api_db import api_engine
from hub.api_keys import create_key
from hub.cli import app as cli
from hub.settings import PROJECT_ROOT
from tests.helpers import empty_warehouse
from tests.test_api import _serve
from warehouse.grants import apply_grants, drop_grants
from warehouse.quotas import LOCAL_TZ
from warehouse.releases import show_release
from warehouse.sharing import load_sharing

PREFIX = f"hub_m{secrets.token_hex(4)}_"
SOURCES = ("mz_canji", "rs_yanglao", "wj_chusheng")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def releases(engine, _served_platforms, county):
    """The county of day 0 published, with the department views and the API's role."""
    empty_warehouse(engine)
    _served_platforms.set_faults(None)
    _served_platforms.advance(county)
    # three sources, one of each department and of each kind (file drop, REST, SQL): what the manifest
    # records per source does not need the whole county, and the module stays quick
    for name in SOURCES:
        pipeline.ingest_source(name)
    pipeline.standardize_sources(list(SOURCES))
    pipeline.build_master_index()
    release = pipeline.publish_release(pipeline.run_gate()["validation_run_id"])
    assert release["outcome"] == "published", release
    release = release["release_no"]
    with engine.begin() as conn:
        apply_grants(conn, load_sharing(), role_prefix=PREFIX)
    try:
        yield {"engine": engine, "release_no": release}
    finally:
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=PREFIX)
            conn.exec_driver_sql("ALTER TABLE publish.enrolment DISABLE ROW LEVEL SECURITY")


def _manifest(engine, release_no: int) -> dict:
    with engine.connect() as conn:
        return show_release(conn, release_no)["manifest"]


def test_each_release_records_its_model_rules_code_and_source_batches(releases):
    engine, n = releases["engine"], releases["release_no"]
    m = _manifest(engine, n)
    assert m["model"]["version"] == "resident-1"
    assert m["model"]["sha256"] == _sha(PROJECT_ROOT / "mpi" / "models" / "resident_model.json")
    assert m["rules"] == {"survivorship": _sha(PROJECT_ROOT / "mpi" / "survivorship.yaml"),
                          "gate_rules": _sha(PROJECT_ROOT / "expectations" / "gate_rules.yaml"),
                          "sharing": _sha(PROJECT_ROOT / "warehouse" / "sharing.yaml"),
                          "purposes": _sha(PROJECT_ROOT / "warehouse" / "purposes.yaml")}
    assert m["code"] == provenance.code_version()
    with engine.connect() as conn:
        batches = {r.batch_id: r for r in conn.execute(sa.text("SELECT * FROM raw.load_batch"))}
        landed = dict(conn.execute(sa.text("SELECT batch_id, count(*) FROM raw.record GROUP BY 1")).all())
        per_source = dict(conn.execute(sa.text(
            "SELECT source, count(*) FROM publish.enrolment WHERE release_no = :n GROUP BY 1"), {"n": n}).all())
        last = {b.source: b.batch_id for b in sorted(batches.values(), key=lambda b: b.batch_id)
                if b.status == "succeeded"}
    listed = m["source_batches"]
    assert {s: v["records"] for s, v in listed.items()} == per_source  # every record of the release, by source
    assert sum(per_source.values()) == m["record_count"]
    for source, entry in listed.items():
        assert entry["last_batch"] == last[source]
        assert sum(b["records"] for b in entry["batches"]) == entry["records"]
        for b in entry["batches"]:
            row = batches[b["batch_id"]]
            assert row.source == source and row.status == "succeeded"
            assert (b["received"], b["landed"], b["quarantined"], b["mode"]) == (
                row.received, row.landed, row.quarantined, row.mode)
            assert dt.datetime.fromisoformat(b["started_at"]) == row.started_at
            assert 0 < b["records"] <= landed[b["batch_id"]] == row.landed
    # every source that landed records is there: nothing the release holds is left unaccounted for
    assert set(listed) == {r.source for r in batches.values() if r.status == "succeeded" and r.landed}


def test_hub_release_show_prints_the_manifest_in_china_standard_time(releases):
    engine, n = releases["engine"], releases["release_no"]
    m = _manifest(engine, n)
    shown = CliRunner().invoke(cli, ["release", "show", str(n)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    out = shown.output
    published = m["published_at"].astimezone(LOCAL_TZ)
    assert f"published at:   {published:%Y-%m-%d %H:%M:%S} 北京时间 (UTC+8)" in out
    assert "开始接收 started（北京时间 UTC+8）" in out
    for name, digest in m["rules"].items():
        assert f"{name:<13} sha256 {digest}" in out
    assert m["model"]["sha256"] in out and (m["code"]["commit"] or "commit unknown") in out
    for source, entry in m["source_batches"].items():
        for b in entry["batches"]:
            local = dt.datetime.fromisoformat(b["started_at"]).astimezone(LOCAL_TZ)
            assert any(source in line and f" {b['batch_id']} " in line and f"{local:%Y-%m-%d %H:%M:%S}" in line
                       for line in out.splitlines()), (source, b["batch_id"])
    as_json = CliRunner().invoke(cli, ["release", "show", str(n), "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["manifest"]["source_batches"] == json.loads(json.dumps(m["source_batches"]))


@pytest.fixture(scope="module")
def api(releases, database_url):
    engine = releases["engine"]
    departments = list(load_sharing())
    with engine.begin() as conn:
        keys = {d: create_key(conn, d, f"{d} manifest reader", departments=departments) for d in departments}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HUB_API_DATABASE_URL", raising=False)
        as_api = api_engine(database_url, role_prefix=PREFIX)  # the API's own role, not a superuser
    server, thread, url = _serve(create_app(as_api, rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client, keys
    server.should_exit = True
    thread.join(5)
    as_api.dispose()


def test_the_api_answers_a_release_manifest_to_any_department(releases, api):
    client, keys = api
    engine, n = releases["engine"], releases["release_no"]
    with engine.connect() as conn:
        since = conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()
    expected = json.loads(json.dumps(_manifest(engine, n), default=lambda v: v.isoformat()))
    owners = source_departments()
    assert set(expected["source_batches"]) == set(SOURCES)
    for department, key in keys.items():
        r = client.get(f"/v1/releases/{n}", headers={"X-API-Key": key})
        assert r.status_code == 200, (department, r.text)
        body = r.json()
        # counts and batches of its own sources only; the others' named without them (the CLI shows all)
        own = {s for s in SOURCES if owners[s] == department}
        assert own and body["source_batches"] == {s: expected["source_batches"][s] for s in own}
        assert body["other_sources"] == sorted(set(expected["source_batches"]) - own)
        assert body["rules"] == expected["rules"]
        assert (body["model"], body["code"], body["is_current"], body["record_count"]) == (
            expected["model"], expected["code"], True, expected["record_count"])
        assert dt.datetime.fromisoformat(body["published_at"]) == dt.datetime.fromisoformat(expected["published_at"])
    listed = client.get("/v1/releases", headers={"X-API-Key": keys["health"]}).json()
    assert listed["current"] == n and [r["release_no"] for r in listed["releases"]] == [n]
    assert client.get("/v1/releases/99", headers={"X-API-Key": keys["health"]}).json() == {"detail": "not found"}
    assert client.get(f"/v1/releases/{n}").status_code == 401
    with engine.connect() as conn:
        logged = conn.execute(sa.text(
            "SELECT department, endpoint, status FROM audit.access_log WHERE access_id > :s ORDER BY access_id"),
            {"s": since}).all()
    assert [(d, e, s) for d, e, s in logged if d == "civil_affairs"] == [("civil_affairs", f"GET /v1/releases/{n}", 200)]
    assert ("health", "GET /v1/releases", 200) in logged and ("health", "GET /v1/releases/99", 404) in logged
    assert (None, f"GET /v1/releases/{n}", 401) in logged
