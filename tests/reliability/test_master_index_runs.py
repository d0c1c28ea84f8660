"""Master-index runs record what they ran with, and two steps at the same time never interleave.

Real PostgreSQL, the simulated platforms on loopback, the pipeline functions the DAGs and the CLI call,
run side by side in threads (each with its own database sessions, as two processes would be).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import pipeline, provenance
from hub.settings import PROJECT_ROOT
from tests.helpers import empty_warehouse
from warehouse.releases import content_hash, show_release

RUN_ID = "manual__2026-12-06T03:00:00+00:00"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _in_history(commit: str | None) -> bool:
    """Whether ``commit`` is the checkout's HEAD or before it (others may commit while the tests run)."""
    if not (PROJECT_ROOT / ".git").exists() or shutil.which("git") is None:
        return commit is None
    return commit is not None and subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0


def _as_task(monkeypatch, task_id: str) -> None:
    """The environment Airflow gives a task's process."""
    for key, value in {"AIRFLOW_CTX_DAG_ID": "master_index", "AIRFLOW_CTX_DAG_RUN_ID": RUN_ID,
                       "AIRFLOW_CTX_TASK_ID": task_id, "AIRFLOW_CTX_TRY_NUMBER": "1"}.items():
        monkeypatch.setenv(key, value)


def test_each_step_of_a_run_records_the_model_rules_code_and_airflow_run(clean_warehouse, platforms, monkeypatch):
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    _as_task(monkeypatch, "match")
    matched = pipeline.build_master_index()
    _as_task(monkeypatch, "gate")
    gate = pipeline.run_gate()
    _as_task(monkeypatch, "publish")
    release = pipeline.publish_release(gate["validation_run_id"])
    assert release["outcome"] == "published"

    model = {"version": "resident-1", "sha256": _sha(PROJECT_ROOT / "mpi" / "models" / "resident_model.json"),
             "file": "resident_model.json"}
    rules = {"survivorship": _sha(PROJECT_ROOT / "mpi" / "survivorship.yaml"),
             "gate_rules": _sha(PROJECT_ROOT / "expectations" / "gate_rules.yaml"),
             "sharing": _sha(PROJECT_ROOT / "warehouse" / "sharing.yaml"),
             "purposes": _sha(PROJECT_ROOT / "warehouse" / "purposes.yaml")}
    code = provenance.code_version()
    assert code["version"] == importlib.metadata.version("resident-hub") and _in_history(code["commit"])

    def expected(task: str) -> dict:
        return {"model": model, "rules": rules, "code": code,
                "airflow": {"dag_id": "master_index", "run_id": RUN_ID, "task_id": task, "try_number": "1"}}

    with clean_warehouse.connect() as conn:
        link_run = conn.execute(sa.text("SELECT ran_with FROM mpi.link_run WHERE run_id = :r"),
                                {"r": matched["run_id"]}).scalar_one()
        gate_run = conn.execute(sa.text("SELECT ran_with, content_hash FROM audit.validation_run WHERE run_id = :r"),
                                {"r": gate["validation_run_id"]}).one()
        attempt = conn.execute(sa.text("SELECT ran_with FROM audit.publish_attempt WHERE release_no = :n"
                                       " AND outcome = 'published'"), {"n": release["release_no"]}).scalar_one()
        shown = show_release(conn, release["release_no"])
    assert link_run == expected("match")
    assert gate_run.ran_with == expected("gate")
    assert attempt == expected("publish")
    # the release keeps all three, and the gate's digest is the release's content
    assert shown["ran_with"] == {"match": {"run_id": matched["run_id"], **expected("match")},
                                 "gate": {"run_id": gate["validation_run_id"], **expected("gate")},
                                 "publish": expected("publish")}
    assert gate_run.content_hash == shown["content_hash"]
    lines = "\n".join(shown["ran_with_lines"])
    assert f"model resident-1 (resident_model.json sha256 {model['sha256'][:12]})" in lines
    assert f"survivorship {rules['survivorship'][:12]}" in lines and f"sharing {rules['sharing'][:12]}" in lines
    assert f"gate_rules {rules['gate_rules'][:12]}" in lines
    assert f"Airflow run master_index {RUN_ID}" in lines and f"matching run {matched['run_id']}" in lines
    assert (f"commit {code['commit'][:12]}" if code["commit"] else "commit unknown") in lines


def test_the_code_version_is_read_without_git_and_without_a_repository(tmp_path, monkeypatch):
    assert provenance.git_commit(tmp_path) is None  # no .git: an installed package, a Docker image
    commit = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{commit} refs/heads/main\n")
    assert provenance.git_commit(tmp_path / "repo") == commit  # a packed branch
    (git / "refs" / "heads" / "main").write_text("fedcba9876543210fedcba9876543210fedcba98\n")
    assert provenance.git_commit(tmp_path / "repo") == "fedcba9876543210fedcba9876543210fedcba98"
    (git / "HEAD").write_text(commit + "\n")  # detached
    assert provenance.git_commit(tmp_path / "repo") == commit
    monkeypatch.setenv("HUB_CODE_COMMIT", "built-from-abc123")
    provenance.code_version.cache_clear()
    try:
        assert provenance.code_version()["commit"] == "built-from-abc123"
    finally:
        monkeypatch.delenv("HUB_CODE_COMMIT")
        provenance.code_version.cache_clear()
    assert provenance.airflow_run() is None or provenance.airflow_run()["run_id"]


# -- two at once ----------------------------------------------------------------------------------

def _waiting_on_advisory_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).scalar_one()


def _until(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class _Step(threading.Thread):
    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs, self.result, self.error, self.finished_at = fn, args, kwargs, None, None, None

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
        self.finished_at = time.monotonic()


@pytest.fixture
def day_one(_served_platforms, county):
    day1 = county.next_day()
    yield day1
    _served_platforms.advance(county)


def test_standardize_gate_and_publish_wait_for_a_matching_run_and_publish_only_what_the_gate_saw(
        clean_warehouse, platforms, day_one):
    engine = clean_warehouse
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    pipeline.build_master_index()
    before = pipeline.run_gate()  # validates day 0's index; nothing published yet
    platforms.advance(day_one)
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()

    paused, go = threading.Event(), threading.Event()

    def hold(step, info):  # the matching run stops inside its transaction, after matching, before it stores
        if step == "clustered" and not paused.is_set():
            paused.set()
            assert go.wait(120)

    match = _Step(pipeline.build_master_index, on_progress=hold)
    match.start()
    assert paused.wait(120), match.error
    standardize = _Step(pipeline.standardize_sources)
    gate = _Step(pipeline.run_gate)
    publish = _Step(pipeline.publish_release, before["validation_run_id"])
    for step in (standardize, gate, publish):
        step.start()
    _until(lambda: _waiting_on_advisory_locks(engine) >= 3, what="standardize, gate and publish to queue")
    time.sleep(1)
    assert all(step.is_alive() for step in (standardize, gate, publish))  # none ran beside the matching run
    released_at = time.monotonic()
    go.set()
    for step in (match, standardize, gate, publish):
        step.join(300)
        assert not step.is_alive() and step.error is None, step.error
    assert min(s.finished_at for s in (standardize, gate, publish)) > released_at

    # the publish queued with the gate run of day 0 while day 1 was matched: it is held, not half of each
    assert publish.result["outcome"] == "blocked" and "changed after gate run" in publish.result["reason"]
    with engine.connect() as conn:
        validated = conn.execute(sa.text("SELECT content_hash FROM audit.validation_run WHERE run_id = :r"),
                                 {"r": gate.result["validation_run_id"]}).scalar_one()
        now = content_hash(conn, pipeline.source_departments())
        assert conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one() == 0
    assert validated == now  # the queued gate saw the index the matching run committed
    release = pipeline.publish_release(gate.result["validation_run_id"])
    assert release["outcome"] == "published"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT content_hash FROM publish.release WHERE release_no = :n"),
                            {"n": release["release_no"]}).scalar_one() == validated


def test_two_matching_runs_two_gates_and_two_publishes_at_once_take_turns(clean_warehouse, platforms):
    engine = clean_warehouse
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()

    matches = [_Step(pipeline.build_master_index) for _ in range(2)]
    for step in matches:
        step.start()
    _until(lambda: _waiting_on_advisory_locks(engine) >= 1 or not all(s.is_alive() for s in matches),
           what="the second matching run to queue")
    assert _waiting_on_advisory_locks(engine) >= 1
    for step in matches:
        step.join(300)
        assert step.error is None, step.error
    # the second planned on what the first stored: one full rebuild, then an incremental run with nothing new
    modes = sorted((s.result["mode"], s.result["new"]) for s in matches)
    assert modes[0][0] == "full" and modes[1] == ("incremental", 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mpi.link_run WHERE finished_at IS NULL")).scalar_one() == 0

    gates = [_Step(pipeline.run_gate) for _ in range(2)]
    for step in gates:
        step.start()
    _until(lambda: _waiting_on_advisory_locks(engine) >= 1 or not all(s.is_alive() for s in gates),
           what="the second gate run to queue")
    assert _waiting_on_advisory_locks(engine) >= 1
    for step in gates:
        step.join(300)
        assert step.error is None, step.error
    assert gates[0].result["validation_run_id"] != gates[1].result["validation_run_id"]
    assert gates[0].result["failed"] == gates[1].result["failed"] == 0

    run_id = gates[0].result["validation_run_id"]
    publishes = [_Step(pipeline.publish_release, run_id) for _ in range(2)]
    for step in publishes:
        step.start()
    for step in publishes:
        step.join(120)
        assert step.error is None, step.error
    # one release; the attempt that waited reports it as published from the same gate run (idempotent)
    assert [(s.result["outcome"], s.result["release_no"]) for s in publishes] == [("published", 1)] * 2
    assert any("already published from gate run" in s.result["reason"] for s in publishes)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one() == 1
    # a new gate run of the same index has nothing new to publish
    assert pipeline.publish_release(pipeline.run_gate()["validation_run_id"])["outcome"] == "unchanged"

    reports = [_Step(pipeline.build_reports) for _ in range(2)]
    for step in reports:
        step.start()
    for step in reports:
        step.join(300)
        assert step.error is None, step.error
    assert reports[0].result == reports[1].result


def teardown_module(module):
    from hub import settings

    empty_warehouse(settings.engine())
