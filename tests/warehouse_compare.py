"""Fingerprints of a whole warehouse and of an output folder, to compare two runs of the pipeline.

A fingerprint is a digest per table (every row, in a stable order) and per
file, never a value: the restricted schema takes part like any other, and a
difference names only the table and column or the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
from psycopg import sql

from xinfang.extract.package import package_checksum

SCHEMAS = ("raw", "restricted", "ops", "intermediate", "marts", "snapshots", "risk", "reference")
# Load batches are numbered in the order they commit, and tasks that may run side by side
# (a DAG's parallel branches on two workers) commit in either order: a batch is compared by
# what it loaded (source and file or window name), not by its number.
BATCH_COLUMNS = ("batch_id", "first_batch_id", "source_batch_id", "loaded_through_batch_id")
BATCH_IDENTITY = "(SELECT b.source || ':' || b.file_name FROM ops.load_batches AS b WHERE b.batch_id = t.{})"


def volatile(data_type: str, column: str) -> bool:
    """Columns that say when a run happened, not what it produced.

    Every `timestamp with time zone` column is a moment of the run (loaded_at,
    started_at, an acknowledgement's deadline) except the watermarks, which hold
    the sources' own last change times; the sources' times are plain timestamps.
    dbt's snapshot bookkeeping records the time of the snapshot run.
    """
    run_stamp = data_type == "timestamp with time zone" and column != "watermark"
    return run_stamp or column in ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to")


def _expression(schema: str, table: str, column: str) -> sql.Composable | None:
    if (schema, table, column) == ("ops", "extract_acknowledgements", "manifest_sha256"):
        return None  # the digest of manifest.json, whose generated_at says when it was built
    if (schema, table) == ("ops", "load_batches"):
        if column == "batch_id":
            return None  # the row's source and file name identify it
        if column == "file_sha256":
            # A grid batch's digest includes its start time: each read of the live database is its own.
            return sql.SQL("CASE WHEN source = 'grid_events' THEN NULL ELSE file_sha256 END")
    if column in BATCH_COLUMNS:
        return sql.SQL(BATCH_IDENTITY).format(sql.Identifier(column))
    return sql.Identifier(column)


def _columns(conn: psycopg.Connection) -> dict[tuple[str, str], list[str]]:
    rows = conn.execute(
        """
        SELECT c.table_schema, c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE t.table_type = 'BASE TABLE' AND c.table_schema = ANY(%s)
        ORDER BY 1, 2, c.ordinal_position
        """,
        (list(SCHEMAS),),
    ).fetchall()
    tables: dict[tuple[str, str], list[str]] = {}
    for schema, table, column, data_type in rows:
        columns = tables.setdefault((schema, table), [])
        if not volatile(data_type, column):
            columns.append(column)
    return tables


def _digest(
    conn: psycopg.Connection, schema: str, table: str, columns: list[str], root: str
) -> tuple[int, str]:
    expressions = [e for e in (_expression(schema, table, c) for c in columns) if e is not None]
    # Paths name the run's own folder (the outputs' location): compared below it.
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '') "
        "FROM (SELECT replace(ROW({cols})::text, {root}, '') AS r FROM {table} AS t) AS rows"
    ).format(
        cols=sql.SQL(", ").join(expressions), root=sql.Literal(root), table=sql.Identifier(schema, table)
    )
    count, digest = conn.execute(query).fetchone()
    return count, digest


def warehouse_fingerprint(url: str, root: Path) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, digest of the rows without volatile columns)}; `root`: the run's folder."""
    with psycopg.connect(url) as conn:
        return {
            f"{schema}.{table}": _digest(conn, schema, table, columns, str(root))
            for (schema, table), columns in _columns(conn).items()
        }


def differing_columns(a: tuple[str, Path], b: tuple[str, Path], table: str) -> list[str]:
    """The columns of `table` whose values differ between two (warehouse URL, run folder) (for messages)."""
    schema, name = table.split(".", 1)
    with psycopg.connect(a[0]) as conn_a, psycopg.connect(b[0]) as conn_b:
        return [
            column
            for column in _columns(conn_a)[(schema, name)]
            if _digest(conn_a, schema, name, [column], str(a[1]))
            != _digest(conn_b, schema, name, [column], str(b[1]))
        ]


def _file_digest(path: Path) -> str:
    if path.name == "manifest.json":
        # An extract's manifest: every file's digest, and when it was generated (left out).
        return package_checksum(json.loads(path.read_text(encoding="utf-8")))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_fingerprint(root: Path) -> dict[str, str]:
    """{relative path: digest} of every file under `root`."""
    files = (path for path in sorted(root.rglob("*")) if path.is_file())
    return {str(path.relative_to(root)): _file_digest(path) for path in files}
