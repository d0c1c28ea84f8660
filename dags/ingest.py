"""One ingestion DAG per source in the registry (connectors/sources/*.yaml)."""

import pendulum
from airflow.sdk import DAG, Asset, task

from hub.dag_config import default_args, raw_asset_uri, sources

DOC = """
### Ingest `{name}` — {title}

Extracts the {department} subsystem `{name}` ({kind} source, connection `{conn_id}`) and lands
what it sends in `raw.record` as one load batch: incrementally from the stored cursor, nothing
lost (received = landed + quarantined + duplicates), nothing doubled on reruns, deletions kept
as tombstones. Updates the Asset `{asset}`: the `master_index` DAG runs once every source's Asset
has been updated. The ingestion DAGs run side by side. Counts per page or file are in the task log;
a drop file loaded before is skipped unread (the log says so).

**Failures.** A fault that may pass (connection refused, a server error or "retry later", a
timeout, a page cut off) is retried `HUB_DAG_RETRIES` times with growing waits. A fault of the
data or the configuration (a file set aside, a file or header that cannot be read, a refused
login, an undefined connection, a load that does not reconcile) fails at once, without retry,
with the reason as the last line of the task log. One run at a time: a second trigger waits
(queued), and `hub ingest {name}` refuses to run while this DAG loads the source.
"""


def make_ingest_dag(src: dict) -> DAG:
    asset = Asset(name=f"raw_{src['name']}", uri=raw_asset_uri(src["name"]))
    with DAG(
        dag_id=f"ingest_{src['name']}",
        schedule=src["schedule"],
        start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        catchup=False,
        default_args=default_args(),
        tags=["ingest", src["department"]],
        doc_md=DOC.format(asset=asset.uri, **src),
        max_active_runs=1,
    ) as dag:

        @task(task_id="extract_and_land", outlets=[asset])
        def extract_and_land(name: str, conn_id: str) -> dict:
            import logging

            from airflow.sdk import Connection
            from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

            from hub.dag_config import data_fault, transient_note
            from hub.pipeline import ConnectionParts, ingest_source

            log = logging.getLogger("hub.dags")
            try:
                c = Connection.get(conn_id)
            except AirflowNotFoundException as exc:
                reason = (f"connection {conn_id!r} is not defined, not retried: set AIRFLOW_CONN_{conn_id.upper()} "
                          "or add it to the secrets backend")
                log.error(reason)
                raise AirflowFailException(reason) from exc
            parts = ConnectionParts(conn_id, c.conn_type, c.host, c.port, c.login, c.password, c.schema, c.extra_dejson)
            try:
                return ingest_source(name, parts)
            except Exception as exc:
                reason = data_fault(exc)
                if reason is None:  # transient (connection refused, 5xx, timeout …): the task's retries take it
                    log.error(transient_note(exc))
                    raise
                log.error(reason)
                raise AirflowFailException(reason) from exc

        extract_and_land(src["name"], src["conn_id"])
    return dag


for _src in sources():
    globals()[f"ingest_{_src['name']}"] = make_ingest_dag(_src)
