"""High-water marks of incremental sources, moved only inside the load's transaction.

A load reads the mark, fetches what changed since (minus an overlap, because
source clocks and commit order are not perfectly monotonic), upserts by
natural key, and advances the mark in the same transaction: a failed load
leaves the mark where it was, so the next run fetches the same changes again.
"""

from __future__ import annotations

from datetime import datetime

import psycopg


def get(conn: psycopg.Connection, source: str) -> datetime | None:
    row = conn.execute("SELECT watermark FROM ops.watermarks WHERE source = %s", (source,)).fetchone()
    return row[0] if row else None


def advance(conn: psycopg.Connection, source: str, watermark: datetime) -> None:
    """Move the mark forward (never back); call inside the load's transaction."""
    conn.execute(
        """
        INSERT INTO ops.watermarks (source, watermark) VALUES (%s, %s)
        ON CONFLICT (source) DO UPDATE
        SET watermark = greatest(ops.watermarks.watermark, excluded.watermark), updated_at = now()
        """,
        (source, watermark),
    )
