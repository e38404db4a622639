"""COPY text encoding round-trips awkward values through a real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

import psycopg

from xinfang.ingest.copy_text import copy_rows

AWKWARD = [
    (1, "tab\there", date(2025, 6, 1), datetime(2025, 6, 1, 9, 15, 41), True),
    (2, "line\nbreak\r\nand \\N literal", None, None, False),
    (3, "back\\slash \\t not a tab", date(2024, 2, 29), datetime(2024, 2, 29, 23, 59, 59), None),
    (4, "中文，全角：“引号” ☃", date(2023, 1, 1), datetime(2023, 1, 1, 0, 0), True),
    (5, "", None, None, None),
    (6, None, None, None, None),
]


def test_copy_rows_round_trips_escapes_nulls_dates_and_chinese(database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE copy_probe (id int, txt text, d date, ts timestamp, flag boolean)")
        with conn.cursor() as cur:
            assert copy_rows(cur, "copy_probe", ("id", "txt", "d", "ts", "flag"), AWKWARD) == len(AWKWARD)
        back = conn.execute("SELECT id, txt, d, ts, flag FROM copy_probe ORDER BY id").fetchall()
    assert back == AWKWARD
