"""The half-year work summary (半年工作总结): context, archive and distribution.

The figures come from the warehouse (xinfang.publish.halfyear_context), the
words from the half-year's prose file (xinfang.publish.prose). The PDF is
archived under ``output/reports/2025H1/`` with one revision per distinct
content (``revisions.json``), and mailed to the leaders (the recipients of the
full monthly report) once per revision and recipient through the same
delivery ledger. ``pdfa=True`` writes the PDF/A-3b variant instead, for the
records office's long-term archive (its own revisions, not mailed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from xinfang.config import BUREAU_TZ, Settings, get_settings
from xinfang.delivery.mail import DeliveryReport
from xinfang.delivery.recipients import Recipient
from xinfang.publish import archive
from xinfang.publish import halfyear_context as hc
from xinfang.publish.prose import load_prose, prose_path

log = logging.getLogger(__name__)

TEMPLATE = "halfyear_summary.html.j2"
KIND = "halfyear_summary"
INDEX_FILE = "revisions.json"
PDFA_VARIANT = "pdf/a-3b"


@dataclass(frozen=True)
class PublishedSummary:
    half_year: str
    revision: int
    path: Path
    sha256: str
    rendered: bool
    pdfa: bool = False

    @property
    def artifact_key(self) -> str:
        return f"{KIND}-{self.half_year}" + ("-pdfa" if self.pdfa else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "half_year": self.half_year,
            "revision": self.revision,
            "path": str(self.path),
            "sha256": self.sha256,
            "rendered": self.rendered,
            "pdfa": self.pdfa,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PublishedSummary:
        return cls(
            d["half_year"], int(d["revision"]), Path(d["path"]), d["sha256"], bool(d["rendered"]), d["pdfa"]
        )


def prose_dir(settings: Settings) -> Path:
    return settings.templates_dir / "prose"


def summary_dir(half_year: hc.HalfYear, settings: Settings) -> Path:
    return settings.output_dir / "reports" / half_year.label


def build_context(
    conn: psycopg.Connection,
    half_year: hc.HalfYear,
    quality: dict[str, Any],
    settings: Settings | None = None,
    *,
    prose_file: Path | None = None,
) -> dict[str, Any]:
    """Everything the template prints; raises ProseError listing every prose problem."""
    extra = (
        hc.hotline_figures(conn, half_year)
        | hc.risk_figures(conn, half_year)
        | {"bounced_departments": hc.bounced_departments(conn, half_year)}
    )
    return assemble_context(
        half_year,
        hc.indicators(conn, half_year),
        extra,
        previous=hc.previous_year_indicators(conn, half_year),
        monthly=hc.monthly_volumes(conn, half_year),
        districts=hc.district_volumes(conn, half_year),
        progress=hc.target_progress(conn, half_year),
        next_targets=hc.target_progress(conn, half_year.next, baseline_only=True),
        quality=quality,
        settings=settings,
        prose_file=prose_file,
    )


def assemble_context(
    half_year: hc.HalfYear,
    row: dict[str, Any],
    extra: dict[str, Any],
    *,
    previous: dict[str, Any] | None,
    monthly: list[dict[str, Any]],
    districts: list[dict[str, Any]],
    progress: list[dict[str, Any]],
    next_targets: list[dict[str, Any]],
    quality: dict[str, Any],
    settings: Settings | None = None,
    prose_file: Path | None = None,
) -> dict[str, Any]:
    """The template's context from the warehouse's rows (no database access here)."""
    settings = settings or get_settings()
    figures = hc.figures(row, extra, half_year)
    prose_file = prose_file or prose_path(prose_dir(settings), half_year.label)
    prose = load_prose(prose_file, half_year.label, figures)
    return {
        "bureau": settings.bureau_name,
        "half_year": {"label": half_year.label, "year": half_year.year, "name": half_year.name},
        "issued_on": _issued_on(half_year),
        "prose": prose,
        "indicators": _plain(row),
        # The year before may not be loaded: every field then prints as "—".
        "previous": _plain(previous) if previous is not None else dict.fromkeys(row),
        "figures": figures,
        "first_handling": {"final": hc.first_handling_final(row), "judged_share": hc.judged_share(row)},
        "extra": _plain(extra),
        "monthly": [_plain(r) | {"label": f"{r['month_start'].month}月"} for r in monthly],
        "districts": [_plain(r) for r in districts],
        "progress": [_target(r) for r in progress],
        "next_targets": [_target(r) for r in next_targets],
        "quality": {
            "period": quality["period"],
            "suites": quality["totals"]["suites"],
            "checks": quality["totals"]["checks"],
        },
    }


def _issued_on(half_year: hc.HalfYear) -> str:
    # The date of issue is the DAG's run day (2 July, 2 January), in Arabic numerals; not the
    # render time, so a re-run with the same content reproduces the same document.
    day = half_year.end + timedelta(days=1)
    return f"{day.year}年{day.month}月{day.day}日"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-stable values (Decimal → float) so the content fingerprint does not depend on types."""
    return {
        k: (float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, (int, bool)) else v)
        for k, v in row.items()
    }


def _target(row: dict[str, Any]) -> dict[str, Any]:
    row = _plain(row)
    return row | {
        "target_text": ("≥" if row["comparison"] == ">=" else "≤")
        + hc.target_value_text(row["target_value"], row["unit"]),
        "actual_text": hc.target_value_text(row["actual_value"], row["unit"]),
        "baseline_text": hc.target_value_text(row["baseline_value"], row["unit"]),
        "month_text": f"{row['month_start'].year}年{row['month_start'].month}月",
    }


def _file_name(half_year: hc.HalfYear, revision: int, pdfa: bool) -> str:
    suffix = "_PDFA" if pdfa else ""
    return f"半年工作总结_{half_year.year}年{half_year.name}_r{revision}{suffix}.pdf"


def publish(
    conn: psycopg.Connection,
    half_year: hc.HalfYear,
    quality: dict[str, Any],
    settings: Settings | None = None,
    *,
    pdfa: bool = False,
    prose_file: Path | None = None,
) -> PublishedSummary:
    """Render the summary unless its latest archived revision has the same content."""
    from xinfang.reports.render import render_pdf

    settings = settings or get_settings()
    context = build_context(conn, half_year, quality, settings, prose_file=prose_file)
    index_path = summary_dir(half_year, settings) / ("revisions-pdfa.json" if pdfa else INDEX_FILE)

    def render(revision: int, path: Path) -> dict[str, Any]:
        stamped = context | {
            "revision": revision,
            "generated_at": datetime.now(BUREAU_TZ).strftime("%Y-%m-%d %H:%M"),
        }
        result = render_pdf(
            TEMPLATE,
            stamped,
            path,
            templates_dir=settings.templates_dir,
            pdf_variant=PDFA_VARIANT if pdfa else None,
        )
        log.info(
            "summary %s r%d: %d pages in %.2f s", half_year.label, revision, result.pages, result.seconds
        )
        return {"pages": result.pages, "rendered_at": stamped["generated_at"], "seconds": result.seconds}

    archived = archive.render_once(
        index_path, archive.fingerprint(context), lambda r: _file_name(half_year, r, pdfa), render
    )
    return PublishedSummary(
        half_year.label, archived.revision, archived.path, archived.sha256, archived.rendered, pdfa
    )


def leaders(recipients: list[Recipient]) -> list[Recipient]:
    """The summary goes to whoever gets the full monthly report (leaders and the bureau's own offices)."""
    return [r for r in recipients if r.edition == "full"]


def distribute(
    conn: psycopg.Connection,
    summary: PublishedSummary,
    settings: Settings | None = None,
    *,
    recipients: list[Recipient] | None = None,
    retry: Any = None,
) -> DeliveryReport:
    """Mail the summary once per revision and recipient; DeliveryError lists the undelivered."""
    from xinfang.delivery.mail import deliver_report
    from xinfang.delivery.recipients import load_recipients

    settings = settings or get_settings()
    half_year = hc.HalfYear.parse(summary.half_year)
    group = leaders(recipients if recipients is not None else load_recipients(settings=settings))
    label = f"{half_year.year}年{half_year.name}"
    revision_note = "" if summary.revision == 1 else f"（第{summary.revision}版，更正前版）"
    subject = f"【半年工作总结】{label}{revision_note}"
    body = (
        "各位领导：\n\n"
        f"现将《{settings.bureau_name}{label}工作总结暨{half_year.next.name}工作计划》{revision_note}随附发送，"
        "请审阅。文中数据均由信访数据平台根据业务数据自动计算，并已通过数据质量检查；"
        "文字部分由起草处室撰写。\n\n"
        "本邮件由信访数据平台自动发送，请勿直接回复。\n"
        f"{settings.bureau_name}\n"
    )
    return deliver_report(
        conn,
        artifact_key=summary.artifact_key,
        revision=summary.revision,
        kind=KIND,
        pdf_path=summary.path,
        subject=subject,
        body=body,
        recipients=group,
        settings=settings,
        retry=retry,
        attachment_name=summary.path.name,
    )
