"""The master-index DAG: standardize → match → gate → publish → audit → report, whenever a source has landed."""

import pendulum
from airflow.sdk import Asset, AssetAny, dag, task, teardown

from hub.dag_config import PUBLISHED_ASSET_URI, default_args, raw_asset_uri, sources

RAW_ASSETS = [Asset(name=f"raw_{s['name']}", uri=raw_asset_uri(s["name"])) for s in sources()]
PUBLISHED = Asset(name="published_master_person", uri=PUBLISHED_ASSET_URI)


@dag(
    dag_id="master_index",
    schedule=AssetAny(*RAW_ASSETS),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    default_args=default_args(),
    tags=["mpi", "publish"],
    max_active_runs=1,
    doc_md="""
### Master person index

Runs when any source has landed new raw records:

1. **standardize** — rebuild `std.resident` from raw (ID numbers, names; raw kept beside clean);
2. **match** — link records on valid ID numbers into stable master ids (`mpi.crosswalk`, `mpi.golden`);
3. **gate** — the Great Expectations publish gate: a suite per source (`source.<name>`) and the
   master-index suites, thresholds in `expectations/gate_rules.yaml`; a failure stops here with the
   failing expectations in the task log, keeps the current release and records why
   (`audit.publish_attempt`);
4. **publish** — a new numbered release in `publish.master_person`, switched atomically;
5. **audit** — the cross-department consistency audits on the current release (`audit.finding`);
6. **report** — everything people read, built once per run: the data-quality scorecard
   (`scorecard.html`, beside the Data Docs) and one page per department (`scorecard_<department>.html`),
   each department's findings workbook and the audit report under `.hub/audit/`. It runs even when an
   earlier step failed, so a blocked gate shows on the scorecard with its failing expectations; like
   any clean-up step it does not decide the run's state: a failed gate still fails the run.
""",
)
def master_index():
    @task
    def standardize() -> dict:
        from hub.pipeline import standardize_sources

        return standardize_sources()

    @task
    def match(_standardized: dict) -> dict:
        from hub.pipeline import build_master_index

        return build_master_index()

    @task
    def gate(_matched: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from hub.errors import GateFailed
        from hub.pipeline import run_gate

        try:
            return run_gate()
        except GateFailed as exc:  # bad data is not retried
            raise AirflowFailException(str(exc)) from exc

    @task(outlets=[PUBLISHED])
    def publish(gate_result: dict) -> dict:
        from hub.pipeline import publish_release

        return publish_release(gate_result["validation_run_id"])

    @task
    def audit(published: dict) -> dict:
        from hub.pipeline import audit_release

        return audit_release(published["release_no"])

    @teardown
    def report() -> dict:
        from hub.pipeline import build_reports

        return build_reports()

    audit(publish(gate(match(standardize())))) >> report()


master_index()
