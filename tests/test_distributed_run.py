"""The DAGs under Airflow's CeleryExecutor build the same warehouse and outputs as in process.

`xinfang run-days` runs the daily cycle over two days (each day's three
ingestion DAGs, the warehouse rebuild, the province's daily extract) twice,
each time into a fresh warehouse and data folder with the same keys:

* local: `dag.test()` in the command's process (as `make demo` runs);
* celery: a cluster of real Airflow components (api-server, scheduler,
  dag-processor and two Celery workers, Redis on 127.0.0.1:6379 as broker,
  metadata and results in PostgreSQL), every run triggered through the REST
  API in the same order, with the scheduler making no runs of its own.

Then every table (all rows; only columns that record when a run happened are
left out), every output file, and the set of task instances must be equal,
and both workers must have run tasks.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from warehouse_compare import differing_columns, folder_fingerprint, warehouse_fingerprint

from xinfang.ingest.grid import with_dbname

pytestmark = pytest.mark.e2e

FIRST, LAST = "2025-06-01", "2025-06-02"
XINFANG = str(Path(sys.executable).with_name("xinfang"))
REDIS = ("127.0.0.1", 6379)


def _env(database_url: str, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "XINFANG_"))}
    dbname = conninfo_to_dict(database_url)["dbname"]
    return env | {
        "XINFANG_DATABASE_URL": database_url,
        "XINFANG_GRID_DATABASE_URL": with_dbname(database_url, f"{dbname}_gridsys"),
        "XINFANG_DATA_DIR": str(root / "data"),
        "XINFANG_OUTPUT_DIR": str(root / "output"),
        # The same keys on both sides, or every pseudonym would differ.
        "XINFANG_PII_KEY": "distributed-test-key-not-a-secret",
        "XINFANG_PROVINCE_KEY": "distributed-test-province-key-not-a-secret",
        "PYTHONDONTWRITEBYTECODE": "",
    }


def _drop_companions(database_url: str) -> None:
    dbname = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(with_dbname(database_url, "postgres"), autocommit=True) as conn:
        for suffix in ("_gridsys", "_airflow"):
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}{suffix}" WITH (FORCE)')


@pytest.fixture(scope="module")
def runs(new_database, tmp_path_factory) -> dict[str, dict]:
    with socket.socket() as probe:
        if probe.connect_ex(REDIS) != 0:
            pytest.fail(f"no Redis on {REDIS[0]}:{REDIS[1]}: the CeleryExecutor needs it as broker")
    runs, procs = {}, {}
    try:
        # Side by side: the cluster's run waits on the scheduler and the workers' start-up
        # most of the time, which leaves room for the in-process run.
        for executor in ("local", "celery"):
            root = tmp_path_factory.mktemp(f"run-{executor}")
            url = new_database()
            runs[executor] = {"url": url, "root": root, "log": root / "run-days.log"}
            with runs[executor]["log"].open("wb") as sink:
                procs[executor] = subprocess.Popen(
                    [XINFANG, "run-days", "--from", FIRST, "--to", LAST, "--executor", executor],
                    env=_env(url, root),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
        for executor, proc in procs.items():
            returncode = proc.wait(timeout=1200)
            log = runs[executor]["log"]
            tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
            assert returncode == 0, f"{executor} run failed (log {log}):\n{tail}"
        yield runs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # the command stops its cluster on SIGTERM
                proc.wait(timeout=120)
        for run in runs.values():
            _drop_companions(run["url"])


def _celery_task_instances(runs) -> list[tuple[str, str, str, str, str]]:
    url = runs["celery"]["url"]
    with psycopg.connect(with_dbname(url, f"{conninfo_to_dict(url)['dbname']}_airflow")) as conn:
        return conn.execute(
            "SELECT dag_id, task_id, state, hostname, queue FROM task_instance ORDER BY dag_id, task_id"
        ).fetchall()


def test_the_celery_run_spread_its_tasks_over_both_workers(runs) -> None:
    instances = _celery_task_instances(runs)
    assert instances, "the Celery run recorded no task instances"
    assert {state for *_, state, _, _ in instances} == {"success"}
    by_host: dict[str, int] = {}
    for _, _, _, host, _ in instances:
        by_host[host] = by_host.get(host, 0) + 1
    # Each worker records its own name (xinfang.orchestration.cluster.worker_hostname).
    workers = {host for host in by_host if host.endswith(("-worker1", "-worker2"))}
    assert len(workers) == 2 and set(by_host) == workers, by_host
    # Its own queue: never the default one another cluster on the same Redis might serve.
    queues = {queue for *_, queue in instances}
    assert len(queues) == 1 and queues.pop().startswith("xinfang-")


def test_both_runs_ran_the_same_tasks(runs) -> None:
    local = sqlite3.connect(runs["local"]["root"] / "data" / "airflow" / "airflow.db")
    try:
        in_process = local.execute(
            "SELECT dag_id, task_id, state FROM task_instance ORDER BY dag_id, task_id"
        ).fetchall()
    finally:
        local.close()
    distributed = [(dag, task, state) for dag, task, state, _, _ in _celery_task_instances(runs)]
    # 3 ingestion DAGs x 2 days, the rebuild (a task per dbt model) and the daily extract.
    assert len(in_process) > 60
    assert distributed == in_process


def test_the_same_warehouse(runs) -> None:
    local = warehouse_fingerprint(runs["local"]["url"], runs["local"]["root"])
    distributed = warehouse_fingerprint(runs["celery"]["url"], runs["celery"]["root"])
    assert local["marts.fct_cases"][0] > 1000 and local["raw.hotline_work_orders"][0] > 0
    assert set(distributed) == set(local)
    sides = [(runs[executor]["url"], runs[executor]["root"]) for executor in ("local", "celery")]
    differing = {
        table: differing_columns(*sides, table) for table in local if local[table] != distributed[table]
    }
    assert not differing, f"tables that differ (columns): {differing}"


def test_the_same_outputs(runs) -> None:
    local = folder_fingerprint(runs["local"]["root"] / "output")
    distributed = folder_fingerprint(runs["celery"]["root"] / "output")
    # The day's provincial extract package (CSV files, descriptor, manifest) among them.
    assert any(name.endswith(".csv") for name in local), sorted(local)
    assert distributed == local
