"""One month of the risk model: forecasts, hotspots, tagging, 红黄蓝 warnings and their follow-up.

`run_month(conn, month)` reads the warehouse as it stood at the end of
`month` (nothing received later is used, so an old month can be re-evaluated
honestly on today's data), writes every result into schema ``risk`` and
records the run in ``risk.model_runs``. Each step deletes the month's rows and
inserts the new ones in one transaction block (a savepoint when the caller's
connection is already in a transaction: the DAG task commits once at the end),
so a re-run for the same month changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from xinfang.risk import alerts, forecast, hotspots, tagging
from xinfang.risk.rules import Rules, load_rules

log = logging.getLogger(__name__)

CITY = alerts.CITY_CODE
TAG_TRAINING_MONTHS = 12

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS risk",
    """
    CREATE TABLE IF NOT EXISTS risk.model_runs (
        as_of_month date PRIMARY KEY,
        forecast_series integer NOT NULL,
        hotspots integer NOT NULL,
        alerts integer NOT NULL,
        followups integer NOT NULL,
        tagged_cases integer NOT NULL,
        tag_agreement numeric,
        hotspot_window_days integer NOT NULL,
        seconds numeric NOT NULL,
        ran_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS risk.case_tags (
        as_of_month date NOT NULL,
        case_id text NOT NULL,
        registered_label text NOT NULL,
        predicted_label text NOT NULL,
        PRIMARY KEY (as_of_month, case_id)
    )
    """,
)


@dataclass(frozen=True)
class MonthRun:
    month: date
    forecast_series: int
    hotspots: int
    alerts: int
    followups: int
    tagged_cases: int
    tag_agreement: float | None
    seconds: float


def domains_for(conn: psycopg.Connection, rules: Rules) -> list[forecast.Domain]:
    """Every top-level category present in the warehouse, then the configured narrower domains."""
    tops = conn.execute(
        "SELECT DISTINCT top_category_code, top_category_name FROM marts.fct_cases "
        "WHERE matter_source IN ('petition', 'grid') AND top_category_code IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [forecast.Domain(f"top_{code}", name, (code,)) for code, name in tops] + [
        forecast.Domain(d.key, d.name, d.categories) for d in rules.domains
    ]


def _forecast_rows(
    conn: psycopg.Connection, month: date, domains: list[forecast.Domain]
) -> tuple[list, list]:
    """(this month's actual vs forecast, next month's forecast vs last year) per domain and area."""
    prefix = {d.key: d.category_prefixes[0] for d in domains}
    last_year = _counts_by_area(conn, domains, forecast.add_months(month, -11))
    with conn.cursor(row_factory=dict_row) as cur:
        surge = cur.execute(
            """
            SELECT domain_key, domain_name, area_code, area_name, actual, mean, hi80, hi95
            FROM risk.forecasts WHERE as_of_month = %s AND kind = 'backtest' AND target_month = %s
            """,
            (month, month),
        ).fetchall()
        outlook = cur.execute(
            """
            SELECT domain_key, domain_name, area_code, area_name, target_month, mean, lo80, hi80
            FROM risk.forecasts WHERE as_of_month = %s AND kind = 'forecast' AND horizon = 1
            """,
            (month,),
        ).fetchall()
    surge_rows = [r | {"category_prefix": prefix.get(r["domain_key"])} for r in surge]
    outlook_rows = [
        r
        | {
            "category_prefix": prefix.get(r["domain_key"]),
            "last_year": last_year.get((r["domain_key"], r["area_code"]), 0),
        }
        for r in outlook
    ]
    return surge_rows, outlook_rows


def _counts_by_area(
    conn: psycopg.Connection, domains: list[forecast.Domain], month: date
) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    rows = conn.execute(
        """
        SELECT category_code, district_code, count(*) FROM marts.fct_cases
        WHERE matter_source IN ('petition', 'grid') AND received_month = %s GROUP BY 1, 2
        """,
        (month,),
    ).fetchall()
    for code, district, n in rows:
        for d in domains:
            if any((code or "").startswith(p) for p in d.category_prefixes):
                for area in (district, CITY):
                    counts[(d.key, area)] = counts.get((d.key, area), 0) + n
    return counts


def _tag(conn: psycopg.Connection, month: date) -> tuple[int, float | None]:
    """Tag the month's petitions with a model trained on the year before; store the disagreements' base."""
    next_month = forecast.add_months(month, 1)
    try:
        # A savepoint: a missing table must not abort the caller's transaction.
        with conn.transaction():
            model = tagging.train_from_warehouse(
                conn,
                registered_from=forecast.add_months(month, -TAG_TRAINING_MONTHS),
                registered_before=month,
            )
            current = tagging.load_warehouse_history(
                conn, registered_from=month, registered_before=next_month
            )
    except (LookupError, ValueError) as exc:
        log.warning("tagging skipped for %s: %s", f"{month:%Y-%m}", exc)
        _clear_tags(conn, month)
        return 0, None
    predicted = model.predict(current.texts)
    with conn.transaction():
        conn.execute("DELETE FROM risk.case_tags WHERE as_of_month = %s", (month,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO risk.case_tags VALUES (%s, %s, %s, %s)",
                [
                    (month, f"XF-{number}", label, guess)
                    for number, label, guess in zip(current.ids, current.labels, predicted, strict=True)
                ],
            )
    if not predicted:
        return 0, None
    agree = sum(1 for a, b in zip(current.labels, predicted, strict=True) if a == b)
    return len(predicted), round(agree / len(predicted), 4)


def _clear_tags(conn: psycopg.Connection, month: date) -> None:
    """No tags this run: none of an earlier run may be left to contradict model_runs."""
    with conn.transaction():
        conn.execute("DELETE FROM risk.case_tags WHERE as_of_month = %s", (month,))


def run_month(
    conn: psycopg.Connection,
    month: date,
    *,
    rules: Rules | None = None,
    hotspot_params: hotspots.HotspotParams | None = None,
    tag: bool = True,
) -> MonthRun:
    """Run every step of the model for `month` (the first day of the month) and store the results."""
    started = time.perf_counter()
    rules = rules or load_rules()
    params = hotspot_params or hotspots.HotspotParams()
    with conn.transaction():
        for statement in _DDL:
            conn.execute(statement)
        alerts.ensure_tables(conn)

    domains = domains_for(conn, rules)
    forecast.run_forecasts(conn, domains, as_of_month=month)
    series = conn.execute(
        "SELECT count(*) FROM risk.forecast_backtest WHERE as_of_month = %s", (month,)
    ).fetchone()[0]
    found = hotspots.run_hotspots(conn, as_of_month=month, params=params)
    if tag:
        tagged, agreement = _tag(conn, month)
    else:
        tagged, agreement = 0, None
        _clear_tags(conn, month)

    from xinfang.publish.monthly_context import department_names

    directory = alerts.Directory(department_names(conn))
    surge_rows, outlook_rows = _forecast_rows(conn, month, domains)
    hotspot_rows = _hotspot_rows(conn, month)
    every = (
        alerts.hotspot_alerts(hotspot_rows, rules, directory)
        + alerts.surge_alerts(surge_rows, rules, directory)
        + alerts.outlook_alerts(outlook_rows, rules, directory)
    )
    raised = alerts.reduce_noise(every, rules)
    followups = alerts.follow_up(alerts.previous_alerts(conn, month), every)
    alerts.store(conn, month, raised, followups)
    seconds = round(time.perf_counter() - started, 2)
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO risk.model_runs (as_of_month, forecast_series, hotspots, alerts, followups,
                tagged_cases, tag_agreement, hotspot_window_days, seconds)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (as_of_month) DO UPDATE SET
                forecast_series = excluded.forecast_series, hotspots = excluded.hotspots,
                alerts = excluded.alerts, followups = excluded.followups,
                tagged_cases = excluded.tagged_cases, tag_agreement = excluded.tag_agreement,
                hotspot_window_days = excluded.hotspot_window_days, seconds = excluded.seconds,
                ran_at = now()
            """,
            (
                month,
                series,
                len(found),
                len(raised),
                len(followups),
                tagged,
                agreement,
                params.window_days,
                seconds,
            ),
        )
    result = MonthRun(month, series, len(found), len(raised), len(followups), tagged, agreement, seconds)
    log.info(
        "risk model %s: %d series, %d hotspots, %d warnings, %d follow-ups, %d tagged (agreement %s) "
        "in %.1f s",
        f"{month:%Y-%m}",
        series,
        len(found),
        len(raised),
        len(followups),
        tagged,
        agreement,
        seconds,
    )
    return result


def _hotspot_rows(conn: psycopg.Connection, month: date) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM risk.hotspots WHERE as_of_month = %s ORDER BY rank", (month,)
        ).fetchall()
