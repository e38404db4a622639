"""Schedule arithmetic: which export a run loads and which month a report covers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from xinfang.orchestration.schedules import (
    export_day_for,
    ingest_run_time,
    period_label,
    report_month_for,
    report_run_time,
)

CST = timezone(timedelta(hours=8))
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("logical", "day"),
    [
        (datetime(2025, 6, 2, 1, 30, tzinfo=CST), date(2025, 6, 1)),
        (datetime(2025, 7, 1, 1, 30, tzinfo=CST), date(2025, 6, 30)),
        (datetime(2025, 3, 1, 1, 30, tzinfo=CST), date(2025, 2, 28)),
        (datetime(2024, 3, 1, 1, 30, tzinfo=CST), date(2024, 2, 29)),
        (datetime(2026, 1, 1, 1, 30, tzinfo=CST), date(2025, 12, 31)),
        (datetime(2025, 6, 2, 1, 30, tzinfo=SHANGHAI), date(2025, 6, 1)),
        # UTC-aware inputs: 17:30 UTC is 01:30 the next day in Shanghai.
        (datetime(2025, 6, 1, 17, 30, tzinfo=UTC), date(2025, 6, 1)),
        (datetime(2025, 12, 31, 17, 30, tzinfo=UTC), date(2025, 12, 31)),
        # 15:30 UTC is still 23:30 of the same day in Shanghai.
        (datetime(2025, 6, 1, 15, 30, tzinfo=UTC), date(2025, 5, 31)),
        (datetime(2025, 12, 31, 15, 30, tzinfo=UTC), date(2025, 12, 30)),
    ],
)
def test_export_day_for(logical: datetime, day: date) -> None:
    assert export_day_for(logical) == day


def test_ingest_run_time_is_the_inverse_of_export_day_for() -> None:
    day = date(2024, 12, 1)
    while day <= date(2025, 3, 31):
        run = ingest_run_time(day)
        assert run.utcoffset() == timedelta(hours=8)
        assert (run.year, run.month, run.day, run.hour, run.minute) == (
            *(day + timedelta(days=1)).timetuple()[:3],
            1,
            30,
        )
        assert export_day_for(run) == day
        assert export_day_for(run.in_timezone("UTC")) == day
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("logical", "month"),
    [
        (datetime(2025, 7, 2, 8, 0, tzinfo=CST), date(2025, 6, 1)),
        (datetime(2025, 3, 2, 8, 0, tzinfo=CST), date(2025, 2, 1)),
        (datetime(2025, 1, 2, 8, 0, tzinfo=CST), date(2024, 12, 1)),
        (datetime(2026, 1, 2, 8, 0, tzinfo=CST), date(2025, 12, 1)),
        # 00:00 UTC on the 2nd is 08:00 in Shanghai.
        (datetime(2025, 7, 2, 0, 0, tzinfo=UTC), date(2025, 6, 1)),
        # 20:00 UTC on the last day of July is already August in Shanghai.
        (datetime(2025, 7, 31, 20, 0, tzinfo=UTC), date(2025, 7, 1)),
    ],
)
def test_report_month_for(logical: datetime, month: date) -> None:
    assert report_month_for(logical) == month


def test_report_run_time_is_the_inverse_of_report_month_for() -> None:
    for year in (2024, 2025):
        for m in range(1, 13):
            month = date(year, m, 1)
            run = report_run_time(month)
            following = date(year + (m == 12), m % 12 + 1, 1)
            assert (run.year, run.month, run.day, run.hour, run.minute) == (
                following.year,
                following.month,
                2,
                8,
                0,
            )
            assert run.utcoffset() == timedelta(hours=8)
            assert report_month_for(run) == month
            assert period_label(month) == f"{year}-{m:02d}"


def test_a_naive_logical_date_is_bureau_time_not_the_servers_zone():
    naive = datetime(2025, 6, 2, 0, 30)  # 00:30 in Beijing; in UTC it would still be 1 June
    assert export_day_for(naive) == date(2025, 6, 1)
    assert report_month_for(datetime(2025, 7, 1, 0, 30)) == date(2025, 6, 1)
