"""Running the simulated county's platforms for the demo, ``hub simulate`` and the tests."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from connectors.connections import connection_json

# the Airflow connection id the registry uses for each simulated platform
CONNECTION_IDS = {"civil_affairs": "mz_platform", "health": "wj_platform", "social_security": "rs_platform"}


def start_simulation(*, persons: int, seed: int, workdir: Path, days: int = 0):
    """Generate the county (after ``days`` days of change) and serve all its platforms on loopback."""
    from simulators.county import county_with_days
    from simulators.platforms import start_platforms
    from simulators.population import CountySpec

    county = county_with_days(CountySpec(persons=persons, seed=seed), days)
    platforms = start_platforms(county, workdir)
    # 'hub airflow' serves the same county again from this hub home (hub.airflow_runner.simulation_spec)
    (workdir / "county.json").write_text(json.dumps({"persons": persons, "seed": seed, "days": days}) + "\n")
    return platforms


def days_in_the_future(county) -> int:
    """How many whole days the county's update times (Beijing time) lie after now; 0 when none do.

    The hub quarantines update times later than an extract's start (``cursor_in_future``), so a county
    served further ahead than today cannot be ingested in full."""
    import datetime as dt
    import math
    from zoneinfo import ZoneInfo

    now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    return max(0, math.ceil((county.as_of - now) / dt.timedelta(days=1)))


def connection_env(platforms) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables that point the registry's connections at the simulated platforms."""
    env = {}
    for name, server in platforms.rest.items():
        u = urlsplit(server.url)
        env[f"AIRFLOW_CONN_{CONNECTION_IDS[name].upper()}"] = connection_json(
            conn_type="http", host=u.hostname, port=u.port, schema=u.scheme, login=server.username,
            password=server.password)
    env["AIRFLOW_CONN_DROPS"] = connection_json(conn_type="fs", extra={"path": str(platforms.drops)})
    env["AIRFLOW_CONN_LEGACY_BIRTH"] = connection_json(conn_type="sqlite",
                                                       host=platforms.sql_url.removeprefix("sqlite:///"))
    return env
