"""Rows to PostgreSQL's COPY text format, written in large chunks.

psycopg's `Copy.write_row` adapts value by value; the loaders' values are
already plain str/int/date/datetime/None, so encoding them here and writing
megabyte chunks is several times cheaper per row (see bench/ingest_bench.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

import psycopg

# COPY text format: backslash escapes for the delimiter, line breaks and the backslash itself.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_CHUNK = 1 << 20


def encode_value(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def copy_rows(
    cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> int:
    """COPY `rows` into `table` (a trusted, constant identifier); returns the number of rows."""
    count = 0
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        buffer: list[str] = []
        size = 0
        for row in rows:
            line = "\t".join(map(encode_value, row)) + "\n"
            buffer.append(line)
            size += len(line)
            count += 1
            if size >= _CHUNK:
                cp.write("".join(buffer).encode())
                buffer, size = [], 0
        if buffer:
            cp.write("".join(buffer).encode())
    return count
