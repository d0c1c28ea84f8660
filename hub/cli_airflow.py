"""``hub airflow``: the hub's DAGs under Airflow's own components."""

from __future__ import annotations

import typer

from hub.cli_common import console, user_errors

airflow_app = typer.Typer(help="Run the hub's DAGs under Airflow.", invoke_without_command=True)


@airflow_app.callback()
def airflow_ui(ctx: typer.Context) -> None:
    """Start 'airflow standalone' (scheduler, API server and UI) with the hub's DAGs."""
    if ctx.invoked_subcommand is not None:
        return
    from hub import airflow_runner, settings

    with user_errors():
        url = settings.database_url()
        console.print(f"AIRFLOW_HOME={settings.airflow_env()['AIRFLOW_HOME']}  dags: {settings.DAGS_FOLDER}")
        raise typer.Exit(airflow_runner.standalone({"HUB_DATABASE_URL": url}))
