"""dbt build time for the default three years, and the cost of one daily incremental run.

    .venv/bin/python bench/dbt_bench.py

Loads the default world (2023-01..2025-12) of all three sources with the real
loaders into a fresh database (the embedded PostgreSQL, or a new database on
the server of XINFANG_DATABASE_URL), then times:

* `dbt seed` + `dbt build --full-refresh`: every model and test from scratch;
* one more day of data in each source (the hotline's next export file, the
  online platform's next window, the grid system advanced a day), then
  `dbt build` again: the daily incremental run, as the transform DAG does it
  after the ingestion DAGs (Cosmos runs the same nodes one task each);
* `dbt run --select int_hotline__work_orders` alone, to show that the large
  incremental model costs in proportion to the day, not to the history.

Prints a table and writes bench/results/dbt.json. Loading time is not part of
the figures (bench/three_years.py measures it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

from results_table import report

START, END = date(2023, 1, 1), date(2025, 12, 31)
ROOT = Path(__file__).resolve().parents[1]


def _fresh_database(workdir: Path) -> tuple[str, callable]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    server = os.environ.get("XINFANG_DATABASE_URL")
    if not server:
        import pgserver

        server = pgserver.get_server(str(workdir / "pg"), cleanup_mode="stop").get_uri("postgres")
    name = f"xinfang_bench_dbt_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_gridsys" WITH (FORCE)')

    params = conninfo_to_dict(server)
    return make_conninfo(**{**params, "dbname": name}), drop


def _dbt(url: str, target: Path, *args: str) -> tuple[float, dict]:
    from xinfang import db

    env = {**os.environ, **db.dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"}
    project = ROOT / "dbt_project"
    t = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), *args, "--project-dir", str(project),
         "--profiles-dir", str(project), "--target-path", str(target), "--log-path", str(target / "logs"),
         "--quiet"],
        env=env, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t
    results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    return elapsed, results


def _rows_affected(results: dict, model: str) -> int | None:
    for r in results["results"]:
        if r["unique_id"] == f"model.xinfang.{model}":
            return r["adapter_response"].get("rows_affected")
    return None


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="xinfang-bench-dbt-"))
    os.environ.setdefault("XINFANG_DATA_DIR", str(workdir / "data"))
    os.environ["PYTHONDONTWRITEBYTECODE"] = ""
    url, drop = _fresh_database(workdir)
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    grid_url = make_conninfo(**{**params, "dbname": f"{params['dbname']}_gridsys"})
    os.environ["XINFANG_DATABASE_URL"] = url
    os.environ["XINFANG_GRID_DATABASE_URL"] = grid_url

    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.ingest import batches, grid, hotline, online, staff
    from xinfang.orchestration import runtime
    from xinfang.sim import grid_system, web_api
    from xinfang.sim.hotline import SimConfig, write_exports
    from xinfang.sim.world import WorldConfig

    settings = get_settings()
    runtime.apply(settings)
    key = b"bench-key"
    token = secrets.token_urlsafe(16)
    seed = WorldConfig().seed
    as_of = datetime(2026, 6, 30, 23, 59)
    server = web_api.PetitionAPIServer(
        ("127.0.0.1", 0),
        token=token,
        records_provider=web_api.world_provider(seed=seed, as_of=as_of),
        staff_provider=web_api.world_staff_provider(seed=seed, as_of=as_of),
    )
    web_api.start_in_thread(server)
    figures: dict[str, float | int] = {}
    try:
        t = time.perf_counter()
        files = write_exports(START, END, settings.hotline_landing_dir, SimConfig())
        with db.connect(url, autocommit=True) as conn:
            batches.ensure_schema(conn)
            for path in files:
                hotline.load_file(conn, path, pii_key=key)
            online.load_window(
                conn,
                base_url=server.url,
                token=token,
                since=datetime(2022, 12, 1),
                until=datetime(2026, 1, 1),
                pii_key=key,
                page_size=web_api.MAX_PAGE_SIZE,
            )
            staff.load_window(
                conn,
                base_url=server.url,
                token=token,
                since=datetime(2000, 1, 1),
                until=datetime(2026, 1, 1),
                pii_key=key,
                page_size=web_api.MAX_PAGE_SIZE,
            )
        grid_system.advance_to(datetime.combine(END, datetime.max.time()), url=grid_url)
        with db.connect(url) as conn:
            grid.load_changes(conn, grid_url, pii_key=key, until=datetime.combine(END, datetime.max.time()))
        figures["load_three_years_s"] = round(time.perf_counter() - t, 1)

        target = workdir / "dbt_target"
        elapsed, _ = _dbt(url, target, "seed", "--full-refresh")
        figures["dbt_seed_s"] = round(elapsed, 1)
        elapsed, results = _dbt(url, target, "build", "--full-refresh")
        figures["dbt_build_full_s"] = round(elapsed, 1)
        figures["dbt_build_full_nodes"] = len(results["results"])
        figures["hotline_orders_full"] = _rows_affected(results, "int_hotline__work_orders") or 0

        # One more day in every source, as the daily ingestion DAGs bring it.
        day = END + timedelta(days=1)
        (path,) = write_exports(day, day, settings.hotline_landing_dir, SimConfig())
        with db.connect(url, autocommit=True) as conn:
            new_rows = hotline.load_file(conn, path, pii_key=key).loaded_rows
            online.load_window(
                conn,
                base_url=server.url,
                token=token,
                since=datetime(2026, 1, 1),
                until=datetime(2026, 1, 2),
                pii_key=key,
                page_size=web_api.MAX_PAGE_SIZE,
            )
        grid_system.advance_to(datetime.combine(day, datetime.max.time()), url=grid_url)
        with db.connect(url) as conn:
            grid.load_changes(conn, grid_url, pii_key=key, until=datetime.combine(day, datetime.max.time()))
        figures["daily_hotline_rows"] = new_rows

        elapsed, results = _dbt(url, target, "build")
        figures["dbt_build_daily_incremental_s"] = round(elapsed, 1)
        figures["hotline_orders_daily"] = _rows_affected(results, "int_hotline__work_orders") or 0
        slowest = sorted(results["results"], key=lambda r: r["execution_time"], reverse=True)[:5]
        for r in slowest:
            figures[f"slowest:{r['unique_id'].split('.')[-1]}_s"] = round(r["execution_time"], 2)

        # The large incremental model alone, with one more day: its cost follows the day's rows.
        day += timedelta(days=1)
        (path,) = write_exports(day, day, settings.hotline_landing_dir, SimConfig())
        with db.connect(url, autocommit=True) as conn:
            hotline.load_file(conn, path, pii_key=key)
        elapsed, results = _dbt(url, target, "run", "--select", "int_hotline__work_orders")
        figures["int_hotline__work_orders_daily_s"] = round(
            next(r["execution_time"] for r in results["results"]), 2
        )
        elapsed, results = _dbt(url, target, "run", "--full-refresh", "--select", "int_hotline__work_orders")
        figures["int_hotline__work_orders_full_refresh_s"] = round(
            next(r["execution_time"] for r in results["results"]), 2
        )
    finally:
        server.shutdown()
        server.server_close()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(figures, "dbt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
