"""A distributed Airflow on this machine: CeleryExecutor, Redis as broker, N workers.

The topology of docker/compose.yaml without Docker: api-server, scheduler,
dag-processor and N `airflow celery worker` processes, each its own process
group, with Airflow's metadata and Celery's results in PostgreSQL (a database
beside the warehouse; Celery refuses SQLite) and Redis as the broker. Used by
`xinfang airflow --executor celery` and by the check that a distributed run
builds the same warehouse and outputs as the in-process one.

Each cluster gets its own Celery queue, so two clusters sharing one Redis (a
developer's and a test's) never take each other's tasks.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from xinfang import db
from xinfang.ingest.grid import with_dbname

log = logging.getLogger(__name__)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
FINISHED = ("success", "failed")


class ClusterError(RuntimeError):
    pass


def metadata_database(warehouse_url: str) -> str:
    """libpq URL of Airflow's metadata database: `<warehouse>_airflow` on the same server, created once."""
    params = db.conn_params(warehouse_url)
    name = f"{params['dbname']}_airflow"
    with psycopg.connect(with_dbname(warehouse_url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_dbname(warehouse_url, name)


def _psycopg2_url(libpq_url: str, scheme: str = "postgresql+psycopg2") -> str:
    """SQLAlchemy URL with the psycopg2 driver (Airflow's metadata and Celery's result backend use it)."""
    return db.sqlalchemy_url(libpq_url).replace("postgresql+psycopg://", f"{scheme}://", 1)


def celery_env(*, port: int, metadata: str, broker_url: str, queue: str) -> dict[str, str]:
    """Settings every component of one cluster shares (on top of runtime.apply's); `metadata`:
    libpq URL of Airflow's metadata database."""
    airflow_bin = Path(sys.executable).parent
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _psycopg2_url(metadata),
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _psycopg2_url(metadata, "postgresql"),
        # One task at a time per worker: on two cores, two workers are the parallelism.
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "xinfang.orchestration.celery_config.CELERY_CONFIG",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # Task processes on the workers report to the api-server, not to the database.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # Tokens signed by the api-server are checked by the workers' task processes.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "PATH": os.pathsep.join([str(airflow_bin), os.environ.get("PATH", "")]),
    }


@dataclass
class AirflowApi:
    """Airflow's REST API, logged in as the simple auth manager's `admin` (generated password)."""

    base_url: str
    token: str | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.request(method, self.base_url + path, json=body, headers=headers, timeout=30)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"detail": response.text[:500]}

    def log_in(self, passwords: Path) -> tuple[int, dict]:
        """POST /auth/token with the password the api-server generated into `passwords`."""
        password = json.loads(passwords.read_text(encoding="utf-8"))["admin"]
        status, body = self.call("POST", "/auth/token", {"username": "admin", "password": password})
        if status in (200, 201):
            self.token = body["access_token"]
        return status, body


@dataclass
class Cluster:
    api: AirflowApi
    home: Path
    queue: str
    metadata_url: str
    broker_url: str
    workers: list[str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.api.base_url

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ClusterError(f"Airflow's {name} exited ({proc.returncode}); logs in {self.home}")

    def wait_for(self, what: str, check, timeout: float, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = check()
            except httpx.TransportError:
                result = None
            if result:
                return result
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.home}")

    def log_in(self) -> None:
        self.wait_for("the api-server", lambda: self.api.call("GET", "/api/v2/monitor/health")[0] == 200, 240)
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        self.wait_for("the generated admin password", passwords.exists, 60)
        status, body = self.api.log_in(passwords)
        if status not in (200, 201):
            raise ClusterError(f"log-in refused ({status}): {body}")

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Until every worker answers a Celery ping (a task sent earlier would wait in the queue anyway)."""
        from celery import Celery

        # A bare Celery app on the same broker: pings go through the broker's control exchange.
        app = Celery(broker=self.broker_url)

        def all_answer() -> bool:
            replies = app.control.ping(destination=self.workers, timeout=2.0)
            return {name for reply in replies for name in reply} == set(self.workers)

        self.wait_for(f"{len(self.workers)} Celery workers", all_answer, timeout, 1)

    def unpause(self, dag_ids: list[str], timeout: float = 240) -> None:
        for dag_id in dag_ids:
            parsed = lambda d=dag_id: self.api.call("GET", f"/api/v2/dags/{d}")[0] == 200  # noqa: E731
            self.wait_for(f"DAG {dag_id} to be parsed", parsed, timeout)
            status, body = self.api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            if status != 200:
                raise ClusterError(f"could not unpause {dag_id} ({status}): {body}")

    def run(self, dag_id: str, logical_date: datetime | None, timeout: float = 1800) -> dict:
        """Trigger one run through the REST API and wait for it; raise naming the failed tasks."""
        status, run = self.api.call(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"logical_date": logical_date.isoformat() if logical_date else None},
        )
        if status != 200:
            raise ClusterError(f"trigger of {dag_id} refused ({status}): {run}")
        run_id = run["dag_run_id"]

        def finished():
            state = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1].get("state")
            return state if state in FINISHED else None

        if self.wait_for(f"{dag_id} run {run_id}", finished, timeout) != "success":
            _, body = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
            failed = [ti["task_id"] for ti in body.get("task_instances", []) if ti["state"] != "success"]
            raise ClusterError(f"{dag_id} run {run_id} failed; tasks not successful: {failed}")
        return run


def worker_hostname() -> str:
    """Airflow's `hostname_callable` on the workers: the machine's name and the worker's.

    Two workers on one machine would otherwise record the same host on every
    task instance, and nobody could tell which of them ran what.
    """
    import socket

    return f"{socket.gethostname()}-{os.environ['XINFANG_CELERY_WORKER']}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(name: str, command: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    with (logs / f"{name}.log").open("ab") as sink:
        # Its own process group: stopping the cluster stops the component's children too.
        return subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    # Workers first (Celery's warm shutdown finishes the running task), then the rest.
    for _, proc in sorted(processes.items(), key=lambda item: not item[0].startswith("worker")):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    for proc in processes.values():
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@contextmanager
def celery_cluster(
    *,
    workers: int = 2,
    port: int,
    broker_url: str | None = None,
    scheduled: bool = True,
) -> Iterator[Cluster]:
    """Start the cluster (runtime.apply must have run), log in, and stop every process on exit.

    With `scheduled=False` the scheduler creates no runs of its own (cron or asset
    triggered): only runs triggered through the API happen, in the caller's order.
    """
    warehouse_url = os.environ["XINFANG_DATABASE_URL"]
    queue = f"xinfang-{secrets.token_hex(4)}"
    broker_url = broker_url or os.environ.get("XINFANG_CELERY_BROKER_URL", DEFAULT_BROKER_URL)
    metadata = metadata_database(warehouse_url)
    env = os.environ | celery_env(port=port, metadata=metadata, broker_url=broker_url, queue=queue)
    if not scheduled:
        env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    home = Path(env["AIRFLOW_HOME"])
    logs = home / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    names = [f"worker{i + 1}" for i in range(workers)]
    cluster = Cluster(
        api=AirflowApi(f"http://127.0.0.1:{port}"),
        home=home,
        queue=queue,
        metadata_url=metadata,
        broker_url=broker_url,
        workers=[f"{name}@{queue}" for name in names],
    )
    components = {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [airflow, "scheduler"],
        "dag-processor": [airflow, "dag-processor"],
    } | {
        # --skip-serve-logs: the workers would both bind the log server's port; the
        # api-server reads the task logs from the shared folder instead.
        name: [airflow, "celery", "worker", "-H", f"{name}@{queue}", "-q", queue, "--skip-serve-logs"]
        for name in names
    }
    with ExitStack() as stack:
        stack.callback(_stop, cluster.processes)
        # A SIGTERM to this process (CI's timeout, `kill`) must stop the cluster too, not orphan it.
        stack.callback(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, _exit_on_sigterm))
        for name, command in components.items():
            own = {
                "XINFANG_CELERY_WORKER": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            }
            cluster.processes[name] = _start(name, command, env | own if name in names else env, logs)
        cluster.log_in()
        cluster.wait_for_workers()
        log.info("Celery cluster up: %s, queue %s, workers %s", cluster.base_url, queue, cluster.workers)
        yield cluster
