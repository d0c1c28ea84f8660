"""``hub status``: what ran and where things stand, in one document.

Per registered source the last load, its cursor and the last complete extract; the current release and
the last publish attempt; the last gate run and master-index run; the open review pairs and audit
findings; and where the warehouse and Airflow's side live (passwords hidden). Counts, times and states
only: no personal data.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.registry import load_registry
from hub import settings
from hub.errors import HubError

NOT_SET_UP = "the warehouse is not set up: run 'hub db upgrade' first"


def _hide_password(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def hub_status(engine: sa.Engine | None = None) -> dict:
    """The status document: ``warehouse``, ``sources`` (by name, every registered one), ``release``,
    ``last_publish_attempt``, ``last_gate_run``, ``last_match_run``, ``open_reviews``, ``open_findings``
    and ``airflow``. Raises :class:`HubError` when the warehouse is not set up."""
    from warehouse import status as stored
    from warehouse.migrate import current_revision
    from warehouse.releases import current_release, last_publish_attempt

    engine = engine or settings.engine()
    revision = current_revision(engine)
    if revision is None:
        raise HubError(NOT_SET_UP)
    registry = load_registry()
    with engine.connect() as conn:
        loads = stored.source_loads(conn, registry)
        release = current_release(conn)
        releases = stored.release_count(conn)
        attempt = last_publish_attempt(conn)
        gate = stored.last_gate(conn)
        match = stored.last_link_run(conn)
        reviews = stored.open_review_count(conn)
        findings = stored.open_finding_count(conn)
    sources = {}
    for name, load in loads.items():
        declared = registry.get(name)
        sources[name] = {
            "department": declared.department if declared else None,
            "kind": declared.kind if declared else None,
            "schedule": declared.schedule if declared else None,
            **load,
        }
    airflow = settings.airflow_env(metadata=False)
    return {
        "warehouse": {"url": engine.url.render_as_string(hide_password=True),
                      "revision": revision},
        "sources": sources,
        "release": {"current": None if release is None else {
            "release_no": release["release_no"], "published_at": release["published_at"],
            "master_count": release["master_count"], "record_count": release["record_count"],
            "validation_run_id": release["validation_run_id"]}, "count": releases},
        "last_publish_attempt": attempt,
        "last_gate_run": gate,
        "last_match_run": match,
        "open_reviews": reviews,
        "open_findings": findings,
        "airflow": {"home": airflow["AIRFLOW_HOME"], "dags_folder": airflow["AIRFLOW__CORE__DAGS_FOLDER"],
                    "metadata_database": _hide_password(settings.airflow_database_url())},
    }


def version_text() -> str:
    """``resident-hub <version>``, with the git commit when the hub runs from a checkout (or ``HUB_CODE_COMMIT``
    is set, as in an image), and without it elsewhere."""
    from hub.provenance import code_version

    code = code_version()
    text = f"resident-hub {code['version'] or '(version unknown: not installed as a package)'}"
    return text + (f" (commit {code['commit'][:12]})" if code["commit"] else "")
