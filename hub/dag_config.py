"""What the DAG files need at parse time: cheap to import, no database and no network."""

from __future__ import annotations

import os
from datetime import timedelta

OWNER = "data-engineering"


def default_args() -> dict:
    """Retries come from ``HUB_DAG_RETRIES`` (default 2) so tests and demos can run without waits."""
    return {
        "owner": OWNER,
        "retries": int(os.environ.get("HUB_DAG_RETRIES", "2")),
        "retry_delay": timedelta(seconds=int(os.environ.get("HUB_DAG_RETRY_DELAY", "60"))),
    }


def raw_asset_uri(source: str) -> str:
    return f"x-hub://warehouse/raw/{source}"


PUBLISHED_ASSET_URI = "x-hub://warehouse/publish/master_person"


def sources() -> list[dict]:
    """The registered sources, as plain dicts (name, title, department, schedule, conn_id, kind)."""
    from connectors.registry import load_registry

    return [
        {"name": s.name, "title": s.title, "department": s.department, "schedule": s.schedule,
         "conn_id": s.conn_id, "sharing_class": s.sharing_class, "kind": s.kind}
        for s in load_registry().values()
    ]
