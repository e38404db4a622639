"""Deliver extract packages to the province exactly once, and follow up their acknowledgements.

Protocol with the receiver (docs/province_extract_zh.md tells the province's side):

1. The package is uploaded into the inbox under a hidden staging name, every
   file verified by size and SHA-256 read back, then renamed to its final name
   (xinfang.extract.transfer): a package under its final name is always whole.
2. The receiver validates it and writes ``<package>.ack.json`` beside it:
   accepted, or rejected with its problems.
3. No acknowledgement by the deadline: the package is redelivered (uploaded
   again if it is gone from the inbox, otherwise verified in place) and the
   deadline moves on; after MAX_REDELIVERIES the task fails for an operator.
   A rejection fails the task at once: a corrected package goes out as a new
   revision, never by overwriting what the province may have loaded.

The delivery ledger (ops.delivery_ledger) makes each (package, revision,
channel) go out once; ops.extract_acknowledgements tracks step 2 and 3.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.rows import dict_row

from xinfang.delivery import ledger
from xinfang.extract.package import MANIFEST_NAME, ExtractError, Package, file_sha256, read_package
from xinfang.extract.transfer import Store, read_ack, upload_package
from xinfang.extract.validate import verify_checksums

log = logging.getLogger(__name__)

EXTRACT_KIND = "province_extract"
PROVINCE_RECIPIENT = "province"
DEFAULT_ACK_TIMEOUT = timedelta(hours=24)
MAX_REDELIVERIES = 3
# How long a 'sending' claim holds before another worker may take it over: well above the
# upload and read-back of a monthly package over a slow link (the ledger's default is for mail).
CLAIM_STALE_AFTER = timedelta(hours=2)

_DDL = """
CREATE TABLE IF NOT EXISTS ops.extract_acknowledgements (
    artifact_key        text        NOT NULL,
    revision            integer     NOT NULL,
    channel             text        NOT NULL,
    recipient           text        NOT NULL,
    remote_root         text        NOT NULL,
    remote_name         text        NOT NULL,
    manifest_sha256     text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('awaiting', 'accepted', 'rejected')),
    delivered_at        timestamptz NOT NULL,
    deadline            timestamptz NOT NULL,
    redeliveries        integer     NOT NULL DEFAULT 0,
    last_redelivered_at timestamptz,
    acknowledged_at     timestamptz,
    problems            jsonb,
    PRIMARY KEY (artifact_key, revision, channel, recipient),
    FOREIGN KEY (artifact_key, revision, channel, recipient)
        REFERENCES ops.delivery_ledger (artifact_key, revision, channel, recipient)
)
"""


_KEY_WHERE = "WHERE artifact_key = %s AND revision = %s AND channel = %s AND recipient = %s"


class AcknowledgementError(ExtractError):
    """The province rejected a package, or never acknowledged it despite redeliveries."""


@dataclass(frozen=True)
class Delivery:
    status: Literal["delivered", "skipped"]
    artifact_key: str
    revision: int
    channel: str
    remote_path: str
    content_sha256: str
    bytes_sent: int


@dataclass(frozen=True)
class AckOutcome:
    artifact_key: str
    revision: int
    status: Literal["accepted", "rejected", "awaiting", "redelivered"]
    detail: str = ""


def artifact_key(package: Package) -> str:
    return artifact_key_for(package.name)


def artifact_key_for(name: str) -> str:
    return ledger.validate_artifact_key(f"{EXTRACT_KIND}-{name}")


def remote_name_for(name: str, revision: int) -> str:
    """Folder name of a revision, local and at the receiver: <name>, then <name>_r2, _r3, ..."""
    return name if revision == 1 else f"{name}_r{revision}"


def ensure_tables(conn: psycopg.Connection) -> None:
    ledger.ensure_ledger(conn)
    with conn.transaction():
        # CREATE TABLE IF NOT EXISTS still races with itself in two sessions.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.extract_acknowledgements'))")
        conn.execute(_DDL)


def deliver(
    conn: psycopg.Connection,
    package_path: Path,
    store: Store,
    *,
    channel: str,
    remote_root: str,
    revision: int = 1,
    ack_timeout: timedelta = DEFAULT_ACK_TIMEOUT,
    stale_after: timedelta = CLAIM_STALE_AFTER,
) -> Delivery:
    """Upload a built, validated package once per (package, revision, channel).

    ``conn`` must not be inside a transaction: each ledger step commits, so a
    crash leaves a record the next attempt can resume from.
    """
    problems = verify_checksums(package_path)
    if problems:
        raise ExtractError(
            f"refusing to deliver {package_path}: " + "; ".join(f"{p.location} {p.message}" for p in problems)
        )
    package = read_package(package_path)
    key_name = artifact_key(package)
    name = remote_name_for(package.name, revision)
    if Path(package_path).name != name:
        # The folder says which revision it is: delivering it under another would mix them up.
        raise ExtractError(
            f"{package_path} is not revision {revision} of {package.name} (expected folder {name})"
        )
    key = ledger.DeliveryKey(key_name, revision, channel, PROVINCE_RECIPIENT)

    ledger.require_idle(conn)
    ensure_tables(conn)
    ledger.assert_same_artifact(conn, key_name, revision, package.content_sha256)
    claim = ledger.claim(
        conn,
        key,
        kind=EXTRACT_KIND,
        artifact_path=str(package.path),
        sha256=package.content_sha256,
        size_bytes=package.bytes,
        message_id=f"{remote_root}/{name}",
        stale_after=stale_after,
    )
    if claim.outcome is ledger.ClaimOutcome.ALREADY_SENT:
        log.info("delivery %s: already delivered, skipped", key)
        return Delivery(
            "skipped", key_name, revision, channel, f"{remote_root}/{name}", package.content_sha256, 0
        )
    if claim.outcome is ledger.ClaimOutcome.IN_PROGRESS:
        raise ledger.DeliveryInProgressError(
            f"delivery {key}: another worker claimed it at {claim.entry.updated_at.isoformat()}; retry later"
        )
    try:
        result = upload_package(store, package.path, remote_root, name, _expected(package))
    except Exception as exc:
        ledger.mark_failed(conn, key, f"{type(exc).__name__}: {exc}")
        log.error("delivery %s: failed (%s); the next attempt resumes the upload", key, exc)
        raise
    with conn.transaction():
        ledger.mark_sent(conn, key)
        conn.execute(
            """INSERT INTO ops.extract_acknowledgements
                   (artifact_key, revision, channel, recipient, remote_root, remote_name, manifest_sha256,
                    status, delivered_at, deadline)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'awaiting', now(), now() + %s)
               ON CONFLICT DO NOTHING""",
            (
                key_name,
                revision,
                channel,
                PROVINCE_RECIPIENT,
                remote_root,
                name,
                file_sha256(package.path / MANIFEST_NAME),
                ack_timeout,
            ),
        )
    log.info(
        "delivery %s: %s (%d bytes sent) -> %s", key, result.status, result.bytes_sent, result.remote_path
    )
    return Delivery(
        "delivered",
        key_name,
        revision,
        channel,
        result.remote_path,
        package.content_sha256,
        result.bytes_sent,
    )


def check_acknowledgements(
    conn: psycopg.Connection,
    store: Store,
    *,
    channel: str,
    now: datetime | None = None,
    ack_timeout: timedelta = DEFAULT_ACK_TIMEOUT,
    max_redeliveries: int = MAX_REDELIVERIES,
) -> list[AckOutcome]:
    """Record the acknowledgements that arrived; redeliver what is overdue.

    Raises AcknowledgementError after looking at every open delivery if any was
    rejected or is overdue past its last redelivery, so operators hear of it.
    """
    ledger.require_idle(conn)
    ensure_tables(conn)
    with conn.cursor(row_factory=dict_row) as cur:
        open_rows = cur.execute(
            """SELECT a.*, l.artifact_path, coalesce(%s, now()) > a.deadline AS overdue
               FROM ops.extract_acknowledgements AS a
               JOIN ops.delivery_ledger AS l USING (artifact_key, revision, channel, recipient)
               WHERE a.channel = %s AND a.status = 'awaiting'
               ORDER BY a.delivered_at""",
            (now, channel),
        ).fetchall()
        # A rejection stays open until a later revision of the package has gone out: reported
        # by every follow-up, so an Airflow retry or the next day does not make it pass.
        rejected = cur.execute(
            """SELECT a.remote_name, a.problems FROM ops.extract_acknowledgements AS a
               WHERE a.channel = %s AND a.status = 'rejected' AND NOT EXISTS (
                   SELECT FROM ops.delivery_ledger AS l
                   WHERE l.artifact_key = a.artifact_key AND l.channel = a.channel
                     AND l.recipient = a.recipient AND l.revision > a.revision AND l.status = 'sent')
               ORDER BY a.delivered_at""",
            (channel,),
        ).fetchall()
    conn.commit()
    outcomes: list[AckOutcome] = []
    failures: list[str] = []
    for row in open_rows:
        try:
            outcome = _follow_up(conn, store, row, now, ack_timeout, max_redeliveries)
        except Exception as exc:  # one bad package (malformed ack, lost link) must not hide the others
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            log.error("%s: follow-up failed: %s", row["remote_name"], exc)
            failures.append(f"{row['remote_name']}: follow-up failed ({type(exc).__name__}: {exc})")
            continue
        outcomes.append(outcome)
        if outcome.status == "rejected":
            failures.append(
                f"{row['remote_name']}: rejected by the province ({outcome.detail or 'no reason given'}); "
                "deliver a corrected revision (xinfang extract build ... --revision N --deliver)"
            )
        elif outcome.status == "awaiting" and outcome.detail:
            failures.append(f"{row['remote_name']}: {outcome.detail}")
    # Rejections recorded by earlier follow-ups and not yet corrected.
    for row in rejected:
        problems = "; ".join(row["problems"] or []) or "no reason given"
        failures.append(
            f"{row['remote_name']}: rejected by the province ({problems}); deliver a corrected revision "
            "(xinfang extract build ... --revision N --deliver)"
        )
    if failures:
        raise AcknowledgementError("province extract deliveries need attention:\n  " + "\n  ".join(failures))
    return outcomes


def _follow_up(
    conn: psycopg.Connection,
    store: Store,
    row: dict,
    now: datetime | None,
    ack_timeout: timedelta,
    max_redeliveries: int,
) -> AckOutcome:
    key = (row["artifact_key"], row["revision"], row["channel"], row["recipient"])
    ack = read_ack(store, row["remote_root"], row["remote_name"])
    if ack is not None:
        if ack.manifest_sha256 != row["manifest_sha256"]:
            # An acknowledgement of other content (an older upload, a hand-made file) proves nothing.
            detail = "acknowledgement names another manifest sha256; ignored"
            log.warning("%s: %s", row["remote_name"], detail)
        else:
            with conn.transaction():
                conn.execute(
                    "UPDATE ops.extract_acknowledgements SET status = %s, acknowledged_at = %s, "
                    "problems = %s " + _KEY_WHERE,
                    (ack.status, ack.checked_at, json.dumps(ack.problems, ensure_ascii=False), *key),
                )
            log.info("%s: acknowledged by the province as %s", row["remote_name"], ack.status)
            detail = "; ".join(ack.problems) if ack.status == "rejected" else ""
            return AckOutcome(row["artifact_key"], row["revision"], ack.status, detail)
    if not row["overdue"]:
        return AckOutcome(row["artifact_key"], row["revision"], "awaiting")
    if row["redeliveries"] >= max_redeliveries:
        return AckOutcome(
            row["artifact_key"],
            row["revision"],
            "awaiting",
            f"no acknowledgement after {row['redeliveries']} redeliveries; contact the provincial bureau",
        )
    package = read_package(Path(row["artifact_path"]))
    if package.content_sha256 != ledger.get_entry(conn, ledger.DeliveryKey(*key)).sha256:
        raise ExtractError(f"{package.path} changed since it was delivered; cannot redeliver it")
    conn.commit()
    result = upload_package(store, package.path, row["remote_root"], row["remote_name"], _expected(package))
    with conn.transaction():
        conn.execute(
            "UPDATE ops.extract_acknowledgements SET redeliveries = redeliveries + 1, "
            "last_redelivered_at = now(), deadline = coalesce(%s, now()) + %s " + _KEY_WHERE,
            (now, ack_timeout, *key),
        )
    log.warning(
        "%s: no acknowledgement by the deadline; redelivery %d (%s)",
        row["remote_name"],
        row["redeliveries"] + 1,
        "uploaded again" if result.status == "uploaded" else "still in the inbox, verified",
    )
    return AckOutcome(row["artifact_key"], row["revision"], "redelivered", result.status)


def _expected(package: Package) -> dict[str, tuple[int, str]]:
    """Files to upload with their size and sha256; the manifest last, so it arrives after the data."""
    files = {f.name: (f.bytes, f.sha256) for f in package.files}
    manifest = package.path / MANIFEST_NAME
    files[MANIFEST_NAME] = (manifest.stat().st_size, file_sha256(manifest))
    return files
