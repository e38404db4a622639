"""Load-batch bookkeeping shared by every source: checksums, quarantine, reconciliation.

A batch is one file (later: one API page set or one database extract). It is
loaded in a single transaction together with its quarantined rows and its
ledger row, so a failure leaves nothing behind and a retry starts clean.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources

import psycopg

from xinfang import pii

log = logging.getLogger(__name__)


class UnusableFileError(Exception):
    """The file as a whole cannot be loaded (unreadable, wrong header...)."""

    def __init__(self, file_name: str, problem: str):
        super().__init__(f"{file_name}: {problem}")
        self.file_name = file_name
        self.problem = problem


class ReconciliationError(Exception):
    pass


class RowError(Exception):
    """One record cannot be taken: the field at fault and a reason free of personal data."""

    def __init__(self, field: str, reason: str):
        # Reasons often quote the offending value. A value in the wrong field can be
        # personal data (a phone or ID number where a code belongs), and reasons go to
        # ops.quarantine and the logs: phone- and ID-shaped digit runs are masked here,
        # once for every loader.
        reason = pii.scrub_text(reason)
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Rejection:
    row_number: int  # 1 = first data row after the header
    field: str
    reason: str
    record: dict[str, str]


@dataclass
class BatchResult:
    source: str
    file_name: str
    skipped: bool
    batch_id: int | None = None
    source_rows: int = 0
    loaded_rows: int = 0
    quarantined_rows: int = 0
    notes: list[str] = field(default_factory=list)


def ensure_schema(conn: psycopg.Connection) -> None:
    ddl = resources.files("xinfang.ingest").joinpath("ddl.sql").read_text(encoding="utf-8")
    with conn.transaction():
        # Serialise concurrent first runs: CREATE ... IF NOT EXISTS still races in PostgreSQL.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.ingest.ddl'))")
        conn.execute(ddl)


def already_loaded(conn: psycopg.Connection, source: str, sha256: str) -> int | None:
    row = conn.execute(
        "SELECT batch_id FROM ops.load_batches WHERE source = %s AND file_sha256 = %s AND status = 'loaded'",
        (source, sha256),
    ).fetchone()
    return row[0] if row else None


def open_batch(
    conn: psycopg.Connection,
    *,
    source: str,
    file_name: str,
    sha256: str,
    file_date: date | None,
    source_rows: int,
    loaded_rows: int,
    rejections: list[Rejection],
    notes: list[str],
    started_at: datetime,
) -> int:
    """Insert the ledger row of a batch and its quarantine; call inside the load transaction."""
    if source_rows != loaded_rows + len(rejections):
        raise ReconciliationError(
            f"{file_name}: {source_rows} source rows != {loaded_rows} loaded + {len(rejections)} quarantined"
        )
    batch_id = conn.execute(
        """
        INSERT INTO ops.load_batches (source, file_name, file_sha256, file_date, status, source_rows,
                                      loaded_rows, quarantined_rows, notes, started_at)
        VALUES (%s, %s, %s, %s, 'loaded', %s, %s, %s, %s, %s)
        RETURNING batch_id
        """,
        (
            source,
            file_name,
            sha256,
            file_date,
            source_rows,
            loaded_rows,
            len(rejections),
            "; ".join(notes) or None,
            started_at,
        ),
    ).fetchone()[0]
    _write_quarantine(conn, batch_id, source, file_name, rejections)
    return batch_id


def begin_batch(
    conn: psycopg.Connection,
    *,
    source: str,
    file_name: str,
    sha256: str,
    file_date: date | None,
    notes: list[str],
    started_at: datetime,
) -> int:
    """Insert the ledger row of a batch whose counts are not known yet; call inside the load transaction.

    For loaders that stream rows as they read them: the rows' foreign key needs
    the batch row before the first COPY ends. The counts start at zero, which
    the reconciliation constraint accepts, and `finish_batch` sets them before
    the transaction commits, so no other session ever sees the zeros.
    """
    return conn.execute(
        """
        INSERT INTO ops.load_batches (source, file_name, file_sha256, file_date, status, source_rows,
                                      loaded_rows, quarantined_rows, notes, started_at)
        VALUES (%s, %s, %s, %s, 'loaded', 0, 0, 0, %s, %s)
        RETURNING batch_id
        """,
        (source, file_name, sha256, file_date, "; ".join(notes) or None, started_at),
    ).fetchone()[0]


def finish_batch(
    conn: psycopg.Connection,
    batch_id: int,
    *,
    source: str,
    file_name: str,
    source_rows: int,
    loaded_rows: int,
    rejections: list[Rejection],
) -> None:
    """Write the quarantine and the counts of a batch opened by `begin_batch`, in the same transaction."""
    if source_rows != loaded_rows + len(rejections):
        raise ReconciliationError(
            f"{file_name}: {source_rows} source rows != {loaded_rows} loaded + {len(rejections)} quarantined"
        )
    _write_quarantine(conn, batch_id, source, file_name, rejections)
    conn.execute(
        "UPDATE ops.load_batches SET source_rows = %s, loaded_rows = %s, quarantined_rows = %s "
        "WHERE batch_id = %s",
        (source_rows, loaded_rows, len(rejections), batch_id),
    )


def _write_quarantine(
    conn: psycopg.Connection, batch_id: int, source: str, file_name: str, rejections: list[Rejection]
) -> None:
    with conn.cursor() as cur:
        with cur.copy(
            "COPY ops.quarantine (batch_id, row_number, source, file_name, field, reason) FROM STDIN"
        ) as cp:
            for r in rejections:
                cp.write_row((batch_id, r.row_number, source, file_name, r.field, r.reason))
        with cur.copy("COPY restricted.quarantine_records (batch_id, row_number, record) FROM STDIN") as cp:
            for r in rejections:
                cp.write_row((batch_id, r.row_number, json.dumps(r.record, ensure_ascii=False)))
    for r in rejections:
        # File, row, field and reason only: the record itself may hold personal data.
        log.warning("quarantined %s row %d field %s: %s", file_name, r.row_number, r.field, r.reason)


def record_failed_batch(
    conn: psycopg.Connection,
    *,
    source: str,
    file_name: str,
    sha256: str,
    file_date: date | None,
    problem: str,
    started_at: datetime,
) -> None:
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO ops.load_batches
                (source, file_name, file_sha256, file_date, status, notes, started_at)
            VALUES (%s, %s, %s, %s, 'failed', %s, %s)
            """,
            (source, file_name, sha256, file_date, problem, started_at),
        )


def verify_reconciliation(conn: psycopg.Connection, batch_id: int, table: str) -> None:
    """Re-count what landed for the batch: the ledger must match the tables."""
    loaded = conn.execute(f"SELECT count(*) FROM {table} WHERE batch_id = %s", (batch_id,)).fetchone()[0]
    quarantined = conn.execute(
        "SELECT count(*) FROM ops.quarantine WHERE batch_id = %s", (batch_id,)
    ).fetchone()[0]
    source_rows, ledger_loaded, ledger_quarantined = conn.execute(
        "SELECT source_rows, loaded_rows, quarantined_rows FROM ops.load_batches WHERE batch_id = %s",
        (batch_id,),
    ).fetchone()
    if (loaded, quarantined) != (ledger_loaded, ledger_quarantined) or source_rows != loaded + quarantined:
        raise ReconciliationError(
            f"batch {batch_id}: source {source_rows} != loaded {loaded} + quarantined {quarantined} "
            f"(ledger says {ledger_loaded} + {ledger_quarantined})"
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
