"""The `xinfang` command: set-up, simulators, the demo pipeline, on-demand runs."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

from xinfang.config import get_settings


def _month(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM, got {value!r}") from None


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def cmd_setup(args: argparse.Namespace) -> int:
    from xinfang.orchestration import runtime
    from xinfang.pipeline_run import compile_dbt_manifest, migrate_airflow_db

    settings = get_settings()
    runtime.apply(settings, start_database=False)
    # dbt parse needs the profile's variables but no connection.
    for key in ("XINFANG_PG_HOST", "XINFANG_PG_USER", "XINFANG_PG_DBNAME"):
        os.environ.setdefault(key, "unused-at-parse-time")
    manifest = compile_dbt_manifest(settings)
    migrate_airflow_db()
    print(f"dbt manifest: {manifest}\nAirflow metadata database: {settings.airflow_home / 'airflow.db'}")
    return 0


def cmd_sim_hotline(args: argparse.Namespace) -> int:
    from xinfang.sim.hotline import SimConfig, write_exports

    settings = get_settings()
    cfg = SimConfig(seed=args.seed, orders_per_day=args.orders_per_day)
    paths = write_exports(args.start, args.end, args.out or settings.hotline_landing_dir, cfg)
    print(f"{len(paths)} export files in {paths[0].parent}")
    return 0


def cmd_sim_grid(args: argparse.Namespace) -> int:
    from xinfang.sim.grid_system import advance_to

    result = advance_to(args.as_of)
    print(
        f"grid system as of {result.as_of}: {result.events_inserted} events inserted, "
        f"{result.events_updated} updated, {result.actions_inserted} actions; "
        f"{result.grids} grids, {result.workers} workers"
    )
    return 0


def cmd_sim_serve_web(args: argparse.Namespace) -> int:
    from xinfang.sim.web_api import FaultConfig, serve, world_provider

    token = args.token or os.environ.get("XINFANG_SIM_WEB_TOKEN")
    if not token:
        print("give --token or set XINFANG_SIM_WEB_TOKEN", file=sys.stderr)
        return 2
    faults = FaultConfig(
        rate_429=args.rate_429,
        rate_5xx=args.rate_5xx,
        rate_slow=args.rate_slow,
        slow_seconds=args.slow_seconds,
        retry_after_seconds=args.retry_after,
        seed=args.seed,
    )
    provider = world_provider(
        seed=args.seed,
        start=args.registered_from,
        end=args.registered_to,
        as_of=args.as_of,
        corrupt_rate=args.corrupt_rate,
    )
    clock = f"fixed at {args.as_of:%Y-%m-%dT%H:%M}" if args.as_of else "end of each requested window"
    print(f"serving {len(provider.petitions)} petitions; clock: {clock}", flush=True)
    serve(host=args.host, port=args.port, token=token, provider=provider, faults=faults)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from xinfang.orchestration import runtime

    settings = get_settings()
    started = time.monotonic()
    os.environ.setdefault("XINFANG_TASK_RETRIES", "0")
    if not args.verbose:
        # dag.test() echoes every task's log; warnings (e.g. quarantined rows) still show.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    runtime.apply(settings)
    from xinfang.pipeline_run import migrate_airflow_db, run_month

    if not (settings.dbt_target_dir / "manifest.json").exists():
        print("dbt manifest missing: run `xinfang setup` (make demo does) first", file=sys.stderr)
        return 2
    # The metadata database lives in the data folder, which may be new (another XINFANG_DATA_DIR);
    # a Celery cluster keeps its own in PostgreSQL and migrates that itself.
    if args.executor == "local":
        migrate_airflow_db()
    result = run_month(
        args.month,
        settings,
        history_months=args.history_months,
        import_from=None if args.no_history else args.import_from,
        executor=args.executor,
        workers=args.workers,
    )
    elapsed = time.monotonic() - started
    db_note = (
        "external server (XINFANG_DATABASE_URL)"
        if settings.database_url_override
        else (f"embedded PostgreSQL in {settings.pgdata_dir}")
    )
    print(
        f"\nxinfang demo for {args.month:%Y-%m} finished in {elapsed:.0f} s "
        f"({result.ingest_runs} daily ingest runs); warehouse: {db_note}"
    )
    for name, path in result.outputs.items():
        print(f"  {name:<11} {path}")
    for verdict in result.province_checks:
        print(f"  province check: {verdict} (xinfang extract validate)")
    return 0


def cmd_run_days(args: argparse.Namespace) -> int:
    from xinfang.orchestration import runtime

    settings = get_settings()
    started = time.monotonic()
    os.environ.setdefault("XINFANG_TASK_RETRIES", "0")
    runtime.apply(settings)
    from xinfang.pipeline_run import migrate_airflow_db, run_days

    if args.executor == "local":  # the cluster keeps its metadata in PostgreSQL and migrates it itself
        migrate_airflow_db()
    runs = run_days(args.first, args.last, settings, executor=args.executor, workers=args.workers)
    print(
        f"xinfang run-days {args.first}..{args.last}: {runs} DAG runs ({args.executor}) "
        f"in {time.monotonic() - started:.0f} s"
    )
    return 0


def cmd_report_monthly(args: argparse.Namespace) -> int:
    """Gate, model, render and mail one month's report on demand, outside Airflow."""
    from xinfang.orchestration import runtime

    settings = get_settings()
    # Before anything imports Airflow: it reads AIRFLOW_HOME once, at import.
    runtime.apply(settings)
    from xinfang.orchestration import tasks
    from xinfang.orchestration.schedules import report_run_time

    logical = report_run_time(args.month)
    tasks.quality_gate(logical)
    tasks.run_risk_model(logical)
    published = tasks.publish_report(logical)
    for report in published:
        print(f"report: {report['path']} (revision {report['revision']})")
    if not args.no_mail:
        outcome = tasks.distribute_report(published)
        print(
            f"mail via {outcome['channel']}: sent {len(outcome['sent'])}, "
            f"already sent {len(outcome['skipped'])}"
        )
    return 0


def cmd_report_half_year(args: argparse.Namespace) -> int:
    """Gate, render and mail one half-year's work summary on demand, outside Airflow."""
    from xinfang.orchestration import runtime
    from xinfang.publish.halfyear_context import HalfYear
    from xinfang.publish.prose import ProseError

    settings = get_settings()
    # Before anything imports Airflow: it reads AIRFLOW_HOME once, at import.
    runtime.apply(settings)
    from xinfang.orchestration import tasks
    from xinfang.orchestration.schedules import halfyear_run_time

    try:
        label = HalfYear.parse(args.half_year).label
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    logical = halfyear_run_time(label)
    tasks.halfyear_quality_gate(logical)
    try:
        published = tasks.publish_halfyear_summary(logical, pdfa=args.pdfa)
    except ProseError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"summary: {published['path']} (revision {published['revision']})")
    # The PDF/A variant is the records office's archive copy; the leaders are mailed the plain
    # summary (by the DAG, or by this command without --pdfa).
    if not args.no_mail and not args.pdfa:
        outcome = tasks.distribute_halfyear_summary(published)
        sent, skipped = len(outcome["sent"]), len(outcome["skipped"])
        print(f"mail via {outcome['channel']}: sent {sent}, already sent {skipped}")
    return 0


def cmd_report_resend(args: argparse.Namespace) -> int:
    """Send a month's archived report again: to the failed recipients, or to named ones."""
    from xinfang import db
    from xinfang.orchestration import runtime
    from xinfang.publish.monthly_report import DistributionError, resend

    settings = get_settings()
    runtime.apply(settings)
    with db.connect(autocommit=True) as conn:
        try:
            outcomes = resend(conn, args.month, recipients=args.recipient or None, settings=settings)
        except DistributionError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    for o in outcomes:
        print(f"{o.artifact_key} r{o.revision}: sent {len(o.sent)}, already sent {len(o.skipped)}")
    return 0


def cmd_risk_run(args: argparse.Namespace) -> int:
    """Run the risk model for one month (forecasts, hotspots, tagging, warnings) and print a summary."""
    from xinfang import db
    from xinfang.orchestration import runtime
    from xinfang.risk.monthly import run_month

    runtime.apply(get_settings())
    with db.connect() as conn:
        result = run_month(conn, args.month, tag=not args.no_tagging)
    print(
        f"{result.month:%Y-%m}: {result.forecast_series} forecast series, {result.hotspots} hotspots, "
        f"{result.alerts} warnings, {result.followups} follow-ups of last month, "
        f"{result.tagged_cases} petitions tagged (agreement {result.tag_agreement}), {result.seconds} s"
    )
    return 0


def cmd_risk_evaluate(args: argparse.Namespace) -> int:
    """Run the model month by month and score its warnings against the simulator's planted risks."""
    from xinfang.risk import evaluate

    return evaluate.run(args)


def cmd_dag_test(args: argparse.Namespace) -> int:
    """Run one DAG once in this process (`dag.test()`), e.g. to re-run a day or a month by hand."""
    from xinfang.orchestration import runtime

    settings = get_settings()
    os.environ.setdefault("XINFANG_TASK_RETRIES", "0")
    runtime.apply(settings)
    from xinfang.pipeline_run import load_dags, run_dag

    dags = load_dags(settings)
    if args.dag_id not in dags:
        print(f"unknown DAG {args.dag_id!r}; known: {', '.join(sorted(dags))}", file=sys.stderr)
        return 2
    run_dag(dags[args.dag_id], logical_date=args.logical_date)
    return 0


def cmd_lint_sql(args: argparse.Namespace) -> int:
    """sqlfluff with the dbt templater over the dbt project (needs the warehouse for compilation)."""
    from xinfang.orchestration import runtime

    settings = get_settings()
    runtime.apply(settings)
    sqlfluff = Path(sys.executable).with_name("sqlfluff")
    folders = [str(settings.dbt_project_dir / "models")]
    return subprocess.run([str(sqlfluff), "lint", *folders], cwd=settings.project_root).returncode


def cmd_airflow(args: argparse.Namespace) -> int:
    """Airflow with its UI on this machine (`make airflow`), until Ctrl-C.

    `airflow standalone` runs the api-server (UI and REST API), scheduler,
    dag-processor and triggerer with the same settings as every other command
    (runtime.apply: the data folder, LocalExecutor, telemetry off), against the
    embedded PostgreSQL or XINFANG_DATABASE_URL. It creates the `admin` login
    and prints its password (also kept in the Airflow home folder).
    """
    import signal

    from xinfang.orchestration import runtime

    settings = get_settings()
    runtime.apply(settings)
    if args.executor == "celery":
        return _airflow_celery(args)
    from xinfang.pipeline_run import migrate_airflow_db

    migrate_airflow_db()
    airflow = Path(sys.executable).with_name("airflow")
    env = os.environ | {
        "AIRFLOW__API__HOST": args.host,
        "AIRFLOW__API__PORT": str(args.port),
        # Task processes report to the api-server: its address, not the default localhost:8080.
        "AIRFLOW__API__BASE_URL": f"http://{args.host}:{args.port}",
        # standalone starts its components as `airflow ...` by name: this environment's.
        "PATH": os.pathsep.join([str(airflow.parent), os.environ.get("PATH", "")]),
    }
    print(f"Airflow UI and REST API: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen([str(airflow), "standalone"], env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def _airflow_celery(args: argparse.Namespace) -> int:
    """The distributed topology of docker/compose.yaml on this machine: api-server, scheduler,
    dag-processor and --workers Celery workers, Redis as broker, metadata in PostgreSQL."""
    from xinfang.orchestration.cluster import celery_cluster

    if args.host != "127.0.0.1":
        print("--executor celery listens on 127.0.0.1 only", file=sys.stderr)
        return 2
    with celery_cluster(workers=args.workers, port=args.port) as cluster:
        print(
            f"Airflow UI and REST API: {cluster.base_url} (CeleryExecutor, {len(cluster.workers)} workers, "
            f"queue {cluster.queue}; admin password in {cluster.home}/simple_auth_manager_passwords"
            ".json.generated; Ctrl-C stops it)",
            flush=True,
        )
        try:
            while True:
                cluster.check_alive()
                time.sleep(5)
        except KeyboardInterrupt:
            return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    from xinfang.orchestration import runtime

    print(runtime.apply(get_settings()))
    return 0


def cmd_risk_tag_eval(args: argparse.Namespace) -> int:
    """Train the category tagger on labelled data and print accuracy, macro-F1 and per-label figures."""
    from xinfang.risk import tag_eval

    return tag_eval.run(args)


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=("local", "celery"),
        default="local",
        help="local (default) or celery: a CeleryExecutor cluster, Redis as broker "
        "(XINFANG_CELERY_BROKER_URL, default redis://127.0.0.1:6379/0)",
    )
    p.add_argument("--workers", type=int, default=2, help="Celery workers (with --executor celery)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xinfang", description="xinfang-dw: petition data warehouse")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("setup", help="build-time steps: compile the dbt manifest, migrate Airflow's database")
    p.set_defaults(func=cmd_setup)

    sim = sub.add_parser("sim", help="source-system simulators").add_subparsers(dest="system", required=True)
    p = sim.add_parser("hotline", help="write 12345 hotline daily export files")
    p.add_argument("--start", type=_day, required=True)
    p.add_argument("--end", type=_day, required=True)
    p.add_argument("--out", type=Path)
    p.add_argument("--seed", type=int, default=20250101)
    p.add_argument("--orders-per-day", type=int, default=180)
    p.set_defaults(func=cmd_sim_hotline)
    p = sim.add_parser("grid", help="bring the grid system's database to its state at a moment")
    p.add_argument(
        "--as-of", type=datetime.fromisoformat, required=True, help="bureau time, e.g. 2025-06-30T23:59"
    )
    p.set_defaults(func=cmd_sim_grid)
    p = sim.add_parser("serve-web", help="serve the online petition platform's HTTP API (until Ctrl-C)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", help="bearer token clients must send (default: $XINFANG_SIM_WEB_TOKEN)")
    p.add_argument("--seed", type=int, default=20250101, help="world seed; also seeds faults and damage")
    p.add_argument(
        "--as-of",
        type=datetime.fromisoformat,
        help="fixed clock (bureau time); default: each window as it stood at its updated_until",
    )
    p.add_argument("--from", dest="registered_from", type=_day, help="serve petitions registered from")
    p.add_argument("--to", dest="registered_to", type=_day, help="serve petitions registered up to")
    p.add_argument("--rate-429", type=float, default=0.0, help="share of requests answered 429")
    p.add_argument("--rate-5xx", type=float, default=0.0, help="share answered 500/502/503")
    p.add_argument("--rate-slow", type=float, default=0.0, help="share answered after --slow-seconds")
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of 429 answers")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="share of petitions served damaged")
    p.set_defaults(func=cmd_sim_serve_web)

    p = sub.add_parser("demo", help="run the whole pipeline through Airflow for one month")
    p.add_argument("--month", type=_month, default=date(2025, 6, 1))
    p.add_argument(
        "--history-months", type=int, default=1, help="months run through the daily DAGs before --month"
    )
    p.add_argument(
        "--import-from",
        type=_day,
        default=date(2023, 1, 1),
        help="first day of the one-off history import that precedes the daily runs (default 2023-01-01)",
    )
    p.add_argument("--no-history", action="store_true", help="skip the history import")
    _executor_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "run-days",
        help="the daily cycle for some days, no history: ingestion DAGs, warehouse rebuild, daily extract",
    )
    p.add_argument("--from", dest="first", type=_day, required=True)
    p.add_argument("--to", dest="last", type=_day, required=True)
    _executor_arguments(p)
    p.set_defaults(func=cmd_run_days)

    report = sub.add_parser("report", help="reports on demand").add_subparsers(dest="report", required=True)
    p = report.add_parser("monthly", help="gate, render and mail a month's risk-warning report")
    p.add_argument("--month", type=_month, required=True)
    p.add_argument("--no-mail", action="store_true")
    p.set_defaults(func=cmd_report_monthly)
    p = report.add_parser(
        "half-year",
        help="gate, render and mail a half-year's work summary (半年工作总结), e.g. 2025H1",
    )
    p.add_argument("half_year", help="YYYYH1 or YYYYH2")
    p.add_argument(
        "--pdfa",
        action="store_true",
        help="write the PDF/A-3b variant for the archive instead (never mailed)",
    )
    p.add_argument("--no-mail", action="store_true")
    p.set_defaults(func=cmd_report_half_year)
    p = report.add_parser(
        "resend",
        help="send a month's archived report again (failed recipients, or --recipient even if delivered)",
    )
    p.add_argument("--month", type=_month, required=True)
    p.add_argument("--recipient", action="append", help="address to send to again (repeatable)")
    p.set_defaults(func=cmd_report_resend)

    p = sub.add_parser("dag-test", help="run one DAG once through Airflow in this process")
    p.add_argument("dag_id")
    p.add_argument(
        "--logical-date",
        type=datetime.fromisoformat,
        default=None,
        help="ISO timestamp with offset, e.g. 2025-07-02T08:00+08:00",
    )
    p.set_defaults(func=cmd_dag_test)

    p = sub.add_parser("lint-sql", help="lint the dbt models with sqlfluff")
    p.set_defaults(func=cmd_lint_sql)

    p = sub.add_parser("airflow", help="run Airflow with its UI and REST API on this machine (make airflow)")
    p.add_argument("--host", default="127.0.0.1", help="address the UI listens on (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    _executor_arguments(p)
    p.set_defaults(func=cmd_airflow)

    p = sub.add_parser("db-url", help="print the warehouse URL (starts the embedded server if needed)")
    p.set_defaults(func=cmd_db_url)

    risk = sub.add_parser("risk", help="risk analysis").add_subparsers(dest="risk", required=True)
    p = risk.add_parser(
        "tag-eval",
        help="train the category tagger on labelled data and measure it on other data",
        description="Train the free-text category tagger and print accuracy, macro-F1 and a per-label table.",
    )
    from xinfang.risk.tag_eval import add_arguments as add_tag_eval_arguments

    add_tag_eval_arguments(p)
    p.set_defaults(func=cmd_risk_tag_eval)
    p = risk.add_parser("run", help="run the risk model for one month and store its results in schema risk")
    p.add_argument("--month", type=_month, required=True)
    p.add_argument("--no-tagging", action="store_true", help="skip the text tagger (faster)")
    p.set_defaults(func=cmd_risk_run)
    p = risk.add_parser(
        "evaluate",
        help="score the warnings against the simulator's planted risks (precision, recall, lead time)",
    )
    from xinfang.risk.evaluate import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_risk_evaluate)

    extract = sub.add_parser("extract", help="the provincial extract: validate, build, deliver, schema")
    from xinfang.extract.commands import add_arguments as add_extract_arguments

    add_extract_arguments(extract.add_subparsers(dest="extract", required=True), _month, _day)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
