"""The whole pipeline at 1 and 10 million hotline work orders: wall time, peak memory, daily run.

    .venv/bin/python bench/scale_bench.py [all] [--orders 1000000 10000000]   (make bench)
    .venv/bin/python bench/scale_bench.py generate --orders N
    .venv/bin/python bench/scale_bench.py run --orders N [N ...]

`generate` writes the hotline export files of 2023-01-01..2025-07-01 at about N
work orders (2023-01-01..2025-06-30, the demo's history) into data/bench/hotline_<N>/,
kept between runs (a marker file, written last, says it is complete). Its time
is printed, never part of the pipeline figures.

`run` measures each scale in its own process, throw-away data and output
folders and fresh databases (see docs/benchmarks.md): the full pipeline
(history import of all three sources, the warehouse_transform DAG, the
monthly_risk_report DAG for 2025-06), then the daily run of 2025-07-01 (the
three ingest DAGs, warehouse_transform, province_extract_daily), with a
sampler recording peak memory. `all` (the default) also runs bench/ingest_bench.py,
then prints one table and writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from multiprocessing import Pool
from pathlib import Path

from scale_measure import MemorySampler, fresh_database, task_durations

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / "data" / "bench"
HISTORY_START, HISTORY_END = date(2023, 1, 1), date(2025, 6, 30)
DAILY_DAY = HISTORY_END + timedelta(days=1)
REPORT_MONTH = date(2025, 6, 1)
IMPORT_END = REPORT_MONTH - timedelta(days=1)  # then June day by day, see _measure
DEFAULT_ORDERS = (1_000_000, 10_000_000)
# Orders the world model turns into petitions (numbered GD{day}9nnnn) come on top: 16,651 over
# the history for the default seed, measured once.
CONVERSIONS = 16_651
MAX_ORDERS_PER_DAY = 80_000  # numbers 9nnnn are the conversions'; the gaussian needs headroom
FULL_TARGET_S, MEMORY_TARGET_MB, DAILY_RATIO_TARGET = 20 * 60, 2048, 1.3
MAX_KEY = 60  # table column width; the slowest dbt tests have long names


# --- generate ---------------------------------------------------------------------------------


def cache_dir(orders: int) -> Path:
    return CACHE / f"hotline_{orders}"


def orders_per_day(orders: int) -> int:
    """Mean orders per weekday so that the history holds about `orders` distinct work orders."""
    days = [HISTORY_START + timedelta(days=i) for i in range((HISTORY_END - HISTORY_START).days + 1)]
    weight = sum(0.7 if d.weekday() >= 5 else 1.0 for d in days)
    per_day = round(max(orders - CONVERSIONS, len(days)) / weight)
    if per_day > MAX_ORDERS_PER_DAY:
        raise SystemExit(
            f"{orders} orders need {per_day} a day; work-order numbers allow {MAX_ORDERS_PER_DAY}"
        )
    return per_day


def _write_range(job: tuple[date, date, str, int]) -> int:
    """One process's contiguous days; the 60 days before `first` are computed here as well."""
    from functools import lru_cache

    from xinfang.sim import hotline
    from xinfang.sim.hotline import SimConfig, write_exports

    first, last, out, per_day = job
    # The look-back needs the last 61 days of orders; 128 cached days would double the memory
    # at 10 million (about 20 MB a day). The files are the same: each day is seeded by itself.
    hotline.orders_received_on = lru_cache(maxsize=64)(hotline.orders_received_on.__wrapped__)
    return len(write_exports(first, last, Path(out), SimConfig(orders_per_day=per_day)))


def generate(orders: int, processes: int = 2) -> dict:
    out = cache_dir(orders)
    marker = out / "COMPLETE.json"
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        print(f"hotline_{orders}: already generated ({info['files']} files, {info['mb']} MB)", flush=True)
        return info
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.part"):
        stale.unlink()
    per_day = orders_per_day(orders)
    days = (DAILY_DAY - HISTORY_START).days + 1
    bounds = [HISTORY_START + timedelta(days=days * k // processes) for k in range(processes + 1)]
    jobs = [(a, b - timedelta(days=1), str(out), per_day) for a, b in itertools.pairwise(bounds)]
    jobs[-1] = (jobs[-1][0], DAILY_DAY, str(out), per_day)
    print(f"hotline_{orders}: generating {days} days at {per_day} orders a weekday into {out}", flush=True)
    started = time.perf_counter()
    with Pool(processes) as pool:
        files = sum(pool.map(_write_range, jobs))
    files_list = sorted(out.glob("*.csv"))
    for path in files_list:
        path.chmod(0o444)  # hard-linked into every run's landing folder: nobody may write them
    info = {
        "orders_target": orders,
        "orders_per_weekday": per_day,
        "files": files,
        "mb": round(sum(p.stat().st_size for p in files_list) / 1e6, 1),
        "generate_s": round(time.perf_counter() - started, 1),
        "processes": processes,
    }
    marker.write_text(json.dumps(info, indent=2), encoding="utf-8")
    print(f"hotline_{orders}: generated in {info['generate_s']} s, {info['mb']} MB", flush=True)
    return info


# --- run one scale (its own process: Airflow reads its configuration once, at import) -----------


def run_one(orders: int, out_json: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{orders}-", dir=CACHE))
    os.environ.update(
        XINFANG_DATA_DIR=str(workdir / "data"),
        XINFANG_OUTPUT_DIR=str(workdir / "output"),
        XINFANG_TASK_RETRIES="0",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONDONTWRITEBYTECODE="",
    )
    env, drop = fresh_database(f"scale_{orders}")
    os.environ.update(env)
    try:
        figures = _measure(orders, workdir, out_json)
    finally:
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    out_json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def _measure(orders: int, workdir: Path, out_json: Path) -> dict:
    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.orchestration import runtime

    # Set-up, as `xinfang setup` and `xinfang demo` do it, outside every timed section.
    settings = get_settings()
    runtime.apply(settings)
    from xinfang.ingest.history import import_history
    from xinfang.orchestration.schedules import daily_extract_run_time, report_run_time
    from xinfang.pipeline_run import (
        compile_dbt_manifest,
        ingest_days,
        load_dags,
        migrate_airflow_db,
        online_platform,
        run_dag,
    )
    from xinfang.sim import grid_system

    if not (settings.dbt_target_dir / "manifest.json").exists():
        compile_dbt_manifest(settings)
    migrate_airflow_db()
    landing = settings.hotline_landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    for path in sorted(cache_dir(orders).glob("*.csv")):
        try:
            os.link(path, landing / path.name)
        except OSError:
            shutil.copy2(path, landing / path.name)
    dags = load_dags(settings)

    # The grid system's simulator runs inside this process (import_history advances it month by
    # month): its time is measured and taken out of the pipeline figures, like generation.
    simulated = {"s": 0.0}
    advance = grid_system.advance_to

    def timed_advance(*args, **kwargs):
        t = time.perf_counter()
        try:
            return advance(*args, **kwargs)
        finally:
            simulated["s"] += time.perf_counter() - t

    grid_system.advance_to = timed_advance
    f: dict[str, float | int | str] = {"orders_target": orders}
    sampler = MemorySampler(settings, external=bool(settings.database_url_override))
    f["memory_metric"] = sampler.describe()

    def step(name: str, fn) -> None:
        t = time.perf_counter()
        fn()
        f[name] = round(time.perf_counter() - t, 1)
        print(f"[{orders}] {name}: {f[name]} s", flush=True)
        # Written after every step: a run stopped part-way still leaves what it measured.
        out_json.write_text(json.dumps(f, indent=2), encoding="utf-8")

    def run(dag_id: str, logical_date) -> None:
        run_dag(dags[dag_id], logical_date=logical_date)

    def phase(prefix: str, steps: list[tuple[str, object]]) -> float:
        """Timed steps; returns their wall time without the grid simulator's share."""
        sampler.reset()
        simulated["s"] = 0.0
        t = time.perf_counter()
        for name, fn in steps:
            step(f"{prefix}.{name}_s", fn)
        wall = time.perf_counter() - t
        f[f"{prefix}.grid_simulator_s"] = round(simulated["s"], 1)
        f.update(sampler.peaks(prefix))
        return wall - simulated["s"]

    june = [REPORT_MONTH + timedelta(days=i) for i in range((DAILY_DAY - REPORT_MONTH).days)]
    # The online platform's simulator serves the whole range; its start-up is not timed.
    with online_platform(HISTORY_START, DAILY_DAY), sampler:
        began = datetime.now().astimezone()
        # The report month's days come through the daily DAGs, as in `xinfang demo`: the quality
        # gate wants every day of the month loaded in a batch of its own (the import's are monthly).
        build = phase(
            "full",
            [
                ("history_import", lambda: import_history(settings, HISTORY_START, IMPORT_END)),
                ("daily_ingest_runs_june", lambda: ingest_days(june, run)),
                ("warehouse_transform", lambda: run("warehouse_transform", None)),
            ],
        )
        with db.connect() as conn:
            f["raw_hotline_work_orders"] = conn.execute(
                "SELECT count(DISTINCT work_order_no) FROM raw.hotline_work_orders"
            ).fetchone()[0]
            f["raw_hotline_rows"] = conn.execute("SELECT count(*) FROM raw.hotline_work_orders").fetchone()[0]
            f["fct_cases"] = conn.execute("SELECT count(*) FROM marts.fct_cases").fetchone()[0]
        tasks = task_durations(began)
        transform = sorted(
            ((s, t) for (d, t), s in tasks.items() if d == "warehouse_transform"), reverse=True
        )
        f["full.transform_tasks"] = len(transform)
        for seconds, task in transform[:5]:
            f[f"full.slowest:{task}_s"] = seconds

        began = datetime.now().astimezone()
        report = phase(
            "report",
            [("monthly_risk_report", lambda: run("monthly_risk_report", report_run_time(REPORT_MONTH)))],
        )
        f["full.pipeline_s"] = round(build + report, 1)
        f["full.peak_pipeline_mb"] = max(f["full.peak_pipeline_mb"], f["report.peak_pipeline_mb"])
        f["full.peak_postgres_mb"] = max(f["full.peak_postgres_mb"], f["report.peak_postgres_mb"])
        tasks = task_durations(began)
        for task in (
            "quality_gate",
            "risk_model",
            "render_report",
            "mail_report",
            "build_extract",
            "deliver_extract",
        ):
            f[f"report.{task}_s"] = tasks.get(("monthly_risk_report", task), "n/a")

        # Then the next day, as production has it: the daily run after the month's report (whose
        # full extract made the province keys of the whole history).
        began = datetime.now().astimezone()
        daily = phase(
            "daily",
            [
                ("ingest_runs", lambda: ingest_days([DAILY_DAY], run)),
                ("warehouse_transform", lambda: run("warehouse_transform", None)),
                (
                    "province_extract_daily",
                    lambda: run("province_extract_daily", daily_extract_run_time(DAILY_DAY)),
                ),
            ],
        )
        f["daily.pipeline_s"] = round(daily, 1)
        f["daily.build_extract_s"] = task_durations(began).get(
            ("province_extract_daily", "build_extract"), "n/a"
        )
        with db.connect() as conn:
            f["daily_hotline_rows"] = conn.execute(
                "SELECT count(*) FROM raw.hotline_work_orders r JOIN ops.load_batches b USING (batch_id)"
                " WHERE b.file_name = %s",
                (f"12345_gongdan_{DAILY_DAY:%Y%m%d}.csv",),
            ).fetchone()[0]
    return f


# --- orchestration of the sub-steps and the table ---------------------------------------------


def run(orders_list: list[int]) -> dict[int, dict]:
    results = {}
    for orders in orders_list:
        generate(orders)
        out = RESULTS / f"scale_{orders}.json"
        RESULTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, __file__, "_one", "--orders", str(orders), "--json", str(out)], check=True
        )
        results[orders] = json.loads(out.read_text(encoding="utf-8"))
        results[orders]["generate"] = json.loads((cache_dir(orders) / "COMPLETE.json").read_text())
    return results


def _short(key: str, width: int) -> str:
    return key if len(key) <= width else key[: width - 1] + "…"


def table(results: dict[int, dict], ingest: dict | None) -> dict:
    scales = sorted(results)
    derived: dict[str, object] = {}
    for n in scales:
        r = results[n]
        derived[f"full_within_20_min@{n}"] = r["full.pipeline_s"] <= FULL_TARGET_S
        derived[f"full_peak_under_2_GB@{n}"] = r["full.peak_pipeline_mb"] < MEMORY_TARGET_MB
    if 1_000_000 in results and 10_000_000 in results:
        ratio = results[10_000_000]["daily.pipeline_s"] / results[1_000_000]["daily.pipeline_s"]
        derived["daily_ratio_10M_to_1M"] = round(ratio, 3)
        derived["daily_ratio_within_1.3"] = ratio <= DAILY_RATIO_TARGET
    if ingest:
        derived["ingest_ratio_to_psql_copy"] = ingest.get("ratio_to_psql_copy")
        derived["ingest_ratio_to_to_sql"] = ingest.get("ratio_to_to_sql")
    keys = list(dict.fromkeys(k for n in scales for k in results[n] if k != "generate"))
    notes = {k: results[scales[0]][k] for k in keys if isinstance(results[scales[0]].get(k), str)}
    keys = [k for k in keys if k not in notes]
    width = min(MAX_KEY, max(map(len, keys + list(derived))))
    print(f"\n{'figure':<{width}}  " + "  ".join(f"{n:>12,}" for n in scales))
    for key in [*keys, "generate_s (excluded)"]:
        values = [results[n].get(key, results[n]["generate"].get("generate_s") if "generate" in key else "")
                  for n in scales]  # fmt: skip
        print(f"{_short(key, width):<{width}}  " + "  ".join(f"{v!s:>12}" for v in values))
    for key, value in derived.items():
        print(f"{key:<{width}}  {value!s:>12}")
    for key, value in notes.items():
        print(f"{key}: {value}")
    if ingest:
        print("\ningest_bench (its own run, bench/results/ingest.json):")
        for key in ("rows", "xinfang_rows_per_s", "psql_rows_per_s", "ratio_to_psql_copy", "ratio_to_to_sql"):
            print(f"  {key:<{width - 2}}  {ingest.get(key)!s:>14}")
    document = {
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine_cpus": os.cpu_count(),
        "database": "external (XINFANG_DATABASE_URL)"
        if os.environ.get("XINFANG_DATABASE_URL")
        else "embedded",
        "scales": {str(n): results[n] for n in scales},
        "derived": derived,
        "ingest": ingest,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    print(f"\nwritten: {RESULTS / 'scale.json'}")
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", nargs="?", default="all", choices=("all", "generate", "run", "_one"))
    parser.add_argument("--orders", type=int, nargs="+", default=list(DEFAULT_ORDERS))
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip-ingest-bench", action="store_true", help="`all` without bench/ingest_bench.py"
    )
    args = parser.parse_args()
    if args.step == "generate":
        for n in args.orders:
            generate(n)
    elif args.step == "_one":
        run_one(args.orders[0], args.json)
    elif args.step == "run":
        table(run(args.orders), None)
    else:
        ingest = None
        if not args.skip_ingest_bench:
            # Its own database too, when on a server (it would otherwise write into the server's URL).
            env, drop = fresh_database("ingest") if os.environ.get("XINFANG_DATABASE_URL") else ({}, None)
            try:
                bench = str(ROOT / "bench" / "ingest_bench.py")
                subprocess.run([sys.executable, bench], check=True, env={**os.environ, **env})
            finally:
                if drop:
                    drop()
            ingest = json.loads((RESULTS / "ingest.json").read_text(encoding="utf-8"))
        table(run(args.orders), ingest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
