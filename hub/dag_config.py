"""What the DAG files need at parse time: cheap to import, no database and no network."""

from __future__ import annotations

import os
import re
from datetime import timedelta

OWNER = "data-engineering"


def default_args() -> dict:
    """Retries of every task: ``HUB_DAG_RETRIES`` (default 2), first after ``HUB_DAG_RETRY_DELAY`` seconds
    (default 60), then exponentially longer, at most ``HUB_DAG_MAX_RETRY_DELAY`` seconds (default 1800).
    Only transient faults use them: a data fault fails at once (see :func:`data_fault`)."""
    return {
        "owner": OWNER,
        "retries": int(os.environ.get("HUB_DAG_RETRIES", "2")),
        "retry_delay": timedelta(seconds=float(os.environ.get("HUB_DAG_RETRY_DELAY", "60"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=float(os.environ.get("HUB_DAG_MAX_RETRY_DELAY", "1800"))),
    }


def master_index_daily_at() -> str | None:
    """When the master index also runs each day, whether or not every source has landed
    (``HUB_MASTER_INDEX_DAILY_AT``, a cron expression in Beijing time, e.g. ``0 6 * * *``; unset: no daily run).
    With it, a platform that stays down holds the index at most until then; without it, until it loads or the
    DAG is triggered by hand. Note that Airflow starts one run of the latest time slot when the DAG is unpaused."""
    value = (os.environ.get("HUB_MASTER_INDEX_DAILY_AT") or "").strip()
    return value or None


# ExtractError messages of faults that may pass by themselves: the platform could not be reached, answered
# with a server error or "retry later", broke a page off, changed while being read, or ran past the deadline
_TRANSIENT_EXTRACT = re.compile(
    r"cannot reach|failed with HTTP (5\d\d|429|408)|login failed with HTTP (5\d\d|429|408)|did not finish within"
    r"|non-JSON page|invalid or truncated JSON|total changed during the extract|the database query failed"
    r"|rows but the table held|another load of this source is running")


def data_fault(exc: BaseException) -> str | None:
    """Why ``exc`` is a fault of the data or the configuration, which running again will not cure (the task
    then fails at once, without retries), or None for a fault that may pass (connection refused, a server
    error, a timeout, anything unknown): the task's retries take those."""
    from connectors.base import ExtractError
    from connectors.connections import ConnectionConfigError
    from connectors.registry import RegistryError
    from expectations.sources import GateRulesError
    from hub.errors import GateFailed
    from hub.pipeline import FilesHeld
    from warehouse.landing import LoadIdentityError

    if isinstance(exc, GateFailed):
        return f"blocked by the publish gate, not retried: {exc}"
    if isinstance(exc, FilesHeld):
        return f"files set aside, not retried (running again does not help): {exc}"
    if isinstance(exc, RegistryError | ConnectionConfigError | GateRulesError):
        return f"configuration error, not retried: {exc}"
    if isinstance(exc, LoadIdentityError):
        return f"load does not reconcile, not retried: {exc}"
    if isinstance(exc, ExtractError) and not _TRANSIENT_EXTRACT.search(str(exc)):
        return f"the source sent something that cannot be used, not retried: {exc}"
    return None


def transient_note(exc: BaseException) -> str:
    """The log line of a fault that may pass, inside a running task: which try this was and whether Airflow
    tries again."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        tries, last = int(ti.try_number), int(ti.max_tries) + 1
    except Exception:  # outside a task run (a test calling the step directly)
        return f"{exc}; Airflow retries the task if tries are left"
    if tries < last:
        return f"{exc}; a fault that may pass: try {tries} of {last}, Airflow tries again after the retry delay"
    return f"{exc}; a fault that may pass, but this was the last of {last} tries: the task fails"


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
