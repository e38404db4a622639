"""Ingest throughput of the hotline loader against psql's own \\copy of the same rows.

    .venv/bin/python bench/ingest_bench.py [--rows 200000] [--repeats 5] [--bad-row-rate 0]

Generates one export file with about --rows work orders, loads it once to
warm up and to export exactly the rows that land, then times, --repeats
times and in rotating order so that drift on a shared machine hits every
side alike:

- loader: xinfang.ingest.hotline.load_file from the file to committed rows
  (read, checksum, parse, validate, pseudonymise, COPY into
  raw.hotline_work_orders and restricted.hotline_callers, quarantine, ledger,
  reconciliation, commit);
- psql: psql's \\copy of the landed rows (CSV) into an empty table of the same
  definition as raw.hotline_work_orders (columns, defaults, primary key, the
  batch foreign key), the comparison the requirement names;
- psql_both: for context, psql's \\copy of the same rows into both tables the
  loader fills, in one transaction (the loader also writes every caller's
  identifiers to the restricted schema, which roughly doubles the server's work);
- to_sql: pandas.DataFrame.to_sql (SQLAlchemy, psycopg2, default method) of the
  same landed rows, already parsed in memory, into a table of the same definition.

Before each timed run the previous run's rows are removed and a CHECKPOINT
is taken (when the role may), so no run pays for another's dirty pages.
Prints the median and the spread of every figure and of the paired ratios
psql_s / loader_s, and writes them to bench/results/ingest.json. Uses the
embedded PostgreSQL (or XINFANG_DATABASE_URL) and a throw-away data folder.

Read the ratio together with the machine's load: psql's side keeps about one
core busy (its server process), the loader two (Python and its server
process, working in parallel). On a 2-core machine where something else
holds a core, the loader's time grows and psql's hardly moves. Each
quarantined row is logged (stderr): with --bad-row-rate, add 2>/dev/null.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from results_table import report

CALLER_TABLE_COLUMNS = "batch_id, source_row, work_order_no, caller_key, caller_name, caller_phone, address"


def _psql() -> str:
    import pgserver

    embedded = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return str(embedded) if embedded.exists() else (shutil.which("psql") or "psql")


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bad-row-rate", type=float, default=0.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="xinfang-bench-"))
    # Registered before the embedded server starts, so it runs after the server's own exit hook has
    # stopped it (atexit is last in, first out): a server whose folder vanished lingers for a minute.
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.environ.setdefault("XINFANG_DATA_DIR", str(workdir / "data"))
    os.environ["PYTHONDONTWRITEBYTECODE"] = ""
    import psycopg

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
    cfg = replace(SimConfig(), orders_per_day=args.rows, bad_row_rate=args.bad_row_rate)
    path = write_export(day, workdir / "landing", cfg, lookback_days=0)
    generate_s = time.perf_counter() - started
    columns = ", ".join(hotline.RAW_COLUMNS)
    raw_csv, callers_csv = workdir / "landed.csv", workdir / "callers.csv"

    with db.connect(autocommit=True) as conn:
        batches.ensure_schema(conn)

        def checkpoint() -> None:
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")

        def forget(batch_id: int) -> None:
            """Remove a loaded batch so the same file loads again (its checksum would skip it)."""
            for table in (
                "raw.hotline_work_orders",
                "restricted.hotline_callers",
                "ops.quarantine",
                "restricted.quarantine_records",
                "ops.load_batches",
            ):
                conn.execute(f"DELETE FROM {table} WHERE batch_id = %s", (batch_id,))  # noqa: S608 constants
            for table in ("raw.hotline_work_orders", "restricted.hotline_callers"):
                conn.execute(f"VACUUM {table}")

        # Warm-up load (imports, reference data, caches) that also yields the rows psql copies.
        warm = hotline.load_file(conn, path, pii_key=b"bench-key")
        # psql's rows carry a ledger row of their own, so its table keeps the same foreign key.
        psql_batch = conn.execute(
            "INSERT INTO ops.load_batches (source, file_name, file_sha256, status, started_at)"
            " VALUES ('bench', 'psql \\copy', 'bench', 'failed', now()) RETURNING batch_id"
        ).fetchone()[0]
        for target, table, names in (
            (raw_csv, "raw.hotline_work_orders", columns),
            (callers_csv, "restricted.hotline_callers", CALLER_TABLE_COLUMNS),
        ):
            select = f"SELECT %s, {names.removeprefix('batch_id, ')} FROM {table} WHERE batch_id = %s"  # noqa: S608
            query = f"COPY ({select} ORDER BY source_row) TO STDOUT (FORMAT csv)"
            with target.open("wb") as fh, conn.cursor().copy(query, (psql_batch, warm.batch_id)) as cp:
                for chunk in cp:
                    fh.write(chunk)
        forget(warm.batch_id)

        def run_loader() -> float:
            checkpoint()
            started = time.perf_counter()
            result = hotline.load_file(conn, path, pii_key=b"bench-key")
            elapsed = time.perf_counter() - started
            assert not result.skipped and result.loaded_rows == warm.loaded_rows, result
            forget(result.batch_id)
            return elapsed

        def run_psql(*, both: bool) -> float:
            conn.execute("DROP TABLE IF EXISTS public.bench_copy_target, public.bench_copy_callers")
            # Same definition as the loader's targets: columns, defaults, primary key, batch foreign key.
            for name, like in (
                ("bench_copy_target", "raw.hotline_work_orders"),
                ("bench_copy_callers", "restricted.hotline_callers"),
            ):
                conn.execute(f"CREATE TABLE public.{name} (LIKE {like} INCLUDING ALL)")
                conn.execute(
                    f"ALTER TABLE public.{name} ADD FOREIGN KEY (batch_id) REFERENCES ops.load_batches"
                )
            commands = [
                "-c",
                f"\\copy public.bench_copy_target ({columns}) FROM '{raw_csv}' WITH (FORMAT csv)",
            ]
            if both:
                commands += [
                    "-c",
                    f"\\copy public.bench_copy_callers ({CALLER_TABLE_COLUMNS}) FROM '{callers_csv}'"
                    " WITH (FORMAT csv)",
                ]
            checkpoint()
            started = time.perf_counter()
            # -1: one transaction for all -c commands, as the loader commits both tables at once.
            subprocess.run([_psql(), url, "-1", "-v", "ON_ERROR_STOP=1", "-q", *commands], check=True)
            elapsed = time.perf_counter() - started
            copied = conn.execute("SELECT count(*) FROM public.bench_copy_target").fetchone()[0]
            assert copied == warm.loaded_rows, (copied, warm.loaded_rows)
            conn.execute("DROP TABLE public.bench_copy_target, public.bench_copy_callers")
            return elapsed

        import pandas as pd
        from sqlalchemy import create_engine

        # pandas gets the landed rows already parsed, in memory: the most favourable case for it.
        frame = pd.read_csv(raw_csv, header=None, names=hotline.RAW_COLUMNS, dtype=str, keep_default_na=False)
        frame = frame.astype(object).where(frame != "", None)
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))

        def run_to_sql() -> float:
            conn.execute("DROP TABLE IF EXISTS public.bench_tosql_target")
            conn.execute(
                "CREATE TABLE public.bench_tosql_target (LIKE raw.hotline_work_orders INCLUDING ALL)"
            )
            conn.execute(
                "ALTER TABLE public.bench_tosql_target ADD FOREIGN KEY (batch_id) REFERENCES ops.load_batches"
            )
            checkpoint()
            started = time.perf_counter()
            frame.to_sql("bench_tosql_target", engine, schema="public", if_exists="append", index=False)
            elapsed = time.perf_counter() - started
            copied = conn.execute("SELECT count(*) FROM public.bench_tosql_target").fetchone()[0]
            assert copied == warm.loaded_rows, (copied, warm.loaded_rows)
            conn.execute("DROP TABLE public.bench_tosql_target")
            return elapsed

        runs: dict[str, list[float]] = {"loader": [], "psql": [], "psql_both": [], "to_sql": []}
        sides = {
            "loader": run_loader,
            "psql": lambda: run_psql(both=False),
            "psql_both": lambda: run_psql(both=True),
            "to_sql": run_to_sql,
        }
        order = list(sides)
        for rep in range(args.repeats):
            for side in order[rep % len(order) :] + order[: rep % len(order)]:  # rotate who goes first
                runs[side].append(sides[side]())
            print(
                f"run {rep + 1}: loader {runs['loader'][-1]:.2f} s, psql {runs['psql'][-1]:.2f} s, "
                f"psql both tables {runs['psql_both'][-1]:.2f} s, to_sql {runs['to_sql'][-1]:.2f} s",
                flush=True,
            )
        engine.dispose()
        conn.execute("DELETE FROM ops.load_batches WHERE batch_id = %s", (psql_batch,))

    rows = warm.loaded_rows
    ratios = [p / x for p, x in zip(runs["psql"], runs["loader"], strict=True)]
    ratios_both = [p / x for p, x in zip(runs["psql_both"], runs["loader"], strict=True)]
    ratios_to_sql = [t / x for t, x in zip(runs["to_sql"], runs["loader"], strict=True)]
    loader, psql, both = _spread(runs["loader"]), _spread(runs["psql"]), _spread(runs["psql_both"])
    to_sql = _spread(runs["to_sql"])
    figures = {
        "rows": rows,
        "quarantined_rows": warm.quarantined_rows,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "generate_s": round(generate_s, 2),
        "repeats": args.repeats,
        "xinfang_load_s": loader["median"],
        "xinfang_load_s_min_max": f"{loader['min']} .. {loader['max']}",
        "xinfang_rows_per_s": round(rows / loader["median"]),
        "psql_copy_s": psql["median"],
        "psql_copy_s_min_max": f"{psql['min']} .. {psql['max']}",
        "psql_rows_per_s": round(rows / psql["median"]),
        "ratio_to_psql_copy": round(statistics.median(ratios), 3),
        "ratio_to_psql_copy_min_max": f"{min(ratios):.3f} .. {max(ratios):.3f}",
        "ratio_runs": " ".join(f"{r:.3f}" for r in ratios),
        "psql_copy_both_tables_s": both["median"],
        "ratio_to_psql_copy_both_tables": round(statistics.median(ratios_both), 3),
        "ratio_to_psql_copy_both_tables_min_max": f"{min(ratios_both):.3f} .. {max(ratios_both):.3f}",
        "to_sql_s": to_sql["median"],
        "to_sql_rows_per_s": round(rows / to_sql["median"]),
        "ratio_to_to_sql": round(statistics.median(ratios_to_sql), 3),
        "ratio_to_to_sql_min_max": f"{min(ratios_to_sql):.3f} .. {max(ratios_to_sql):.3f}",
    }
    report(figures, "ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
