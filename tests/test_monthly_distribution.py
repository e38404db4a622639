"""Distribution of the monthly report's editions: real SMTP (aiosmtpd), real PostgreSQL ledger.

Leaders get the full report, each department its own edition; a re-run sends
nothing; a dead SMTP server leaves nothing marked sent and a list of every
undelivered recipient; the manual re-send reaches exactly who it names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import uuid
from datetime import date
from pathlib import Path

import pytest
import yaml
from factories import RecordingHandler

from xinfang.config import Settings, get_settings
from xinfang.db import connect
from xinfang.delivery.mail import RetryPolicy
from xinfang.delivery.recipients import Recipient
from xinfang.publish import monthly_report
from xinfang.publish.monthly_report import DistributionError, PublishedReport, distribute_all, resend

MONTH = date(2025, 6, 1)
NO_WAIT = RetryPolicy(attempts=3, backoff_seconds=0, timeout_seconds=10)
LEADERS = [
    Recipient("王局长", "director@xfj.example.gov.cn", "leader", "full"),
    Recipient("李副局长", "deputy@xfj.example.gov.cn", "leader", "full"),
]
DEPARTMENTS = [
    Recipient("市人社局", "hrss@rsj.example.gov.cn", "department", "department", "SZ01"),
    Recipient("市自然资源局", "land@zrj.example.gov.cn", "department", "department", "SZ03"),
]
EVERYONE = LEADERS + DEPARTMENTS


@pytest.fixture()
def conn(database_url: str):
    with connect(database_url, autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS marts")
        c.execute(
            "CREATE TABLE IF NOT EXISTS marts.dim_department (department_code text PRIMARY KEY, "
            "department_name text NOT NULL)"
        )
        c.execute(
            "INSERT INTO marts.dim_department VALUES ('SZ01', '市人力资源和社会保障局'), "
            "('SZ03', '市自然资源和规划局') ON CONFLICT DO NOTHING"
        )
        # Each test gets its own month's artifact keys: the ledger is shared by the session's tests.
        yield c


def _settings(port: int) -> Settings:
    return dataclasses.replace(get_settings(), smtp_host="127.0.0.1", smtp_port=port)


def _pdf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.7\n" + uuid.uuid4().bytes + b"\n%%EOF\n")
    return path


def _archive(workdirs: dict[str, Path], month: date) -> list[PublishedReport]:
    """Three archived editions with their revision index, as publish() leaves them."""
    folder = workdirs["output"] / "reports" / f"{month:%Y-%m}"
    reports = []
    for edition in ("full", "SZ01", "SZ03"):
        pdf = _pdf(folder / f"月度风险预警报告_{month:%Y年%m月}_{edition}_r1.pdf")
        sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
        index = folder / ("revisions.json" if edition == "full" else f"revisions-{edition}.json")
        index.write_text(json.dumps([{"revision": 1, "file": pdf.name, "sha256": sha, "fingerprint": "x"}]))
        reports.append(PublishedReport(month, 1, pdf, sha, True, edition))
    return reports


def _month() -> date:
    # A month no other test uses, so ledger rows never collide across tests.
    return date(2000 + uuid.uuid4().int % 900, 1 + uuid.uuid4().int % 12, 1)


def _attachments(handler: RecordingHandler) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for message in handler.messages:
        parsed = message.parsed()
        digests = [hashlib.sha256(p.get_content()).hexdigest() for p in parsed.iter_attachments()]
        for rcpt in message.rcpt_tos:
            out.setdefault(rcpt.lower(), []).extend(digests)
    return out


def test_leaders_get_the_full_report_and_departments_their_edition_once(conn, smtp_server, workdirs) -> None:
    handler, port = smtp_server
    month = _month()
    reports = _archive(workdirs, month)
    by_edition = {r.edition: r.sha256 for r in reports}
    settings = _settings(port)
    done = distribute_all(conn, reports, settings, recipients=EVERYONE, retry=NO_WAIT)
    assert sorted(a for d in done for a in d.sent) == sorted(r.address for r in EVERYONE)
    got = _attachments(handler)
    assert got == {
        "director@xfj.example.gov.cn": [by_edition["full"]],
        "deputy@xfj.example.gov.cn": [by_edition["full"]],
        "hrss@rsj.example.gov.cn": [by_edition["SZ01"]],
        "land@zrj.example.gov.cn": [by_edition["SZ03"]],
    }
    subjects = {m.rcpt_tos[0].lower(): m.parsed()["Subject"] for m in handler.messages}
    assert "市人力资源和社会保障局专版" in subjects["hrss@rsj.example.gov.cn"]
    assert "专版" not in subjects["director@xfj.example.gov.cn"]

    # The same run again: the ledger says everyone has it, nothing leaves.
    again = distribute_all(conn, reports, settings, recipients=EVERYONE, retry=NO_WAIT)
    assert len(handler.messages) == 4
    assert sorted(a for d in again for a in d.skipped) == sorted(r.address for r in EVERYONE)


def test_smtp_down_marks_nothing_sent_and_lists_every_undelivered_recipient(conn, workdirs) -> None:
    month = _month()
    reports = _archive(workdirs, month)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(DistributionError) as info:
            distribute_all(conn, reports, _settings(port), recipients=EVERYONE, retry=NO_WAIT)
    assert sorted(info.value.undelivered) == sorted(r.address for r in EVERYONE)
    for r in EVERYONE:
        assert r.address in str(info.value)
    rows = conn.execute(
        "SELECT status, attempts FROM ops.delivery_ledger WHERE artifact_key LIKE %s",
        (f"monthly_report-{month:%Y-%m}%",),
    ).fetchall()
    assert len(rows) == 4
    assert {status for status, _ in rows} == {"failed"}
    assert {attempts for _, attempts in rows} == {NO_WAIT.attempts}


def test_one_refused_recipient_then_manual_resend(conn, smtp_server, workdirs, monkeypatch) -> None:
    handler, port = smtp_server
    month = _month()
    reports = _archive(workdirs, month)
    recipients_file = workdirs["data"] / "recipients.yml"
    recipients_file.write_text(
        yaml.safe_dump(
            {"version": 1, "recipients": [dataclasses.asdict(r) for r in EVERYONE]}, allow_unicode=True
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("XINFANG_RECIPIENTS_FILE", str(recipients_file))
    monkeypatch.setenv("XINFANG_SMTP_BACKOFF_SECONDS", "0")
    settings = _settings(port)
    handler.reject.add("land@zrj.example.gov.cn")
    with pytest.raises(DistributionError) as info:
        distribute_all(conn, reports, settings, recipients=EVERYONE, retry=NO_WAIT)
    assert info.value.undelivered == ["land@zrj.example.gov.cn"]
    assert len(handler.messages) == 3

    # The mailbox is fixed; the operator re-sends: only the failed recipient gets mail.
    handler.reject.clear()
    outcomes = resend(conn, month, settings=settings)
    assert sorted(a for o in outcomes for a in o.sent) == ["land@zrj.example.gov.cn"]
    assert len(handler.messages) == 4

    # A leader lost the mail: a named re-send reaches that leader only, with the same PDF.
    outcomes = resend(conn, month, recipients=["Director@xfj.example.gov.cn"], settings=settings)
    assert [a for o in outcomes for a in o.sent] == ["director@xfj.example.gov.cn"]
    assert len(handler.messages) == 5
    assert _attachments(handler)["director@xfj.example.gov.cn"] == [reports[0].sha256] * 2
    row = conn.execute(
        "SELECT status, attempts FROM ops.delivery_ledger WHERE artifact_key = %s AND recipient = %s",
        (monthly_report.artifact_key(month), "director@xfj.example.gov.cn"),
    ).fetchone()
    assert row == ("sent", 2)
    with pytest.raises(ValueError, match="not on the recipient list"):
        resend(conn, month, recipients=["nobody@example.gov.cn"], settings=settings)


def test_a_recipient_of_an_unknown_department_edition_is_refused(conn, workdirs) -> None:
    reports = _archive(workdirs, _month())
    stranger = Recipient("市教育局", "edu@jyj.example.gov.cn", "department", "department", "SZ07")
    with pytest.raises(ValueError, match="no published edition 'SZ07'"):
        distribute_all(conn, reports, get_settings(), recipients=[*LEADERS, stranger], retry=NO_WAIT)


def test_a_manual_resend_never_reopens_a_delivery_being_sent(conn, workdirs) -> None:
    from xinfang.delivery import ledger

    month = _month()
    [full, *_] = _archive(workdirs, month)
    key = ledger.DeliveryKey(full.artifact_key, 1, "smtp", "director@xfj.example.gov.cn")
    ledger.ensure_ledger(conn)
    claim = ledger.claim(
        conn, key, kind="monthly_report", artifact_path=str(full.path), sha256=full.sha256, size_bytes=1,
        message_id="<x@y>",
    )  # fmt: skip
    assert claim.outcome is ledger.ClaimOutcome.CLAIMED
    with pytest.raises(ledger.DeliveryInProgressError):
        ledger.reopen(conn, key, "operator")
    ledger.mark_sent(conn, key)
    assert ledger.reopen(conn, key, "operator").status == "failed"
