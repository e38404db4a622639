"""The monthly risk-warning report (月度风险预警报告): editions, archive, distribution.

Editions: the full report (for leaders) and one edition per department that
has a warning or a follow-up to lead or assist, or is on the recipient list
for its edition.
Each edition is its own artifact (``monthly_report-2025-06`` and
``monthly_report-2025-06-SZ01``) with its own revisions and ledger rows.

Revisions: an edition is rendered once per distinct content. Re-running with
unchanged figures reuses the archived PDF (no new file, no new e-mail); changed
figures produce revision N+1, which is distributed as a new artifact. The
content fingerprint excludes the generation time for that reason. The archive
is ``output/reports/YYYY-MM/`` with every revision's PDF and ``revisions.json``
per edition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg

from xinfang.config import BUREAU_TZ, Settings, get_settings
from xinfang.delivery.mail import DeliveryError, DeliveryReport
from xinfang.delivery.recipients import Recipient
from xinfang.publish import archive
from xinfang.publish.monthly_context import build_context, department_names, editions_needed, load_stats

log = logging.getLogger(__name__)

TEMPLATE = "monthly_risk_report.html.j2"
KIND = "monthly_report"
INDEX_FILE = "revisions.json"
FULL = "full"

__all__ = ["distribute_all", "load_stats", "publish", "publish_all", "resend"]


@dataclass(frozen=True)
class PublishedReport:
    month: date
    revision: int
    path: Path
    sha256: str
    rendered: bool  # False when an archived revision with the same content was reused
    edition: str = FULL  # "full" or a department code

    @property
    def artifact_key(self) -> str:
        return artifact_key(self.month, self.edition)

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat(),
            "revision": self.revision,
            "path": str(self.path),
            "sha256": self.sha256,
            "rendered": self.rendered,
            "edition": self.edition,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PublishedReport:
        return cls(
            month=date.fromisoformat(d["month"]),
            revision=int(d["revision"]),
            path=Path(d["path"]),
            sha256=d["sha256"],
            rendered=bool(d["rendered"]),
            edition=d.get("edition", FULL),
        )


def artifact_key(month: date, edition: str = FULL) -> str:
    return f"{KIND}-{month:%Y-%m}" + ("" if edition == FULL else f"-{edition}")


def report_dir(month: date, settings: Settings) -> Path:
    return settings.output_dir / "reports" / f"{month:%Y-%m}"


def _index_path(folder: Path, edition: str) -> Path:
    return folder / (INDEX_FILE if edition == FULL else f"revisions-{edition}.json")


def _file_name(month: date, edition: str, edition_name: str | None, revision: int) -> str:
    label = "" if edition == FULL else f"_{edition_name or edition}"
    return f"月度风险预警报告_{month:%Y年%m月}{label}_r{revision}.pdf"


def publish(
    conn: psycopg.Connection,
    month: date,
    quality: dict[str, Any],
    settings: Settings | None = None,
    *,
    edition: str = FULL,
) -> PublishedReport:
    """Render one edition unless its latest archived revision has the same content."""
    from xinfang.reports.render import render_pdf

    settings = settings or get_settings()
    context = build_context(conn, month, quality, settings, edition=None if edition == FULL else edition)
    edition_name = None if context["edition"] is None else context["edition"]["name"]
    key = artifact_key(month, edition)

    def render(revision: int, path: Path) -> dict[str, Any]:
        stamped = context | {
            "revision": revision,
            "generated_at": datetime.now(BUREAU_TZ).strftime("%Y-%m-%d %H:%M"),
        }
        result = render_pdf(TEMPLATE, stamped, path, templates_dir=settings.templates_dir)
        log.info("report %s r%d rendered: %d pages in %.2fs", key, revision, result.pages, result.seconds)
        return {"pages": result.pages, "rendered_at": stamped["generated_at"]}

    archived = archive.render_once(
        _index_path(report_dir(month, settings), edition),
        archive.fingerprint(context),
        lambda revision: _file_name(month, edition, edition_name, revision),
        render,
    )
    if not archived.rendered:
        log.info("report %s r%d unchanged; reusing %s", key, archived.revision, archived.path)
    return PublishedReport(
        month, archived.revision, archived.path, archived.sha256, archived.rendered, edition
    )


def editions_for(conn: psycopg.Connection, month: date, recipients: list[Recipient]) -> list[str]:
    """The full report, then every department edition needed (warnings, or a recipient asking for it)."""
    wanted = set(editions_needed(conn, month))
    wanted |= {r.department for r in recipients if r.edition == "department" and r.department}
    known = department_names(conn)
    unknown = sorted(code for code in wanted if code not in known)
    if unknown:
        raise ValueError(
            f"department code(s) {unknown} are not in marts.dim_department; check the recipients file "
            "(department must be a department code such as SZ01) and the risk rules"
        )
    return [FULL, *sorted(wanted)]


def publish_all(
    conn: psycopg.Connection,
    month: date,
    quality: dict[str, Any],
    settings: Settings | None = None,
    recipients: list[Recipient] | None = None,
) -> list[PublishedReport]:
    """Render (or reuse) the full report and every department edition of the month."""
    from xinfang.delivery.recipients import load_recipients

    settings = settings or get_settings()
    recipients = recipients if recipients is not None else load_recipients(settings=settings)
    return [publish(conn, month, quality, settings, edition=e) for e in editions_for(conn, month, recipients)]


def _message(report: PublishedReport, settings: Settings, edition_name: str | None) -> tuple[str, str]:
    label = f"{report.month.year}年{report.month.month}月"
    revision_note = "" if report.revision == 1 else f"（第{report.revision}版，更正前版）"
    edition_note = "" if edition_name is None else f"（{edition_name}专版）"
    subject = f"【月度风险预警报告】{label}{edition_note}{revision_note}"
    body = (
        ("各位领导：\n\n" if edition_name is None else f"{edition_name}：\n\n")
        + f"现将《{settings.bureau_name}{label}月度风险预警报告》{edition_note}{revision_note}"
        + "随附发送，请查阅。"
        + (
            ""
            if edition_name is None
            else "专版仅含贵单位牵头或配合办理的预警事项，请按处置建议落实并及时反馈。"
        )
        + "报告中的数据已通过数据质量检查。\n\n"
        "本邮件由信访数据平台自动发送，请勿直接回复。\n"
        f"{settings.bureau_name}\n"
    )
    return subject, body


class DistributionError(RuntimeError):
    """Some recipients of some editions did not get their report; everyone else did."""

    def __init__(self, failures: list[DeliveryError], reports: list[DeliveryReport]) -> None:
        self.failures = failures
        self.reports = reports
        lines = [
            f"{f.report.artifact_key} r{f.report.revision} -> {o.recipient} ({o.status}: {o.error})"
            for f in failures
            for o in f.report.outcomes
            if o.status in ("failed", "in_progress")
        ]
        self.undelivered = [line.split(" -> ")[1].split(" (")[0] for line in lines]
        super().__init__(
            f"{len(lines)} delivery(ies) failed; nothing was marked sent for them. Undelivered recipients:\n"
            + "\n".join(f"  - {line}" for line in lines)
            + "\nEveryone else got the report. Re-run (or `xinfang report resend`) to retry only these."
        )


def _plan(
    reports: list[PublishedReport], recipients: list[Recipient]
) -> list[tuple[PublishedReport, list[Recipient]]]:
    by_edition = {r.edition: r for r in reports}
    plan: dict[str, list[Recipient]] = {}
    for recipient in recipients:
        edition = FULL if recipient.edition == "full" else recipient.department
        if edition not in by_edition:
            raise ValueError(f"no published edition {edition!r} for recipient {recipient.address}")
        plan.setdefault(edition, []).append(recipient)
    return [(by_edition[e], plan[e]) for e in sorted(plan, key=lambda e: (e != FULL, e))]


def distribute_all(
    conn: psycopg.Connection,
    reports: list[PublishedReport],
    settings: Settings | None = None,
    *,
    recipients: list[Recipient] | None = None,
    retry: Any = None,
) -> list[DeliveryReport]:
    """Mail leaders the full report and each department its edition, once per revision and recipient.

    Every edition is attempted even when an earlier one failed; then, if any
    recipient failed, DistributionError lists all of them.
    """
    from xinfang.delivery.mail import deliver_report
    from xinfang.delivery.recipients import load_recipients

    settings = settings or get_settings()
    recipients = recipients if recipients is not None else load_recipients(settings=settings)
    names = department_names(conn)
    done: list[DeliveryReport] = []
    failures: list[DeliveryError] = []
    for report, group in _plan(reports, recipients):
        edition_name = None if report.edition == FULL else names.get(report.edition, report.edition)
        subject, body = _message(report, settings, edition_name)
        try:
            done.append(
                deliver_report(
                    conn,
                    artifact_key=report.artifact_key,
                    revision=report.revision,
                    kind=KIND,
                    pdf_path=report.path,
                    subject=subject,
                    body=body,
                    recipients=group,
                    settings=settings,
                    retry=retry,
                    attachment_name=report.path.name,
                )
            )
        except DeliveryError as exc:
            failures.append(exc)
            done.append(exc.report)
    if failures:
        raise DistributionError(failures, done)
    return done


def latest_published(month: date, settings: Settings | None = None) -> list[PublishedReport]:
    """The latest archived revision of every edition of the month (for a manual re-send)."""
    settings = settings or get_settings()
    folder = report_dir(month, settings)
    out = []
    for index_path in sorted(folder.glob("revisions*.json")):
        found = archive.latest(index_path)
        if found is None:
            continue
        edition = FULL if index_path.name == INDEX_FILE else index_path.stem.removeprefix("revisions-")
        out.append(PublishedReport(month, found.revision, found.path, found.sha256, False, edition))
    if not out:
        raise LookupError(f"no archived monthly report for {month:%Y-%m} under {folder}")
    return out


def resend(
    conn: psycopg.Connection,
    month: date,
    *,
    recipients: list[str] | None = None,
    settings: Settings | None = None,
) -> list[DeliveryReport]:
    """Manual re-send of the month's latest revisions.

    Without ``recipients``: deliver to everyone not yet recorded as sent (the
    failed ones of the last run). With addresses: send those recipients their
    edition again even if it was delivered (a lost or deleted mail), recording
    the operator's request in the ledger row before sending.
    """
    from xinfang.delivery import ledger
    from xinfang.delivery.recipients import load_recipients

    settings = settings or get_settings()
    everyone = load_recipients(settings=settings)
    reports = latest_published(month, settings)
    chosen = everyone
    if recipients:
        wanted = {a.strip().lower() for a in recipients}
        chosen = [r for r in everyone if r.address in wanted]
        missing = wanted - {r.address for r in chosen}
        if missing:
            raise ValueError(f"not on the recipient list: {sorted(missing)}")
        channel = "smtp" if settings.smtp_host else "outbox"
        ledger.require_idle(conn)
        ledger.ensure_ledger(conn)
        for report, group in _plan(reports, chosen):
            for r in group:
                key = ledger.DeliveryKey(report.artifact_key, report.revision, channel, r.address)
                ledger.reopen(conn, key, "manual re-send requested by an operator")
    return distribute_all(conn, reports, settings, recipients=chosen)
