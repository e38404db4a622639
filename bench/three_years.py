"""Generate and ingest the default three years (2023-01..2025-12) of all three sources.

    .venv/bin/python bench/three_years.py

Times, for each source, the simulator's generation and the real loader, in
one process against the embedded PostgreSQL (or XINFANG_DATABASE_URL) in a
throw-away data folder: hotline export files loaded file by file, the online
platform's petitions through its HTTP API in one window, the grid system's
database advanced to the end and loaded once. Prints a table and writes
bench/results/three_years.json. Airflow's own overhead is not included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

from results_table import report

START, END = date(2023, 1, 1), date(2025, 12, 31)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="xinfang-bench3y-"))
    os.environ.setdefault("XINFANG_DATA_DIR", str(workdir / "data"))
    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.ingest import batches, grid, hotline, online
    from xinfang.orchestration import runtime
    from xinfang.sim import grid_system, web_api
    from xinfang.sim.hotline import SimConfig, write_exports
    from xinfang.sim.world import WorldConfig, build_world

    settings = get_settings()
    runtime.apply(settings)
    key = b"bench-key"
    figures: dict[str, float | int] = {}

    t = time.perf_counter()
    files = write_exports(START, END, settings.hotline_landing_dir, SimConfig())
    figures["hotline_generate_s"] = round(time.perf_counter() - t, 1)
    with db.connect(autocommit=True) as conn:
        batches.ensure_schema(conn)
        conn.commit()
        t = time.perf_counter()
        rows = sum(hotline.load_file(conn, path, pii_key=key).loaded_rows for path in files)
        figures["hotline_ingest_s"] = round(time.perf_counter() - t, 1)
    figures["hotline_files"], figures["hotline_rows"] = len(files), rows

    t = time.perf_counter()
    build_world(WorldConfig())
    # The provider holds every petition: this is the world model's generation time.
    provider = web_api.world_provider(seed=WorldConfig().seed, as_of=datetime(2026, 6, 30, 23, 59))
    token = secrets.token_urlsafe(16)
    server = web_api.PetitionAPIServer(("127.0.0.1", 0), token=token, records_provider=provider)
    web_api.start_in_thread(server)
    figures["online_generate_s"] = round(time.perf_counter() - t, 1)
    try:
        with db.connect(autocommit=True) as conn:
            online.ensure_schema(conn)
            t = time.perf_counter()
            result = online.load_window(
                conn,
                base_url=server.url,
                token=token,
                since=datetime(2022, 12, 1),
                until=datetime(2026, 7, 1),
                pii_key=key,
                page_size=web_api.MAX_PAGE_SIZE,
            )
            # Includes the server rendering the JSON pages, as the real platform would.
            figures["online_ingest_s"] = round(time.perf_counter() - t, 1)
            figures["online_petitions"] = result.loaded_rows
    finally:
        server.shutdown()
        server.server_close()

    t = time.perf_counter()
    grid_system.advance_to(datetime.combine(END, datetime.max.time()))
    figures["grid_generate_s"] = round(time.perf_counter() - t, 1)
    with db.connect() as conn:
        t = time.perf_counter()
        result = grid.load_changes(conn, grid.source_url(), pii_key=key)
        figures["grid_ingest_s"] = round(time.perf_counter() - t, 1)
        figures["grid_events"] = result.loaded_rows

    report(figures, "three_years")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
