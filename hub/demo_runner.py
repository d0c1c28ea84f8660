"""The demo's Airflow process: the real DAG files, loaded once, run with Airflow's ``dag.test()``.

``hub demo`` starts this module as its own process (``python -m hub.demo_runner LOGS``) with Airflow's
environment. Starting Airflow once instead of once per DAG (``airflow dags test``) is what makes the demo
fast: Airflow is imported, its metadata database migrated (first run only) and its in-process execution
API built once; the DAG files are parsed once; each ingestion DAG then runs in a process forked from this
one, side by side, and the master-index DAG runs last in one more. Each DAG run is a real Airflow run in
the metadata database (task instances, XCom, Asset events), with its log in ``LOGS/<dag_id>.log``.

This is the one module outside ``dags/`` that imports Airflow, and only in this process: it is Airflow's
runner, like ``airflow dags test``; nothing imports it.

It talks with ``hub demo`` over its standard input and output, one JSON object a line:

- runner → demo: ``{"ready": {"airflow": s, "metadata": s}}`` once Airflow is imported and its metadata
  database is ready (seconds each; the two run side by side);
- demo → runner: ``{"env": {...}, "ingest": [dag_id, ...], "final": dag_id, "workers": n}`` once the
  platforms are served (``env`` adds their connections), or end of input to stop;
- runner → demo: ``{"loaded": s, "dags": n}``, then one ``{"dag": id, "state": …, "seconds": s, "tasks":
  [[task_id, state, s], …], "log": path}`` per DAG run as it ends, and last ``{"done": …}``;
- ``{"error": message}`` ends the conversation when something failed before the DAGs ran.

Airflow's own lines (start-up, parsing) go to ``LOGS/demo-airflow.log``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

# Imported while the ingestion DAGs run, so that the master-index DAG (forked afterwards) finds them loaded.
# (the heaviest first; those not loaded by the time the ingestion runs end load where they are used)
MASTER_INDEX_MODULES = ("great_expectations", "expectations.custom", "expectations.gate", "schemas.resident",
                        "hub.matching", "splink", "matplotlib.pyplot", "hub.audits", "reports.scorecard",
                        "reports.department_scorecard", "openpyxl")


class _Events:
    """The line protocol to ``hub demo`` on the standard output this process started with."""

    def __init__(self, fd: int):
        self.out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def send(self, **event) -> None:
        self.out.write(json.dumps(event, default=str) + "\n")


def _seconds(since: float) -> float:
    return round(time.monotonic() - since, 1)


def _migrate(result: dict) -> None:
    """Airflow's metadata database (created and migrated on first use), timed; runs beside the imports."""
    from hub import airflow_runner

    started = time.monotonic()
    try:
        airflow_runner.ensure_metadata_db()
    except Exception as exc:  # HubError names the database and the log
        result["error"] = str(exc)
    result["seconds"] = _seconds(started)


def _start_airflow() -> None:
    """Build what every DAG run shares (Airflow itself is imported already)."""
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    # The execution API the tasks report to, built once: its routes are generated on the first request
    # (seconds of CPU), so one request is made here; each forked run then starts its own event loop on it.
    app = in_process_api_server().app
    asyncio.run(_first_request(app))
    import hub.pipeline  # noqa: F401  (what the ingestion tasks call)


async def _first_request(app) -> None:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://in-process.invalid.") as c:
        await c.get("/health")


def load_dags() -> dict:
    """Parse the DAG files once and write them to the metadata database, as ``airflow dags test`` does."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    dags = {}
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if bag.import_errors:
            raise RuntimeError("the DAG files do not parse: " + "; ".join(f"{k}: {v.splitlines()[-1]}"
                                                                         for k, v in bag.import_errors.items()))
        sync_bag_to_db(bag, bundle.name, bundle.version)
        dags.update(bag.dags)
    return dags


def _written_already() -> None:
    """In a forked run: the DAG files were written to the metadata database by :func:`load_dags` just before
    the fork. ``dag.test()`` writes every DAG of the folder again; from runs side by side those writes of the
    same rows wait for each other (seconds each, one after another), so here they are left out."""
    from airflow.dag_processing import dagbag

    if hasattr(dagbag, "sync_bag_to_db"):
        dagbag.sync_bag_to_db = lambda *args, **kwargs: None


def _run_dag(dag, log_path: Path) -> dict:
    """Run ``dag`` once with ``dag.test()`` (in a forked process whose output goes to ``log_path``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    started = time.monotonic()
    _written_already()
    run = dag.test(logical_date=dt.datetime.now(dt.UTC))
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag.dag_id,
                                                         TaskInstance.run_id == run.run_id)
                              .order_by(TaskInstance.start_date)).all()
        tasks = [[ti.task_id, str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                  round(ti.duration or 0.0, 1)] for ti in tis]
    state = run.state.value if hasattr(run.state, "value") else str(run.state)
    return {"dag": dag.dag_id, "state": state, "seconds": _seconds(started), "ended": time.monotonic(), "tasks": tasks,
            "run_id": run.run_id, "started": run.start_date.isoformat() if run.start_date else None,
            "log": str(log_path)}


def _fork(dag, logs: Path) -> tuple[int, int]:
    """Start ``dag`` in a child process; returns its pid and the read end of the pipe its result comes on."""
    log_path = logs / f"{dag.dag_id}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    # the child: never returns into the parent's code
    code = 1
    try:
        os.close(read)
        out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        try:
            result = _run_dag(dag, log_path)
            code = 0
        except BaseException as exc:  # noqa: BLE001  (reported to the parent, the traceback in the log)
            import traceback

            traceback.print_exc()
            result = {"dag": dag.dag_id, "state": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                      "log": str(log_path)}
        os.write(write, json.dumps(result, default=str).encode())
        os.close(write)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _collect(pid: int, status: int, read: int, dag_id: str, logs: Path) -> dict:
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    if chunks:
        return json.loads(b"".join(chunks))
    return {"dag": dag_id, "state": "failed", "error": f"its process ended without a result ({status:#x})",
            "log": str(logs / f"{dag_id}.log")}


def run_side_by_side(dags: dict, dag_ids: list[str], logs: Path, workers: int, events: _Events,
                     warm: tuple[str, ...] = ()) -> list[dict]:
    """Run ``dag_ids`` in forked processes, at most ``workers`` at a time, reporting each as it ends; while
    they run, import ``warm`` here (one module at a time: this process forks only between imports)."""
    import importlib

    pending, running, results = list(dag_ids), {}, []
    started = time.monotonic()

    def fill() -> None:
        while pending and len(running) < workers:
            dag_id = pending.pop(0)
            pid, read = _fork(dags[dag_id], logs)
            running[pid] = (dag_id, read)

    def reap(block: bool) -> None:
        while running:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            if pid == 0:
                return
            dag_id, read = running.pop(pid)
            result = _collect(pid, status, read, dag_id, logs)
            results.append(result)
            events.send(**result)
            block = False
            fill()

    fill()
    warmed = 0
    for module in warm:
        if not running:  # the runs have ended: what is left loads where it is used
            break
        importlib.import_module(module)
        warmed += 1
        reap(block=False)
    if warmed:
        events.send(warmed=_seconds(started), modules=warmed)
    while running:
        reap(block=True)
    # the CLOCK_MONOTONIC of the forked runs is this process's: when the last of them ended
    events.send(side_by_side=round(max([r.get("ended", 0.0) for r in results] + [started]) - started, 1))
    return results


def clear_queued_asset_events(dag_id: str, before: str | None) -> int:
    """Asset events queued for ``dag_id`` up to ``before`` (the start of a run of it that took them in):
    without this, the first scheduler run after the demo would start ``dag_id`` once more for them."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    query = delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id)
    if before:
        query = query.where(AssetDagRunQueue.created_at <= dt.datetime.fromisoformat(before))
    with create_session() as session:
        return session.execute(query).rowcount or 0


def main(argv: list[str]) -> int:
    logs = Path(argv[1])
    logs.mkdir(parents=True, exist_ok=True)
    events = _Events(os.dup(1))
    own = os.open(logs / "demo-airflow.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(own, 1)
    os.dup2(own, 2)
    os.close(own)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # as the gate does; the county is offline

    started = time.monotonic()
    # Importing Airflow writes AIRFLOW_HOME/airflow.cfg on first use (with new secret keys): the migration,
    # another Airflow process, starts once it is written, and runs beside the rest of the start-up.
    import airflow  # noqa: F401

    migrated: dict = {}
    migration = threading.Thread(target=_migrate, args=(migrated,), name="airflow-db-migrate")
    migration.start()
    try:
        _start_airflow()
        airflow_seconds = _seconds(started)
    finally:
        migration.join()  # no thread may run when this process forks
    if "error" in migrated:
        events.send(error=migrated["error"])
        return 1
    events.send(ready={"airflow": airflow_seconds, "metadata": migrated["seconds"], "total": _seconds(started)})

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the demo stopped before the DAGs ran
    order = json.loads(line)
    os.environ.update(order.get("env") or {})
    started = time.monotonic()
    try:
        dags = load_dags()
    except Exception as exc:
        events.send(error=f"{exc}; see {logs / 'demo-airflow.log'}")
        return 1
    events.send(loaded=_seconds(started), dags=len(dags))
    ingest = [d for d in order["ingest"]]
    missing = [d for d in ingest + [order["final"]] if d not in dags]
    if missing:
        events.send(error=f"DAG(s) not found in the DAG files: {', '.join(missing)}")
        return 1
    results = run_side_by_side(dags, ingest, logs, max(1, int(order.get("workers") or len(ingest))), events,
                               warm=MASTER_INDEX_MODULES)
    if any(r["state"] != "success" for r in results):
        events.send(done={"final": None})
        return 1
    (final,) = run_side_by_side(dags, [order["final"]], logs, 1, events)
    cleared = clear_queued_asset_events(order["final"], final.get("started")) if final["state"] == "success" else 0
    events.send(done={"final": final["state"], "queued_asset_events_cleared": cleared})
    return 0 if final["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
