"""The delivery ledger: which artifact revision went to whom, through which channel.

One row per (artifact_key, revision, channel, recipient) in ``ops.delivery_ledger``.
The ledger is what makes distribution safe to re-run: a DAG retry, a manual re-run
or a backfill consults it and sends nothing that is already recorded as sent.

Protocol (exactly once as far as the channel allows)
----------------------------------------------------
1. ``claim`` commits the row as ``'sending'`` *before* anything leaves the building.
2. The sender sends (SMTP, outbox file, drop-folder rename).
3. ``mark_sent`` commits ``'sent'``; ``mark_failed`` commits ``'failed'`` with the error.

The only window for a duplicate is a crash between steps 2 and 3 (or an SMTP
connection lost after the server accepted the message but before it answered).
Such a row stays ``'sending'``. How it is handled:

* While its ``updated_at`` is younger than ``stale_after`` (default 15 minutes,
  far longer than any single send with its in-run retries), ``claim`` reports it
  as ``IN_PROGRESS``: another worker may be sending right now, so this caller
  must not send and should fail loudly (the orchestrator retries later).
* Once older than ``stale_after`` the row is *stale*: ``claim`` takes it over and
  the delivery is attempted again **with the same deterministic Message-ID**
  (``message_id`` is derived from artifact key, revision and recipient, never
  random). A receiving mail system, or the recipient's client, can therefore
  recognise the second copy as the same message; for the drop folder the
  retried rename targets the same name and is recognised by its checksum. We
  prefer "possibly twice, recognisably identical" over "possibly never".

A ``'failed'`` row is always retried on the next run; a ``'sent'`` row never is.

Content guard: every row of one (artifact_key, revision) must carry the same
sha256. A changed artifact under an already used revision raises
``ArtifactChangedError`` — the caller must publish it as a new revision instead
of silently sending different bytes under the same name.

Transactions: every function here runs in its own ``conn.transaction()``. On a
connection that is idle (or in autocommit mode) that is a real, committed
transaction, which the claim step needs; callers that want the guarantee must
not call these functions from inside an open transaction (``require_idle``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import pq
from psycopg.rows import dict_row

DEFAULT_STALE_AFTER = timedelta(minutes=15)

# Two workers creating the ledger at the same moment would otherwise race on the
# catalog (CREATE ... IF NOT EXISTS is not concurrency-safe in PostgreSQL).
_DDL_LOCK_KEY = 0x78666A_6C6467  # "xfj" "ldg"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Artifact keys become folder names (outbox) and appear in logs, so keep them tame.
_ARTIFACT_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    """
    CREATE TABLE IF NOT EXISTS ops.delivery_ledger (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        artifact_key  text        NOT NULL CHECK (artifact_key <> ''),
        revision      integer     NOT NULL CHECK (revision >= 1),
        kind          text        NOT NULL CHECK (kind <> ''),
        channel       text        NOT NULL CHECK (channel <> ''),
        recipient     text        NOT NULL CHECK (recipient <> ''),
        artifact_path text        NOT NULL,
        sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        bytes         bigint      NOT NULL CHECK (bytes >= 0),
        status        text        NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
        attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error    text,
        message_id    text,
        created_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now(),
        sent_at       timestamptz,
        CONSTRAINT delivery_ledger_delivery_key UNIQUE (artifact_key, revision, channel, recipient)
    )
    """,
    (
        "COMMENT ON TABLE ops.delivery_ledger IS 'One row per delivery of an artifact revision "
        "to a recipient over a channel; see xinfang.delivery.ledger'"
    ),
    # Monitoring asks "what is not delivered yet"; that set is tiny compared to the table.
    """
    CREATE INDEX IF NOT EXISTS delivery_ledger_open_idx
        ON ops.delivery_ledger (updated_at) WHERE status <> 'sent'
    """,
)

_COLUMNS = (
    "artifact_key, revision, kind, channel, recipient, artifact_path, sha256, bytes, status, "
    "attempts, last_error, message_id, created_at, updated_at, sent_at"
)

_KEY_WHERE = "artifact_key = %s AND revision = %s AND channel = %s AND recipient = %s"


class LedgerError(RuntimeError):
    """Base class of ledger errors."""


class ArtifactChangedError(LedgerError):
    """The artifact's bytes differ from those already recorded for the same revision."""


class DeliveryInProgressError(LedgerError):
    """Another worker holds a fresh 'sending' claim for the same delivery."""


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "claimed"
    ALREADY_SENT = "already_sent"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class DeliveryKey:
    artifact_key: str
    revision: int
    channel: str
    recipient: str

    def __post_init__(self) -> None:
        validate_artifact_key(self.artifact_key)
        if self.revision < 1:
            raise ValueError(f"revision must be >= 1, got {self.revision}")
        if not self.channel or not self.recipient:
            raise ValueError("channel and recipient must not be empty")

    def params(self) -> tuple[str, int, str, str]:
        return (self.artifact_key, self.revision, self.channel, self.recipient)

    def __str__(self) -> str:
        return f"{self.artifact_key} r{self.revision} via {self.channel} to {self.recipient}"


@dataclass(frozen=True)
class LedgerEntry:
    artifact_key: str
    revision: int
    kind: str
    channel: str
    recipient: str
    artifact_path: str
    sha256: str
    bytes: int
    status: str
    attempts: int
    last_error: str | None
    message_id: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.artifact_key, self.revision, self.channel, self.recipient)


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    entry: LedgerEntry
    # True when a stale 'sending' row was taken over: the earlier attempt may have
    # reached the recipient, so the caller must reuse entry.message_id.
    resumed_stale: bool = False


def validate_artifact_key(artifact_key: str) -> str:
    if not _ARTIFACT_KEY_RE.fullmatch(artifact_key):
        raise ValueError(
            f"invalid artifact key {artifact_key!r}: use letters, digits, '.', '_' and '-' "
            "(at most 200 characters, starting with a letter or digit)"
        )
    return artifact_key


def require_idle(conn: psycopg.Connection) -> None:
    """Refuse a connection inside an open transaction: ledger claims must really commit."""
    if conn.autocommit:
        return
    status = conn.info.transaction_status
    if status != pq.TransactionStatus.IDLE:
        raise LedgerError(
            f"the connection is inside a transaction (status {status.name}); delivery commits each "
            "ledger step on its own, so commit or roll back first, or pass an autocommit connection"
        )


def ensure_ledger(conn: psycopg.Connection) -> None:
    """Create schema ``ops`` and table ``ops.delivery_ledger`` if missing (idempotent)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for statement in _DDL:
            conn.execute(statement)


def _entry(row: dict | None) -> LedgerEntry | None:
    return LedgerEntry(**row) if row is not None else None


def get_entry(conn: psycopg.Connection, key: DeliveryKey) -> LedgerEntry | None:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM ops.delivery_ledger WHERE {_KEY_WHERE}", key.params())
        return _entry(cur.fetchone())


def is_delivered(conn: psycopg.Connection, key: DeliveryKey) -> bool:
    entry = get_entry(conn, key)
    return entry is not None and entry.status == "sent"


def entries_for(
    conn: psycopg.Connection, artifact_key: str, revision: int | None = None
) -> list[LedgerEntry]:
    """All rows of an artifact (optionally one revision), in a stable order."""
    query = f"SELECT {_COLUMNS} FROM ops.delivery_ledger WHERE artifact_key = %s"
    params: list[object] = [artifact_key]
    if revision is not None:
        query += " AND revision = %s"
        params.append(revision)
    query += " ORDER BY revision, channel, recipient"
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return [LedgerEntry(**row) for row in cur.fetchall()]


def assert_same_artifact(conn: psycopg.Connection, artifact_key: str, revision: int, sha256: str) -> None:
    """Raise ArtifactChangedError if this revision was recorded with other content."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT DISTINCT sha256 FROM ops.delivery_ledger WHERE artifact_key = %s AND revision = %s",
            (artifact_key, revision),
        ).fetchall()
    recorded = {r[0] for r in rows} - {sha256}
    if recorded:
        raise ArtifactChangedError(
            f"{artifact_key} revision {revision} was already recorded with sha256 "
            f"{', '.join(sorted(recorded))} "
            f"but the artifact now has sha256 {sha256}; publish the changed artifact as revision "
            f"{revision + 1} instead of re-sending it under revision {revision}"
        )


def claim(
    conn: psycopg.Connection,
    key: DeliveryKey,
    *,
    kind: str,
    artifact_path: str,
    sha256: str,
    size_bytes: int,
    message_id: str | None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> Claim:
    """Commit a 'sending' claim for one delivery, or say why it must not be sent.

    Returns ALREADY_SENT for a 'sent' row, IN_PROGRESS for a fresh 'sending' row
    and CLAIMED otherwise (new row, 'failed' row, or stale 'sending' row — the
    latter flagged ``resumed_stale``). Every CLAIMED outcome counts one attempt.
    """
    if not _SHA256_RE.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            INSERT INTO ops.delivery_ledger
                (artifact_key, revision, channel, recipient, kind, artifact_path, sha256, bytes,
                 status, attempts, message_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'sending', 1, %s)
            ON CONFLICT ON CONSTRAINT delivery_ledger_delivery_key DO NOTHING
            RETURNING {_COLUMNS}
            """,
            (*key.params(), kind, artifact_path, sha256, size_bytes, message_id),
        )
        inserted = cur.fetchone()
        if inserted is not None:
            return Claim(ClaimOutcome.CLAIMED, LedgerEntry(**inserted))

        # Row lock: two workers deciding about the same row serialise here.
        cur.execute(
            f"SELECT {_COLUMNS}, updated_at < now() - %s AS is_stale "
            f"FROM ops.delivery_ledger WHERE {_KEY_WHERE} FOR UPDATE",
            (stale_after, *key.params()),
        )
        row = cur.fetchone()
        if row is None:  # deleted between our INSERT and SELECT; nothing sane to decide
            raise LedgerError(f"{key}: ledger row vanished while claiming; retry the delivery")
        is_stale = row.pop("is_stale")
        existing = LedgerEntry(**row)
        if existing.sha256 != sha256:
            raise ArtifactChangedError(
                f"{key}: recorded with sha256 {existing.sha256} (status {existing.status}) but the "
                f"artifact now has sha256 {sha256}; publish it as revision {key.revision + 1}"
            )
        if existing.status == "sent":
            return Claim(ClaimOutcome.ALREADY_SENT, existing)
        if existing.status == "sending" and not is_stale:
            return Claim(ClaimOutcome.IN_PROGRESS, existing)

        # The stored Message-ID wins: a resumed delivery must look identical to the first try.
        cur.execute(
            f"""
            UPDATE ops.delivery_ledger
               SET status = 'sending', attempts = attempts + 1, artifact_path = %s,
                   message_id = COALESCE(message_id, %s), updated_at = now()
             WHERE {_KEY_WHERE}
            RETURNING {_COLUMNS}
            """,
            (artifact_path, message_id, *key.params()),
        )
        return Claim(
            ClaimOutcome.CLAIMED,
            LedgerEntry(**cur.fetchone()),
            resumed_stale=existing.status == "sending",
        )


def record_retry(conn: psycopg.Connection, key: DeliveryKey, error: str) -> None:
    """Count one more attempt within the current claim; also refreshes the claim's lease."""
    with conn.transaction():
        conn.execute(
            f"UPDATE ops.delivery_ledger SET attempts = attempts + 1, last_error = %s, updated_at = now() "
            f"WHERE {_KEY_WHERE} AND status = 'sending'",
            (_clip(error), *key.params()),
        )


def mark_sent(conn: psycopg.Connection, key: DeliveryKey) -> LedgerEntry:
    """Record a successful delivery.

    Not conditional on 'sending': if a slow send lost its lease to another
    worker, the message still went out and 'sent' is the truth.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE ops.delivery_ledger SET status = 'sent', sent_at = now(), updated_at = now() "
            f"WHERE {_KEY_WHERE} RETURNING {_COLUMNS}",
            key.params(),
        )
        row = cur.fetchone()
    if row is None:
        raise LedgerError(f"{key}: no ledger row to mark as sent (was it claimed?)")
    return LedgerEntry(**row)


def mark_failed(conn: psycopg.Connection, key: DeliveryKey, error: str) -> LedgerEntry | None:
    """Record a failed delivery; never downgrades a row another worker marked 'sent'."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE ops.delivery_ledger SET status = 'failed', last_error = %s, updated_at = now() "
            f"WHERE {_KEY_WHERE} AND status <> 'sent' RETURNING {_COLUMNS}",
            (_clip(error), *key.params()),
        )
        return _entry(cur.fetchone())


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reopen(
    conn: psycopg.Connection, key: DeliveryKey, reason: str, *, stale_after: timedelta = DEFAULT_STALE_AFTER
) -> LedgerEntry | None:
    """Mark a delivery to be made again (an operator's manual re-send of a lost mail).

    The row keeps its history (its attempts go on counting; ``sent_at`` is
    replaced when the new send succeeds) and becomes 'failed' with ``reason``,
    so the next delivery run claims and sends it. Returns None when there is no
    such row (nothing was recorded; the next run sends it anyway). Raises
    DeliveryInProgressError over a fresh 'sending' claim: another worker may be
    sending right now, and reopening would let a second copy go out.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT status, updated_at < now() - %s AS is_stale FROM ops.delivery_ledger "
            f"WHERE {_KEY_WHERE} FOR UPDATE",
            (stale_after, *key.params()),
        )
        row = cur.fetchone()
        if row is None:
            return None
        if row["status"] == "sending" and not row["is_stale"]:
            raise DeliveryInProgressError(f"{key}: being sent by another worker; re-send it later")
        cur.execute(
            f"UPDATE ops.delivery_ledger SET status = 'failed', last_error = %s, updated_at = now() "
            f"WHERE {_KEY_WHERE} RETURNING {_COLUMNS}",
            (_clip(reason), *key.params()),
        )
        return _entry(cur.fetchone())
