"""The report period a gate run checks, and the SQL literals that bound it.

Every period is a calendar month in bureau time. Its bounds are rendered as
SQL literals by this module only, from `date` values, so nothing a suite file
says ends up inside a literal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


def add_months(month: date, n: int) -> date:
    """First day of the month `n` months after (or before, n < 0) the month of `month`."""
    index = month.year * 12 + (month.month - 1) + n
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    start: date  # first day of the month

    def __post_init__(self) -> None:
        if self.start.day != 1:
            raise ValueError(f"a period starts on the first of a month, got {self.start}")

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.replace(day=1))

    @property
    def end(self) -> date:
        """First day of the next month (exclusive bound)."""
        return add_months(self.start, 1)

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def label_zh(self) -> str:
        return f"{self.start.year}年{self.start.month}月"

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def previous(self, n: int) -> list[date]:
        """Month starts of the `n` months before this one, oldest first."""
        return [add_months(self.start, -k) for k in range(n, 0, -1)]


def sql_date(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def sql_local_timestamp(day: date) -> str:
    """Midnight of `day` as a naive timestamp: the raw layer keeps source times naive, in bureau time."""
    return f"TIMESTAMP '{day.isoformat()} 00:00:00'"


def sql_instant(day: date) -> str:
    """Midnight of `day` in bureau time as an instant (for timestamptz columns such as loaded_at)."""
    return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+08:00'"
