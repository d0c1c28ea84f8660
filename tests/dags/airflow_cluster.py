"""A real Airflow deployment for tests, started through ``hub airflow up`` (the command users and the
compose services run): scheduler, dag-processor, triggerer and API server with the LocalExecutor, on a
free port, against the session's PostgreSQL metadata database and warehouse, with the connections the
simulated platforms fixture put in the environment.

Use the ``airflow_cluster`` fixture (module scope: import it into the test module) or ``start_cluster``::

    from tests.dags.airflow_cluster import airflow_cluster  # noqa: F401

    def test_x(airflow_cluster, platforms):
        run_id = airflow_cluster.trigger("ingest_mz_dibao")
        run = airflow_cluster.wait_run("ingest_mz_dibao", run_id)
        assert run["state"] == "success", airflow_cluster.describe("ingest_mz_dibao", run_id)

The hub's DAGs start paused; ``unpause()`` them (a scheduled run of each ingestion DAG starts at once,
as in production) or pass ``paused=False``. Teardown sends SIGTERM to ``hub airflow up`` (which stops
its components) and then kills the whole process group, so nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub import airflow_runner, settings

FINISHED = {"success", "failed"}
ACTIVE = {"queued", "running"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowCluster:
    """A running ``hub airflow up`` and a logged-in REST API client."""

    def __init__(self, proc: subprocess.Popen, port: int, output: Path):
        self.proc, self.port, self.output = proc, port, output
        self.url = f"http://127.0.0.1:{port}"
        self.client = airflow_runner.ApiClient(self.url, timeout=30)
        self.dag_ids = airflow_runner.hub_dag_ids()

    # --- DAGs and runs -------------------------------------------------------------------------------------
    def unpause(self, dag_ids: list[str] | None = None) -> None:
        for dag_id in dag_ids or self.dag_ids:
            self.client.set_paused(dag_id, False)

    def pause(self, dag_ids: list[str] | None = None) -> None:
        for dag_id in dag_ids or self.dag_ids:
            self.client.set_paused(dag_id, True)

    def start_runs(self, dag_ids: list[str]) -> None:
        """One new run of each DAG, started together: unpausing starts the run of a scheduled DAG's last
        interval; a DAG whose last interval ran already (in an earlier test) is triggered first."""
        for dag_id in dag_ids:
            if any(r["run_type"] == "scheduled" for r in self.runs(dag_id)):
                self.trigger(dag_id)
        self.unpause(dag_ids)

    def trigger(self, dag_id: str) -> str:
        """Trigger a run now (REST API v2); returns its run id."""
        return self.client.trigger(dag_id)

    def runs(self, dag_id: str) -> list[dict]:
        return self.client.runs(dag_id)

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.client.run(dag_id, run_id)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 240, states=FINISHED) -> dict:
        """Until the run reaches one of ``states``; returns it (fails the test with the task states on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            run = self.client.run(dag_id, run_id)
            if run["state"] in states:
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"{dag_id} {run_id} still {run['state']} after {timeout:g} s: "
                            f"{self.task_states(dag_id, run_id)}")
            time.sleep(2)

    def wait_settled(self, dag_ids: list[str] | None = None, timeout: float = 240, quiet: float = 6) -> None:
        """Until no run of ``dag_ids`` is queued or running, no asset event waits to start master_index,
        and that has held for ``quiet`` seconds (the scheduler may create the next run in between)."""
        dag_ids = dag_ids or self.dag_ids
        deadline, calm_since = time.monotonic() + timeout, None
        while True:
            self.check_alive()
            busy = [f"{d} {r['dag_run_id']} {r['state']}" for d in dag_ids for r in self.runs(d)
                    if r["state"] in ACTIVE]
            if "master_index" in dag_ids:
                busy += [f"master_index waits on {e.get('asset_id')}" for e in self.queued_asset_events()]
            if busy:
                calm_since = None
            elif calm_since is None:
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"Airflow still busy after {timeout:g} s: {busy}; task durations: {self.durations()}")
            time.sleep(2)

    def durations(self, dag_ids: list[str] | None = None) -> list[str]:
        """'dag run_id task state seconds' for every task instance that started, for failure messages."""
        return [f"{d} {r['dag_run_id']} {ti['task_id']} {ti['state']} {ti.get('duration') or 0:.0f}s"
                for d in (dag_ids or self.dag_ids) for r in self.runs(d)
                for ti in self.task_instances(d, r["dag_run_id"]) if ti.get("start_date")]

    def queued_asset_events(self, dag_id: str = "master_index") -> list[dict]:
        """Asset events waiting to start a run of ``dag_id``."""
        import requests

        try:
            return self.client.get(f"dags/{dag_id}/assets/queuedEvents").get("queued_events", [])
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:  # none queued
                return []
            raise

    def clear_queued_asset_events(self, dag_id: str = "master_index") -> None:
        if self.queued_asset_events(dag_id):
            self.client.request("DELETE", f"dags/{dag_id}/assets/queuedEvents")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.client.task_instances(dag_id, run_id)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def all_task_states(self, dag_ids: list[str] | None = None) -> dict[tuple[str, str, str], str | None]:
        """(dag_id, run_id, task_id) → state, for every run of ``dag_ids``."""
        return {(d, r["dag_run_id"], t): s for d in (dag_ids or self.dag_ids) for r in self.runs(d)
                for t, s in self.task_states(d, r["dag_run_id"]).items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as text (the lines' events, one per line)."""
        body = self.client.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                               full_content="true")
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content)
        return str(content)

    def asset_events(self, uri: str | None = None) -> list[dict]:
        events = self.client.asset_events()
        return [e for e in events if uri is None or e.get("uri") == uri]

    def describe(self, dag_id: str, run_id: str) -> str:
        """A short account of a run for assertion messages."""
        return f"{dag_id} {run_id}: {self.task_states(dag_id, run_id)}"

    # --- processes -----------------------------------------------------------------------------------------
    def processes(self):
        """``hub airflow up`` and everything it started (psutil processes), e.g. to find a task's worker."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"hub airflow up stopped (exit {self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 40) -> None:
        import psutil

        family = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def start_cluster(*, paused: bool = True, env: dict[str, str] | None = None, timeout: float = 300):
    """Start ``hub airflow up --no-simulation`` on a free port with this process's environment (the session's
    warehouse, metadata database and connections) plus ``env``; yields an :class:`AirflowCluster` once it
    printed that Airflow is ready."""
    port = free_port()
    output = settings.hub_home() / "logs" / f"hub-airflow-up-{port}.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("hub")), "airflow", "up", "--port", str(port), "--no-simulation"]
    if paused:
        cmd.append("--paused")
    child_env = {**os.environ, "HUB_DAG_RETRY_DELAY": "1", "HUB_AIRFLOW_START_TIMEOUT": str(timeout),
                 "COLUMNS": "200", **(env or {})}
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=settings.PROJECT_ROOT)
    cluster = AirflowCluster(proc, port, output)
    try:
        deadline = time.monotonic() + timeout + 60
        while "Airflow is ready at" not in output.read_text(errors="replace"):
            cluster.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"hub airflow up not ready after {timeout + 60:g} s:\n{cluster.tail()}")
            time.sleep(1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _airflow_deployment(database_url, airflow_db, _served_platforms):
    """One deployment for every test module that needs the scheduler (starting one costs about a minute):
    one retry, one second later, so that a task that fails for good shows as failed within a test's time."""
    # the report task writes one statistical report kind for every community: its forked writers run
    # under the real scheduler's task runner (test_scheduler checks the forms)
    with start_cluster(paused=True, env={"HUB_DAG_RETRIES": "1", "HUB_DAG_RETRY_DELAY": "1",
                                         "HUB_REPORTS": "pyramid"}) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def airflow_cluster(_airflow_deployment):
    """Airflow's four components, the hub's DAGs paused until a test unpauses them; paused again, with
    nothing running or queued, when the module's tests are done."""
    yield _airflow_deployment
    _airflow_deployment.pause()
    _airflow_deployment.wait_settled(timeout=300)
    _airflow_deployment.clear_queued_asset_events()
