"""One ingestion DAG per source in the registry (connectors/sources/*.yaml)."""

import pendulum
from airflow.sdk import DAG, Asset, task

from hub.dag_config import default_args, raw_asset_uri, sources

DOC = """
### Ingest `{name}` — {title}

Extracts the {department} subsystem `{name}` ({kind} source, connection `{conn_id}`) and lands
what it sends in `raw.record` as one load batch: incrementally from the stored cursor, nothing
lost (received = landed + quarantined + duplicates), nothing doubled on reruns, deletions kept
as tombstones. Updates the Asset `{asset}` that the `master_index` DAG is scheduled on. Counts per
page or file are in the task log.
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
            from airflow.sdk import Connection
            from airflow.sdk.exceptions import AirflowFailException

            from hub.pipeline import ConnectionParts, FilesHeld, ingest_source

            c = Connection.get(conn_id)
            parts = ConnectionParts(conn_id, c.conn_type, c.host, c.port, c.login, c.password, c.schema, c.extra_dejson)
            try:
                return ingest_source(name, parts)
            except FilesHeld as exc:  # committed; the files are named and set aside: a retry would hide the failure
                raise AirflowFailException(str(exc)) from exc

        extract_and_land(src["name"], src["conn_id"])
    return dag


for _src in sources():
    globals()[f"ingest_{_src['name']}"] = make_ingest_dag(_src)
