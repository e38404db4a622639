"""Mail delivery against a real SMTP server (aiosmtpd) and a real PostgreSQL ledger."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest
import yaml

from xinfang.config import Settings, get_settings
from xinfang.db import connect
from xinfang.delivery import ledger
from xinfang.delivery.mail import (
    DeliveryError,
    RetryPolicy,
    deliver_report,
    make_message_id,
    safe_name,
)
from xinfang.delivery.recipients import Recipient, RecipientsFileError, load_recipients

SUBJECT = "市信访局2025年6月信访情况月报（第1版）"
BODY = "各位领导：\n\n附件为2025年6月信访情况月报，请审阅。\n\n市信访局 数据中心\n"
ATTACHMENT_NAME = "市信访局2025年6月信访情况月报.pdf"
NO_WAIT = RetryPolicy(attempts=3, backoff_seconds=0, timeout_seconds=10)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture()
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / ATTACHMENT_NAME
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n" + uuid.uuid4().bytes
    )
    return path


def _smtp_settings(port: int) -> Settings:
    return dataclasses.replace(get_settings(), smtp_host="127.0.0.1", smtp_port=port)


def _recipients(*names: str) -> list[Recipient]:
    return [Recipient(name=f"测试{n}", email=f"{n}@test.example.gov.cn") for n in names]


def _key() -> str:
    return f"monthly_report-2025-06-{uuid.uuid4().hex[:12]}"


def _assert_message(msg: EmailMessage, *, pdf: Path, to: str) -> None:
    assert msg["Subject"] == SUBJECT
    assert msg["To"].addresses[0].addr_spec == to
    assert msg["Date"] is not None and msg["Message-ID"]
    body = msg.get_body(preferencelist=("plain",))
    assert body.get_content_charset() == "utf-8"
    assert body.get_content().replace("\r\n", "\n") == BODY
    attachments = list(msg.iter_attachments())
    assert len(attachments) == 1
    part = attachments[0]
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == ATTACHMENT_NAME
    assert hashlib.sha256(part.get_content()).hexdigest() == hashlib.sha256(pdf.read_bytes()).hexdigest()


def test_smtp_delivers_each_recipient_once(conn, smtp_server, pdf, workdirs) -> None:
    handler, port = smtp_server
    key = _key()
    recipients = _recipients("leader1", "dept1")
    settings = _smtp_settings(port)

    report = deliver_report(
        conn,
        artifact_key=key,
        revision=1,
        kind="monthly_report",
        pdf_path=pdf,
        subject=SUBJECT,
        body=BODY,
        recipients=recipients,
        settings=settings,
        retry=NO_WAIT,
    )

    assert sorted(report.sent) == sorted(r.address for r in recipients)
    assert handler.count_by_recipient() == Counter({r.address: 1 for r in recipients})
    rows = ledger.entries_for(conn, key)
    assert [(e.channel, e.status, e.attempts) for e in rows] == [("smtp", "sent", 1)] * 2
    assert {e.sha256 for e in rows} == {hashlib.sha256(pdf.read_bytes()).hexdigest()}
    for received in handler.messages:
        msg = received.parsed()
        (to,) = received.rcpt_tos
        _assert_message(msg, pdf=pdf, to=to)
        # RFC 2231 parameter encoding, not RFC 2047 words inside the parameter.
        assert b"filename*" in received.content
        entry = next(e for e in rows if e.recipient == to)
        assert msg["Message-ID"] == entry.message_id == make_message_id(key, 1, to, settings.smtp_sender)

    # A re-run sends nothing and leaves the ledger exactly as it was.
    again = deliver_report(
        conn,
        artifact_key=key,
        revision=1,
        kind="monthly_report",
        pdf_path=pdf,
        subject=SUBJECT,
        body=BODY,
        recipients=recipients,
        settings=settings,
        retry=NO_WAIT,
    )
    assert again.sent == [] and sorted(again.skipped) == sorted(r.address for r in recipients)
    assert len(handler.messages) == 2
    assert ledger.entries_for(conn, key) == rows


def test_rejected_recipient_fails_alone_and_is_retried_later(conn, smtp_server, pdf, workdirs) -> None:
    handler, port = smtp_server
    key = _key()
    a, c, b = _recipients("a", "c", "b")
    handler.reject.add(c.address)
    kwargs = {
        "artifact_key": key,
        "revision": 1,
        "kind": "monthly_report",
        "pdf_path": pdf,
        "subject": SUBJECT,
        "body": BODY,
        "recipients": [a, c, b],
        "settings": _smtp_settings(port),
        "retry": NO_WAIT,
    }

    with pytest.raises(DeliveryError) as excinfo:
        deliver_report(conn, **kwargs)

    assert c.address in str(excinfo.value)
    assert a.address not in str(excinfo.value) and b.address not in str(excinfo.value)
    assert excinfo.value.report.failed == [c.address]
    assert sorted(excinfo.value.report.sent) == sorted([a.address, b.address])
    assert handler.count_by_recipient() == Counter({a.address: 1, b.address: 1})
    by_recipient = {e.recipient: e for e in ledger.entries_for(conn, key)}
    assert by_recipient[c.address].status == "failed"
    assert "550" in by_recipient[c.address].last_error
    assert by_recipient[c.address].attempts == 1  # a permanent 5xx answer is not retried
    assert by_recipient[a.address].status == by_recipient[b.address].status == "sent"

    # The server now accepts c: only c gets a message, with the same Message-ID as before.
    handler.reject.clear()
    report = deliver_report(conn, **kwargs)
    assert report.sent == [c.address] and sorted(report.skipped) == sorted([a.address, b.address])
    assert handler.count_by_recipient() == Counter({a.address: 1, b.address: 1, c.address: 1})
    entry = ledger.get_entry(conn, ledger.DeliveryKey(key, 1, "smtp", c.address))
    assert entry.status == "sent" and entry.attempts == 2
    assert handler.messages[-1].parsed()["Message-ID"] == entry.message_id


def test_temporary_failure_is_retried_within_the_run(conn, smtp_server, pdf, workdirs) -> None:
    handler, port = smtp_server
    key = _key()
    (a,) = _recipients("deferred")
    handler.defer_once.add(a.address)

    report = deliver_report(
        conn,
        artifact_key=key,
        revision=1,
        kind="monthly_report",
        pdf_path=pdf,
        subject=SUBJECT,
        body=BODY,
        recipients=[a],
        settings=_smtp_settings(port),
        retry=NO_WAIT,
    )

    assert report.sent == [a.address] and report.outcomes[0].attempts == 2
    assert handler.count_by_recipient() == Counter({a.address: 1})
    entry = ledger.get_entry(conn, ledger.DeliveryKey(key, 1, "smtp", a.address))
    assert entry.status == "sent" and entry.attempts == 2 and "451" in entry.last_error


def test_stale_sending_claim_is_resumed_with_the_same_message_id(conn, smtp_server, pdf, workdirs) -> None:
    handler, port = smtp_server
    key = _key()
    (a,) = _recipients("crashed")
    settings = _smtp_settings(port)
    message_id = make_message_id(key, 1, a.address, settings.smtp_sender)
    ledger.ensure_ledger(conn)
    # Simulate a worker that claimed the delivery and died before recording the outcome.
    ledger.claim(
        conn,
        ledger.DeliveryKey(key, 1, "smtp", a.address),
        kind="monthly_report",
        artifact_path=str(pdf),
        sha256=hashlib.sha256(pdf.read_bytes()).hexdigest(),
        size_bytes=pdf.stat().st_size,
        message_id=message_id,
    )
    kwargs = {
        "artifact_key": key,
        "revision": 1,
        "kind": "monthly_report",
        "pdf_path": pdf,
        "subject": SUBJECT,
        "body": BODY,
        "recipients": [a],
        "settings": settings,
        "retry": NO_WAIT,
    }

    # A fresh claim may belong to a live worker: do not send, fail loudly.
    with pytest.raises(DeliveryError, match="in_progress"):
        deliver_report(conn, **kwargs)
    assert handler.messages == []

    # Once stale, the delivery is resumed under the same Message-ID.
    report = deliver_report(conn, stale_after=timedelta(0), **kwargs)
    assert report.sent == [a.address]
    assert [m.parsed()["Message-ID"] for m in handler.messages] == [message_id]


def test_changed_pdf_under_same_revision_is_refused(conn, smtp_server, pdf, workdirs) -> None:
    handler, port = smtp_server
    key = _key()
    kwargs = {
        "artifact_key": key,
        "kind": "monthly_report",
        "pdf_path": pdf,
        "subject": SUBJECT,
        "body": BODY,
        "recipients": _recipients("x"),
        "settings": _smtp_settings(port),
        "retry": NO_WAIT,
    }
    deliver_report(conn, revision=1, **kwargs)
    pdf.write_bytes(pdf.read_bytes() + b"% corrected\n")

    with pytest.raises(ledger.ArtifactChangedError, match="revision 2"):
        deliver_report(conn, revision=1, **{**kwargs, "recipients": _recipients("x", "y")})
    assert len(handler.messages) == 1

    deliver_report(conn, revision=2, **kwargs)
    assert len(handler.messages) == 2


def test_open_transaction_is_refused(database_url, pdf, workdirs) -> None:
    with connect(database_url) as c:
        c.execute("SELECT 1")
        with pytest.raises(ledger.LedgerError, match="inside a transaction"):
            deliver_report(
                c,
                artifact_key=_key(),
                revision=1,
                kind="monthly_report",
                pdf_path=pdf,
                subject=SUBJECT,
                body=BODY,
                recipients=_recipients("x"),
            )


def test_outbox_mode_writes_eml_files_once(conn, pdf, workdirs, monkeypatch) -> None:
    monkeypatch.delenv("XINFANG_SMTP_HOST", raising=False)
    settings = get_settings()
    assert settings.smtp_host is None
    key = _key()
    recipients = _recipients("leader2", "dept2")
    kwargs = {
        "artifact_key": key,
        "revision": 3,
        "kind": "monthly_report",
        "pdf_path": pdf,
        "subject": SUBJECT,
        "body": BODY,
        "recipients": recipients,
        "settings": settings,
    }

    report = deliver_report(conn, **kwargs)

    assert report.channel == "outbox" and sorted(report.sent) == sorted(r.address for r in recipients)
    folder = workdirs["output"] / "outbox" / key / "r3"
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(f"{safe_name(r.address)}.eml" for r in recipients)
    for r in recipients:
        raw = (folder / f"{safe_name(r.address)}.eml").read_bytes()
        _assert_message(email.message_from_bytes(raw, policy=email.policy.default), pdf=pdf, to=r.address)
    rows = ledger.entries_for(conn, key)
    assert {(e.channel, e.status) for e in rows} == {("outbox", "sent")}

    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    again = deliver_report(conn, **kwargs)
    assert again.sent == []
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()} == before
    assert ledger.entries_for(conn, key) == rows


def test_project_recipients_file_is_valid() -> None:
    recipients = load_recipients(PROJECT_ROOT / "config" / "recipients.yml")
    assert recipients and all(r.email.endswith("example.gov.cn") for r in recipients)
    assert {r.role for r in recipients} == {"leader", "department"}
    assert all(r.department for r in recipients if r.role == "department")
    # Leaders read the full report; departments named by code get their own edition.
    assert all(r.edition == "full" for r in recipients if r.role == "leader")
    editions = {r.department for r in recipients if r.edition == "department"}
    assert editions and all(re.fullmatch(r"(SZ\d{2}|QX\d{6}|XZ\d{9})", code) for code in editions)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "张三", "email": "not-an-address", "role": "leader"}, "entry 2 (张三): email"),
        ({"name": "张三", "email": "z@example.gov.cn", "role": "boss"}, "entry 2 (张三): role"),
        ({"name": "张三", "email": "z@example.gov.cn", "role": "department"}, "'department' is required"),
        ({"name": "张三", "email": "Ok@Example.gov.cn", "role": "leader"}, "duplicates entry 1"),
        ({"name": "张三", "email": "z@example.gov.cn", "role": "leader", "emial": "x"}, "unknown keys"),
    ],
)
def test_invalid_recipients_file_names_file_and_entry(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "recipients.yml"
    document = {
        "version": 1,
        "recipients": [{"name": "甲", "email": "ok@example.gov.cn", "role": "leader"}, entry],
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RecipientsFileError) as excinfo:
        load_recipients(path)
    assert str(path) in str(excinfo.value) and message in str(excinfo.value)
