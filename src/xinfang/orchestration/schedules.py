"""Schedules, data intervals and assets of the DAGs.

Kept out of the DAG files so tests can check the arithmetic (which export a
run loads, which month a report covers) without Airflow's scheduler.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta

import pendulum
from airflow.sdk import Asset
from airflow.timetables.trigger import CronTriggerTimetable

from xinfang.config import BUREAU_TZ

TIMEZONE = "Asia/Shanghai"
START_DATE = pendulum.datetime(2025, 1, 1, tz=TIMEZONE)

# The vendor drops the previous day's export shortly after midnight.
HOTLINE_INGEST_SCHEDULE = CronTriggerTimetable("30 1 * * *", timezone=TIMEZONE)
# The report for month M goes out at 08:00 on the 2nd of M+1, after the last daily load of M.
MONTHLY_REPORT_SCHEDULE = CronTriggerTimetable("0 8 2 * *", timezone=TIMEZONE)

# The half-year work summary goes out at 10:00 on 2 January and 2 July, for the half-year
# just ended: after the monthly report of its last month (08:00 the same day), whose risk
# model run the summary's warning figures count.
HALFYEAR_SUMMARY_SCHEDULE = CronTriggerTimetable("0 10 2 1,7 *", timezone=TIMEZONE)

# The province's daily incremental extract of the day before, long after the night's loads
# (01:30) and the warehouse rebuild they trigger; it waits (retries) if they are late.
PROVINCE_EXTRACT_DAILY_SCHEDULE = CronTriggerTimetable("0 6 * * *", timezone=TIMEZONE)

HOTLINE_RAW = Asset("xinfang://warehouse/raw/hotline_work_orders", group="raw")
WAREHOUSE_MARTS = Asset("xinfang://warehouse/marts/fct_cases", group="marts")

OWNER = "xinfang-data-engineering"


def default_args() -> dict:
    # In-process runs (`xinfang demo`, tests) set XINFANG_TASK_RETRIES=0: dag.test()
    # would otherwise sit through every retry delay before reporting a failure. A
    # test of the retries themselves shortens the delay (XINFANG_TASK_RETRY_DELAY_SECONDS).
    return {
        "owner": OWNER,
        "retries": int(os.environ.get("XINFANG_TASK_RETRIES", "2")),
        "retry_delay": timedelta(seconds=float(os.environ.get("XINFANG_TASK_RETRY_DELAY_SECONDS", "300"))),
        "retry_exponential_backoff": True,
    }


def _bureau_time(moment: datetime) -> datetime:
    """`moment` in bureau time; a naive value already is (never the server's local zone)."""
    return moment.replace(tzinfo=BUREAU_TZ) if moment.tzinfo is None else moment.astimezone(BUREAU_TZ)


def export_day_for(logical_date: datetime) -> date:
    """The business day whose export a run at `logical_date` loads: the day before, bureau time."""
    return _bureau_time(logical_date).date() - timedelta(days=1)


def ingest_run_time(export_day: date) -> pendulum.DateTime:
    """Inverse of export_day_for: when the scheduler runs the load of `export_day`."""
    nxt = export_day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, 1, 30, tz=TIMEZONE)


def daily_extract_run_time(day: date) -> pendulum.DateTime:
    """When the scheduler runs the daily extract of `day` (its data day is export_day_for's)."""
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, 6, 0, tz=TIMEZONE)


def report_month_for(logical_date: datetime) -> date:
    """First day of the month a report run at `logical_date` covers: the previous month."""
    local = _bureau_time(logical_date).date()
    return (local.replace(day=1) - timedelta(days=1)).replace(day=1)


def report_run_time(month: date) -> pendulum.DateTime:
    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return pendulum.datetime(nxt.year, nxt.month, 2, 8, 0, tz=TIMEZONE)


def halfyear_label_for(logical_date: datetime) -> str:
    """The half-year a summary run at `logical_date` covers: the one that ended last, e.g. "2025H1"."""
    local = _bureau_time(logical_date).date()
    return f"{local.year}H1" if local.month > 6 else f"{local.year - 1}H2"


def halfyear_run_time(label: str) -> pendulum.DateTime:
    """Inverse of halfyear_label_for: when the scheduler runs the summary of `label` ("2025H1")."""
    year, half = int(label[:4]), int(label[-1])
    return pendulum.datetime(year if half == 1 else year + 1, 7 if half == 1 else 1, 2, 10, 0, tz=TIMEZONE)


def period_label(month: date) -> str:
    return f"{month:%Y-%m}"


# --- grid management system (read from its database) ---

# The grid system is read straight from its database: shortly after midnight
# bureau time the previous day's changes are complete.
GRID_INGEST_SCHEDULE = CronTriggerTimetable("15 0 * * *", timezone=TIMEZONE)
GRID_RAW = Asset("xinfang://warehouse/raw/grid_screening_events", group="raw")


def grid_cutoff_for(logical_date: datetime) -> datetime:
    """Last source `updated_at` (bureau time, naive) a run at `logical_date` loads: end of the day before."""
    day = export_day_for(logical_date)
    return datetime(day.year, day.month, day.day, 23, 59, 59, 999999)


# --- online petition platform (HTTP API, updated_since windows) ---

# Shortly after midnight bureau time the previous day is closed on the platform.
ONLINE_INGEST_SCHEDULE = CronTriggerTimetable("20 0 * * *", timezone=TIMEZONE)
ONLINE_RAW = Asset("xinfang://warehouse/raw/online_petitions", group="raw")
# Loaded again at the start of each window: changes committed late (with an earlier
# last-change time than the previous run saw) are still picked up.
ONLINE_WINDOW_OVERLAP = timedelta(minutes=10)


def online_window_for(logical_date: datetime) -> tuple[datetime, datetime]:
    """[since, until) a run at `logical_date` loads: the day before, bureau time, plus the overlap."""
    day = export_day_for(logical_date)
    start = datetime(day.year, day.month, day.day, tzinfo=BUREAU_TZ)
    return start - ONLINE_WINDOW_OVERLAP, start + timedelta(days=1)


# --- warehouse ---

# The warehouse is rebuilt whenever any source has delivered (data-aware, no
# clock guess). Any, not all: one source's outage must not freeze the others'
# figures; the models are incremental where volume is, so a rebuild per
# delivery costs little, and the quality gate checks each source's freshness
# before anything is published.
WAREHOUSE_TRANSFORM_SCHEDULE = HOTLINE_RAW | ONLINE_RAW | GRID_RAW
