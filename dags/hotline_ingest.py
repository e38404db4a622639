"""Airflow DAG `hotline_ingest`: load the 12345 hotline's daily work-order export.

Runs at 01:30 bureau time and loads the previous day's file from the landing
folder into raw.hotline_work_orders (COPY, pseudonymised, bad rows
quarantined, reconciled). A file already loaded is skipped by checksum, so
re-running a day changes nothing. Updates the raw hotline asset, which
triggers the warehouse transform.
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="hotline_ingest",
    schedule=schedules.HOTLINE_INGEST_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["ingest", "hotline"],
    doc_md=__doc__,
)
def hotline_ingest():
    @task(outlets=[schedules.HOTLINE_RAW])
    def load_export(logical_date=None) -> dict:
        from xinfang.orchestration.tasks import ingest_hotline

        return ingest_hotline(logical_date)

    load_export()


hotline_ingest()
