"""Figures of the half-year work summary (半年工作总结), read from the warehouse.

Every number the summary prints comes from here: the marts
rpt_halfyear_indicators and rpt_halfyear_targets, the case and transfer
facts, and the risk model's follow-ups. `figures` returns them formatted for
the prose placeholders (``{petitions_received_wan}`` → ``1.23``); the
appendix tables use the raw values.

Conventions of the printed figures (as in the seed document): percentages
with one decimal, a trailing ``.0`` dropped (85%, 92.3%); volumes of ten
thousand and more in 万 with two decimals; changes in words (下降11.7%,
提升5.6个百分点).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from xinfang.publish.monthly_context import FINAL_JUDGED_SHARE
from xinfang.reports.formatting import change_words, fmt_int, number, pct, pct_whole, pp_words, wan

# Hotline matters counted as 接诉即办 problems (急难愁盼): help requests and complaints,
# not consultations, reports or suggestions.
URGENT_MATTER_TYPES = ("求助", "投诉")
# Everyday livelihood matters (民生小事) among them, by category.
LIVELIHOOD_CATEGORIES = ("物业管理", "交通出行", "环境污染", "消费维权", "社会救助")

_LABEL = re.compile(r"^(\d{4})H([12])$")


@dataclass(frozen=True)
class HalfYear:
    year: int
    half: int  # 1 or 2

    @classmethod
    def parse(cls, label: str) -> HalfYear:
        match = _LABEL.match(label.strip().upper())
        if not match:
            raise ValueError(f"half-year {label!r}: expected YYYYH1 or YYYYH2, e.g. 2025H1")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def before(cls, moment: date | datetime) -> HalfYear:
        """The half-year that ended most recently before `moment` (a run in July covers H1)."""
        day = moment.date() if isinstance(moment, datetime) else moment
        return cls(day.year, 1) if day.month > 6 else cls(day.year - 1, 2)

    @property
    def label(self) -> str:
        return f"{self.year}H{self.half}"

    @property
    def start(self) -> date:
        return date(self.year, 1 if self.half == 1 else 7, 1)

    @property
    def end(self) -> date:
        """Exclusive."""
        return date(self.year, 7, 1) if self.half == 1 else date(self.year + 1, 1, 1)

    @property
    def last_month(self) -> date:
        return date(self.year, 6 if self.half == 1 else 12, 1)

    @property
    def name(self) -> str:
        return "上半年" if self.half == 1 else "下半年"

    @property
    def previous(self) -> HalfYear:
        return HalfYear(self.year, 1) if self.half == 2 else HalfYear(self.year - 1, 2)

    @property
    def next(self) -> HalfYear:
        return HalfYear(self.year, 2) if self.half == 1 else HalfYear(self.year + 1, 1)

    def months(self) -> list[date]:
        first = 1 if self.half == 1 else 7
        return [date(self.year, m, 1) for m in range(first, first + 6)]


# --- queries ---------------------------------------------------------------------------------------


def _one(conn: psycopg.Connection, sql: str, params: Any = ()) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def _rows(conn: psycopg.Connection, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def indicators(conn: psycopg.Connection, half_year: HalfYear) -> dict[str, Any]:
    row = _one(conn, "SELECT * FROM marts.rpt_halfyear_indicators WHERE half_year = %s", (half_year.label,))
    if row is None:
        raise LookupError(f"marts.rpt_halfyear_indicators has no row for {half_year.label}")
    complete = _one(
        conn,
        "SELECT bool_and(is_complete) AS complete, count(*) AS months FROM marts.dim_month "
        "WHERE month_start >= %s AND month_start < %s",
        (half_year.start, half_year.end),
    )
    if not complete or complete["months"] != 6 or not complete["complete"]:
        raise LookupError(
            f"{half_year.label} is not complete in the warehouse (marts.dim_month has "
            f"{complete['months'] if complete else 0} of its 6 months, not all complete); "
            "a summary is written after the half-year's last day has been loaded"
        )
    return row


def previous_year_indicators(conn: psycopg.Connection, half_year: HalfYear) -> dict[str, Any] | None:
    """The same half of the year before, for the appendix's comparison column (None when not loaded)."""
    label = HalfYear(half_year.year - 1, half_year.half).label
    return _one(conn, "SELECT * FROM marts.rpt_halfyear_indicators WHERE half_year = %s", (label,))


def hotline_figures(conn: psycopg.Connection, half_year: HalfYear) -> dict[str, Any]:
    """接诉即办: urgent hotline matters solved on time to the caller's satisfaction; livelihood share."""
    row = _one(
        conn,
        """
        SELECT count(*) AS solved,
               count(*) FILTER (WHERE category_name = ANY(%(livelihood)s)) AS livelihood
        FROM marts.fct_cases
        WHERE matter_source = 'hotline' AND matter_type = ANY(%(types)s)
          AND received_date >= %(start)s AND received_date < %(end)s
          AND is_on_time AND callback_result IN ('满意', '基本满意')
        """,
        {
            "livelihood": list(LIVELIHOOD_CATEGORIES),
            "types": list(URGENT_MATTER_TYPES),
            "start": half_year.start,
            "end": half_year.end,
        },
    )
    solved = int(row["solved"])
    return {
        "hotline_solved": solved,
        "hotline_livelihood_share": (row["livelihood"] / solved) if solved else None,
    }


def risk_figures(conn: psycopg.Connection, half_year: HalfYear) -> dict[str, Any]:
    """Warnings issued for the half-year's months and those followed up as 已消除 (risks defused).

    Counted over the months the risk model has run for (``risk_period``: the
    whole half-year, or e.g. "5月至6月" when it went live mid-way), so the
    sentence never claims a half-year the model did not watch.
    """
    none = {
        "warnings_issued": None,
        "risks_defused": None,
        "risk_months": [],
        "risk_period": None,
        "risk_since": None,
    }
    exists = _one(conn, "SELECT to_regclass('risk.model_runs') IS NOT NULL AS ok")
    if not exists or not exists["ok"]:
        return none
    months = [
        r["as_of_month"]
        for r in _rows(
            conn,
            "SELECT as_of_month FROM risk.model_runs WHERE as_of_month >= %s AND as_of_month < %s ORDER BY 1",
            (half_year.start, half_year.end),
        )
    ]
    if not months:
        return none
    if months[-1] < half_year.last_month:
        # The summary runs after the last month's report; counting without it would understate.
        raise LookupError(
            f"the risk model has run for {months[-1]:%Y-%m} but not yet for {half_year.last_month:%Y-%m}: "
            f"run the monthly report of {half_year.last_month:%Y-%m} first (the summary follows it)"
        )
    row = _one(
        conn,
        """
        SELECT
          (SELECT count(*) FROM risk.alerts WHERE as_of_month = ANY(%(months)s)) AS issued,
          (SELECT count(*) FROM risk.alert_followups
             WHERE outcome = '已消除'
               AND (as_of_month - interval '1 month')::date = ANY(%(months)s)) AS defused
        """,
        {"months": months},
    )
    period = (
        half_year.name
        if len(months) == 6
        else f"{months[0].month}月"
        if len(months) == 1
        else f"{months[0].month}月至{months[-1].month}月"
    )
    return {
        "warnings_issued": row["issued"],
        "risks_defused": row["defused"],
        "risk_months": [m.isoformat() for m in months],
        "risk_since": f"{months[0].month}月",
        "risk_period": period,
    }


def bounced_departments(
    conn: psycopg.Connection, half_year: HalfYear, limit: int = 3
) -> list[dict[str, Any]]:
    """The units that sent the most matters back (退回) in the half-year."""
    return _rows(
        conn,
        """
        SELECT t.from_unit_code AS department_code,
               coalesce(d.department_name, t.from_unit_code) AS department_name,
               count(*) AS bounces,
               count(DISTINCT t.case_id) AS matters
        FROM marts.fct_case_transfers t
        LEFT JOIN marts.dim_department d ON d.department_code = t.from_unit_code
        WHERE t.is_bounce AND t.transferred_date >= %s AND t.transferred_date < %s
        GROUP BY 1, 2
        ORDER BY bounces DESC, department_code
        LIMIT %s
        """,
        (half_year.start, half_year.end, limit),
    )


def monthly_volumes(conn: psycopg.Connection, half_year: HalfYear) -> list[dict[str, Any]]:
    return _rows(
        conn,
        """
        SELECT m.month_start, m.petitions_received, p.petitions_received AS previous_year
        FROM marts.rpt_monthly_indicators m
        LEFT JOIN marts.rpt_monthly_indicators p ON p.month_start = (m.month_start - interval '1 year')::date
        WHERE m.month_start >= %s AND m.month_start < %s
        ORDER BY m.month_start
        """,
        (half_year.start, half_year.end),
    )


def district_volumes(conn: psycopg.Connection, half_year: HalfYear) -> list[dict[str, Any]]:
    previous = HalfYear(half_year.year - 1, half_year.half)
    return _rows(
        conn,
        """
        SELECT coalesce(district_name, '未注明') AS district_name,
               count(*) FILTER (WHERE received_date >= %(start)s AND received_date < %(end)s) AS current,
               count(*) FILTER (WHERE received_date >= %(pstart)s AND received_date < %(pend)s) AS previous
        FROM marts.fct_cases
        WHERE is_petition
        GROUP BY 1
        HAVING count(*) FILTER (WHERE received_date >= %(start)s AND received_date < %(end)s) > 0
        ORDER BY current DESC, district_name
        """,
        {"start": half_year.start, "end": half_year.end, "pstart": previous.start, "pend": previous.end},
    )


def target_progress(
    conn: psycopg.Connection, applies_to: HalfYear, *, baseline_only: bool = False
) -> list[dict[str, Any]]:
    """Latest month of each target set for `applies_to`, with its baseline.

    ``baseline_only``: the baseline month itself, for the summary that sets the
    targets (so re-running it later does not print the next half-year's months).
    """
    exists = _one(conn, "SELECT to_regclass('marts.rpt_halfyear_targets') IS NOT NULL AS ok")
    if not exists or not exists["ok"]:
        return []
    return _rows(
        conn,
        """
        SELECT DISTINCT ON (t.target_code)
               t.target_code, t.target_name, t.comparison, t.target_value, t.unit, t.set_in,
               t.month_start, t.actual_value, t.is_final, t.is_met, t.is_baseline,
               b.actual_value AS baseline_value
        FROM marts.rpt_halfyear_targets t
        LEFT JOIN marts.rpt_halfyear_targets b
          ON b.applies_to = t.applies_to AND b.target_code = t.target_code AND b.is_baseline
        WHERE t.applies_to = %s AND t.actual_value IS NOT NULL AND (t.is_baseline OR NOT %s)
        ORDER BY t.target_code, t.month_start DESC
        """,
        (applies_to.label, baseline_only),
    )


def judged_share(row: dict[str, Any]) -> float | None:
    if not row.get("first_petitions"):
        return None
    return row["first_petitions_judged"] / row["first_petitions"]


def first_handling_final(row: dict[str, Any]) -> bool:
    """The monthly report's rule: final once 95 % of the first petitions are past their follow-up."""
    share = judged_share(row)
    return share is None or share >= FINAL_JUDGED_SHARE


# --- what the prose and the template get -----------------------------------------------------------


def target_value_text(value: Any, unit: str) -> str:
    return pct(value) if unit == "ratio" else fmt_int(value)


def figures(row: dict[str, Any], extra: dict[str, Any], half_year: HalfYear) -> dict[str, str | None]:
    """The placeholders a prose file may use, formatted; None where the warehouse has no value."""
    best = row.get("satisfaction_best_in_3_years")
    bounced = extra.get("bounced_departments") or []

    def value(fmt: Callable[[Any], str], raw: Any) -> str | None:
        # None stays None, so a sentence needing it fails in the prose check instead of printing "—".
        return None if raw is None else fmt(raw)

    return {
        "year": str(half_year.year),
        "half": half_year.name,
        "next_half": half_year.next.name,
        "petitions_received": value(fmt_int, row["petitions_received"]),
        "petitions_received_wan": value(wan, row["petitions_received"]),
        "petitions_yoy": change_words(row.get("petitions_change_yoy")),
        # Final once (nearly) every first petition of the half-year is past its 90-day follow-up.
        "first_handling_resolution_rate": value(
            lambda rate: pct(rate) + ("" if first_handling_final(row) else "（暂计）"),
            row.get("first_handling_resolution_rate"),
        ),
        "first_handling_resolution_yoy": pp_words(row.get("first_handling_resolution_change_pp_yoy")),
        "repeat_share": value(pct, row.get("repeat_share")),
        "repeat_share_yoy": pp_words(row.get("repeat_share_change_pp_yoy"), up="上升"),
        "satisfaction_rate": value(pct, row.get("satisfaction_rate")),
        "satisfaction_yoy": pp_words(row.get("satisfaction_change_pp_yoy")),
        "satisfaction_standing": (
            None
            if best is None
            else "创近三年新高"
            if best
            else f"较去年同期{pp_words(row.get('satisfaction_change_pp_yoy')) or '持平'}"
        ),
        "online_share": value(pct, row.get("online_share")),
        # The seed prints this share in whole percent (线上信访占比达85%).
        "online_share_whole": value(pct_whole, row.get("online_share")),
        "online_share_yoy": pp_words(row.get("online_share_change_pp_yoy")),
        "mean_working_days": value(number, row.get("mean_working_days_to_answer")),
        "legal_limit_days": value(number, row.get("legal_limit_days")),
        "share_under_legal_limit": value(pct, row.get("share_under_legal_limit")),
        "township_full_time_ratio": value(pct, row.get("township_full_time_ratio")),
        "training_classes": value(fmt_int, row.get("training_classes")),
        "training_person_times": value(fmt_int, row.get("training_person_times")),
        "cadres_sent_down": value(fmt_int, row.get("cadres_sent_down")),
        "cadres_brought_up": value(fmt_int, row.get("cadres_brought_up")),
        "cadres_promoted": value(fmt_int, row.get("cadres_promoted")),
        "repeats_after_poor_first_handling_share": value(pct, row.get("repeats_after_unsatisfied_share")),
        "group_petitions": value(fmt_int, row.get("group_petitions")),
        "hotline_solved": value(fmt_int, extra["hotline_solved"]),
        "hotline_livelihood_share": value(pct, extra["hotline_livelihood_share"]),
        "risk_period": extra["risk_period"],
        "warnings_issued": value(fmt_int, extra["warnings_issued"]),
        "risks_defused": value(fmt_int, extra["risks_defused"]),
        "most_bounced_departments": "、".join(d["department_name"] for d in bounced) or None,
    }
