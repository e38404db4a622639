"""Run the DAGs through Airflow for one month, in this process (`dag.test()`).

This is what `make demo` does on a fresh machine: no scheduler, but the real
DAGs, the real Airflow metadata database, real task instances and XComs.
With `executor="celery"` the same sequence of DAG runs goes to a CeleryExecutor
cluster instead (xinfang.orchestration.cluster), triggered through its REST API.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from xinfang.config import Settings

log = logging.getLogger(__name__)


# The simulated sources' first day: the demo imports everything from here on (see run_month).
HISTORY_START = date(2023, 1, 1)


class DagRunFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class MonthRun:
    month: date
    ingest_runs: int
    outputs: dict[str, Path]
    province_checks: list[str]  # "<package> accepted|rejected", the province side's verdicts


def month_days(month: date) -> list[date]:
    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return [month + timedelta(days=i) for i in range((nxt - month).days)]


def previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)


def compile_dbt_manifest(settings: Settings) -> Path:
    """`dbt parse`: the manifest Cosmos renders the transform DAG from (build-time step)."""
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run(
        [str(dbt), "parse", "--profiles-dir", str(settings.dbt_project_dir), "--quiet"],
        cwd=settings.dbt_project_dir,
        check=True,
    )
    return settings.dbt_target_dir / "manifest.json"


def migrate_airflow_db() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)


def load_dags(settings: Settings) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.dags_dir))
    if bag.import_errors:
        raise DagRunFailed(f"DAG import errors: {bag.import_errors}")
    if not bag.dags:
        raise DagRunFailed(f"no DAGs found in {settings.dags_dir}")
    return bag.dags


def run_dag(dag, **kwargs) -> None:
    """One `dag.test()` run; raises DagRunFailed naming the failed tasks."""
    run = dag.test(**kwargs)
    state = str(getattr(run, "state", run))
    if not state.endswith("success"):
        failed = [ti.task_id for ti in run.get_task_instances() if str(ti.state).endswith("failed")]
        raise DagRunFailed(f"{dag.dag_id} run {run.run_id} ended {state}; failed tasks: {failed}")


@contextmanager
def online_platform(first: date, last: date) -> Iterator[str]:
    """The online petition platform's simulator as a separate process, configured as the DAG's connection.

    It serves petitions registered from half a year before `first` (so updates
    to older petitions arrive too) up to `last`; the token is made up per run.
    """
    token = secrets.token_urlsafe(24)
    xinfang = str(Path(sys.executable).with_name("xinfang"))
    command = [
        xinfang,
        "sim",
        "serve-web",
        "--port",
        "0",
        "--from",
        (first - timedelta(days=183)).isoformat(),
        "--to",
        last.isoformat(),
    ]
    env = {**os.environ, "XINFANG_SIM_WEB_TOKEN": token}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in server.stdout:
            if "listening on" in line:
                url = line.rsplit(" ", 1)[1].strip().removesuffix("/api/v1/petitions")
                break
        if url is None:
            raise DagRunFailed(f"the online platform simulator did not start (exit {server.wait()})")
        os.environ["AIRFLOW_CONN_XINFANG_ONLINE_PLATFORM"] = json.dumps(
            {"conn_type": "http", "host": url, "password": token}
        )
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


DAG_IDS = (
    "hotline_ingest",
    "online_petition_ingest",
    "grid_ingest",
    "warehouse_transform",
    "monthly_risk_report",
    "province_extract_daily",
    "halfyear_work_summary",
)

# Runs one DAG run to success or raises: (dag_id, logical date or None for an asset-triggered DAG).
DagRunner = Callable[[str, datetime | None], None]


@contextmanager
def dag_runner(settings: Settings, executor: str = "local", *, workers: int = 2) -> Iterator[DagRunner]:
    """Where the DAG runs happen: `local`, `dag.test()` in this process; `celery`, a CeleryExecutor
    cluster with `workers` workers (xinfang.orchestration.cluster), each run triggered through
    the REST API in the same order, with the scheduler creating none of its own."""
    if executor == "local":
        dags = load_dags(settings)
        yield lambda dag_id, logical_date: run_dag(dags[dag_id], logical_date=logical_date)
        return
    if executor != "celery":
        raise ValueError(f"unknown executor {executor!r} (local or celery)")
    from xinfang.orchestration.cluster import celery_cluster, free_port

    with celery_cluster(workers=workers, port=free_port(), scheduled=False) as cluster:
        cluster.unpause(list(DAG_IDS))

        def run(dag_id: str, logical_date: datetime | None) -> None:
            try:
                cluster.run(dag_id, logical_date)
            except RuntimeError as exc:
                raise DagRunFailed(str(exc)) from exc

        yield run


def ingest_days(days: list[date], run: DagRunner) -> None:
    """The three ingestion DAGs for each day, the grid system's clock moved along with them."""
    from xinfang.orchestration.schedules import ingest_run_time
    from xinfang.sim import grid_system

    for day in days:
        # The grid system lives on by itself; here its clock is moved to the end of each day.
        end_of_day = datetime.combine(day, time(23, 59, 59))
        if grid_system.clock(grid_system.source_url()) < end_of_day:
            grid_system.advance_to(end_of_day)
        for dag_id in ("hotline_ingest", "online_petition_ingest", "grid_ingest"):
            run(dag_id, ingest_run_time(day))


def run_month(
    month: date,
    settings: Settings,
    *,
    history_months: int = 1,
    import_from: date | None = HISTORY_START,
    executor: str = "local",
    workers: int = 2,
) -> MonthRun:
    """Import the sources' history from `import_from` (once; see xinfang.ingest.history), ingest
    every day of `month` and of `history_months` before it through the daily DAGs, then
    transform, and gate, model, publish and mail the report of each of those months; when
    `month` ends a half-year (June, December), also the half-year work summary."""
    from xinfang.orchestration.schedules import daily_extract_run_time, halfyear_run_time, report_run_time
    from xinfang.sim.hotline import SimConfig, write_exports
    from xinfang.sim.world import build_world, write_ground_truth

    first = month
    for _ in range(history_months):
        first = previous_month(first)
    days = [d for m in _months(first, month) for d in month_days(m)]
    write_exports(days[0], days[-1], settings.hotline_landing_dir, SimConfig())
    # For evaluating the risk warnings later; nothing in the pipeline reads it.
    write_ground_truth(build_world(), settings.data_dir / "sim" / "ground_truth.json")

    imported = import_from is not None and import_from < days[0]
    summaries = {}
    with (
        online_platform(import_from if imported else days[0], days[-1]),
        dag_runner(settings, executor, workers=workers) as run,
    ):
        if imported:
            from xinfang.ingest.history import import_history

            import_history(settings, import_from, days[0] - timedelta(days=1))
        ingest_days(days, run)
        # Asset-triggered runs have no logical date in Airflow 3.
        run("warehouse_transform", None)
        # Every month's report, oldest first: each follows up the warnings of the month before.
        for report_month in _months(first, month):
            run("monthly_risk_report", report_run_time(report_month))
        # The province's side: validate what arrived in the drop folder and acknowledge it; then the
        # daily extract of the month's last day, whose follow-up task records those acknowledgements.
        province_checks = acknowledge_dropfolder(settings.province_dropfolder)
        run("province_extract_daily", daily_extract_run_time(days[-1]))
        if month.month in (6, 12):
            half_year = f"{month.year}H{1 if month.month == 6 else 2}"
            run("halfyear_work_summary", halfyear_run_time(half_year))
            summaries["summary"] = settings.output_dir / "reports" / half_year
    label = f"{month:%Y-%m}"
    return MonthRun(
        month=month,
        ingest_runs=len(days) * 3,
        province_checks=province_checks,
        outputs=summaries
        | {
            "report": settings.output_dir / "reports" / label,
            "outbox": settings.outbox_dir,
            "extract": settings.output_dir / "extracts" / "province",
            "dropfolder": settings.province_dropfolder,
            "quality": settings.output_dir / "quality" / label,
        },
    )


def run_days(
    first: date, last: date, settings: Settings, *, executor: str = "local", workers: int = 2
) -> int:
    """The daily cycle over [first, last] with no history: each day's three ingestion DAGs, then
    the warehouse rebuild and the province's daily extract of `last`. Returns the DAG runs made."""
    from xinfang.orchestration.schedules import daily_extract_run_time
    from xinfang.sim.hotline import SimConfig, write_exports

    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    write_exports(first, last, settings.hotline_landing_dir, SimConfig())
    with online_platform(first, last), dag_runner(settings, executor, workers=workers) as run:
        ingest_days(days, run)
        run("warehouse_transform", None)
        run("province_extract_daily", daily_extract_run_time(last))
    return len(days) * 3 + 2


def acknowledge_dropfolder(dropfolder: Path) -> list[str]:
    """Play the province: validate every package in the drop folder and write its acknowledgement."""
    from xinfang.extract.commands import acknowledge, packages_under
    from xinfang.extract.validate import validate_package

    verdicts = []
    for package in packages_under(dropfolder):
        if (dropfolder / f"{package.name}.ack.json").exists():
            continue
        report = validate_package(package)
        acknowledge(report)
        log.info("province side: %s %s", package.name, "accepted" if report.ok else "rejected")
        verdicts.append(f"{package.name} {'accepted' if report.ok else 'rejected'}")
    return verdicts


def _months(first: date, last: date) -> list[date]:
    months, current = [], first
    while current <= last:
        months.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months
