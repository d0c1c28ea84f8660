"""``hub status`` and the ``--json`` of the list and show commands, as a user runs them, on a real warehouse."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connectors.connections import connection_json
from connectors.registry import load_registry

HUB = str(Path(sys.executable).with_name("hub"))


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Tables as wide as a wide terminal prints them: one line per row."""
    from hub.cli_common import console, err

    monkeypatch.setattr(console, "width", 250)
    monkeypatch.setattr(err, "width", 250)


def _hub(*args, env=None):
    """Run ``hub`` in this process (typer's runner: the real commands, without a new interpreter each time)."""
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(app, list(args), env=env, prog_name="hub")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["hub", *args], result.exit_code, result.stdout, result.stderr)


def _hub_process(*args, env=None, timeout=120):
    """Run the installed ``hub`` command in its own process, as a shell does."""
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _json(*args, env=None):
    """Run a command with --json: exit 0, and stdout is one JSON document and nothing else."""
    result = _hub(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _cst(stored: dt.datetime) -> str:
    """A stored time as the CLI prints it: its UTC clock moved on 8 hours (China Standard Time), to the second."""
    return f"{stored.astimezone(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=8):%Y-%m-%d %H:%M:%S}"


def test_status_of_an_empty_warehouse(clean_warehouse):
    from warehouse.migrate import current_revision

    secret = {"HUB_AIRFLOW_DATABASE_URL": "postgresql://airflow:s3cret-pw@127.0.0.1:5432/airflow_meta"}
    doc = _json("status", env=secret)
    registry = load_registry()
    assert list(doc["sources"]) == sorted(registry)
    for name, src in doc["sources"].items():
        assert src["registered"] and src["department"] == registry[name].department
        assert src["last_load"] is None and src["batches"] == 0 and src["cursor"] is None
        assert src["last_full_extract"] is None and src["failures_since_success"] == 0
    assert doc["release"] == {"current": None, "count": 0}
    assert doc["last_publish_attempt"] is None and doc["last_gate_run"] is None and doc["last_match_run"] is None
    assert doc["open_reviews"] == 0 and doc["open_findings"] == 0
    assert doc["warehouse"]["revision"] == current_revision(clean_warehouse)
    assert doc["airflow"]["home"] == os.environ["AIRFLOW_HOME"]
    assert doc["airflow"]["metadata_database"] == "postgresql+psycopg2://airflow:***@127.0.0.1:5432/airflow_meta"

    shown = _hub("status", env=secret)
    assert shown.returncode == 0, shown.stderr
    for name in registry:
        assert re.search(rf"^\s*{name}\s+never loaded", shown.stdout, re.MULTILINE), shown.stdout
    assert "none published yet" in shown.stdout and "last gate run:   never" in shown.stdout
    assert "s3cret-pw" not in shown.stdout + shown.stderr and "airflow:***@" in shown.stdout

    # a load that has begun and not finished
    from warehouse.landing import open_batch

    with clean_warehouse.begin() as conn:
        batch = open_batch(conn, "mz_dibao")
    running = _json("status")["sources"]["mz_dibao"]
    assert running["last_load"]["batch_id"] == batch and running["last_load"]["status"] == "running"
    assert running["last_load"]["mode"] is None and running["last_success"] is None and running["batches"] == 1
    assert re.search(r"^\s*mz_dibao\s+\S+\s+running\s+0\s+0\s+0\s+0\s", _hub("status").stdout, re.MULTILINE)


def test_status_of_a_warehouse_not_set_up(server_admin_url):
    from warehouse.embedded import ensure_database

    name = f"hub_not_set_up_{uuid.uuid4().hex[:8]}"
    ensure_database(server_admin_url, name)
    try:
        env = {"HUB_DATABASE_URL": make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)}
        for args in (["status"], ["status", "--json"]):
            result = _hub(*args, env=env)
            assert result.returncode == 1
            assert result.stderr.strip() == "error: the warehouse is not set up: run 'hub db upgrade' first"
            assert result.stdout == ""
    finally:
        admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    """The session's county ingested, matched, gated, published and audited; then one load of mz_gaoling that
    fails (its platform's address refuses connections), through the CLI."""
    from hub import pipeline
    from tests.helpers import publish_day0

    release = publish_day0(engine, _served_platforms, county)
    audit = pipeline.audit_release()
    refused = connection_json(conn_type="http", host="127.0.0.1", port=1, schema="http", login="x", password="y")
    failed = _hub("ingest", "mz_gaoling", env={"AIRFLOW_CONN_MZ_PLATFORM": refused, "HUB_HTTP_TIMEOUT": "2"})
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    return {"release": release, "audit": audit, "county": county}


def test_status_after_ingest_match_publish_and_a_failed_load(engine, published):
    county, release = published["county"], published["release"]
    process = _hub_process("status", "--json")  # the installed command: nothing but the document on stdout
    assert process.returncode == 0, process.stderr
    doc = json.loads(process.stdout)
    assert doc == _json("status")
    assert list(doc["sources"]) == sorted(load_registry())
    with engine.connect() as conn:
        cursors = dict(conn.execute(sa.text("SELECT source, cursor FROM raw.source_state")).all())
        masters = conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
        open_reviews = conn.execute(sa.text("SELECT count(*) FROM mpi.review_pair WHERE decided_at IS NULL")).scalar_one()
        open_findings = conn.execute(sa.text("SELECT count(*) FROM audit.finding WHERE status = 'open'")).scalar_one()
        match_run = conn.execute(sa.text("SELECT max(run_id) FROM mpi.link_run")).scalar_one()
        published_at = conn.execute(sa.text("SELECT published_at FROM publish.release WHERE release_no = 1")).scalar_one()
        id_numbers = set(conn.execute(sa.text("SELECT id_number FROM std.resident WHERE id_number IS NOT NULL")).scalars())
    for name, src in doc["sources"].items():
        last = src["last_load"]
        assert src["cursor"] == cursors.get(name)
        assert _when(src["last_full_extract"]) is not None  # the first load of every source is complete
        if name == "mz_gaoling":
            assert last["status"] == "failed" and last["received"] == 0 and "127.0.0.1" in last["error"]
            assert src["failures_since_success"] == 1 and src["batches"] == 2
            assert _when(src["last_success"]) < _when(last["finished_at"])
            assert src["cursor"] is not None  # a failed load leaves the cursor where it was
        else:
            served = len(county.served(name))
            assert last["status"] == "succeeded" and last["mode"] == "full" and src["failures_since_success"] == 0
            assert (last["received"], last["landed"], last["quarantined"], last["duplicates"]) == (served, served, 0, 0)
            assert _when(src["last_success"]) == _when(last["finished_at"])
        if load_registry()[name].kind == "file":
            assert src["cursor"] is None and src["last_file"]
    current = doc["release"]["current"]
    assert current["release_no"] == release["release_no"] == 1 and doc["release"]["count"] == 1
    assert current["master_count"] == masters and _when(current["published_at"]) == published_at
    # --json: ISO 8601 in China Standard Time, with its offset
    assert current["published_at"].endswith("+08:00") and doc["last_publish_attempt"]["attempted_at"].endswith("+08:00")
    assert doc["last_publish_attempt"]["outcome"] == "published"
    assert doc["last_publish_attempt"]["release_no"] == 1
    gate = doc["last_gate_run"]
    assert gate["run_id"] == release["gate"]["validation_run_id"] and gate["success"] and gate["failed"] == 0
    assert gate["successful"] == gate["evaluated"] > 0 and _when(gate["started_at"]) is not None
    match = doc["last_match_run"]
    assert match["run_id"] == match_run and match["mode"] == "full" and match["finished_at"]
    assert match["ran_with"]["model"]["sha256"].startswith(match["model_version"])
    assert match["ran_with"]["code"]["version"] == version("resident-hub")
    assert doc["open_reviews"] == open_reviews
    assert doc["open_findings"] == open_findings == published["audit"]["open"] > 0

    shown = _hub("status")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for name, src in doc["sources"].items():
        last = src["last_load"]
        figures = r"\s+".join(f"{last[k]:,}" for k in ("received", "landed", "quarantined", "duplicates"))
        assert re.search(rf"^\s*{name}\s+\S+\s+{last['status']}\s+{figures}\s", out, re.MULTILINE), (name, out)
    assert "mz_gaoling: last load failed:" in shown.stderr
    assert f"release:         1 (current), published {_cst(published_at)} 北京时间 (UTC+8)," in out
    assert f"last attempt:    {_cst(_when(doc['last_publish_attempt']['attempted_at']))} 北京时间 (UTC+8) published" in out
    assert f"{masters:,} masters" in out
    assert f"run {gate['run_id']} at" in out and f"{gate['successful']} expectations passed, 0 failed" in out
    assert f"open reviews:    {open_reviews:,}" in out and f"open findings:   {open_findings:,}" in out
    assert f"AIRFLOW_HOME={os.environ['AIRFLOW_HOME']}" in out
    # counts and states only: no ID number of the warehouse in either output
    assert not any(number in out or number in json.dumps(doc) for number in id_numbers)


def test_json_of_release_and_db_commands(published):
    listed = _json("release", "list")
    assert listed["current"] == 1 and [r["release_no"] for r in listed["releases"]] == [1]
    first = listed["releases"][0]
    assert first["is_current"] and _when(first["published_at"]) is not None
    assert listed["last_attempt"]["outcome"] == "published"
    table = _hub("release", "list").stdout
    assert re.search(rf"│ 1 .*│ {first['master_count']} .*│ {first['record_count']} .*✓", table), table
    assert first["published_at"].endswith("+08:00") and "发布 published（北京时间 UTC+8）" in table, table
    assert re.search(rf"│ 1 +│ {_when(first['published_at']):%Y-%m-%d %H:%M:%S} +│", table), table

    shown = _json("release", "show", "1")
    assert shown["release_no"] == 1 and shown["master_count"] == first["master_count"]
    assert shown["gate"]["run_id"] == first["validation_run_id"] and shown["gate"]["failed"] == 0
    assert {s["suite"] for s in shown["suites"]} >= {"master_index"} and all(s["success"] for s in shown["suites"])
    assert set(shown["by_source"]) == set(load_registry())
    text = _hub("release", "show", "1").stdout
    assert f"masters:        {shown['master_count']:,}" in text and shown["content_hash"] in text
    # what the release was made with: the model, the rules and the code, as recorded
    assert shown["ran_with_lines"] and all(line in text for line in shown["ran_with_lines"]), text
    assert re.search(r"made with: +model \S+", text) and shown["ran_with"]["publish"]["code"]["version"] in text
    missing = _hub("release", "show", "9", "--json")
    assert missing.returncode == 1 and missing.stdout == "" and "there is no release 9" in missing.stderr

    url = _json("db", "url")
    assert url["url"] == _hub("db", "url").stdout.strip() and url["embedded"] is False


def test_json_of_review_history_and_ledger_commands(engine, published):
    with engine.begin() as conn:
        pair = conn.execute(sa.text(
            "SELECT source || '/' || source_record_id AS key, name, id_number FROM std.resident"
            " WHERE name IS NOT NULL AND id_number_status = 'valid' ORDER BY source, source_record_id LIMIT 2")).all()
        if not conn.execute(sa.text("SELECT count(*) FROM mpi.review_pair")).scalar_one():
            # a county this small may leave no pair in the grey zone: put one in the queue as the matcher would
            conn.execute(sa.text(
                "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight,"
                " review_reason, evidence) VALUES (:l, :r, 0.5, 0.0, 'grey_zone', '{\"mw_name\": 1.5}')"),
                {"l": pair[0].key, "r": pair[1].key})
        open_reviews = conn.execute(sa.text("SELECT count(*) FROM mpi.review_pair WHERE decided_at IS NULL")).scalar_one()
    reviews = _json("review", "list", "--limit", "500")
    assert reviews["status"] == "open" and len(reviews["reviews"]) == min(open_reviews, 500)
    review = reviews["reviews"][0]
    table = _hub("review", "list", "--limit", "500").stdout
    assert re.search(rf"│ {review['review_id']} .*{re.escape(review['record_key_l'])}", table), table

    shown = _hub("review", "show", str(review["review_id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["review_id"] == review["review_id"] and doc["decision"] is None
    assert doc["left"]["record_key"] == review["record_key_l"] and doc["right"]["record_key"] == review["record_key_r"]
    with engine.connect() as conn:
        sides = {r.key: r for r in conn.execute(sa.text(
            "SELECT source || '/' || source_record_id AS key, name, id_number FROM std.resident"
            " WHERE source || '/' || source_record_id IN (:l, :r)"), {"l": doc["left"]["record_key"],
                                                                     "r": doc["right"]["record_key"]})}
    for side in (doc["left"], doc["right"]):
        stored = sides[side["record_key"]]
        if stored.name and len(stored.name) > 1:  # masked as the table masks it: 张* / 欧阳**
            assert side["name"] == stored.name[0] + "*" * (len(stored.name) - 1)
            assert stored.name not in shown.stdout
        if stored.id_number:
            assert side["id_number"].startswith(stored.id_number[:6]) and "********" in side["id_number"]
            assert stored.id_number not in shown.stdout
    assert all(k.startswith(("mw_", "gamma_", "bf_", "tf_")) or k == "match_weight" for k in doc["evidence"])

    with engine.connect() as conn:
        master = conn.execute(sa.text(
            "SELECT master_id FROM mpi.crosswalk GROUP BY master_id ORDER BY count(*) DESC, master_id LIMIT 1")).scalar_one()
        records = [f"{r.source}/{r.source_record_id}" for r in conn.execute(sa.text(
            "SELECT source, source_record_id FROM mpi.crosswalk WHERE master_id = :m ORDER BY 1, 2"), {"m": master})]
    history = _json("history", master)
    assert history["master_id"] == master and history["redirected_from"] == []
    assert [f"{r['source']}/{r['source_record_id']}" for r in history["records"]] == records
    assert history["events"] and all(_when(e["created_at"]) for e in history["events"])
    anchor = history["master"]["anchor"]
    assert not anchor.startswith("id:") or "********" in anchor
    timeline = _hub("history", master).stdout
    assert all(r.split("/", 1)[1] in timeline for r in records)
    created = history["master"]["created_at"]
    assert created.endswith("+08:00") and f"created {_when(created):%Y-%m-%d %H:%M:%S} 北京时间 (UTC+8)," in timeline
    assert "when（北京时间 UTC+8）" in timeline and "since（北京时间 UTC+8）" in timeline, timeline
    assert f"│ {_when(history['events'][0]['created_at']):%Y-%m-%d %H:%M:%S} " in timeline, timeline

    explained = _json("explain", master)
    assert explained["first"]["record"] == records[0]
    assert [p["other"]["record"] for p in explained["pairs"]] == records[1:]
    for pair in explained["pairs"]:
        assert pair["other"]["name"].endswith("*") and all(c["level_code"] != "-1" for c in pair["comparisons"])
        assert abs(pair["weights_sum"] - pair["match_weight"]) < 1e-6
    tables = _hub("explain", master).stdout
    first_pair = explained["pairs"][0]["comparisons"]
    for c in first_pair:
        assert re.search(rf"│ {c['comparison']} .*│ {re.escape(format(c['weight'], '+.2f'))} *│", tables), tables

    ledgers = _json("ledger", "--list")
    assert ledgers["release"] == 1 and "dibao" in ledgers["kinds"] and ledgers["communities"]
    listed = _hub("ledger", "--list").stdout
    assert f"communities ({len(ledgers['communities'])}): {' '.join(ledgers['communities'])}" in listed
    wrong = _hub("ledger", "dibao", "--community", ledgers["communities"][0], "--json")
    assert wrong.returncode == 1 and "--json goes with --list" in wrong.stderr


def test_json_of_api_key_list(clean_warehouse):
    assert _json("api-key", "list") == {"keys": []}
    created = _hub("api-key", "create", "health", "--label", "birth follow-up team", "--steward")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id, secret = key.split(".", 1)
    listed = _hub("api-key", "list", "--json")
    assert secret not in listed.stdout
    (row,) = json.loads(listed.stdout)["keys"]
    assert (row["key_id"], row["department"], row["label"], row["scopes"]) == (key_id, "health", "birth follow-up team",
                                                                                ["steward"])
    assert _when(row["created_at"]) is not None and row["revoked_at"] is None
    # times in China Standard Time: a stored 18:15:03 UTC is the next day's 02:15:03, labelled
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("UPDATE audit.api_key SET created_at = '2026-12-06 18:15:03+00',"
                             " blocked_at = '2026-12-07 01:02:03+00', blocked_reason = 'sweep' WHERE key_id = :k"),
                     {"k": key_id})
    (row,) = _json("api-key", "list")["keys"]
    assert (row["created_at"], row["blocked_at"]) == ("2026-12-07T02:15:03+08:00", "2026-12-07T09:02:03+08:00")
    table = _hub("api-key", "list").stdout
    assert "created（北京时间 UTC+8）" in table and "blocked（北京时间 UTC+8）" in table, table
    assert re.search(rf"{key_id} .*│ 2026-12-07 02:15:03 +│ +│ 2026-12-07 09:02:03 ", table), table
    unblocked = _hub("api-key", "unblock", key_id)
    assert unblocked.returncode == 0, unblocked.stderr
    assert f"unblocked {key_id} (health); it was blocked at 2026-12-07 09:02:03 北京时间 (UTC+8): sweep" in unblocked.stdout
    assert _hub("api-key", "revoke", key_id).returncode == 0
    assert _json("api-key", "list") == {"keys": []}
    (revoked,) = _json("api-key", "list", "--include-revoked")["keys"]
    assert _when(revoked["revoked_at"]) >= _when(revoked["created_at"])
