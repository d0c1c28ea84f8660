"""``hub airflow up`` is one per hub home, and its Airflow components die with it, even under kill -9.

A real ``hub airflow up`` in a hub home of its own (the session's warehouse and Airflow metadata database, already
migrated), killed with SIGKILL once it is ready (about a minute on two busy cores).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hub import settings
from hub.airflow_processes import error_lines, port_free
from tests.dags.airflow_cluster import free_port

HUB = str(Path(sys.executable).with_name("hub"))
COMPONENTS = 4


def _family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _components(pid: int) -> list[psutil.Process]:
    """The processes 'hub airflow up' started itself: its four components."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children()
    return []


def test_error_lines_prefer_errors_to_access_log():
    log = ["INFO:     Started server process [12]",
           'INFO:     127.0.0.1:50312 - "GET /api/v2/monitor/health HTTP/1.1" 200 OK',
           "ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 38421): address already in use",
           "Traceback (most recent call last):",
           '  File "x.py", line 1, in <module>',
           "    raise SystemExit(3)",
           "RuntimeError: the port is taken",
           *[f'INFO:     127.0.0.1:{50313 + i} - "GET /api/v2/monitor/health HTTP/1.1" 200 OK' for i in range(20)]]
    picked = error_lines(log, 15)
    assert picked == [log[2], "RuntimeError: the port is taken"]
    quiet = [f"line {i}" for i in range(30)]
    assert error_lines(quiet, 15) == quiet[-15:]  # no error named: the last lines


@pytest.fixture
def own_home(tmp_path, database_url, airflow_db):
    """Environment of a hub home of its own, with the session's databases — and the retries of the
    session's shared deployment (airflow_cluster.py): the DAGs this deployment parses land in the same
    metadata database, and a later module's scheduler must not start runs from a version without retries."""
    return {**os.environ, "HUB_HOME": str(tmp_path / "home"), "COLUMNS": "200", "HUB_DAG_RETRIES": "1",
            "HUB_DAG_RETRY_DELAY": "1"}


def test_one_up_per_hub_home_and_kill_9_stops_airflow(own_home, tmp_path):
    port = free_port()
    out = tmp_path / "up.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([HUB, "airflow", "up", "--port", str(port), "--no-simulation", "--paused"],
                                env=own_home, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=settings.PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 50
        # the lock is taken before anything starts: a second 'hub airflow' (even on another port) is refused
        lock = Path(own_home["HUB_HOME"]) / "airflow" / "hub-airflow.lock"
        while not (lock.exists() and str(proc.pid) in lock.read_text()):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        second = subprocess.run([HUB, "airflow", "up", "--port", str(free_port()), "--no-simulation"],
                                env=own_home, capture_output=True, text=True, timeout=60, cwd=settings.PROJECT_ROOT)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"hub airflow already runs for this hub home (pid {proc.pid}, port {port})" in " ".join(
            (second.stdout + second.stderr).split())

        # once it is ready (its components serve, the scheduler's workers wait for tasks), kill -9 it
        while "Airflow is ready at" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline + 60, out.read_text()
            time.sleep(0.5)
        assert not port_free("127.0.0.1", port)
        family = _family(proc.pid)
        assert len(family) > 1 + COMPONENTS  # and what the components started
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        started = time.monotonic()
        gone, alive = psutil.wait_procs(family, timeout=60)
        left = [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in alive if p.is_running()]
        assert not left, f"still running {time.monotonic() - started:.0f} s after kill -9: {left}"
        assert port_free("127.0.0.1", port)
        # the lock went with the process: the next 'hub airflow' takes it (refused only by the port check here)
        busy = free_port()
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", busy))
            s.listen()
            again = subprocess.run([HUB, "airflow", "up", "--port", str(busy), "--no-simulation"], env=own_home,
                                   capture_output=True, text=True, timeout=60, cwd=settings.PROJECT_ROOT)
        assert again.returncode == 1
        text = " ".join((again.stdout + again.stderr).split())
        assert f"port {busy} on 127.0.0.1 is taken" in text and "already runs" not in text, text
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _family(proc.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        proc.wait(timeout=10)


WORKER_PROBE = """
import multiprocessing, sys

def loaded(modules, queue):
    queue.put([m for m in modules if m in sys.modules])

if __name__ == "__main__":
    from airflow.utils.process_utils import set_component_mp_start_method

    set_component_mp_start_method("scheduler")  # what 'airflow scheduler' does before its LocalExecutor starts
    queue = multiprocessing.SimpleQueue()
    worker = multiprocessing.Process(target=loaded, args=(sys.argv[1:], queue))
    worker.start()
    worker.join()
    print("LOADED", multiprocessing.get_start_method(), *queue.get())
"""


def test_local_executor_workers_start_with_the_task_code_loaded(tmp_path, monkeypatch):
    """The scheduler's LocalExecutor workers come from a server process that imported what every task of the hub
    imports, so a task process (forked from a worker) does not import it anew."""
    from hub import airflow_runner
    from hub.airflow_processes import TASK_MODULES

    for name in ("HUB_AIRFLOW_EXECUTOR", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__SCHEDULER__MP_START_METHOD"):
        monkeypatch.delenv(name, raising=False)
    env = airflow_runner.component_env(free_port())
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    probe = tmp_path / "probe.py"
    probe.write_text(WORKER_PROBE)
    out = subprocess.run([sys.executable, str(probe), *TASK_MODULES], env={**env, "AIRFLOW_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOADED"))
    assert line.split()[1:] == ["forkserver", *TASK_MODULES], out

    monkeypatch.setenv("HUB_AIRFLOW_EXECUTOR", "CeleryExecutor")  # other executors keep Airflow's own default
    assert "AIRFLOW__SCHEDULER__MP_START_METHOD" not in airflow_runner.component_env(free_port())
