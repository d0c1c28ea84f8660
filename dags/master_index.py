"""The master-index DAG: standardize → match → gate → publish → audit → report, once every source has landed
(and, with HUB_MASTER_INDEX_DAILY_AT set, at the latest once a day)."""

import pendulum
from airflow.sdk import Asset, AssetAll, AssetOrTimeSchedule, CronTriggerTimetable, dag, task, teardown

from hub.dag_config import PUBLISHED_ASSET_URI, default_args, master_index_daily_at, raw_asset_uri, sources

RAW_ASSETS = [Asset(name=f"raw_{s['name']}", uri=raw_asset_uri(s["name"])) for s in sources()]
PUBLISHED = Asset(name="published_master_person", uri=PUBLISHED_ASSET_URI)


def _tell_the_run(reason: str) -> None:
    """Keep the reason where 'hub airflow' finds it and writes it into the run's note (a task cannot set the
    note of its own run in Airflow 3.3)."""
    from airflow.sdk import get_current_context

    get_current_context()["ti"].xcom_push(key="hub_reason", value=reason[:1000])


def _step(name: str, *args):
    """Call ``hub.pipeline.<name>``; a data fault (e.g. the gate failing) fails the task at once, without retry,
    with the reason as the last line of the log; any other fault is left to the task's retries."""
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    from hub import pipeline
    from hub.dag_config import data_fault, transient_note

    try:
        return getattr(pipeline, name)(*args)
    except Exception as exc:
        reason = data_fault(exc)
        if reason is None:
            logging.getLogger("hub.dags").error(transient_note(exc))
            raise
        _tell_the_run(reason)
        logging.getLogger("hub.dags").error(reason)
        raise AirflowFailException(reason) from exc


@dag(
    dag_id="master_index",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(master_index_daily_at(), timezone="Asia/Shanghai"),
        assets=AssetAll(*RAW_ASSETS)) if master_index_daily_at() else AssetAll(*RAW_ASSETS),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    default_args=default_args(),
    tags=["mpi", "publish"],
    max_active_runs=1,
    doc_md="""
### Master person index

Runs once every source has landed since its last run: each successful load sends an event of its
source's raw-data Asset (even when it landed nothing new; then the publish is skipped with "nothing
new"), and the run starts when each of the sources' Assets has one. The ingestion DAGs run side by
side; this DAG runs once after the last of them, not once per source. A source whose load failed
holds the run until it loads (its DAG retries, or runs again on its schedule); with
`HUB_MASTER_INDEX_DAILY_AT` set (a cron expression in Beijing time, e.g. `0 6 * * *`) the DAG also runs
each day at that time with what has landed; to publish without it sooner, trigger this DAG by hand.

1. **standardize** — rebuild `std.resident` from raw (ID numbers, names; raw kept beside clean);
2. **match** — link records on valid ID numbers into stable master ids (`mpi.crosswalk`, `mpi.golden`);
3. **gate** — the Great Expectations publish gate: a suite per source (`source.<name>`) and the
   master-index suites, thresholds in `expectations/gate_rules.yaml`; a failure stops here with the
   failing expectations in the task log, keeps the current release and records why
   (`audit.publish_attempt`);
4. **publish** — a new numbered release in `publish.master_person`, switched atomically, and an
   event of the Asset `published_master_person` (what departments' DAGs can be scheduled on);
5. **audit** — the cross-department consistency audits on the current release (`audit.finding`);
6. **report** — everything people read, built once per run: the data-quality scorecard
   (`scorecard.html`, beside the Data Docs) and one page per department (`scorecard_<department>.html`),
   each department's findings workbook and the audit report under `.hub/audit/`. It is a teardown: it
   runs even when an earlier step failed or was skipped, so a blocked gate shows on the scorecard with
   its failing expectations; like any clean-up step it does not decide the run's state.

**What the run's state means.**

- *success*, publish **success**: a new release, one `published_master_person` event.
- *success*, publish **skipped**: nothing new — the index equals the current release, which stays;
  the reason is the last line of the publish log; no Asset event, audit skipped, nothing fires.
- *failed*, gate **failed**: the gate blocked the release (the failing expectations are the last line
  of the gate log, and `hub release list` gives the reason); publish and audit do not run
  (upstream_failed), the current release stays, no Asset event.
- *failed*, publish **failed**: the content equals a release that was withdrawn by a rollback; it is
  not published again until it changes; no Asset event.

Faults that may pass (the database unreachable, a timeout) are retried `HUB_DAG_RETRIES` times with
growing waits; a blocked gate or publish, or a configuration error, fails at once. One run at a time:
the loads that land during a run count towards the next one.
""",
)
def master_index():
    @task
    def standardize() -> dict:
        return _step("standardize_sources")

    @task
    def match(_standardized: dict) -> dict:
        return _step("build_master_index")

    @task
    def gate(_matched: dict) -> dict:
        return _step("run_gate")

    @task(outlets=[PUBLISHED])
    def publish(gate_result: dict) -> dict:
        import logging

        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        log = logging.getLogger("hub.dags")
        outcome = _step("publish_release", gate_result["validation_run_id"])
        if outcome["outcome"] == "unchanged":  # skipped: no Asset event, nothing downstream runs
            reason = f"nothing new to publish: {outcome['reason']}"
            _tell_the_run(reason)
            log.info(reason)
            raise AirflowSkipException(reason)
        if outcome["outcome"] != "published":  # blocked: the run fails, no Asset event
            reason = f"publish blocked, not retried: {outcome['reason']}"
            _tell_the_run(reason)
            log.error(reason)
            raise AirflowFailException(reason)
        return outcome

    @task
    def audit(published: dict) -> dict:
        return _step("audit_release", published["release_no"])

    @teardown
    def report() -> dict:
        return _step("build_reports")

    audit(publish(gate(match(standardize())))) >> report()


master_index()
