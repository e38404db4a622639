"""Run the DAGs through Airflow for one month, in this process (`dag.test()`).

This is what `make demo` does on a fresh machine: no scheduler, but the real
DAGs, the real Airflow metadata database, real task instances and XComs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from xinfang.config import Settings

log = logging.getLogger(__name__)


class DagRunFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class MonthRun:
    month: date
    ingest_runs: int
    outputs: dict[str, Path]


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


def run_month(month: date, settings: Settings, *, history_months: int = 1) -> MonthRun:
    """Ingest every day of `month` (and `history_months` before it), transform, gate and publish."""
    from xinfang.orchestration.schedules import ingest_run_time, report_run_time
    from xinfang.sim.hotline import SimConfig, write_exports

    first = month
    for _ in range(history_months):
        first = previous_month(first)
    days = [d for m in _months(first, month) for d in month_days(m)]
    write_exports(days[0], days[-1], settings.hotline_landing_dir, SimConfig())

    dags = load_dags(settings)
    for day in days:
        run_dag(dags["hotline_ingest"], logical_date=ingest_run_time(day))
    # Asset-triggered runs have no logical date in Airflow 3.
    run_dag(dags["warehouse_transform"], logical_date=None)
    run_dag(dags["monthly_risk_report"], logical_date=report_run_time(month))
    label = f"{month:%Y-%m}"
    return MonthRun(
        month=month,
        ingest_runs=len(days),
        outputs={
            "report": settings.output_dir / "reports" / label,
            "outbox": settings.outbox_dir,
            "extract": settings.output_dir / "extracts" / "province" / label,
            "dropfolder": settings.output_dir / "dropfolder" / "province",
            "quality": settings.output_dir / "quality" / label,
        },
    )


def _months(first: date, last: date) -> list[date]:
    months, current = [], first
    while current <= last:
        months.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months
