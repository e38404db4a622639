"""Ingest throughput of the hotline loader against psql's own \\copy of the same rows.

    .venv/bin/python bench/ingest_bench.py [--rows 200000]

Generates one export file with about --rows work orders, loads it with
xinfang.ingest.hotline.load_file (parse, validate, pseudonymise, COPY), then
exports exactly the rows that landed and loads them again with psql's \\copy
into an empty table of the same definition. Prints rows/s of both and their
ratio, and writes the figures to bench/results/ingest.json. Uses the embedded
PostgreSQL (or XINFANG_DATABASE_URL) and a throw-away data folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from results_table import report


def _psql() -> str:
    import pgserver

    embedded = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(embedded) if embedded.exists() else (shutil.which("psql") or "psql")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="xinfang-bench-"))
    os.environ.setdefault("XINFANG_DATA_DIR", str(workdir / "data"))
    os.environ["PYTHONDONTWRITEBYTECODE"] = ""
    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.ingest import batches, hotline
    from xinfang.orchestration import runtime
    from xinfang.sim.hotline import SimConfig, write_export

    settings = get_settings()
    url = runtime.apply(settings)
    day = date(2031, 1, 6)  # a day no demo or test uses
    started = time.perf_counter()
    # No look-back: status updates of earlier days would multiply generation time, not change the load.
    cfg = replace(SimConfig(), orders_per_day=args.rows, bad_row_rate=0)
    path = write_export(day, workdir / "landing", cfg, lookback_days=0)
    generate_s = time.perf_counter() - started

    with db.connect(autocommit=True) as conn:
        batches.ensure_schema(conn)
        conn.commit()
        started = time.perf_counter()
        result = hotline.load_file(conn, path, pii_key=b"bench-key")
        load_s = time.perf_counter() - started
        export = workdir / "landed.csv"
        columns = ", ".join(hotline.RAW_COLUMNS)
        landed = f"SELECT {columns} FROM raw.hotline_work_orders WHERE batch_id = %s"  # noqa: S608 constants
        with (
            export.open("wb") as fh,
            conn.cursor().copy(f"COPY ({landed}) TO STDOUT (FORMAT csv)", (result.batch_id,)) as cp,
        ):
            for chunk in cp:
                fh.write(chunk)
        conn.execute("DROP TABLE IF EXISTS public.bench_copy_target")
        # Same definition as the loader's target: columns, defaults, primary key and the batch foreign key.
        conn.execute("CREATE TABLE public.bench_copy_target (LIKE raw.hotline_work_orders INCLUDING ALL)")
        conn.execute(
            "ALTER TABLE public.bench_copy_target"
            " ADD FOREIGN KEY (batch_id) REFERENCES ops.load_batches (batch_id)"
        )
        conn.commit()

    copy_cmd = f"\\copy public.bench_copy_target ({columns}) FROM '{export}' WITH (FORMAT csv)"
    started = time.perf_counter()
    subprocess.run([_psql(), url, "-v", "ON_ERROR_STOP=1", "-q", "-c", copy_cmd], check=True)
    psql_s = time.perf_counter() - started
    with db.connect() as conn:
        copied = conn.execute("SELECT count(*) FROM public.bench_copy_target").fetchone()[0]
        conn.execute("DROP TABLE public.bench_copy_target")
    assert copied == result.loaded_rows, (copied, result.loaded_rows)

    figures = {
        "rows": result.loaded_rows,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "generate_s": round(generate_s, 2),
        "xinfang_load_s": round(load_s, 2),
        "xinfang_rows_per_s": round(result.loaded_rows / load_s),
        "psql_copy_s": round(psql_s, 2),
        "psql_rows_per_s": round(copied / psql_s),
        "ratio_to_psql_copy": round(psql_s / load_s, 3),
    }
    report(figures, "ingest")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
