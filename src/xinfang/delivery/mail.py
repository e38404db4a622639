"""Mail distribution of report PDFs, recorded in the delivery ledger.

With ``settings.smtp_host`` set, messages go out over SMTP (channel ``smtp``);
without it they are written as ``.eml`` files to
``<outbox>/<artifact_key>/r<revision>/<recipient>.eml`` (channel ``outbox``),
which is what development machines and the demo use.

Every recipient goes through the ledger protocol described in
:mod:`xinfang.delivery.ledger`: claim ('sending', committed), send, mark 'sent'
or 'failed'. Re-running the same call therefore sends nothing twice, and a run
after a partial failure sends only to the recipients that did not get it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path
from typing import Literal, Protocol

import psycopg

from xinfang.config import BUREAU_TZ, Settings, get_settings
from xinfang.delivery import ledger
from xinfang.delivery.recipients import Recipient

log = logging.getLogger(__name__)

_TRUE_WORDS = ("1", "true", "yes", "on")

OutcomeStatus = Literal["sent", "skipped", "failed", "in_progress"]


@dataclass(frozen=True)
class RetryPolicy:
    """In-run retries of one recipient's send; permanent (5xx) rejections are not retried."""

    attempts: int = 3
    backoff_seconds: float = 2.0
    backoff_factor: float = 2.0
    timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by XINFANG_SMTP_ATTEMPTS / XINFANG_SMTP_BACKOFF_SECONDS (tests, drills)."""
        return cls(
            attempts=int(os.environ.get("XINFANG_SMTP_ATTEMPTS", cls.attempts)),
            backoff_seconds=float(os.environ.get("XINFANG_SMTP_BACKOFF_SECONDS", cls.backoff_seconds)),
        )

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2, 3, ...)."""
        return self.backoff_seconds * self.backoff_factor ** (attempt - 2)


@dataclass(frozen=True)
class RecipientOutcome:
    recipient: str
    status: OutcomeStatus
    message_id: str
    attempts: int = 0  # sends tried in this run
    error: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    artifact_key: str
    revision: int
    channel: str
    outcomes: tuple[RecipientOutcome, ...]

    def _with(self, *statuses: OutcomeStatus) -> list[str]:
        return [o.recipient for o in self.outcomes if o.status in statuses]

    @property
    def sent(self) -> list[str]:
        return self._with("sent")

    @property
    def skipped(self) -> list[str]:
        return self._with("skipped")

    @property
    def failed(self) -> list[str]:
        """Recipients without a confirmed delivery: failed, or claimed by another worker."""
        return self._with("failed", "in_progress")

    @property
    def ok(self) -> bool:
        return not self.failed


class DeliveryError(RuntimeError):
    """Some recipients did not get the artifact; all others did. ``report`` has the details."""

    def __init__(self, report: DeliveryReport) -> None:
        self.report = report
        details = "; ".join(
            f"{o.recipient} ({o.status}: {o.error})"
            for o in report.outcomes
            if o.status in ("failed", "in_progress")
        )
        super().__init__(
            f"delivery of {report.artifact_key} r{report.revision} via {report.channel} failed for "
            f"{len(report.failed)} of {len(report.outcomes)} recipients: {details}. "
            "The others were delivered; re-run to retry only the failed ones."
        )


@dataclass(frozen=True)
class SmtpCredentials:
    user: str | None
    password: str | None
    starttls: bool

    @classmethod
    def from_env(cls) -> SmtpCredentials:
        return cls(
            user=os.environ.get("XINFANG_SMTP_USER") or None,
            password=os.environ.get("XINFANG_SMTP_PASSWORD") or None,
            starttls=os.environ.get("XINFANG_SMTP_STARTTLS", "").strip().lower() in _TRUE_WORDS,
        )


class _Transport(Protocol):
    channel: str

    def send(self, message: EmailMessage, *, sender: str, recipient: Recipient, folder_key: str) -> None: ...


class _SmtpTransport:
    channel = "smtp"

    def __init__(self, host: str, port: int, credentials: SmtpCredentials, timeout: float) -> None:
        self.host, self.port, self.credentials, self.timeout = host, port, credentials, timeout

    def send(self, message: EmailMessage, *, sender: str, recipient: Recipient, folder_key: str) -> None:
        # One connection per message: a failure cannot leave a half-used session behind
        # for the next recipient, and the recipient counts are small.
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.credentials.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.credentials.user:
                smtp.login(self.credentials.user, self.credentials.password or "")
            # Envelope recipient given explicitly so Cc/Bcc headers can never widen the audience.
            smtp.send_message(message, from_addr=sender, to_addrs=[recipient.address])


class _OutboxTransport:
    channel = "outbox"

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir

    def path_for(self, folder_key: str, recipient: Recipient) -> Path:
        return self.outbox_dir / folder_key / f"{safe_name(recipient.address)}.eml"

    def send(self, message: EmailMessage, *, sender: str, recipient: Recipient, folder_key: str) -> None:
        target = self.path_for(folder_key, recipient)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(message.as_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)  # readers of the outbox never see a half-written .eml
        finally:
            tmp.unlink(missing_ok=True)


def safe_name(address: str) -> str:
    """A file-name-safe rendering of a mail address (``a.b@x.cn`` -> ``a.b_at_x.cn``)."""
    return re.sub(r"[^a-z0-9._-]", "_", address.lower().replace("@", "_at_"))


def make_message_id(artifact_key: str, revision: int, recipient: str, sender: str) -> str:
    """Deterministic Message-ID, so a retried send is recognisably the same message."""
    digest = hashlib.sha256(f"{artifact_key}\0{revision}\0{recipient.lower()}".encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2].lower() or "localhost"
    return f"<xfj.{digest}.r{revision}@{domain}>"


def build_message(
    *,
    subject: str,
    body: str,
    sender: str,
    sender_name: str,
    recipient: Recipient,
    message_id: str,
    attachment: bytes,
    attachment_name: str,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/mixed message: UTF-8 text body plus the PDF (RFC 2231 encoded file name)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = Address(display_name=sender_name, addr_spec=sender)
    msg["To"] = Address(display_name=recipient.name, addr_spec=recipient.email.strip())
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(BUREAU_TZ))
    msg["Message-ID"] = message_id
    # Tells auto-responders (out-of-office) not to answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    # Base64 keeps Chinese text intact through any 7-bit relay and is what Chinese clients expect.
    msg.set_content(body, subtype="plain", charset="utf-8", cte="base64")
    encoded_name = ("utf-8", "", attachment_name)
    msg.add_attachment(
        attachment,
        maintype="application",
        subtype="pdf",
        filename=encoded_name,
        # Some older clients look only at the Content-Type name parameter.
        params={"name": encoded_name},
    )
    return msg


def deliver_report(
    conn: psycopg.Connection,
    *,
    artifact_key: str,
    revision: int,
    kind: str,
    pdf_path: Path,
    subject: str,
    body: str,
    recipients: list[Recipient],
    settings: Settings | None = None,
    retry: RetryPolicy | None = None,
    attachment_name: str | None = None,
    stale_after: timedelta = ledger.DEFAULT_STALE_AFTER,
    credentials: SmtpCredentials | None = None,
) -> DeliveryReport:
    """Send ``pdf_path`` to every recipient not yet recorded as 'sent' for this revision.

    Raises DeliveryError after trying everyone if any recipient failed (or is
    held by another worker's fresh claim); ArtifactChangedError before sending
    anything if this revision was already recorded with different PDF bytes.
    ``conn`` must not be inside an open transaction: each ledger step commits.
    """
    settings = settings or get_settings()
    retry = retry or RetryPolicy.from_env()
    if retry.attempts < 1:
        raise ValueError("retry.attempts must be at least 1")
    ledger.validate_artifact_key(artifact_key)
    if not recipients:
        raise ValueError(f"{artifact_key} r{revision}: no recipients given")
    pdf_path = Path(pdf_path)
    data = pdf_path.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise ValueError(f"{pdf_path} is not a PDF file (no %PDF- header)")
    sha256 = hashlib.sha256(data).hexdigest()

    transport: _Transport
    if settings.smtp_host:
        transport = _SmtpTransport(
            settings.smtp_host,
            settings.smtp_port,
            credentials or SmtpCredentials.from_env(),
            retry.timeout_seconds,
        )
    else:
        transport = _OutboxTransport(settings.outbox_dir)

    ledger.require_idle(conn)
    ledger.ensure_ledger(conn)
    # Fail before the first send, not halfway through the list.
    ledger.assert_same_artifact(conn, artifact_key, revision, sha256)

    unique: dict[str, Recipient] = {}
    for recipient in recipients:
        unique.setdefault(recipient.address, recipient)

    outcomes = [
        _deliver_one(
            conn,
            transport,
            recipient,
            artifact_key=artifact_key,
            revision=revision,
            kind=kind,
            pdf_path=pdf_path,
            data=data,
            sha256=sha256,
            subject=subject,
            body=body,
            settings=settings,
            retry=retry,
            attachment_name=attachment_name or pdf_path.name,
            stale_after=stale_after,
        )
        for recipient in unique.values()
    ]
    report = DeliveryReport(artifact_key, revision, transport.channel, tuple(outcomes))
    log.info(
        "delivery %s r%d via %s: %d sent, %d already sent, %d failed",
        artifact_key,
        revision,
        transport.channel,
        len(report.sent),
        len(report.skipped),
        len(report.failed),
    )
    if report.failed:
        raise DeliveryError(report)
    return report


def _deliver_one(
    conn: psycopg.Connection,
    transport: _Transport,
    recipient: Recipient,
    *,
    artifact_key: str,
    revision: int,
    kind: str,
    pdf_path: Path,
    data: bytes,
    sha256: str,
    subject: str,
    body: str,
    settings: Settings,
    retry: RetryPolicy,
    attachment_name: str,
    stale_after: timedelta,
) -> RecipientOutcome:
    key = ledger.DeliveryKey(artifact_key, revision, transport.channel, recipient.address)
    claim = ledger.claim(
        conn,
        key,
        kind=kind,
        artifact_path=str(pdf_path),
        sha256=sha256,
        size_bytes=len(data),
        message_id=make_message_id(artifact_key, revision, recipient.address, settings.smtp_sender),
        stale_after=stale_after,
    )
    message_id = claim.entry.message_id or ""
    if claim.outcome is ledger.ClaimOutcome.ALREADY_SENT:
        log.info("delivery %s: already sent, skipped", key)
        return RecipientOutcome(recipient.address, "skipped", message_id)
    if claim.outcome is ledger.ClaimOutcome.IN_PROGRESS:
        log.warning("delivery %s: another worker claimed it at %s, not sending", key, claim.entry.updated_at)
        return RecipientOutcome(
            recipient.address,
            "in_progress",
            message_id,
            error=f"claimed by another worker, last update {claim.entry.updated_at.isoformat()}",
        )
    if claim.resumed_stale:
        log.warning("delivery %s: resuming a stale 'sending' claim with the same Message-ID", key)

    message = build_message(
        subject=subject,
        body=body,
        sender=settings.smtp_sender,
        sender_name=settings.bureau_name,
        recipient=recipient,
        message_id=message_id,
        attachment=data,
        attachment_name=attachment_name,
    )
    error: str | None = None
    attempt = 0
    for attempt in range(1, retry.attempts + 1):
        if attempt > 1:
            ledger.record_retry(conn, key, error or "")
            time.sleep(retry.delay_before(attempt))
        try:
            transport.send(message, sender=settings.smtp_sender, recipient=recipient, folder_key=_folder(key))
        except (smtplib.SMTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            permanent = _is_permanent(exc)
            log.warning(
                "delivery %s: attempt %d/%d failed (%s)%s",
                key,
                attempt,
                retry.attempts,
                error,
                ", permanent, not retrying" if permanent else "",
            )
            if permanent:
                break
        else:
            ledger.mark_sent(conn, key)
            log.info("delivery %s: sent (attempt %d)", key, attempt)
            return RecipientOutcome(recipient.address, "sent", message_id, attempts=attempt)

    ledger.mark_failed(conn, key, error or "unknown error")
    log.error("delivery %s: failed after %d attempt(s)", key, attempt)
    return RecipientOutcome(recipient.address, "failed", message_id, attempts=attempt, error=error)


def _folder(key: ledger.DeliveryKey) -> str:
    return f"{key.artifact_key}/r{key.revision}"


def _is_permanent(exc: BaseException) -> bool:
    """5xx answers will not change on retry; connection trouble and 4xx answers may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False
