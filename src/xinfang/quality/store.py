"""ops.quality_results: the outcome of every check of the latest gate run of each period.

One row per (period, suite, check_no), check_no being the check's position in
its suite file (0 for a suite that could not start). A run replaces all rows of
its period in one transaction: the table always shows the latest verdict on a
month, re-running the gate adds no rows, and checks of suites that were since
removed do not linger. The run that wrote them is in run_id and checked_at;
older runs of a period live on only in the logs (the summary files keep the
first run's record while the verdict is unchanged, see report.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from xinfang.quality.period import Period

if TYPE_CHECKING:
    from xinfang.quality.gates import SuiteResult

DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.quality_results (
    period date NOT NULL,              -- first day of the month checked
    suite text NOT NULL,               -- suite name (expectations/*.json)
    check_no integer NOT NULL,         -- position of the check in its suite file; 0 = suite could not run
    run_id uuid NOT NULL,              -- the gate run that wrote the row
    layer text NOT NULL,               -- raw, ops, marts
    table_name text NOT NULL,          -- schema.table the suite checks
    check_kind text NOT NULL,          -- volume, distribution, referential_integrity, freshness, ...
    title text,                        -- what the check means, in Chinese, from the suite
    expectation text NOT NULL,         -- GX expectation type
    column_name text,
    scope text NOT NULL CHECK (scope IN ('period', 'table', 'query')),
    status text NOT NULL CHECK (status IN ('passed', 'failed', 'skipped')),
    success boolean,                   -- null when skipped
    element_count bigint,
    unexpected_count bigint,
    observed_value jsonb,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,  -- bounds, history, failing rows (codes only), note, error
    checked_at timestamptz NOT NULL,
    PRIMARY KEY (period, suite, check_no),
    CONSTRAINT quality_results_skipped_has_no_verdict CHECK ((status = 'skipped') = (success IS NULL))
);
"""

_COLUMNS = (
    "period",
    "suite",
    "check_no",
    "run_id",
    "layer",
    "table_name",
    "check_kind",
    "title",
    "expectation",
    "column_name",
    "scope",
    "status",
    "success",
    "element_count",
    "unexpected_count",
    "observed_value",
    "details",
    "checked_at",
)


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        # CREATE ... IF NOT EXISTS still races in PostgreSQL: serialise concurrent first runs.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.quality.ddl'))")
        conn.execute(DDL)


def save_results(
    conn: psycopg.Connection,
    *,
    run_id: uuid.UUID,
    period: Period,
    results: list[SuiteResult],
    checked_at: datetime,
) -> int:
    """Replace the period's rows with this run's; returns the number of rows written."""
    ensure_schema(conn)
    rows = []
    for suite in results:
        for check in sorted([*suite.checks, *suite.skipped], key=lambda c: c.number):
            rows.append(
                (
                    period.start,
                    suite.suite,
                    check.number,
                    run_id,
                    suite.layer,
                    suite.table,
                    check.check,
                    check.title,
                    check.expectation,
                    check.column,
                    check.scope,
                    check.status,
                    check.success,
                    check.element_count,
                    check.unexpected_count,
                    None if check.observed_value is None else Jsonb(check.observed_value),
                    Jsonb(json.loads(json.dumps(check.details, default=str))),
                    checked_at,
                )
            )
    with conn.transaction():
        # Two gate runs of one period must not interleave their delete and insert.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('xinfang.quality.results'), %s)",
            (period.start.toordinal(),),
        )
        conn.execute("DELETE FROM ops.quality_results WHERE period = %s", (period.start,))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO ops.quality_results ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed column list
                f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})",
                rows,
            )
    return len(rows)
