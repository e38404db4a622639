"""What bench/scale_bench.py measures with: fresh databases, peak memory, Airflow task durations."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

POSTGRES_NAMES = ("postgres", "postmaster")


def fresh_database(label: str) -> tuple[dict[str, str], Callable[[], None]]:
    """A new database (and its `_gridsys` companion) on the server of XINFANG_DATABASE_URL: the
    environment that points at them, and how to drop them. Without that variable: no variables,
    the embedded server under the (throw-away) data folder, and how to stop it."""
    server = os.environ.get("XINFANG_DATABASE_URL")
    if not server:
        return {}, _stop_embedded
    import psycopg

    name = f"xinfang_bench_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        "XINFANG_DATABASE_URL": _with_dbname(server, name),
        "XINFANG_GRID_DATABASE_URL": _with_dbname(server, f"{name}_gridsys"),
    }

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_gridsys" WITH (FORCE)')

    return env, drop


def _with_dbname(server: str, name: str) -> str:
    """The server's URL with another database; a URL stays a URL (ingest_bench hands it to SQLAlchemy)."""
    if "://" in server:
        parts = urlsplit(server)
        return urlunsplit(parts._replace(path=f"/{name}"))
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(server), "dbname": name})


def _stop_embedded() -> None:
    """Stop the embedded server before its folder is removed (else it lingers for a minute)."""
    import pgserver

    from xinfang.config import get_settings

    pgdata = get_settings().pgdata_dir
    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(
            [str(pg_ctl), "-D", str(pgdata), "stop", "-m", "fast"], check=False, capture_output=True
        )


class MemorySampler:
    """Every `interval` seconds, the summed PSS (RSS where PSS is unreadable) of (i) this process and
    its descendants that are not PostgreSQL and (ii) the PostgreSQL server's processes; keeps the
    maximum of each sum since the last reset(). Peaks shorter than the interval can be missed."""

    def __init__(self, settings, *, external: bool, interval: float = 0.5) -> None:
        self.pgdata = settings.pgdata_dir
        self.external = external
        self.interval = interval
        self.fallbacks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="memory-sampler")
        self.reset()

    def describe(self) -> str:
        server = "all `postgres` processes of the external server (other databases' too)"
        if not self.external:
            server = "the embedded server's postmaster and its children"
        metric = "PSS (psutil memory_full_info; RSS where unreadable)"
        return f"{metric}; pipeline = this process tree; pg = {server}"

    def reset(self) -> None:
        self.peak_pipeline = self.peak_pg = self.peak_sim = 0

    def peaks(self, prefix: str) -> dict[str, int]:
        self._sample()
        return {
            f"{prefix}.peak_pipeline_mb": round(self.peak_pipeline / 2**20),
            f"{prefix}.peak_online_simulator_mb": round(self.peak_sim / 2**20),
            f"{prefix}.peak_postgres_mb": round(self.peak_pg / 2**20),
        }

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _memory(self, proc: psutil.Process) -> int:
        try:
            return proc.memory_full_info().pss
        except psutil.AccessDenied:
            self.fallbacks += 1
            return proc.memory_info().rss
        except psutil.NoSuchProcess:
            return 0

    def _server_processes(self) -> list[psutil.Process]:
        if self.external:
            return [p for p in psutil.process_iter(["name"]) if p.info["name"] in POSTGRES_NAMES]
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            return [postmaster, *postmaster.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            return []

    def _sample(self) -> None:
        me = psutil.Process()
        pipeline = sim = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                if proc.name() in POSTGRES_NAMES:
                    continue
                used = self._memory(proc)
                if "serve-web" in " ".join(proc.cmdline()):
                    sim += used
                pipeline += used
            except psutil.NoSuchProcess:
                continue
        pg = sum(self._memory(p) for p in self._server_processes())
        self.peak_pipeline = max(self.peak_pipeline, pipeline)
        self.peak_sim = max(self.peak_sim, sim)
        self.peak_pg = max(self.peak_pg, pg)


def task_durations(since: datetime) -> dict[tuple[str, str], float]:
    """Seconds of every task instance started since `since`, from the Airflow metadata database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.duration).where(
        TaskInstance.start_date >= since
    )
    durations: dict[tuple[str, str], float] = {}
    try:
        with create_session() as session:
            for dag_id, task_id, seconds in session.execute(query):
                key = (dag_id, task_id)
                durations[key] = max(durations.get(key, 0.0), round(seconds or 0.0, 1))
    except Exception as exc:  # a figure missing must not lose the whole run
        print(f"task durations unreadable: {exc!r}", flush=True)
    return durations
