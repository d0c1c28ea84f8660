"""The processes of ``hub airflow``: one per hub home (a lock), components that stop when it dies, what a
component's log says about why it stopped, and the LocalExecutor's workers started with the tasks' code loaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hub import settings
from hub.errors import HubError


def port_free(host_: str, port_: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host_ else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_, port_))
        except OSError:
            return False
    return True


def error_lines(lines: list[str], limit: int = 15) -> list[str]:
    """What a component's log says about why it stopped: its last lines naming an error (``ERROR``, ``Errno``,
    ``Error:``/``Exception:`` and the last line of each traceback), else its last lines. Access-log lines of
    the API server are never counted as errors."""
    picked: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback:
            if line.startswith((" ", "\t")) or not line.strip():
                continue
            in_traceback = False
            picked.append(line)  # the traceback's last line: the exception and its message
            continue
        if '" 200' in line or "HTTP/1.1\" " in line:
            continue
        if "ERROR" in line or "Errno" in line or "CRITICAL" in line:
            picked.append(line)
    return picked[-limit:] if picked else lines[-limit:]


def die_with_parent():
    """A ``preexec_fn`` for Linux: the child gets SIGTERM when the thread that started it ends (kill -9 of
    ``hub airflow`` included), so that the Airflow components stop with it; elsewhere None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: nothing to load in the child
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class AlreadyRunning(HubError):
    """Another ``hub airflow`` holds this hub home's lock."""


def lock_file() -> Path:
    return Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]) / "hub-airflow.lock"


def take_lock(port_: int):
    """One ``hub airflow`` per hub home: an exclusive lock on ``HUB_HOME/airflow/hub-airflow.lock``, held
    while the returned file stays open and released by the kernel when the process ends however it ends.
    The file names the holder's pid and port. Raises :class:`AlreadyRunning` naming them."""
    import fcntl
    import json

    path = lock_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")  # not inherited by the components (close-on-exec)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        try:
            holder = json.loads(handle.read() or "{}")
        except ValueError:
            holder = {}
        handle.close()
        raise AlreadyRunning(f"hub airflow already runs for this hub home (pid {holder.get('pid', '?')}, port "
                             f"{holder.get('port', '?')}); stop it first (Ctrl-C or SIGTERM to that pid)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "port": port_}) + "\n")
    handle.flush()
    return handle


#: What every task of the hub's DAGs imports: Airflow's task runner, the DAG files' configuration and the
#: pipeline with everything it loads (SQLAlchemy, pandas, the connectors); and Great Expectations
#: (:mod:`expectations.preload`), which only the gate task imports but which takes seconds to import (about 5 s of
#: the gate's time on two cores).
TASK_MODULES = ("airflow.sdk", "airflow.sdk.execution_time.task_runner", "pendulum", "hub.dag_config",
                "connectors.registry", "hub.pipeline", "expectations.preload")


def task_parallelism() -> int:
    """How many task processes the LocalExecutor runs at once: enough for every ingestion DAG at once."""
    return max(8, 2 * (os.cpu_count() or 1))


def preloaded_workers() -> dict[str, str]:
    """The LocalExecutor's worker processes start from a server process that has imported :data:`TASK_MODULES`
    (multiprocessing's forkserver, preloaded): each task process, forked from a worker, starts with them
    loaded instead of importing them anew (seconds of CPU per task; the ingestion DAGs start together)."""
    return {"AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_MODULES)}
