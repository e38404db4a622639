"""Celery settings of the workers: Airflow's defaults, plus modules imported once per worker.

`AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS` points here (the local cluster and
docker/compose.yaml). A Celery worker forks a process for every task, and
what the worker imported before the fork, the task does not import again.
Each of warehouse_transform's tasks runs dbt through Cosmos; importing dbt
alone took about 3.4 s of a task's 8 to 10 s (measured on the 2-core machine
under load), so the worker imports it, and Cosmos, once at start-up.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    # Celery imports these in the worker's main process, before it forks its pool.
    "imports": ("dbt.cli.main", "dbt.adapters.postgres", "cosmos"),
}
