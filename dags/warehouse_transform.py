"""Airflow DAG `warehouse_transform`: build the dbt warehouse with Cosmos.

Triggered by new raw data from any of the three ingestion DAGs (asset
schedule), not by the clock. Cosmos renders one `dbt build` task per model,
seed and snapshot (the node with its tests) from the manifest compiled at
build time (`xinfang setup` runs `dbt parse`), so parsing this DAG never runs
dbt.
"""

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup

from xinfang.orchestration import cosmos_config, schedules


@dag(
    dag_id="warehouse_transform",
    schedule=schedules.WAREHOUSE_TRANSFORM_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["transform", "dbt"],
    doc_md=__doc__,
)
def warehouse_transform():
    dbt = DbtTaskGroup(group_id="dbt", **cosmos_config.task_group_kwargs())

    @task(outlets=[schedules.WAREHOUSE_MARTS])
    def marts_ready() -> None:
        """Marks the marts as updated once every model and test has passed."""

    dbt >> marts_ready()


warehouse_transform()
