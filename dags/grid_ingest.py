"""Airflow DAG `grid_ingest`: load the grid management system's changes (矛盾纠纷排查).

Runs at 00:15 bureau time (Asia/Shanghai) and reads, from the grid system's
own PostgreSQL database, the screening events changed since the stored
watermark (minus an overlap) up to the end of the previous day, plus the grids
and grid workers. New event versions upsert raw.grid_screening_events by event
id and append raw.grid_event_status_history; bad rows are quarantined; worker
names and phones are pseudonymised; the batch is reconciled and the watermark
advanced in one transaction. Row versions already handled are recognised, so
re-running any day changes nothing.

Source database: XINFANG_GRID_DATABASE_URL, or the database `xinfang_gridsys`
on the warehouse's server. Updates the raw grid asset.
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="grid_ingest",
    schedule=schedules.GRID_INGEST_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["ingest", "grid"],
    doc_md=__doc__,
)
def grid_ingest():
    @task(outlets=[schedules.GRID_RAW])
    def load_changes(logical_date=None) -> dict:
        from xinfang.orchestration.tasks import ingest_grid_events

        return ingest_grid_events(logical_date)

    load_changes()


grid_ingest()
