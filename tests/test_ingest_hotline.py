"""Loading hotline exports into the real database: validation, quarantine, idempotence, personal data."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import random
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from factories import csv_line, data_row_count, next_day, row, unique_name, unique_phone, write_export
from psycopg import sql

from xinfang import pii
from xinfang.db import connect
from xinfang.ingest import batches, hotline, hotline_copy
from xinfang.ingest.batches import UnusableFileError
from xinfang.ingest.hotline import load_day, load_file
from xinfang.ingest.reference import reference_data
from xinfang.sim.hotline import HEADERS, SimConfig
from xinfang.sim.hotline import write_export as sim_write_export

PII_KEY = b"test-pii-key-not-for-production"


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as c:
        batches.ensure_schema(c)
        yield c


@pytest.fixture()
def landing(workdirs: dict[str, Path]) -> Path:
    path = workdirs["data"] / "landing" / "hotline"
    path.mkdir(parents=True)
    return path


def batch_row(conn: psycopg.Connection, batch_id: int) -> dict:
    cur = conn.execute(
        "SELECT status, file_name, source_rows, loaded_rows, quarantined_rows, notes "
        "FROM ops.load_batches WHERE batch_id = %s",
        (batch_id,),
    )
    values = cur.fetchone()
    return dict(zip([d.name for d in cur.description], values, strict=True))


def loaded_numbers(conn: psycopg.Connection, batch_id: int) -> dict[int, str]:
    rows = conn.execute(
        "SELECT source_row, work_order_no FROM raw.hotline_work_orders WHERE batch_id = %s", (batch_id,)
    ).fetchall()
    return dict(rows)


def quarantined(conn: psycopg.Connection, batch_id: int) -> dict[int, tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT row_number, field, reason, file_name FROM ops.quarantine WHERE batch_id = %s", (batch_id,)
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_good_rows_load_and_the_batch_reconciles(conn: psycopg.Connection, landing: Path) -> None:
    rows = [
        row(),
        row(诉求类型="咨询", 办理状态="办理中", 办结时间="", 回访结果=""),
        row(问题分类="欠薪讨薪"),
    ]
    path = write_export(landing, rows)

    result = load_file(conn, path, pii_key=PII_KEY)

    assert not result.skipped
    assert data_row_count(path) == 3
    assert loaded_numbers(conn, result.batch_id) == {i + 1: r["工单编号"] for i, r in enumerate(rows)}
    assert quarantined(conn, result.batch_id) == {}
    ledger = batch_row(conn, result.batch_id)
    assert ledger["status"] == "loaded"
    assert ledger["file_name"] == path.name
    assert (ledger["source_rows"], ledger["loaded_rows"], ledger["quarantined_rows"]) == (3, 3, 0)
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 3, 0)

    open_row = conn.execute(
        "SELECT status, closed_at, callback_result, received_at, file_date FROM raw.hotline_work_orders "
        "WHERE batch_id = %s AND source_row = 2",
        (result.batch_id,),
    ).fetchone()
    assert open_row[0] == "办理中"
    assert open_row[1] is None and open_row[2] is None
    assert f"{open_row[3]:%Y-%m-%d %H:%M:%S}" == "2025-06-01 09:15:00"
    assert f"{open_row[4]:%Y%m%d}" in path.name


def _bytes_row(values: dict[str, str], header: str, raw: bytes) -> bytes:
    """A CSV line whose `header` field carries bytes that are not GB18030."""
    marker = "@@RAW@@"
    line = csv_line([values[h] + (marker if h == header else "") for h in HEADERS])
    return line.replace(marker.encode(), raw)


# (case, bad row builder, field the quarantine must name)
BAD_ROWS = {
    "undecodable_bytes": (lambda: _bytes_row(row(), "诉求内容", b"\xff\xfe"), "诉求内容"),
    "missing_work_order_number": (lambda: row(工单编号=""), "工单编号"),
    "impossible_date": (lambda: row(受理时间="2025-02-30 10:00:00"), "受理时间"),
    "unreadable_date": (lambda: row(受理时间="2025/13/45 25:61"), "受理时间"),
    "unknown_matter_type": (lambda: row(诉求类型="其它类"), "诉求类型"),
    "unknown_category_name": (lambda: row(问题分类="不存在的分类"), "问题分类"),
    "category_code_instead_of_name": (lambda: row(问题分类="60201501"), "问题分类"),
    "unknown_district": (lambda: row(所属区县="东城区"), "所属区县"),
    "town_not_in_district": (lambda: row(所属区县="江东区", 所属街镇="西门街道"), "所属街镇"),
    "closed_before_received": (lambda: row(办结时间="2025-05-31 23:59:59"), "办结时间"),
    "closed_without_closing_time": (lambda: row(办结时间=""), "办结时间"),
    "unknown_status": (lambda: row(办理状态="已撤销"), "办理状态"),
    "malformed_phone": (lambda: row(来电号码="166123"), "来电号码"),
    "nul_character": (lambda: row(诉求内容="电梯故障\x00无人维修"), "诉求内容"),
    "timestamp_with_offset": (lambda: row(受理时间="2025-06-01 09:15+08"), "受理时间"),
    "timestamp_with_long_offset": (lambda: row(受理时间="2025-06-01 09:15:41+08:00"), "受理时间"),
    "extra_field": (lambda: [*row().values(), "多余字段"], "*"),
    "missing_field": (lambda: list(row().values())[:-1], "*"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_quarantined_and_good_rows_still_load(
    conn: psycopg.Connection, landing: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    build, field = BAD_ROWS[case]
    good_before, good_after = row(), row()
    path = write_export(landing, [good_before, build(), good_after])
    assert data_row_count(path) == 3

    with caplog.at_level(logging.INFO):
        result = load_file(conn, path, pii_key=PII_KEY)

    assert loaded_numbers(conn, result.batch_id) == {1: good_before["工单编号"], 3: good_after["工单编号"]}
    q = quarantined(conn, result.batch_id)
    assert set(q) == {2}
    q_field, reason, file_name = q[2]
    assert q_field == field
    assert reason.strip()
    assert file_name == path.name
    ledger = batch_row(conn, result.batch_id)
    assert (ledger["source_rows"], ledger["loaded_rows"], ledger["quarantined_rows"]) == (3, 2, 1)
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 2, 1)
    kept = conn.execute(
        "SELECT row_number FROM restricted.quarantine_records WHERE batch_id = %s", (result.batch_id,)
    ).fetchall()
    assert kept == [(2,)]

    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(path.name in m and "row 2" in m and field in m for m in lines), lines


def test_undecodable_bytes_are_kept_visible_in_the_quarantined_record(
    conn: psycopg.Connection, landing: Path
) -> None:
    bad = row()
    too_long = _bytes_row(row(), "承办单位", b"\x81")[:-2] + b",extra\r\n"
    path = write_export(landing, [_bytes_row(bad, "诉求内容", b"\xff\xfe"), too_long, row()])

    result = load_file(conn, path, pii_key=PII_KEY)

    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 1, 2)
    assert {n: f for n, (f, _, _) in quarantined(conn, result.batch_id).items()} == {1: "诉求内容", 2: "*"}
    records = dict(
        conn.execute(
            "SELECT row_number, record FROM restricted.quarantine_records WHERE batch_id = %s",
            (result.batch_id,),
        ).fetchall()
    )
    assert records[1]["工单编号"] == bad["工单编号"]
    assert records[1]["诉求内容"] == bad["诉求内容"] + "\\xff\\xfe"
    assert "\\x81" in records[2]["承办单位"]


def test_many_bad_rows_keep_their_own_row_numbers(conn: psycopg.Connection, landing: Path) -> None:
    cases = sorted(BAD_ROWS)
    content: list = []
    expected_bad: dict[int, str] = {}
    expected_good: dict[int, str] = {}
    for case in cases:
        good = row()
        content.append(good)
        expected_good[len(content)] = good["工单编号"]
        build, field = BAD_ROWS[case]
        content.append(build())
        expected_bad[len(content)] = field
    path = write_export(landing, content)
    total = data_row_count(path)
    assert total == len(expected_bad) + len(expected_good)

    result = load_file(conn, path, pii_key=PII_KEY)

    assert loaded_numbers(conn, result.batch_id) == expected_good
    assert {n: f for n, (f, _, _) in quarantined(conn, result.batch_id).items()} == expected_bad
    ledger = batch_row(conn, result.batch_id)
    assert ledger["source_rows"] == total
    assert ledger["loaded_rows"] == len(expected_good)
    assert ledger["quarantined_rows"] == len(expected_bad)


@pytest.mark.parametrize("missing", ["来电号码", "工单编号", "回访结果"])
def test_file_lacking_a_required_column_fails_and_is_recorded(
    conn: psycopg.Connection, landing: Path, missing: str
) -> None:
    headers = [h for h in HEADERS if h != missing]
    path = write_export(landing, [row(), row()], headers=headers)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(UnusableFileError) as excinfo:
        load_file(conn, path, pii_key=PII_KEY)

    assert path.name in str(excinfo.value)
    assert missing in str(excinfo.value)
    recorded = conn.execute(
        "SELECT status, file_name, notes FROM ops.load_batches WHERE source = 'hotline' AND file_sha256 = %s",
        (sha,),
    ).fetchall()
    assert len(recorded) == 1
    status, file_name, notes = recorded[0]
    assert (status, file_name) == ("failed", path.name)
    assert missing in notes
    landed = conn.execute(
        "SELECT count(*) FROM raw.hotline_work_orders w JOIN ops.load_batches b USING (batch_id) "
        "WHERE b.file_sha256 = %s",
        (sha,),
    ).fetchone()[0]
    assert landed == 0


def test_failed_file_can_be_loaded_once_repaired(conn: psycopg.Connection, landing: Path) -> None:
    day = date(2030, 12, 31)
    rows = [row(), row()]
    path = write_export(landing, rows, headers=[h for h in HEADERS if h != "办结时间"], day=day)
    with pytest.raises(UnusableFileError):
        load_file(conn, path, pii_key=PII_KEY)
    path = write_export(landing, rows, day=day)  # the vendor resends the day's file

    result = load_file(conn, path, pii_key=PII_KEY)

    assert not result.skipped
    assert result.loaded_rows == 2
    assert loaded_numbers(conn, result.batch_id) == {1: rows[0]["工单编号"], 2: rows[1]["工单编号"]}


def test_extra_unknown_column_loads_with_a_note(conn: psycopg.Connection, landing: Path) -> None:
    headers = [*HEADERS[:5], "坐席工号", *HEADERS[5:]]
    rows = [{**row(), "坐席工号": "A1024"}, {**row(), "坐席工号": "B2048"}]
    path = write_export(landing, rows, headers=headers)

    result = load_file(conn, path, pii_key=PII_KEY)

    assert loaded_numbers(conn, result.batch_id) == {1: rows[0]["工单编号"], 2: rows[1]["工单编号"]}
    assert any("坐席工号" in n for n in result.notes)
    ledger = batch_row(conn, result.batch_id)
    assert "坐席工号" in ledger["notes"]
    assert (ledger["source_rows"], ledger["loaded_rows"], ledger["quarantined_rows"]) == (2, 2, 0)


def test_loading_the_same_file_twice_is_a_no_op(conn: psycopg.Connection, landing: Path) -> None:
    day = date(2030, 12, 30)
    path = write_export(landing, [row(), row(诉求类型="其它类"), row()], day=day)

    def footprint() -> tuple[int, ...]:
        counts = []
        for table in (
            "raw.hotline_work_orders",
            "restricted.hotline_callers",
            "ops.quarantine",
            "restricted.quarantine_records",
        ):
            counts.append(
                conn.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {} t JOIN ops.load_batches b USING (batch_id) "
                        "WHERE b.file_name = %s"
                    ).format(sql.SQL(table)),
                    (path.name,),
                ).fetchone()[0]
            )
        counts.append(
            conn.execute(
                "SELECT count(*) FROM ops.load_batches WHERE file_name = %s", (path.name,)
            ).fetchone()[0]
        )
        return tuple(counts)

    first = load_day(conn, landing, day, pii_key=PII_KEY)
    after_first = footprint()
    second = load_day(conn, landing, day, pii_key=PII_KEY)
    third = load_file(conn, path, pii_key=PII_KEY)

    assert not first.skipped
    assert after_first == (2, 2, 1, 1, 1)
    assert second.skipped and third.skipped
    assert second.batch_id == first.batch_id == third.batch_id
    assert (second.loaded_rows, second.quarantined_rows) == (0, 0)
    assert footprint() == after_first


def test_missing_export_of_a_day_fails_loudly(conn: psycopg.Connection, landing: Path) -> None:
    with pytest.raises(FileNotFoundError, match="2030-12-29"):
        load_day(conn, landing, date(2030, 12, 29), pii_key=PII_KEY)


def test_simulated_export_reconciles_with_its_own_row_count(conn: psycopg.Connection, landing: Path) -> None:
    cfg = SimConfig(seed=977, orders_per_day=40, bad_row_rate=0.15)
    path = sim_write_export(date(2030, 12, 28), landing, cfg)
    rows = data_row_count(path)

    result = load_day(conn, landing, date(2030, 12, 28), pii_key=PII_KEY)

    ledger = batch_row(conn, result.batch_id)
    loaded = len(loaded_numbers(conn, result.batch_id))
    bad = len(quarantined(conn, result.batch_id))
    assert ledger["source_rows"] == rows == loaded + bad
    assert (ledger["loaded_rows"], ledger["quarantined_rows"]) == (loaded, bad)
    assert bad > 0 and loaded > 0


# --- personal data ---------------------------------------------------------------------------------

TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "ARRAY", "USER-DEFINED", "xml")


def find_outside_restricted(conn: psycopg.Connection, needles: list[str]) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, needle) of every hit of a needle outside the restricted schema."""
    columns = conn.execute(
        """
        SELECT c.table_schema, c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
        WHERE c.table_schema NOT IN ('restricted', 'pg_catalog', 'information_schema')
          AND c.table_schema NOT LIKE 'pg\\_%%'
          AND c.data_type = ANY(%s)
        ORDER BY 1, 2, 3
        """,
        (list(TEXT_TYPES),),
    ).fetchall()
    assert any(c[:2] == ("raw", "hotline_work_orders") for c in columns)
    assert any(c[:2] == ("ops", "quarantine") for c in columns)
    hits = []
    for schema, table, column in columns:
        query = sql.SQL(
            "SELECT DISTINCT n FROM {} t, unnest(%s::text[]) n WHERE strpos(t.{}::text, n) > 0"
        ).format(sql.Identifier(schema, table), sql.Identifier(column))
        for (needle,) in conn.execute(query, (needles,)).fetchall():
            hits.append((schema, table, column, needle))
    return hits


def test_personal_data_lands_only_in_restricted(
    conn: psycopg.Connection, landing: Path, caplog: pytest.LogCaptureFixture
) -> None:
    id_number = "369901198503171236"
    own_phone = unique_phone()
    good = [
        row(来电人姓名=unique_name(3)),
        row(
            来电人姓名=unique_name(2),
            来电号码=f"+86 {own_phone[:3]}-{own_phone[3:7]}-{own_phone[7:]}",
            诉求内容=f"我的手机{own_phone}，身份证{id_number}，物业拒不维修电梯。",
        ),
        row(来电人姓名=unique_name(4), 所属区县="临河县", 所属街镇="马渡镇", 问题分类="惠农补贴"),
    ]
    bad_phone = "1661234567890123"
    bad = [
        row(来电号码=bad_phone),  # must not be echoed in the reason or the log
        row(诉求类型="其它类"),
        [*row().values(), "多余"],
    ]
    path = write_export(landing, [good[0], bad[0], good[1], bad[1], good[2], bad[2]])

    with caplog.at_level(logging.DEBUG):
        result = load_file(conn, path, pii_key=PII_KEY)
    assert (result.loaded_rows, result.quarantined_rows) == (3, 3)

    # Every raw value of the good rows is in restricted.hotline_callers, the phone normalised.
    callers = conn.execute(
        "SELECT source_row, caller_name, caller_phone, address, caller_key FROM restricted.hotline_callers "
        "WHERE batch_id = %s ORDER BY source_row",
        (result.batch_id,),
    ).fetchall()
    phones = [good[0]["来电号码"], own_phone, good[2]["来电号码"]]
    assert [c[0] for c in callers] == [1, 3, 5]
    assert [c[1] for c in callers] == [g["来电人姓名"] for g in good]
    assert [c[2] for c in callers] == phones
    assert [c[3] for c in callers] == [g["事发地址"] for g in good]
    assert [c[4] for c in callers] == [
        hmac.new(PII_KEY, p.encode(), hashlib.sha256).hexdigest() for p in phones
    ]

    # Staff see masked forms, linked by the keyed hash.
    raw_rows = conn.execute(
        "SELECT caller_name_masked, caller_phone_masked, address_masked, caller_key, content "
        "FROM raw.hotline_work_orders WHERE batch_id = %s ORDER BY source_row",
        (result.batch_id,),
    ).fetchall()
    for (name_m, phone_m, address_m, key, _), g, p, c in zip(raw_rows, good, phones, callers, strict=True):
        name = g["来电人姓名"]
        hidden = "*" * max(len(name) - 2, 1)  # 张*, 张*明, 欧**花
        assert name_m == name[0] + hidden + (name[-1] if len(name) > 2 else "")
        assert phone_m == p[:3] + "****" + p[-4:]
        assert address_m == g["所属区县"] + g["所属街镇"] + "***"
        assert key == c[4]
    assert own_phone not in raw_rows[1][4] and id_number not in raw_rows[1][4]
    assert "物业拒不维修电梯" in raw_rows[1][4]

    needles = [g["来电人姓名"] for g in good] + phones + [g["事发地址"] for g in good]
    needles += [g["事发地址"].removeprefix(g["所属区县"] + g["所属街镇"]) for g in good]
    needles += [g["来电号码"] for g in good] + [id_number, bad_phone]
    for b in bad:
        values = dict(zip(HEADERS, b, strict=False)) if isinstance(b, list) else b
        needles += [values["来电人姓名"], values["来电号码"], values["事发地址"]]
    needles = sorted(set(needles))

    # Positive control: the scan does find what is outside restricted (here a masked name).
    control = find_outside_restricted(conn, [raw_rows[0][0]])
    assert ("raw", "hotline_work_orders", "caller_name_masked", raw_rows[0][0]) in control
    hits = find_outside_restricted(conn, needles)
    assert hits == [], f"personal data outside the restricted schema: {hits}"

    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert path.name in logged
    leaked = [n for n in needles if n in logged]
    assert leaked == [], f"personal data in the log: {leaked}"
    reasons = quarantined(conn, result.batch_id)
    assert reasons[2][0] == "来电号码"
    assert not [n for n in needles for (_, reason, _) in reasons.values() if n in reason]


def test_reporting_role_cannot_reach_restricted(conn: psycopg.Connection) -> None:
    usage, create = conn.execute(
        "SELECT has_schema_privilege('xinfang_reporting', 'restricted', 'USAGE'), "
        "has_schema_privilege('xinfang_reporting', 'restricted', 'CREATE')"
    ).fetchone()
    assert usage is False
    assert create is False
    readable = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'restricted' "
        "AND has_table_privilege('xinfang_reporting', format('%I.%I', table_schema, table_name), 'SELECT')"
    ).fetchone()[0]
    assert readable == 0


def test_a_connection_in_a_transaction_is_refused(database_url: str, landing: Path) -> None:
    path = write_export(landing, [row()])
    with connect(database_url) as conn, pytest.raises(ValueError, match="autocommit"):
        load_file(conn, path, pii_key=PII_KEY)


def test_the_dag_task_records_an_unusable_file_as_failed(
    database_url: str, workdirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the task body the DAG runs: the failed ledger row must outlive the raised error."""
    from xinfang.config import get_settings
    from xinfang.orchestration import tasks
    from xinfang.orchestration.schedules import ingest_run_time

    monkeypatch.setenv("XINFANG_PII_KEY", "task-test-key")
    day = next_day()
    landing_dir = get_settings().hotline_landing_dir
    landing_dir.mkdir(parents=True)
    path = write_export(landing_dir, [row()], headers=HEADERS[:-1], day=day)
    with pytest.raises(UnusableFileError, match=path.name):
        tasks.ingest_hotline(ingest_run_time(day))
    with connect(database_url) as conn:
        status = conn.execute(
            "SELECT status FROM ops.load_batches WHERE file_name = %s", (path.name,)
        ).fetchall()
    assert status == [("failed",)]


def test_the_callers_own_name_and_address_are_scrubbed_from_the_content(
    conn: psycopg.Connection, landing: Path
) -> None:
    good = row()
    good["诉求内容"] = f"本人{good['来电人姓名']}，家住{good['事发地址']}，楼道灯坏了。"
    result = load_file(conn, write_export(landing, [good]), pii_key=PII_KEY)
    [content] = conn.execute(
        "SELECT content FROM raw.hotline_work_orders WHERE batch_id = %s", (result.batch_id,)
    ).fetchone()
    assert good["来电人姓名"] not in content and good["事发地址"] not in content
    assert "楼道灯坏了" in content


# --- the fast path: same rows, same bytes, same quarantine as the reference path -----------------


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


SPLIT_CASES = [
    "",
    "a,b\r\nc,d\r\n",
    "a,b\r\nc,d",
    "a,b\n\nc\n",
    "\r\n\r\n",
    'a,"b,c",d\r\ne,f\r\n',
    'a,"multi\r\nline",b\r\nnext,row\r\n',
    'a,"x""y",b\r\n',
    'a,b"c,d\r\n',
    'a,"unterminated\r\nrest,of,file',
    "bare\rcr,row\r\nx\r",
    "tab\there,back\\slash\r\n",
    "nul\x00inside,ok\r\n",
    " spaced , fields \r\n",
    "lone\udc81byte,x\r\n",
]


@pytest.mark.parametrize("text", SPLIT_CASES)
def test_split_records_reads_what_the_csv_module_reads(text: str) -> None:
    got = list(hotline_copy.split_records([text]))
    assert [values for values, _, _ in got] == _csv_rows(text)
    for values, needs_escape, unclean in got:
        if any(c in v for v in values for c in "\\\t\r\n"):
            assert needs_escape, values
        if any("\x00" in v or any("\udc80" <= ch <= "\udcff" for ch in v) for v in values):
            assert unclean, values


def test_split_records_agrees_with_the_csv_module_on_random_text() -> None:
    rng = random.Random(20251127)
    alphabet = ["a", "中", ",", ",", '"', "\r", "\n", "\r\n", "\\", "\t", " ", "\x00"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        data = text.encode("utf-8")
        # Blocks of a few bytes: records and quoted fields run across block ends.
        blocks = list(hotline_copy.text_blocks(data, "utf-8", block_size=rng.randrange(1, 8)))
        assert "".join(blocks) == text
        got = list(hotline_copy.split_records(blocks))
        assert [values for values, _, _ in got] == _csv_rows(text), repr(text)
        for values, needs_escape, unclean in got:
            if any(c in v for v in values for c in "\\\t\r\n"):
                assert needs_escape, repr(text)
            if any("\x00" in v for v in values):
                assert unclean, repr(text)


def test_text_blocks_decode_as_the_whole_file_does() -> None:
    rng = random.Random(11643)
    # GB18030 lead bytes, trail bytes of both lengths, line ends and plain ASCII, in random order.
    pool = [
        b"\n",
        b"\r\n",
        b",",
        b"a",
        b"\x81",
        b"\xfe",
        b"\x30",
        b"\x39",
        b"\x40",
        b"\xd6\xd0",
        b"\x81\x30\x81\x30",
    ]
    for _ in range(2000):
        data = b"".join(rng.choice(pool) for _ in range(rng.randrange(30)))
        blocks = hotline_copy.text_blocks(data, "gb18030", block_size=rng.randrange(1, 6))
        assert "".join(blocks) == data.decode("gb18030", errors="surrogateescape"), data


@pytest.mark.parametrize("key", [b"", b"short", b"k" * 64, b"k" * 65, bytes(range(200))])
def test_keyed_hasher_is_the_pii_person_key(key: bytes) -> None:
    person_key = hotline_copy.keyed_hasher(key)
    for identifier in ("13812345678", "110105199001010021", "", "中文"):
        assert person_key(identifier) == pii.person_key(identifier, key)
        assert person_key(identifier) == hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()


def test_copy_line_escapes_what_copy_text_must() -> None:
    line = hotline_copy.copy_line([1, None, "a\\b\tc\nd\re", "\\N", date(2025, 6, 1)])
    assert line == "1\t\\N\ta\\\\b\\tc\\nd\\re\t\\\\N\t2025-06-01\n"


def _tricky_rows() -> list[dict[str, str] | list[str] | bytes]:
    """Rows of every shape the fast path must hand over, or must encode as the reference does."""
    own = row()
    own["诉求内容"] = f"我是{own['来电人姓名']}，住{own['事发地址']}，电话{own['来电号码']}。"
    phone = unique_phone()
    rows: list = [
        own,
        row(诉求内容="身份证110105199001010021，手机 138-1234-5678，工资3100元"),
        row(诉求内容="反斜杠\\和\t制表符，还有\\N"),
        row(诉求内容='带"引号"和,逗号的内容'),
        row(诉求内容="第一行\r\n第二行\n第三行"),
        row(来电人姓名="欧阳\\翊", 事发地址="江东区东湖街道\t梧桐巷1号"),
        row(来电号码=f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"),
        row(来电号码="0571-8812345"),
        row(来电号码="138-1234567"),
        row(来电号码="１３８１２３４５６７８"),  # full-width digits are digits to the reference check
        row(来电号码="1381234567²"),  # str.isdigit, but not a decimal digit to the regex
        row(受理时间="2025/06/01 09:15:00", 办结时间="2025/06/03 16:40"),
        row(受理时间=" 2025-06-01 09:15:00 ", 工单编号="  T1234567  "),
        row(受理时间="2025-06-01T09:15:00"),
        row(诉求类型="咨询", 办理状态="办理中", 办结时间="", 回访结果=""),
        row(办理状态="办理中", 办结时间="2025-06-02 10:00:00", 回访结果=""),
        row(来电人姓名="张", 诉求内容="张先生来电"),
        row(所属区县="临河县", 所属街镇="马渡镇", 问题分类="惠农补贴"),
        row(事发地址="别处某地"),
        row(回访结果="非常满意"),
    ]
    only_address, only_name = row(), row()
    only_address["诉求内容"] = f"{only_address['事发地址']}楼道灯坏了"
    only_name["诉求内容"] = f"{only_name['来电人姓名']}反映楼道灯坏了"
    rows += [only_address, only_name]
    rows += [build() for build, _ in BAD_ROWS.values()]
    return rows


def _encoded(path: Path, *, fast_path: bool, chunk_rows: int) -> tuple[bytes, bytes, list, tuple[int, int]]:
    export = hotline._open_export(path, path.read_bytes())
    tally = hotline._Tally()
    chunks = list(
        hotline._encode(
            export,
            reference_data(),
            pii_key=PII_KEY,
            batch_id=42,
            day=date(2031, 1, 6),
            encoding="utf-8",
            tally=tally,
            chunk_rows=chunk_rows,
            fast_path=fast_path,
        )
    )
    rejections = sorted(tally.rejections, key=lambda r: r.row_number)
    return (
        b"".join(c[0] for c in chunks),
        b"".join(c[1] for c in chunks),
        rejections,
        (tally.source_rows, tally.loaded_rows),
    )


def test_fast_path_writes_the_same_bytes_and_quarantine_as_the_reference_path(
    landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_write_export(
        date(2030, 12, 27), landing / "sim", SimConfig(seed=5, orders_per_day=400, bad_row_rate=0.1)
    )
    text = sim.read_bytes().decode("gb18030")
    sim_rows = [list(r) for r in _csv_rows(text)[1:]]
    path = write_export(landing, sim_rows + _tricky_rows())
    slow_calls = []
    validate = hotline._validate
    monkeypatch.setattr(hotline, "_validate", lambda raw, ref: slow_calls.append(1) or validate(raw, ref))

    fast = _encoded(path, fast_path=True, chunk_rows=50)
    fast_validations = len(slow_calls)
    reference = _encoded(path, fast_path=False, chunk_rows=10_000)

    assert fast == reference
    source_rows, loaded_rows = fast[3]
    assert source_rows == data_row_count(path) and loaded_rows > 300
    assert len(fast[2]) > len(BAD_ROWS)
    # The comparison means something only if most rows took the fast path.
    assert fast_validations < source_rows / 4


def test_tricky_values_round_trip_through_copy(conn: psycopg.Connection, landing: Path) -> None:
    rows = [r for r in _tricky_rows()[: -len(BAD_ROWS)] if r["回访结果"] in {"", "满意"}]
    path = write_export(landing, rows)

    result = load_file(conn, path, pii_key=PII_KEY)

    assert (result.loaded_rows, result.quarantined_rows) == (len(rows), 0)
    callers = conn.execute(
        "SELECT source_row, caller_name, address, work_order_no FROM restricted.hotline_callers "
        "WHERE batch_id = %s ORDER BY source_row",
        (result.batch_id,),
    ).fetchall()
    assert [(c[1], c[2], c[3]) for c in callers] == [
        (r["来电人姓名"], r["事发地址"], r["工单编号"].strip()) for r in rows
    ]
    contents = conn.execute(
        "SELECT content FROM raw.hotline_work_orders WHERE batch_id = %s ORDER BY source_row",
        (result.batch_id,),
    ).fetchall()
    assert [c[0] for c in contents] == [
        pii.scrub_text(r["诉求内容"], name=r["来电人姓名"], address=r["事发地址"]) for r in rows
    ]
    assert "第一行\r\n第二行\n第三行" in [c[0] for c in contents]
    assert "反斜杠\\和\t制表符，还有\\N" in [c[0] for c in contents]


def _many_rows_export(landing: Path, day: date) -> Path:
    # Enough rows for several COPY chunks (the first ones hold 1,000 and 2,000 rows).
    return sim_write_export(
        day, landing, SimConfig(seed=31, orders_per_day=3500, bad_row_rate=0.05), lookback_days=0
    )


def test_a_load_of_many_chunks_reconciles_row_by_row(conn: psycopg.Connection, landing: Path) -> None:
    path = _many_rows_export(landing, date(2030, 12, 26))

    result = load_file(conn, path, pii_key=PII_KEY)

    total = data_row_count(path)
    loaded = set(loaded_numbers(conn, result.batch_id))
    bad = set(quarantined(conn, result.batch_id))
    assert loaded | bad == set(range(1, total + 1)) and not loaded & bad
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (total, len(loaded), len(bad))
    callers = conn.execute(
        "SELECT count(*) FROM restricted.hotline_callers WHERE batch_id = %s", (result.batch_id,)
    ).fetchone()[0]
    assert callers == len(loaded) > 3000


@pytest.mark.parametrize("side", ["server", "parser"])
def test_a_failure_midway_leaves_nothing_behind(
    conn: psycopg.Connection, landing: Path, monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    """Chunks already COPied by the writer thread roll back with the rest; the load can be retried."""
    path = _many_rows_export(landing, date(2030, 12, 25) if side == "server" else date(2030, 12, 24))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    interval = sys.getswitchinterval()
    if side == "server":
        # The second chunk's COPY fails on the server, after the first one went in.
        copies = []
        original = hotline_copy.copy_in_background

        def failing(conn, statements, chunks):
            def second_breaks():
                for i, chunk in enumerate(chunks):
                    copies.append(i)
                    yield chunk if i == 0 else (chunk[0] + b"not\ta\trow\n", chunk[1])

            return original(conn, statements, second_breaks())

        monkeypatch.setattr(hotline_copy, "copy_in_background", failing)
        expected: type[BaseException] = psycopg.errors.DataError
    else:
        calls = 0
        mask_name = pii.mask_name

        def mask_name_breaking(name: str) -> str:
            nonlocal calls
            calls += 1
            if calls == 2500:
                raise RuntimeError("parser broke")
            return mask_name(name)

        monkeypatch.setattr(pii, "mask_name", mask_name_breaking)
        expected = RuntimeError

    with pytest.raises(expected):
        load_file(conn, path, pii_key=PII_KEY)
    if side == "server":
        assert len(copies) >= 2  # the first chunk was COPied before the second one failed

    assert sys.getswitchinterval() == interval
    left = conn.execute("SELECT count(*) FROM ops.load_batches WHERE file_sha256 = %s", (sha,)).fetchone()[0]
    assert left == 0
    monkeypatch.undo()
    result = load_file(conn, path, pii_key=PII_KEY)
    assert not result.skipped and result.loaded_rows > 3000
