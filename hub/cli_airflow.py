"""``hub airflow``: the hub's DAGs under Airflow's own components (scheduler, dag-processor, triggerer,
api-server). The deployment in docker/ runs the same commands: ``hub airflow init`` once, then one
``hub airflow run COMPONENT`` per service."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli_common import console, user_errors

airflow_app = typer.Typer(help="Run the hub's DAGs under Airflow.", invoke_without_command=True)

PortOption = Annotated[int | None, typer.Option("--port", help="The API server's port (default HUB_AIRFLOW_PORT or 8080).",
                                                min=1, max=65535)]


def _up(port: int | None, no_simulation: bool, paused: bool) -> None:
    from hub import airflow_runner

    with user_errors():
        code = airflow_runner.up(port, simulation=not no_simulation, unpause=not paused,
                                 echo=lambda line: console.print(line, highlight=False, soft_wrap=True))
    raise typer.Exit(code)


@airflow_app.callback()
def airflow_default(
    ctx: typer.Context,
    port: PortOption = None,
    no_simulation: Annotated[bool, typer.Option("--no-simulation", help="Do not serve the simulated county of this hub "
                                                "home (real platforms).")] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Leave the hub's DAGs paused.")] = False,
) -> None:
    """Start Airflow with the hub's DAGs (same as 'hub airflow up')."""
    if ctx.invoked_subcommand is not None:
        return
    _up(port, no_simulation, paused)


@airflow_app.command("up")
def airflow_up(
    port: PortOption = None,
    no_simulation: Annotated[bool, typer.Option("--no-simulation", help="Do not serve the simulated county of this hub "
                                                "home (real platforms).")] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Leave the hub's DAGs paused.")] = False,
) -> None:
    """Prepare everything, start the scheduler, dag-processor, triggerer and API server, wait until they are
    healthy and every DAG is parsed, then unpause the hub's DAGs. Ctrl-C stops them all.

    When the hub home holds a simulated county (left by 'hub demo' or 'hub simulate'), its platforms are served
    for as long as Airflow runs; connections set in the environment or a secrets backend win."""
    _up(port, no_simulation, paused)


@airflow_app.command("init")
def airflow_init() -> None:
    """Migrate the warehouse and Airflow's metadata database, write Airflow's configuration and the API
    server's logins. Safe to run again."""
    from hub import airflow_runner, settings

    with user_errors():
        done = airflow_runner.init({"HUB_DATABASE_URL": settings.database_url()})
    from sqlalchemy.engine import make_url

    console.print(f"warehouse at revision {done['warehouse_revision']}", highlight=False)
    console.print(f"Airflow metadata: {make_url(done['metadata']).render_as_string(hide_password=True)}",
                  highlight=False)
    users = ", ".join(airflow_runner.users())
    if airflow_runner.host() in airflow_runner.LOCAL_HOSTS:
        console.print(f"API server login: {users}; password in {done['passwords']}", highlight=False)
    else:
        console.print(f"API server login: {users} (passwords as configured for this deployment)", highlight=False)


@airflow_app.command("run")
def airflow_run(
    component: Annotated[str, typer.Argument(help="scheduler | dag-processor | triggerer | api-server")],
) -> None:
    """Run one Airflow component in the foreground with the hub's settings (it replaces this process, so
    signals reach it). The executor is HUB_AIRFLOW_EXECUTOR, else AIRFLOW__CORE__EXECUTOR, else LocalExecutor."""
    import os

    from hub import airflow_runner, settings

    with user_errors():
        airflow_runner.component_command(component)  # an unknown component is named before anything starts
        extra = {} if os.environ.get("HUB_DATABASE_URL") else {"HUB_DATABASE_URL": settings.database_url()}
        airflow_runner.exec_component(component, extra)
