"""Airflow DAG `province_extract_daily`: the province's daily incremental extract.

At 06:00 each day, for the day before, behind the daily gate (every
source's load of the day is in and reconciled, and the warehouse was rebuilt
after them with every dbt model and test passing; else the task fails and
retries): the matters received, closed or handled that day and their
handling steps are exported as a Frictionless Data Package, validated
(schema, keys, checksums, personal-data scan; an invalid package never
leaves) and delivered once, over SFTP or to the drop folder. Beside it, a
task records the province's acknowledgements of earlier packages, daily and
monthly, and redelivers those not acknowledged in time.
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="province_extract_daily",
    schedule=schedules.PROVINCE_EXTRACT_DAILY_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["publish", "extract"],
    doc_md=__doc__,
)
def province_extract_daily():
    # Task bodies import their code when they run, keeping DAG parsing light.
    @task(inlets=[schedules.WAREHOUSE_MARTS])
    def build_extract(logical_date=None, inlet_events=None) -> dict:
        from xinfang.orchestration import tasks

        # The last warehouse rebuild whose models and tests all passed (its marts asset event).
        try:
            ready_at = inlet_events[schedules.WAREHOUSE_MARTS][-1].timestamp
        except IndexError:
            ready_at = None
        return tasks.build_daily_province_extract(logical_date, ready_at)

    @task
    def deliver_extract(built: dict) -> dict:
        from xinfang.orchestration import tasks

        return tasks.deliver_province_extract(built)

    @task
    def follow_up_acknowledgements() -> dict:
        from xinfang.orchestration import tasks

        return tasks.follow_up_province_extracts()

    # Independent branches: earlier packages are followed up even when today's gate holds
    # the build back, and the run still fails when either branch does (a leaf after an
    # all_done task would turn a failed build into a successful run).
    deliver_extract(build_extract())
    follow_up_acknowledgements()


province_extract_daily()
