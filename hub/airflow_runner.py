"""Running the project's DAGs through Airflow's own commands, with the project's AIRFLOW_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hub import settings
from hub.airflow_processes import (
    die_with_parent,
    error_lines,
    port_free,
    preloaded_workers,
    take_lock,
    task_parallelism,
)
from hub.errors import HubError


def _airflow() -> str:
    exe = Path(sys.executable).with_name("airflow")
    return str(exe) if exe.exists() else (shutil.which("airflow") or "airflow")


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Airflow's own commands start further 'airflow' processes by name: put ours first on PATH
    path = os.pathsep.join([str(Path(_airflow()).parent), os.environ.get("PATH", "")])
    return {**os.environ, **settings.airflow_env(), "PATH": path, **(extra or {})}


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def ensure_metadata_db(extra_env: dict[str, str] | None = None) -> str:
    """Create and migrate Airflow's PostgreSQL metadata database on first use (and after an Airflow
    upgrade); returns its URL. The database's comment records the Airflow version it was migrated for."""
    import sqlalchemy as sa

    from warehouse.embedded import ensure_database

    url = (extra_env or {}).get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or settings.airflow_database_url()
    target = sa.make_url(url)
    mark = f"airflow {_airflow_version()} metadata"
    try:
        ensure_database(target.set(database="postgres").render_as_string(hide_password=False), target.database)
    except sa.exc.OperationalError:
        pass  # a role without access to 'postgres': the database must exist already (checked below)
    engine = sa.create_engine(target)
    try:
        with engine.connect() as conn:
            comment = conn.execute(sa.text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
            )).scalar()
    except sa.exc.OperationalError as exc:
        raise HubError(f"Airflow's metadata database {target.render_as_string()} cannot be reached: "
                       f"{str(exc.orig).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if comment == mark:
        return url
    Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log = settings.hub_home() / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call([_airflow(), "db", "migrate"], env=env({**(extra_env or {}),
                             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}), stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise HubError(f"airflow db migrate failed (exit {rc}); see {log}")
    engine = sa.create_engine(target, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT quote_ident(current_database())")).scalar_one()
            conn.execute(sa.text(f"COMMENT ON DATABASE {name} IS '{mark}'"))
    finally:
        engine.dispose()
    return url


def test_dag(dag_id: str, extra_env: dict[str, str] | None = None) -> Path:
    """Run one DAG once with ``airflow dags test``; returns its log file, raises with the log's tail on failure."""
    log = settings.hub_home() / "logs" / f"{dag_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call([_airflow(), "dags", "test", dag_id], env=env(extra_env), stdout=out,
                             stderr=subprocess.STDOUT)
    if rc != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line or "error" in line][-5:]
        raise HubError(f"DAG {dag_id} failed (exit {rc}); log: {log}" + ("\n  " + "\n  ".join(tail) if tail else ""))
    return log


# --- the hub's own Airflow deployment: one component per process -------------------------------------------

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
HEALTH_KEYS = {"metadatabase": "metadatabase", "scheduler": "scheduler", "triggerer": "triggerer",
               "dag_processor": "dag-processor"}
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def port() -> int:
    """The API server's port: ``HUB_AIRFLOW_PORT`` (default 8080)."""
    return int(os.environ.get("HUB_AIRFLOW_PORT") or 8080)


def host() -> str:
    """Where the API server listens: ``HUB_AIRFLOW_HOST`` (default 127.0.0.1, this machine only)."""
    return os.environ.get("HUB_AIRFLOW_HOST") or os.environ.get("AIRFLOW__API__HOST") or "127.0.0.1"


def executor() -> str:
    """``HUB_AIRFLOW_EXECUTOR``, else Airflow's own ``AIRFLOW__CORE__EXECUTOR``, else the LocalExecutor."""
    return os.environ.get("HUB_AIRFLOW_EXECUTOR") or os.environ.get("AIRFLOW__CORE__EXECUTOR") or "LocalExecutor"


def api_url(port_: int | None = None) -> str:
    """The URL this machine reaches the API server at."""
    h = host()
    return f"http://{'127.0.0.1' if h in ('0.0.0.0', '::') else h}:{port_ or port()}"


def component_env(port_: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of every component: the hub's AIRFLOW_HOME, metadata database and DAGs, the executor, the
    API server's address (tasks report to its execution API), DAGs created paused. Settings already in the
    environment (``AIRFLOW__…``) win, except the executor (see :func:`executor`) and paused-at-creation."""
    p = port_ or port()
    e = env(extra)
    e["AIRFLOW__CORE__EXECUTOR"] = executor()
    e["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"  # unpaused by 'hub airflow' once all is healthy
    defaults = {
        "AIRFLOW__API__HOST": host(),
        "AIRFLOW__API__PORT": str(p),
        "AIRFLOW__API__BASE_URL": api_url(p),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(p)}/execution/",
        "AIRFLOW__API__WORKERS": "1",  # one process answers the UI and the tasks of one machine
        # the LocalExecutor starts this many worker processes: enough for every ingestion DAG at once
        "AIRFLOW__CORE__PARALLELISM": str(task_parallelism()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
    }
    if e["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor":
        defaults.update(preloaded_workers())
    for key, value in defaults.items():
        if not e.get(key):
            e[key] = value
    return e


def passwords_file() -> Path:
    """The API server's login passwords (SimpleAuthManager), readable by the hub's user only."""
    configured = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return Path(configured) if configured else Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]) / PASSWORDS_FILE


def users() -> list[str]:
    spec = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS") or "admin:admin"
    return [part.split(":")[0].strip() for part in spec.split(",") if part.strip()]


def ensure_logins() -> Path:
    """Give every user of the API server a password: ``HUB_AIRFLOW_ADMIN_PASSWORD`` for ``admin`` if set,
    else a generated one kept in the passwords file (mode 600). Returns the file; prints no secret."""
    import json
    import secrets

    path = passwords_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text() or "{}") if path.exists() else {}
    wanted = dict(known)
    for user in users():
        if user not in wanted:
            wanted[user] = secrets.token_urlsafe(12)
    given = os.environ.get("HUB_AIRFLOW_ADMIN_PASSWORD")
    if given and "admin" in wanted:
        wanted["admin"] = given
    if wanted != known or not path.exists():
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(wanted) + "\n")
    return path


def password(user: str = "admin") -> str:
    import json

    return json.loads(passwords_file().read_text())[user]


def ensure_config(extra_env: dict[str, str] | None = None) -> Path:
    """Airflow writes ``airflow.cfg`` (with the secret that signs its tokens) the first time it runs; write it once
    here so that components started together share one secret."""
    cfg = Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]) / "airflow.cfg"
    if not cfg.exists():
        subprocess.run([_airflow(), "config", "get-value", "core", "executor"], env=env(extra_env),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return cfg


def init(extra_env: dict[str, str] | None = None) -> dict:
    """Everything the components need before they start: the warehouse migrated, Airflow's metadata database
    created and migrated, its configuration written, and the API server's logins."""
    from hub.pipeline import prepare_warehouse

    revision = prepare_warehouse()
    metadata = ensure_metadata_db(extra_env)
    ensure_config(extra_env)
    return {"warehouse_revision": revision, "metadata": metadata, "passwords": str(ensure_logins())}


def component_command(component: str) -> list[str]:
    if component not in COMPONENTS:
        raise HubError(f"unknown Airflow component {component!r}; one of: {', '.join(COMPONENTS)}")
    return [_airflow(), component]


def exec_component(component: str, extra_env: dict[str, str] | None = None) -> None:
    """Replace this process by one Airflow component (signals reach it directly)."""
    cmd = component_command(component)
    if component == "api-server":  # its logins, in this machine's (or container's) AIRFLOW_HOME
        ensure_logins()
    os.execve(cmd[0], cmd, component_env(extra=extra_env))


class ApiClient:
    """The API server's public REST API (v2), logged in as one of its users."""

    def __init__(self, base_url: str, user: str = "admin", password_: str | None = None, timeout: float = 10):
        import requests

        self.base, self.user, self.timeout = base_url.rstrip("/"), user, timeout
        self._password = password_
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: never through a proxy
        self._token: str | None = None

    def health(self) -> dict:
        resp = self.session.get(f"{self.base}/api/v2/monitor/health", timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            resp = self.session.post(f"{self.base}/auth/token", timeout=self.timeout,
                                     json={"username": self.user, "password": self._password or password(self.user)})
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs):
        resp = self.session.request(method, f"{self.base}/api/v2/{path.lstrip('/')}", headers=self._auth(),
                                    timeout=self.timeout, **kwargs)
        if resp.status_code == 401:  # the token expired: log in again once
            self._token = None
            resp = self.session.request(method, f"{self.base}/api/v2/{path.lstrip('/')}", headers=self._auth(),
                                        timeout=self.timeout, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def get(self, path: str, **params):
        return self.request("GET", path, params=params or None)

    def dags(self) -> dict[str, dict]:
        return {d["dag_id"]: d for d in self.get("dags", limit=1000)["dags"]}

    def import_errors(self) -> list[dict]:
        return self.get("importErrors", limit=100)["import_errors"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"dags/{dag_id}", params={"update_mask": "is_paused"}, json={"is_paused": paused})

    def trigger(self, dag_id: str, note: str | None = None) -> str:
        body = {"logical_date": None, **({"note": note} if note else {})}
        return self.request("POST", f"dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        """The latest 100 runs, newest first."""
        return self.get(f"dags/{dag_id}/dagRuns", limit=100, order_by="-run_after")["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}")

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        self.request("PATCH", f"dags/{dag_id}/dagRuns/{run_id}", params={"update_mask": "note"}, json={"note": note})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str):
        import requests

        try:
            return self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise

    def asset_events(self, **params) -> list[dict]:
        return self.get("assets/events", limit=1000, **params)["asset_events"]


NOTE_TASKS = ("gate", "publish", "standardize", "match", "audit")


def annotate_runs(client: ApiClient, done: set[str]) -> list[str]:
    """Write into the note of each finished ``master_index`` run why it published nothing (the reason its tasks
    kept as the XCom ``hub_reason``); ``done`` holds the runs already looked at. Returns the runs annotated."""
    annotated = []
    for run in client.runs("master_index")[:20]:
        run_id = run["dag_run_id"]
        if run["state"] not in ("success", "failed") or run_id in done:
            continue
        done.add(run_id)
        if run.get("note"):
            continue
        for task_id in NOTE_TASKS:
            reason = client.xcom("master_index", run_id, task_id, "hub_reason")
            if reason:
                client.set_note("master_index", run_id, str(reason))
                annotated.append(run_id)
                break
    return annotated


def hub_dag_ids() -> list[str]:
    from hub.dag_config import sources

    return [f"ingest_{s['name']}" for s in sources()] + ["master_index"]


def _metadata_engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _hold_hub_dags(metadata_url: str, dag_ids: list[str]) -> tuple[set[str], set[str]]:
    """Before the scheduler starts: pause the hub's DAGs that are unpaused (nothing may run before every component
    is healthy) and remember them in a file, so that an interrupted start still unpauses them next time.
    Returns (DAGs to unpause once healthy, DAGs the user paused)."""
    import json

    import sqlalchemy as sa

    held_file = Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]) / "hub-held-dags.json"
    held = set(json.loads(held_file.read_text())) if held_file.exists() else set()
    engine = _metadata_engine(metadata_url)
    try:
        with engine.begin() as conn:
            known = dict(conn.execute(sa.text("SELECT dag_id, is_paused FROM dag WHERE dag_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)), {"ids": dag_ids}).all())
            running = {d for d, paused in known.items() if not paused}
            if running:
                conn.execute(sa.text("UPDATE dag SET is_paused = true WHERE dag_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)), {"ids": sorted(running)})
    finally:
        engine.dispose()
    held |= running
    held_file.write_text(json.dumps(sorted(held)))
    new = set(dag_ids) - set(known)
    user_paused = {d for d, paused in known.items() if paused} - held
    return held | new, user_paused


def _release_held(unpaused: set[str]) -> None:
    import json

    held_file = Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]) / "hub-held-dags.json"
    if held_file.exists():
        held_file.write_text(json.dumps(sorted(set(json.loads(held_file.read_text())) - unpaused)))


def simulation_spec() -> dict | None:
    """The simulated county the hub home holds (left by ``hub demo`` or ``hub simulate``), or None."""
    import json

    spec = settings.hub_home() / "sim" / "county.json"
    return json.loads(spec.read_text()) if spec.exists() else None


class Stop(Exception):
    """SIGTERM or Ctrl-C: stop every component."""


class Deployment:
    """The four components as child processes of this one, logs under ``HUB_HOME/logs/airflow``."""

    def __init__(self, port_: int, extra_env: dict[str, str], echo=print):
        self.port, self.extra, self.echo = port_, extra_env, echo
        self.logs = settings.hub_home() / "logs" / "airflow"
        self.procs: dict[str, subprocess.Popen] = {}
        self.client = ApiClient(api_url(port_))

    def log_of(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def start(self) -> None:
        """Start the components from the calling thread (the main one: on Linux they get SIGTERM when the
        thread that started them ends, so they do not outlive a killed ``hub airflow``)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        e = component_env(self.port, self.extra)
        for component in COMPONENTS:
            with self.log_of(component).open("ab") as out:
                self.procs[component] = subprocess.Popen(component_command(component), env=e, stdout=out,
                                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                         preexec_fn=die_with_parent())

    def tail(self, component: str, lines: int = 15) -> str:
        try:
            text = self.log_of(component).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in error_lines(text, lines))

    def check_alive(self) -> None:
        for component, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None:
                raise HubError(f"the Airflow {component} stopped (exit {rc}); the end of {self.log_of(component)}:\n"
                               + self.tail(component))

    def health(self) -> dict[str, str]:
        """Component → 'healthy', 'unhealthy' or 'starting' (API server not answering yet)."""
        try:
            body = self.client.health()
        except Exception:  # noqa: BLE001 - not up yet
            return {"api-server": "starting", **{c: "starting" for c in HEALTH_KEYS.values()}}
        out = {"api-server": "healthy"}
        for key, name in HEALTH_KEYS.items():
            out[name] = (body.get(key) or {}).get("status") or "starting"
        return out

    def wait_ready(self, dag_ids: list[str], timeout: float) -> dict[str, str]:
        """Until every component is healthy and every hub DAG is parsed; progress lines while waiting."""
        import time

        start, last, said = time.monotonic(), None, 0.0
        while True:
            self.check_alive()
            status = self.health()
            parsed: set[str] = set()
            if all(s == "healthy" for s in status.values()):
                parsed = set(self.client.dags()) & set(dag_ids)
                if parsed == set(dag_ids):
                    return status
            line = ", ".join(f"{c} {s}" for c, s in status.items())
            if status.get("api-server") == "healthy":
                line += f"; DAGs parsed {len(parsed)} of {len(dag_ids)}"
            elapsed = time.monotonic() - start
            if line != last or elapsed - said > 15:
                self.echo(f"  waiting ({elapsed:.0f} s): {line}")
                last, said = line, elapsed
            if elapsed > timeout:
                errors = [f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}"
                          for e in (self.client.import_errors() if status.get("api-server") == "healthy" else [])]
                raise HubError(f"Airflow was not ready within {timeout:g} s ({line})"
                               + ("; DAG files that do not import: " + "; ".join(errors) if errors else "")
                               + f"; logs under {self.logs}")
            time.sleep(2)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM to every component and what it started, SIGKILL to what is left after ``grace`` seconds."""
        import signal
        import time

        import psutil

        family: list[psutil.Process] = []
        for proc in self.procs.values():
            try:
                p = psutil.Process(proc.pid)
                family += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        _, alive = psutil.wait_procs(family, timeout=max(0.1, deadline - time.monotonic()))
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def up(port_: int | None = None, *, simulation: bool = True, unpause: bool = True, echo=print,
       timeout: float | None = None) -> int:
    """``hub airflow``: init, start the four components, wait until they are healthy and every hub DAG is
    parsed, then unpause the hub's DAGs; supervise until SIGTERM or Ctrl-C, then stop them all.
    One per hub home (see :func:`take_lock`)."""
    p = port_ or port()
    lock = take_lock(p)  # before anything else: a second 'hub airflow' on this hub home stops here
    try:
        return _up_locked(p, simulation=simulation, unpause=unpause, echo=echo, timeout=timeout)
    finally:
        lock.close()


def _up_locked(p: int, *, simulation: bool, unpause: bool, echo, timeout: float | None) -> int:
    import signal
    import time

    if not port_free(host(), p):
        raise HubError(f"port {p} on {host()} is taken (another Airflow, or another program): stop it or choose "
                       "another port with --port or HUB_AIRFLOW_PORT")
    timeout = timeout or float(os.environ.get("HUB_AIRFLOW_START_TIMEOUT") or 300)
    extra = {"HUB_DATABASE_URL": settings.database_url()}
    done = init(extra)
    platforms, served = None, {}
    spec = simulation_spec() if simulation else None
    if spec:
        from hub.simulation import connection_env, start_simulation

        platforms = start_simulation(workdir=settings.hub_home() / "sim", **spec)
        served = {k: v for k, v in connection_env(platforms).items() if k not in os.environ}  # real ones win
        extra.update(served)
    dag_ids = hub_dag_ids()
    to_unpause, user_paused = _hold_hub_dags(done["metadata"], dag_ids)
    deployment = Deployment(p, extra, echo)

    def _stop(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        echo(f"starting Airflow {_airflow_version()} ({executor()}): {', '.join(COMPONENTS)}; logs under "
             f"{deployment.logs}")
        if spec:
            echo(f"serving the simulated county of this hub home ({spec['persons']} persons, seed {spec['seed']}, day "
                 f"{spec.get('days', 0)}) on loopback for {len(served)} connection(s)"
                 + (f"; {len(connection_env(platforms)) - len(served)} set in the environment win" if
                    len(served) < len(connection_env(platforms)) else "") + " (--no-simulation: real platforms)")
        deployment.start()
        status = deployment.wait_ready(dag_ids, timeout)
        unpaused = sorted(to_unpause - user_paused) if unpause else []
        for dag_id in unpaused:
            deployment.client.set_paused(dag_id, False)
        _release_held(set(unpaused))
        url = api_url(p)
        echo(f"Airflow is ready at {url}")
        local = host() in LOCAL_HOSTS
        users_ = ", ".join(users())
        echo(f"  login: {users_}; password in {passwords_file()}" if local
             else f"  login: {users_} (passwords as configured for this deployment)")
        for component, state in status.items():
            if component in deployment.procs:
                echo(f"  {component:<14} {state:<9} pid {deployment.procs[component].pid:<8} log "
                     f"{deployment.log_of(component)}")
            else:
                echo(f"  {component:<14} {state}")
        if unpaused:
            echo(f"  unpaused {len(unpaused)} DAG(s): {', '.join(unpaused)}")
        elif not unpause:
            echo("  the hub's DAGs stay paused (--paused)")
        if user_paused:
            echo(f"  left paused as you set them: {', '.join(sorted(user_paused))}")
        echo("press Ctrl-C to stop")
        looked_at: set[str] = set()
        last_look = 0.0
        while True:
            deployment.check_alive()
            if time.monotonic() - last_look > 5:  # the reason a run published nothing, in its note
                last_look = time.monotonic()
                try:
                    annotate_runs(deployment.client, looked_at)
                except Exception as exc:  # noqa: BLE001 - the API server may be busy; the next look retries
                    looked_at.clear()
                    if not isinstance(exc, OSError | ValueError):
                        import logging

                        logging.getLogger("hub.airflow").debug("run notes: %s", exc)
            time.sleep(1)
    except Stop as why:
        echo(f"stopping Airflow ({why})")
        return 0
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        deployment.stop()
        if platforms is not None:
            platforms.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
