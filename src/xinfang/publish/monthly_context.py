"""Every figure of the monthly risk-warning report, read from the warehouse and the risk model.

The report's numbers come from SQL on the marts (`rpt_monthly_indicators`,
`fct_cases`, `rpt_warning_ledger`) and on the risk model's tables (`risk.*`,
written by `xinfang.risk.monthly`); nothing is computed from them here except
selection and ordering, so a figure in the PDF can always be checked with one
query. Month-on-month and year-on-year wording is the template's `change()`.

A department edition (`edition` = a department code) carries the month at a
glance, the warnings and follow-ups that department leads or assists (a
district government assists every city-wide warning), and the data-quality
note; never another department's warnings.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from xinfang.config import Settings, get_settings
from xinfang.risk import alerts as alerts_module
from xinfang.risk.rules import Rules, load_rules

CHART_MONTHS = 24
DISTRICT_GOVERNMENT_PREFIX = "QX"  # department codes of the district governments (dim_department)
# A month's first-handling resolution rate is printed once this share of its first petitions is judged.
FINAL_JUDGED_SHARE = 0.95
LEVEL_ORDER = ("红", "黄", "蓝")


class RiskModelMissing(LookupError):
    """The risk model has not been run for the month."""


def _rows(conn: psycopg.Connection, query: str, params: tuple = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _one(conn: psycopg.Connection, query: str, params: tuple = ()) -> dict[str, Any] | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Decimals as floats, so the context is JSON-able and its fingerprint stable."""
    return {
        k: (float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, int) else v)
        for k, v in row.items()
    }


def load_stats(conn: psycopg.Connection, month: date) -> dict[str, int]:
    """Reconciliation counts of the month's loads, all sources (source = loaded + quarantined)."""
    row = conn.execute(
        """
        SELECT coalesce(sum(source_rows), 0), coalesce(sum(loaded_rows), 0),
               coalesce(sum(quarantined_rows), 0), count(*)
        FROM ops.load_batches
        WHERE status = 'loaded' AND date_trunc('month', file_date) = %s
        """,
        (month,),
    ).fetchone()
    return {
        "source_rows": int(row[0]),
        "loaded_rows": int(row[1]),
        "quarantined_rows": int(row[2]),
        "files": int(row[3]),
    }


def department_names(conn: psycopg.Connection) -> dict[str, str]:
    return {
        r["department_code"]: r["department_name"] for r in _rows(conn, "SELECT * FROM marts.dim_department")
    }


def _glance(conn: psycopg.Connection, month: date) -> dict[str, Any]:
    indicators = _one(conn, "SELECT * FROM marts.rpt_monthly_indicators WHERE month_start = %s", (month,))
    if indicators is None:
        raise LookupError(f"marts.rpt_monthly_indicators has no row for {month:%Y-%m}")
    volumes = _rows(
        conn,
        """
        SELECT matter_source,
               count(*) FILTER (WHERE received_month = %(m)s) AS current,
               count(*) FILTER (
                   WHERE received_month = (%(m)s::date - interval '1 month')::date) AS prev_month,
               count(*) FILTER (WHERE received_month = (%(m)s::date - interval '1 year')::date) AS prev_year
        FROM marts.fct_cases
        WHERE received_month IN (%(m)s, (%(m)s::date - interval '1 month')::date,
                                 (%(m)s::date - interval '1 year')::date)
        GROUP BY matter_source
        """,
        {"m": month},
    )
    by_source = {r["matter_source"]: r for r in volumes}
    empty = {"current": 0, "prev_month": None, "prev_year": None}
    # 一次性化解 is known only once the 90-day follow-up after the answer has passed, and early
    # verdicts are all failures: a young month's rate would read near 0 %. The report prints the
    # latest month whose first petitions are (nearly) all judged, and says so.
    final = _one(
        conn,
        """
        SELECT month_start, first_handling_resolution_rate AS rate FROM marts.rpt_monthly_indicators
        WHERE month_start <= %s AND first_petitions > 0 AND first_petitions_judged >= %s * first_petitions
        ORDER BY month_start DESC LIMIT 1
        """,
        (month, FINAL_JUDGED_SHARE),
    )
    return {
        "first_resolution_final": month == (final or {}).get("month_start"),
        "first_resolution_latest": None if final is None else _plain(final),
        "indicators": _plain(indicators),
        "hotline": dict(by_source.get("hotline", empty)),
        "grid": dict(by_source.get("grid", empty)),
    }


def _ledger(conn: psycopg.Connection, month: date) -> dict[str, Any]:
    rows = _rows(
        conn,
        """
        SELECT district_code, district_name, warning_level, count(*) AS matters
        FROM marts.rpt_warning_ledger
        WHERE month_start = %s
        GROUP BY 1, 2, 3
        """,
        (month,),
    )
    prev = _rows(
        conn,
        """
        SELECT warning_level, count(*) AS matters FROM marts.rpt_warning_ledger
        WHERE month_start = (%s::date - interval '1 month')::date GROUP BY 1
        """,
        (month,),
    )
    districts: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = districts.setdefault(
            r["district_code"] or "",
            {
                "code": r["district_code"],
                "name": r["district_name"] or "未明确区县",
                **dict.fromkeys(LEVEL_ORDER, 0),
            },
        )
        d[r["warning_level"]] = r["matters"]
    ordered = sorted(districts.values(), key=lambda d: (d["code"] is None, d["code"] or ""))
    totals = {level: sum(d[level] for d in ordered) for level in LEVEL_ORDER}
    prev_totals = {level: 0 for level in LEVEL_ORDER} | {r["warning_level"]: r["matters"] for r in prev}
    return {"districts": ordered, "totals": totals, "prev_totals": prev_totals if prev else None}


def _charts(conn: psycopg.Connection, month: date, rules: Rules) -> list[dict[str, Any]]:
    """Trend and forecast band of each key domain, city-wide."""
    out = []
    names = {d.key: d.name for d in rules.domains}
    for key in rules.key_domains:
        history = _rows(
            conn,
            """
            SELECT m.month_start, count(c.case_id) AS cases
            FROM marts.dim_month AS m
            LEFT JOIN marts.fct_cases AS c
              ON c.received_month = m.month_start
             AND c.matter_source IN ('petition', 'grid')
             AND c.category_code LIKE ANY (%(prefixes)s)
            WHERE m.month_start > (%(m)s::date - %(span)s * interval '1 month') AND m.month_start <= %(m)s
            GROUP BY 1 ORDER BY 1
            """,
            {
                "m": month,
                "span": CHART_MONTHS,
                "prefixes": [c + "%" for d in rules.domains if d.key == key for c in d.categories],
            },
        )
        bands = _rows(
            conn,
            """
            SELECT target_month, kind, mean, lo80, hi80, lo95, hi95, actual
            FROM risk.forecasts
            WHERE as_of_month = %s AND domain_key = %s AND area_code = %s
            ORDER BY target_month
            """,
            (month, key, alerts_module.CITY_CODE),
        )
        by_month = {b["target_month"]: _plain(b) for b in bands}
        months = [h["month_start"] for h in history] + sorted(
            b["target_month"] for b in bands if b["kind"] == "forecast"
        )
        actual = {h["month_start"]: h["cases"] for h in history}
        this = by_month.get(month)
        nxt = next((_plain(b) for b in bands if b["kind"] == "forecast"), None)
        out.append(
            {
                "key": key,
                "name": names[key],
                "labels": [f"{m:%y.%m}" for m in months],
                "actual": [actual.get(m) for m in months],
                "bands": [
                    {k: by_month[m][k] for k in ("lo95", "lo80", "mean", "hi80", "hi95")}
                    if m in by_month
                    else None
                    for m in months
                ],
                "this_month": {"actual": actual.get(month, 0), **(this or {})},
                "next_month": nxt,
            }
        )
    return out


def _districts_forecast(conn: psycopg.Connection, month: date, rules: Rules) -> list[dict[str, Any]]:
    """This month's actual vs its forecast, and next month's forecast, per key domain and district."""
    rows = _rows(
        conn,
        """
        SELECT b.domain_key, b.domain_name, b.area_code, b.area_name,
               b.actual, b.mean, b.lo80, b.hi80, b.hi95,
               f.target_month AS next_month, f.mean AS next_mean, f.lo80 AS next_lo80, f.hi80 AS next_hi80
        FROM risk.forecasts AS b
        LEFT JOIN risk.forecasts AS f
          ON f.as_of_month = b.as_of_month AND f.domain_key = b.domain_key AND f.area_code = b.area_code
         AND f.kind = 'forecast' AND f.horizon = 1
        WHERE b.as_of_month = %s AND b.kind = 'backtest' AND b.target_month = %s
          AND b.domain_key = ANY(%s)
        ORDER BY array_position(%s, b.domain_key), b.area_code = %s, b.area_code
        """,
        (month, month, list(rules.key_domains), list(rules.key_domains), alerts_module.CITY_CODE),
    )
    return [_plain(r) for r in rows]


def _hotspots(conn: psycopg.Connection, month: date) -> list[dict[str, Any]]:
    rows = _rows(
        conn,
        """
        SELECT h.*, a.level
        FROM risk.hotspots AS h
        LEFT JOIN risk.alerts AS a
          ON a.as_of_month = h.as_of_month AND a.hotspot_key = h.hotspot_key
        WHERE h.as_of_month = %s
        ORDER BY h.rank
        """,
        (month,),
    )
    return [_plain(r) for r in rows]


def _backtest(conn: psycopg.Connection, month: date) -> dict[str, Any] | None:
    row = _one(
        conn,
        """
        SELECT count(*) AS series,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY mase) AS median_mase,
               sum(coverage80 * origins) / nullif(sum(origins), 0) AS coverage80,
               sum(coverage95 * origins) / nullif(sum(origins), 0) AS coverage95,
               max(origins) AS origins
        FROM risk.forecast_backtest WHERE as_of_month = %s
        """,
        (month,),
    )
    return None if row is None or not row["series"] else _plain(row)


def _key_backtests(conn: psycopg.Connection, month: date, rules: Rules) -> list[dict[str, Any]]:
    return [
        _plain(r)
        for r in _rows(
            conn,
            """
            SELECT domain_name, area_name, mase, coverage80, coverage95, origins FROM risk.forecast_backtest
            WHERE as_of_month = %s AND domain_key = ANY(%s) AND area_code = %s
            ORDER BY array_position(%s, domain_key)
            """,
            (month, list(rules.key_domains), alerts_module.CITY_CODE, list(rules.key_domains)),
        )
    ]


def _involves(row: dict[str, Any], edition: str | None) -> bool:
    """Whether a department's edition carries a warning: it leads it, assists it, or, for a
    district government, the warning is city-wide (assisted by every district government)."""
    if edition is None or edition in (row["department_code"], row.get("co_department_code")):
        return True
    return edition.startswith(DISTRICT_GOVERNMENT_PREFIX) and row.get("co_department_code") is None


def build_context(
    conn: psycopg.Connection,
    month: date,
    quality: dict[str, Any],
    settings: Settings | None = None,
    *,
    edition: str | None = None,
    rules: Rules | None = None,
) -> dict[str, Any]:
    """The template's context for the full report (edition None) or a department's edition."""
    settings = settings or get_settings()
    rules = rules or load_rules()
    run = (
        _one(conn, "SELECT * FROM risk.model_runs WHERE as_of_month = %s", (month,))
        if _has_risk(conn)
        else None
    )
    if run is None:
        raise RiskModelMissing(
            f"the risk model has not run for {month:%Y-%m}; "
            f"run `xinfang risk run --month {month:%Y-%m}` first"
        )
    names = department_names(conn)
    all_alerts = [
        _plain(r)
        for r in _rows(conn, "SELECT * FROM risk.alerts WHERE as_of_month = %s ORDER BY alert_no", (month,))
    ]
    followups = [
        _plain(r)
        for r in _rows(
            conn,
            """
            SELECT * FROM risk.alert_followups WHERE as_of_month = %s
            ORDER BY array_position(ARRAY['升级', '持续', '降级', '已消除'], outcome), alert_key
            """,
            (month,),
        )
    ]
    mine = [a for a in all_alerts if _involves(a, edition)]
    my_followups = [f for f in followups if _involves(f, edition)]
    by_department: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in mine:
        by_department[a["department_code"]].append(a)
    departments = [
        {"code": code, "name": names.get(code, code), "alerts": items}
        for code, items in sorted(
            by_department.items(), key=lambda kv: (-max(a["level_rank"] for a in kv[1]), kv[0])
        )
    ]
    co_led = [a for a in mine if edition is not None and a["department_code"] != edition]
    stats = load_stats(conn, month)
    context: dict[str, Any] = {
        "bureau_name": settings.bureau_name,
        "period": {"year": month.year, "month": month.month, "label": f"{month.year}年{month.month}月"},
        "edition": None if edition is None else {"code": edition, "name": names.get(edition, edition)},
        "glance": _glance(conn, month),
        "alert_counts": {level: sum(1 for a in mine if a["level"] == level) for level in LEVEL_ORDER},
        "alerts": mine,
        "departments": departments,
        "co_led": co_led,
        "followups": my_followups,
        "previous_model_run": _one(
            conn,
            "SELECT 1 AS ran FROM risk.model_runs WHERE as_of_month = (%s::date - interval '1 month')::date",
            (month,),
        )
        is not None,
        "followup_counts": {
            o: sum(1 for f in my_followups if f["outcome"] == o) for o in alerts_module.OUTCOMES
        },
        "quality": {
            "passed": bool(quality.get("passed")),
            "checks": sum(len(s["checks"]) for s in quality.get("suites", [])),
            "failed": sum(s["failed"] for s in quality.get("suites", [])),
            **{k: stats[k] for k in ("source_rows", "loaded_rows", "quarantined_rows", "files")},
        },
        "model": {
            "backtest": _backtest(conn, month),
            "key_backtests": _key_backtests(conn, month, rules),
            "hotspot_window_days": run["hotspot_window_days"],
            "tag_agreement": _float(run["tag_agreement"]),
            "tagged_cases": run["tagged_cases"],
        },
    }
    if edition is None:
        context |= {
            "charts": _charts(conn, month, rules),
            "district_forecasts": _districts_forecast(conn, month, rules),
            "hotspots": _hotspots(conn, month),
            "ledger": _ledger(conn, month),
        }
    return context


def _has_risk(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('risk.model_runs') IS NOT NULL").fetchone()[0]


def editions_needed(conn: psycopg.Connection, month: date) -> list[str]:
    """Departments with a warning (leading or assisting) or a follow-up this month."""
    rows = conn.execute(
        """
        WITH involved AS (
            SELECT department_code, co_department_code FROM risk.alerts WHERE as_of_month = %(m)s
            UNION ALL
            SELECT department_code, co_department_code FROM risk.alert_followups WHERE as_of_month = %(m)s
        )
        SELECT department_code FROM involved
        UNION SELECT co_department_code FROM involved
        -- A city-wide warning is assisted by every district government.
        UNION SELECT department_code FROM marts.dim_department
        WHERE department_code LIKE %(prefix)s
          AND EXISTS (SELECT 1 FROM involved WHERE co_department_code IS NULL)
        """,
        {"m": month, "prefix": DISTRICT_GOVERNMENT_PREFIX + "%"},
    ).fetchall()
    return sorted(r[0] for r in rows if r[0])
