"""The monthly risk-warning report (月度风险预警报告): figures, archive, distribution.

Revisions: a month's report is rendered once per distinct content. Re-running
with unchanged figures reuses the archived PDF (no new file, no new e-mail);
changed figures produce revision N+1, which is distributed as a new artifact.
The content fingerprint excludes the generation time for that reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from xinfang.config import BUREAU_TZ, Settings, get_settings

log = logging.getLogger(__name__)

TEMPLATE = "monthly_risk_report.html.j2"
KIND = "monthly_report"
INDEX_FILE = "revisions.json"


@dataclass(frozen=True)
class PublishedReport:
    month: date
    revision: int
    path: Path
    sha256: str
    rendered: bool  # False when an archived revision with the same content was reused

    @property
    def artifact_key(self) -> str:
        return artifact_key(self.month)


def artifact_key(month: date) -> str:
    return f"{KIND}-{month:%Y-%m}"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def load_stats(conn: psycopg.Connection, month: date) -> dict[str, int]:
    """Reconciliation counts of the month's hotline export files."""
    row = conn.execute(
        """
        SELECT coalesce(sum(source_rows), 0), coalesce(sum(loaded_rows), 0),
               coalesce(sum(quarantined_rows), 0), count(*)
        FROM ops.load_batches
        WHERE source = 'hotline' AND status = 'loaded' AND date_trunc('month', file_date) = %s
        """,
        (month,),
    ).fetchone()
    return {
        "source_rows": int(row[0]),
        "loaded_rows": int(row[1]),
        "quarantined_rows": int(row[2]),
        "files": int(row[3]),
    }


def build_context(
    conn: psycopg.Connection, month: date, quality: dict[str, Any], settings: Settings | None = None
) -> dict[str, Any]:
    """Every figure of the report, read from the marts (no arithmetic on figures here)."""
    settings = settings or get_settings()
    cur = conn.cursor(row_factory=dict_row)
    overview = cur.execute(
        "SELECT * FROM marts.rpt_monthly_overview WHERE month_start = %s", (month,)
    ).fetchone()
    if overview is None:
        raise LookupError(f"no cases received in {month:%Y-%m}: marts.rpt_monthly_overview has no row")
    by_district = cur.execute(
        """
        SELECT district_name AS name, count(*) AS count FROM marts.fct_cases
        WHERE received_month = %s GROUP BY district_name ORDER BY count(*) DESC, district_name
        """,
        (month,),
    ).fetchall()
    by_category = cur.execute(
        """
        SELECT category_code AS code, category_name AS name, count(*) AS count,
               round(count(*)::numeric / sum(count(*)) OVER (), 4)::float AS share
        FROM marts.fct_cases WHERE received_month = %s
        GROUP BY category_code, category_name ORDER BY count(*) DESC, category_code
        """,
        (month,),
    ).fetchall()
    by_type = cur.execute(
        """
        SELECT matter_type AS name, count(*) AS count FROM marts.fct_cases
        WHERE received_month = %s GROUP BY matter_type ORDER BY count(*) DESC, matter_type
        """,
        (month,),
    ).fetchall()
    stats = load_stats(conn, month)
    return {
        "bureau_name": settings.bureau_name,
        "period": {"year": month.year, "month": month.month, "label": f"{month.year}年{month.month}月"},
        "headline": {
            "total": overview["cases_received"],
            "prev_total": overview["prev_month_received"],
            "prev_year_total": overview["prev_year_received"],
            "closed": overview["cases_closed"],
            "closed_rate": _float(overview["closed_rate"]),
            "on_time_rate": _float(overview["on_time_rate"]),
            "satisfaction_rate": _float(overview["satisfaction_rate"]),
            "quarantined": stats["quarantined_rows"],
        },
        "by_district": [dict(r) for r in by_district],
        "by_category": [dict(r) for r in by_category],
        "by_matter_type": [dict(r) for r in by_type],
        # The risk model (forecasts, hotspots, 红黄蓝 rules) fills this; until then the report says so.
        "warnings": [],
        "quality": {
            "passed": bool(quality.get("passed")),
            "checks": sum(len(s["checks"]) for s in quality.get("suites", [])),
            "failed": sum(s["failed"] for s in quality.get("suites", [])),
            **{k: stats[k] for k in ("source_rows", "loaded_rows", "quarantined_rows")},
        },
    }


def fingerprint(context: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(context, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


def report_dir(month: date, settings: Settings) -> Path:
    return settings.output_dir / "reports" / f"{month:%Y-%m}"


def _read_index(folder: Path) -> list[dict[str, Any]]:
    path = folder / INDEX_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(
    conn: psycopg.Connection, month: date, quality: dict[str, Any], settings: Settings | None = None
) -> PublishedReport:
    """Render the month's report unless the latest archived revision has the same content."""
    from xinfang.reports.render import render_pdf

    settings = settings or get_settings()
    context = build_context(conn, month, quality, settings)
    content = fingerprint(context)
    folder = report_dir(month, settings)
    index = _read_index(folder)
    if index and index[-1]["fingerprint"] == content:
        latest = folder / index[-1]["file"]
        if latest.exists() and _sha256(latest) == index[-1]["sha256"]:
            log.info(
                "report %s r%d unchanged; reusing %s", artifact_key(month), index[-1]["revision"], latest
            )
            return PublishedReport(month, index[-1]["revision"], latest, index[-1]["sha256"], rendered=False)
    revision = (index[-1]["revision"] + 1) if index else 1
    context = context | {
        "revision": revision,
        "generated_at": datetime.now(BUREAU_TZ).strftime("%Y-%m-%d %H:%M"),
    }
    path = folder / f"月度风险预警报告_{month:%Y年%m月}_r{revision}.pdf"
    result = render_pdf(TEMPLATE, context, path, templates_dir=settings.templates_dir)
    digest = _sha256(path)
    index.append(
        {
            "revision": revision,
            "file": path.name,
            "sha256": digest,
            "fingerprint": content,
            "pages": result.pages,
            "rendered_at": context["generated_at"],
        }
    )
    tmp = folder / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(folder / INDEX_FILE)
    log.info(
        "report %s r%d rendered: %d pages in %.2fs",
        artifact_key(month),
        revision,
        result.pages,
        result.seconds,
    )
    return PublishedReport(month, revision, path, digest, rendered=True)


def distribute(conn: psycopg.Connection, report: PublishedReport, settings: Settings | None = None):
    """E-mail the report to every configured recipient, once per revision."""
    from xinfang.delivery.mail import deliver_report
    from xinfang.delivery.recipients import load_recipients

    settings = settings or get_settings()
    label = f"{report.month.year}年{report.month.month}月"
    revision_note = "" if report.revision == 1 else f"（第{report.revision}版，更正前版）"
    return deliver_report(
        conn,
        artifact_key=report.artifact_key,
        revision=report.revision,
        kind=KIND,
        pdf_path=report.path,
        subject=f"【月度风险预警报告】{label}{revision_note}",
        body=(
            "各位领导、各有关部门：\n\n"
            f"现将《{settings.bureau_name}{label}月度风险预警报告》{revision_note}随附发送，请查阅。"
            "报告中的数据已通过数据质量检查。\n\n"
            "本邮件由信访数据平台自动发送，请勿直接回复。\n"
            f"{settings.bureau_name}\n"
        ),
        recipients=load_recipients(settings=settings),
        settings=settings,
        attachment_name=report.path.name,
    )
