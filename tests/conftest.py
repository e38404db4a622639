"""Shared fixtures: a real, empty PostgreSQL database for the test session.

With XINFANG_DATABASE_URL set, the tests create (and afterwards drop) a fresh
database on that server; otherwise they start an embedded PostgreSQL (pgserver)
in a temporary folder. Either way every test talks to a real server.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from factories import RecordingHandler

os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "")
# Airflow reads its configuration when first imported: point it at a private
# home before any test imports it, with telemetry off like every other run.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="xinfang-test-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "DO_NOT_TRACK": "1",
        "SCARF_NO_ANALYTICS": "true",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    }
)
os.environ.pop("XINFANG_TASK_RETRIES", None)
# pgserver logs from an atexit hook, after pytest has closed the capture streams.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _fresh_database_on(url: str) -> tuple[str, callable]:
    name = f"xinfang_test_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo(**params), drop


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Admin URL of the PostgreSQL server the session uses (external or embedded)."""
    external = os.environ.get("XINFANG_DATABASE_URL")
    if external:
        return external
    import pgserver

    pgdata = tmp_path_factory.mktemp("pg") / "pgdata"
    return pgserver.get_server(str(pgdata), cleanup_mode="stop").get_uri("postgres")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> str:
    """URL of an empty database, exported as XINFANG_DATABASE_URL for the session."""
    url, drop = _fresh_database_on(server_url)
    previous = os.environ.get("XINFANG_DATABASE_URL")
    os.environ["XINFANG_DATABASE_URL"] = url
    yield url
    if previous is None:
        os.environ.pop("XINFANG_DATABASE_URL", None)
    else:
        os.environ["XINFANG_DATABASE_URL"] = previous
    drop()


@pytest.fixture(scope="module")
def module_database_url(server_url: str, database_url: str) -> str:
    """A database of the module's own, for tests that assert over whole tables (the demo, calibration)."""
    url, drop = _fresh_database_on(server_url)
    yield url
    drop()


@pytest.fixture(scope="module")
def new_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the session's server for one module; drops them afterwards."""
    drops: list[Callable[[], None]] = []

    def make() -> str:
        url, drop = _fresh_database_on(server_url)
        drops.append(drop)
        return url

    yield make
    for drop in drops:
        drop()


@pytest.fixture()
def workdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Private data and output folders for one test."""
    data, output = tmp_path / "data", tmp_path / "output"
    data.mkdir()
    output.mkdir()
    monkeypatch.setenv("XINFANG_DATA_DIR", str(data))
    monkeypatch.setenv("XINFANG_OUTPUT_DIR", str(output))
    return {"data": data, "output": output}


@pytest.fixture()
def smtp_server() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, recording what it accepts."""
    from aiosmtpd.controller import Controller
    from factories import RecordingHandler, free_port

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


# The longest modules first: `make test` runs the suite on two xdist workers, one module per
# worker at a time (--dist loadfile, so a module's fixtures are built once), and the suite
# takes at least as long as its longest module; started last, it would run alone at the end.
_LONGEST_FIRST = ("test_e2e_pipeline.py", "test_distributed_run.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module stays
