"""The demo: a simulated county's departmental platforms on loopback, run through the real DAGs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hub import airflow_runner, settings
from hub.errors import HubError
from hub.pipeline import prepare_warehouse, source_names
from warehouse.audit import last_gate_run
from warehouse.figures import master_count, records_per_source
from warehouse.releases import last_publish_attempt

FINAL_DAG = "master_index"


@dataclass
class Step:
    """One line of the demo's time per step; ``part`` lines belong to the step above them."""

    name: str
    seconds: float
    part: bool = False


@dataclass
class DemoSummary:
    records_per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    master_persons: int = 0
    expectations_passed: int = 0
    expectations_failed: int = 0
    release_no: int | None = None
    release_outcome: str = ""
    validation_report: str = ""
    steps: list[Step] = field(default_factory=list)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)


class _AirflowProcess:
    """The demo's Airflow process (:mod:`hub.demo_runner`) and its line protocol."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.demo_runner", str(logs)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=settings.PROJECT_ROOT)

    def send(self, **order) -> None:
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()

    def next(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            raise HubError(f"the demo's Airflow process stopped (exit {rc}); see {self.logs / 'demo-airflow.log'}")
        event = json.loads(line)
        if "error" in event:
            raise HubError(event["error"])
        return event

    def expect(self, kind: str):
        event = self.next()
        if kind not in event:
            raise HubError(f"the demo's Airflow process answered {sorted(event)} instead of {kind!r}")
        return event

    def close(self, *, ok: bool) -> None:
        if self.proc.poll() is None:
            if ok:
                self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=60)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.proc.terminate()
            self.proc.wait()


def _failure(result: dict) -> HubError:
    """A DAG run that did not succeed: its log and the lines of it that say why."""
    log = Path(result.get("log", ""))
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    why = [line.strip() for line in lines if "ERROR" in line or "error" in line][-5:]
    if result.get("error"):
        why.append(result["error"])
    return HubError(f"DAG {result['dag']} {result.get('state', 'failed')}; log: {log}"
                    + ("\n  " + "\n  ".join(why) if why else ""))


def run_demo(persons: int = 5000, seed: int = 20261121, echo=print, workers: int | None = None) -> DemoSummary:
    """Serve the simulated platforms, run every ingestion DAG (side by side, at most ``workers`` at a time;
    default all) and then the master-index DAG in one Airflow process, and summarize with the time per step."""
    from hub.simulation import connection_env, start_simulation

    steps: list[Step] = []
    started = time.monotonic()
    url = settings.database_url()
    where = "HUB_DATABASE_URL"
    if not os.environ.get("HUB_DATABASE_URL"):
        where = f"embedded PostgreSQL under {settings.hub_home() / 'pg'}"
    echo(f"warehouse: {where}")
    steps.append(Step("PostgreSQL up", _since(started)))
    extra = {"HUB_DATABASE_URL": url, "HUB_DAG_RETRIES": os.environ.get("HUB_DAG_RETRIES", "0")}
    ingest = [f"ingest_{name}" for name in source_names()]

    step = time.monotonic()
    airflow = _AirflowProcess(settings.hub_home() / "logs", airflow_runner.env(extra))
    ok = False
    try:
        # while Airflow starts in its own process: the warehouse layers, then the simulated county
        prepare_warehouse()
        layers = _since(step)
        county = time.monotonic()
        platforms = start_simulation(persons=persons, seed=seed, workdir=settings.hub_home() / "sim")
        simulated = _since(county)
        try:
            echo(f"simulated county of {persons} persons: {len(platforms.where())} departmental subsystems served"
                 " on loopback")
            ready = airflow.expect("ready")["ready"]
            steps += [Step("start-up, side by side", _since(step)),
                      Step("warehouse layers migrated", layers, part=True),
                      Step(f"simulated county: {persons} persons, {len(platforms.where())} subsystems", simulated,
                           part=True),
                      Step("Airflow: imported once for every DAG run", ready["airflow"], part=True),
                      Step("Airflow metadata database (migrated on first use)", ready["metadata"], part=True)]
            airflow.send(env=connection_env(platforms), ingest=ingest, final=FINAL_DAG,
                         workers=workers or len(ingest))
            loaded = airflow.expect("loaded")
            steps.append(Step(f"DAG files parsed once: {loaded['dags']} DAGs", loaded["loaded"]))
            echo(f"Airflow: {loaded['dags']} DAGs loaded from {settings.DAGS_FOLDER}; running the {len(ingest)}"
                 " ingestion DAGs side by side …")
            runs, took = _runs(airflow, echo, width=max(map(len, ingest)))
            steps += [Step("ingestion, side by side", max(took["side_by_side"], took.get("warmed", 0.0))),
                      Step(f"{len(ingest)} ingestion DAGs, first start to last end", took["side_by_side"], part=True)]
            steps += [Step(r["dag"], r.get("seconds", 0.0), part=True) for r in sorted(runs, key=lambda r: r["dag"])]
            if "warmed" in took:
                steps.append(Step("libraries of the master-index DAG loaded", took["warmed"], part=True))
            failed = [r for r in runs if r.get("state") != "success"]
            if failed:
                raise _failure(failed[0]) if len(failed) == 1 else HubError(
                    f"{len(failed)} ingestion DAGs failed:\n" + "\n".join(str(_failure(r)) for r in failed))
            echo(f"running DAG {FINAL_DAG} …")
            (final,), _ = _runs(airflow, None)
            steps.append(Step(f"{FINAL_DAG} DAG", final.get("seconds", 0.0)))
            steps += [Step(task, seconds, part=True) for task, _state, seconds in final.get("tasks", [])]
            if final.get("state") != "success":
                raise _failure(final)
            airflow.expect("done")
            ok = True
        finally:
            platforms.stop()
    finally:
        airflow.close(ok=ok)
    step = time.monotonic()
    summary = summarize()
    summary.steps = [*steps, Step("summary", _since(step))]
    return summary


def _runs(airflow: _AirflowProcess, echo, width: int = 0) -> tuple[list[dict], dict]:
    """DAG runs side by side as they end (each echoed with its state and time, when ``echo``), and the
    seconds from the first start to the last end (``side_by_side``) and of what was loaded meanwhile."""
    runs, took = [], {}
    while "side_by_side" not in took:
        event = airflow.next()
        if "dag" in event:
            runs.append(event)
            if echo:
                echo(f"  {event['dag']:<{width}}  {event.get('state', 'failed'):<8} {event.get('seconds', 0.0):5.1f} s")
        took.update({k: v for k, v in event.items() if k in ("side_by_side", "warmed", "modules")})
    return runs, took


def summarize() -> DemoSummary:
    """What the warehouse holds now: records per source, masters, the last gate and release."""
    s = DemoSummary()
    with settings.engine().connect() as conn:
        s.records_per_source = records_per_source(conn, source_names())
        s.master_persons = master_count(conn)
        run = last_gate_run(conn)
        if run:
            s.expectations_passed, s.expectations_failed, s.validation_report = (
                run["successful"], run["failed"], run["docs_path"])
        attempt = last_publish_attempt(conn)
        if attempt:
            s.release_outcome, s.release_no = attempt["outcome"], attempt["release_no"]
    return s
