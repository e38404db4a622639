"""`xinfang airflow` (what `make airflow` runs): a real Airflow with its REST API, driven over HTTP.

Starts `airflow standalone` through the command (api-server, scheduler,
dag-processor, triggerer; LocalExecutor), logs in as the generated admin,
triggers the hotline ingestion for one day through the REST API and waits for
the scheduler to run it to success; then the day's batch must be in the
warehouse, reconciled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from factories import free_port

from xinfang.orchestration.cluster import AirflowApi

XINFANG = str(Path(sys.executable).with_name("xinfang"))
DAG_ID = "hotline_ingest"
EXPORT_DAY = "2025-06-02"
LOGICAL_DATE = "2025-06-03T01:30:00+08:00"  # the run that loads the export of 2 June


def _wait(what: str, check, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"xinfang airflow exited ({proc.returncode}) while waiting for {what}:\n{_tail(log)}")
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-4000:] if log.exists() else ""


@pytest.fixture(scope="module")
def airflow(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("airflow-rest")
    data, output = root / "data", root / "output"
    port = free_port()
    # As on a developer's machine: no Airflow settings from the test session (its private home).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "XINFANG_PG_"))} | {
        "XINFANG_DATABASE_URL": module_database_url,
        "XINFANG_DATA_DIR": str(data),
        "XINFANG_OUTPUT_DIR": str(output),
        "XINFANG_TASK_RETRIES": "0",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    subprocess.run(
        [XINFANG, "sim", "hotline", "--start", EXPORT_DAY, "--end", EXPORT_DAY],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    log = root / "airflow.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [XINFANG, "airflow", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        yield {
            "proc": proc,
            "log": log,
            "api": AirflowApi(f"http://127.0.0.1:{port}"),
            "data": data,
            "url": module_database_url,
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_a_dag_triggered_through_the_rest_api_runs_to_success(airflow) -> None:
    api, proc, log = airflow["api"], airflow["proc"], airflow["log"]
    _wait("the api-server", lambda: api.call("GET", "/api/v2/monitor/health")[0] == 200, 240, proc, log)

    passwords = airflow["data"] / "airflow" / "simple_auth_manager_passwords.json.generated"
    _wait("the generated admin password", passwords.exists, 60, proc, log)
    status, body = api.log_in(passwords)
    assert status in (200, 201), body
    # Without the token the API refuses: the login above is what lets the trigger through.
    assert AirflowApi(api.base_url).call("GET", f"/api/v2/dags/{DAG_ID}")[0] == 401

    _wait("the DAG to be parsed", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}")[0] == 200, 180, proc, log)
    status, body = api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200 and body["is_paused"] is False, body
    status, run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": LOGICAL_DATE})
    assert status == 200, run
    run_id = run["dag_run_id"]

    def finished():
        state = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")[1].get("state")
        return state if state in ("success", "failed") else None

    assert _wait(f"run {run_id}", finished, 300, proc, log) == "success", _tail(log)
    with psycopg.connect(airflow["url"]) as conn:
        rows = conn.execute(
            "SELECT status, source_rows, loaded_rows + quarantined_rows FROM ops.load_batches "
            "WHERE source = 'hotline' AND file_date = %s",
            (EXPORT_DAY,),
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == "loaded" and rows[0][1] == rows[0][2] > 0
