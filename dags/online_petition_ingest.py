"""Airflow DAG `online_petition_ingest`: load the online petition platform's changes of the day.

Runs at 00:20 bureau time and asks the platform's API for every petition whose
last change lies in the previous day (plus a 10-minute overlap before it, for
changes committed late), page by page, retrying 429/5xx/timeouts with backoff.
Petitions are upserted by number into raw.online_petitions, their handling
history appended to raw.online_petition_events, the petitioner pseudonymised
(raw identifiers only in `restricted`), bad records quarantined, the batch
reconciled and the watermark advanced in one transaction. Re-running a day
changes nothing. If runs were skipped, the window starts at the watermark.

A second task loads the platform's staff accounts (GET /api/v1/staff: bureau,
township and grid staff, their postings and trainings) changed in the same
window into raw.online_staff and its child tables (the first run loads the
whole roster); petition events name these accounts as their handler.

The platform's URL and token come from the Airflow connection
`xinfang_online_platform` (AIRFLOW_CONN_XINFANG_ONLINE_PLATFORM, JSON form;
see docs/sources/online_petition_platform.md).
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="online_petition_ingest",
    schedule=schedules.ONLINE_INGEST_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["ingest", "online"],
    doc_md=__doc__,
)
def online_petition_ingest():
    @task(outlets=[schedules.ONLINE_RAW])
    def load_window(logical_date=None) -> dict:
        from xinfang.orchestration.tasks import ingest_online_petitions

        return ingest_online_petitions(logical_date)

    @task
    def load_staff(logical_date=None) -> dict:
        from xinfang.orchestration.tasks import ingest_online_staff

        return ingest_online_staff(logical_date)

    # Independent: a failed petition window must not hold back the staff roster, nor the reverse.
    load_window()
    load_staff()


online_petition_ingest()
