"""Bodies of the DAGs' tasks: each takes the run's logical date and returns a small JSON-able summary.

DAG files only wire these together, so everything here runs (and is tested)
without a scheduler. Imports are local to keep DAG parsing light.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from xinfang import db
from xinfang.config import Settings, get_settings
from xinfang.orchestration.schedules import export_day_for, period_label, report_month_for

log = logging.getLogger(__name__)


def quality_dir(settings: Settings, month: date) -> Path:
    return settings.output_dir / "quality" / period_label(month)


def ingest_hotline(logical_date: datetime) -> dict[str, Any]:
    from xinfang.ingest import hotline

    settings = get_settings()
    day = export_day_for(logical_date)
    # Autocommit: the load is its own transaction, and a failed file's ledger row must survive the error.
    with db.connect(autocommit=True) as conn:
        result = hotline.load_day(conn, settings.hotline_landing_dir, day, pii_key=settings.pii_key)
    return asdict(result)


def quality_gate(logical_date: datetime) -> dict[str, Any]:
    """Check the report month's raw and mart data; raises QualityGateFailed, so nothing downstream runs."""
    settings = get_settings()
    month = report_month_for(logical_date)
    return _gate(month, quality_dir(settings, month), settings)


def _gate(month: date, out: Path, settings: Settings) -> dict[str, Any]:
    from xinfang.publish.monthly_context import load_stats
    from xinfang.quality.gates import run_gate

    with db.connect() as conn:
        stats = load_stats(conn, month)
    results = run_gate(
        settings.expectations_dir, out, period=month, load_stats=stats, templates_dir=settings.templates_dir
    )
    return {
        "period": period_label(month),
        "suites": len(results),
        "summary": str(out / "quality_summary.md"),
        "report": str(out / "quality_report.html"),
    }


def _passed_quality(out: Path, what: str) -> dict[str, Any]:
    quality = json.loads((out / "quality_summary.json").read_text(encoding="utf-8"))
    if not quality["passed"]:
        raise RuntimeError(f"quality summary for {what} says failed; refusing to publish")
    return quality


def run_risk_model(logical_date: datetime) -> dict[str, Any]:
    """Forecasts, hotspots, tagging and 红黄蓝 warnings of the report month, into schema risk."""
    from xinfang.risk.monthly import run_month

    month = report_month_for(logical_date)
    with db.connect() as conn:
        result = run_month(conn, month)
    return asdict(result) | {"month": result.month.isoformat()}


def publish_report(logical_date: datetime) -> list[dict[str, Any]]:
    """Render (or reuse) the full report and every department edition; refuses a failed gate."""
    from xinfang.publish.monthly_report import publish_all

    settings = get_settings()
    month = report_month_for(logical_date)
    quality = _passed_quality(quality_dir(settings, month), period_label(month))
    with db.connect() as conn:
        reports = publish_all(conn, month, quality, settings)
    return [r.as_dict() for r in reports]


def distribute_report(published: list[dict[str, Any]]) -> dict[str, Any]:
    """Mail every edition to its recipients; fails listing every undelivered recipient."""
    from xinfang.publish.monthly_report import PublishedReport, distribute_all

    reports = [PublishedReport.from_dict(d) for d in published]
    with db.connect(autocommit=True) as conn:
        outcomes = distribute_all(conn, reports)
    return {
        "channel": outcomes[0].channel if outcomes else None,
        "sent": [a for o in outcomes for a in o.sent],
        "skipped": [a for o in outcomes for a in o.skipped],
    }


def halfyear_quality_gate(logical_date: datetime) -> dict[str, Any]:
    """The gate on the half-year's last month, recorded apart from the monthly report's (quality/2025H1)."""
    from xinfang.orchestration.schedules import halfyear_label_for
    from xinfang.publish.halfyear_context import HalfYear

    settings = get_settings()
    half_year = HalfYear.parse(halfyear_label_for(logical_date))
    return _gate(half_year.last_month, settings.output_dir / "quality" / half_year.label, settings) | {
        "half_year": half_year.label
    }


def publish_halfyear_summary(logical_date: datetime, *, pdfa: bool = False) -> dict[str, Any]:
    """Render (or reuse) the half-year summary; refuses a failed gate, names every prose error."""
    from xinfang.orchestration.schedules import halfyear_label_for
    from xinfang.publish.halfyear_context import HalfYear
    from xinfang.publish.halfyear_report import publish

    settings = get_settings()
    half_year = HalfYear.parse(halfyear_label_for(logical_date))
    quality = _passed_quality(settings.output_dir / "quality" / half_year.label, half_year.label)
    with db.connect() as conn:
        summary = publish(conn, half_year, quality, settings, pdfa=pdfa)
    return summary.as_dict()


def distribute_halfyear_summary(published: dict[str, Any]) -> dict[str, Any]:
    """Mail the summary to the leaders, once per revision and recipient."""
    from xinfang.publish.halfyear_report import PublishedSummary, distribute

    summary = PublishedSummary.from_dict(published)
    with db.connect(autocommit=True) as conn:
        outcome = distribute(conn, summary)
    return {"channel": outcome.channel, "sent": outcome.sent, "skipped": outcome.skipped}


def build_province_extract(logical_date: datetime) -> dict[str, Any]:
    """The report month's full extract for the province (runs after the month's quality gate)."""
    from xinfang.publish.province_extract import build_month

    month = report_month_for(logical_date)
    with db.connect() as conn:
        package = build_month(conn, month)
    return _package_summary(package)


def build_daily_province_extract(logical_date: datetime, marts_ready_at: datetime | None) -> dict[str, Any]:
    """The incremental extract of the day before `logical_date`, behind the daily gate.

    `marts_ready_at`: time of the last marts asset event (a warehouse rebuild whose
    models and tests all passed), read by the DAG task from its inlet events.
    """
    from xinfang.publish.province_extract import build_day, require_day_ready

    day = export_day_for(logical_date)
    with db.connect() as conn:
        require_day_ready(conn, day, marts_ready_at)
        package = build_day(conn, day)
    return _package_summary(package)


def _package_summary(package: Any) -> dict[str, Any]:
    return {
        "path": str(package.path),
        "name": package.name,
        "rows": package.rows,
        "bytes": package.bytes,
        "content_sha256": package.content_sha256,
    }


def deliver_province_extract(built: dict[str, Any]) -> dict[str, Any]:
    from xinfang.publish.province_extract import deliver

    with db.connect(autocommit=True) as conn:
        delivery = deliver(conn, Path(built["path"]))
    return {"status": delivery.status, "target": delivery.remote_path, "bytes_sent": delivery.bytes_sent}


def follow_up_province_extracts() -> dict[str, Any]:
    """Record the province's acknowledgements; redeliver packages not acknowledged in time."""
    from xinfang.publish.province_extract import follow_up

    with db.connect(autocommit=True) as conn:
        outcomes = follow_up(conn)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def ingest_grid_events(logical_date: datetime) -> dict[str, Any]:
    """Load the grid system's changes up to the end of the previous bureau day."""
    from xinfang.ingest import grid
    from xinfang.orchestration.schedules import grid_cutoff_for

    settings = get_settings()
    with db.connect() as conn:
        result = grid.load_changes(
            conn, grid.source_url(), pii_key=settings.pii_key, until=grid_cutoff_for(logical_date)
        )
    return asdict(result)


def ingest_online_petitions(logical_date: datetime) -> dict[str, Any]:
    """Load the online platform's petitions changed on the previous bureau day (plus the overlap)."""
    from xinfang.ingest import online, watermarks
    from xinfang.orchestration.schedules import ONLINE_WINDOW_OVERLAP, online_window_for

    settings = get_settings()
    platform = online.platform_settings()
    since, until = online_window_for(logical_date)
    # Autocommit: each load step is its own transaction, and a failed fetch's ledger row survives.
    with db.connect(autocommit=True) as conn:
        online.ensure_schema(conn)
        mark = watermarks.get(conn, online.SOURCE)
        if mark is not None and mark < since + ONLINE_WINDOW_OVERLAP:
            # Runs were skipped (DAG paused, catchup off): start at the mark so no change falls in a gap.
            since = mark - ONLINE_WINDOW_OVERLAP
        result = online.load_window(
            conn,
            base_url=platform.base_url,
            token=platform.token,
            since=since,
            until=until,
            pii_key=settings.pii_key,
            page_size=platform.page_size,
            retry=online.RetryPolicy(timeout=platform.timeout),
        )
    return asdict(result)


def ingest_online_staff(logical_date: datetime) -> dict[str, Any]:
    """Load the online platform's staff accounts changed in the same window as the petitions."""
    from xinfang.ingest import online, staff, watermarks
    from xinfang.orchestration.schedules import ONLINE_WINDOW_OVERLAP, online_window_for

    settings = get_settings()
    platform = online.platform_settings()
    since, until = online_window_for(logical_date)
    with db.connect(autocommit=True) as conn:
        staff.ensure_schema(conn)
        mark = watermarks.get(conn, staff.SOURCE)
        if mark is None:
            # First run: the whole roster, since accounts unchanged for years are in no daily window.
            since = staff.ROSTER_EPOCH
        elif mark < since + ONLINE_WINDOW_OVERLAP:
            # Runs were skipped: start at the mark so no change falls in a gap.
            since = mark - ONLINE_WINDOW_OVERLAP
        result = staff.load_window(
            conn,
            base_url=platform.base_url,
            token=platform.token,
            since=since,
            until=until,
            pii_key=settings.pii_key,
            page_size=platform.page_size,
            retry=online.RetryPolicy(timeout=platform.timeout),
        )
    return asdict(result)
