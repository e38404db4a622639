"""Connections to the warehouse PostgreSQL.

With XINFANG_DATABASE_URL unset the platform runs its own embedded PostgreSQL
(pgserver) in the data folder. pgserver counts the processes holding a handle
and stops the server when the last one exits, so a demo run leaves nothing
running behind it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xinfang.config import get_settings

log = logging.getLogger(__name__)

WAREHOUSE_DB = "xinfang"


@cache
def _embedded_url(pgdata: str) -> str:
    import pgserver  # heavy import; only needed without an external server

    os.makedirs(os.path.dirname(pgdata), exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{WAREHOUSE_DB}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {WAREHOUSE_DB};")
    return server.get_uri(WAREHOUSE_DB)


def database_url() -> str:
    """libpq URL of the warehouse, starting the embedded server when needed."""
    settings = get_settings()
    if settings.database_url_override:
        return settings.database_url_override
    return _embedded_url(str(settings.pgdata_dir))


def conn_params(url: str | None = None) -> dict[str, str]:
    """The URL split into libpq keywords (host may be a socket directory)."""
    params = conninfo_to_dict(url or database_url())
    params.setdefault("host", "localhost")
    params.setdefault("port", "5432")
    params.setdefault("user", os.environ.get("PGUSER", "postgres"))
    params.setdefault("password", "")
    params.setdefault("dbname", WAREHOUSE_DB)
    return {k: str(v) for k, v in params.items()}


def sqlalchemy_url(url: str | None = None) -> str:
    """SQLAlchemy URL for the same database (Great Expectations needs one)."""
    from sqlalchemy.engine import URL

    p = conn_params(url)
    query = {"host": p["host"]} if p["host"].startswith("/") else {}
    return URL.create(
        "postgresql+psycopg",
        username=p["user"],
        password=p["password"] or None,
        host=None if query else p["host"],
        port=None if query else int(p["port"]),
        database=p["dbname"],
        query=query,
    ).render_as_string(hide_password=False)


def dbt_env(url: str | None = None) -> dict[str, str]:
    """Environment variables read by dbt_project/profiles.yml."""
    p = conn_params(url)
    return {
        "XINFANG_PG_HOST": p["host"],
        "XINFANG_PG_PORT": p["port"],
        "XINFANG_PG_USER": p["user"],
        "XINFANG_PG_PASSWORD": p["password"],
        "XINFANG_PG_DBNAME": p["dbname"],
    }


@contextmanager
def connect(url: str | None = None, **kwargs) -> Iterator[psycopg.Connection]:
    """A psycopg connection, committed on success and rolled back on error."""
    with psycopg.connect(make_conninfo(url or database_url()), **kwargs) as conn:
        yield conn
