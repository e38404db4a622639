"""The quality gate against a real PostgreSQL warehouse with real Great Expectations.

A small, coherent warehouse (six months of hotline files, online petitions
with their events, grid events, the load ledger, reference tables and the
case fact table) is built once as a template database; every test works on
its own copy (CREATE DATABASE ... TEMPLATE), breaks it the way real data
breaks, and runs the shipped suites in expectations/ (or a small suite of its
own) for June 2025.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xinfang.config import BUREAU_TZ
from xinfang.ingest import grid, online
from xinfang.quality.gates import QualityGateFailed, SuiteResult, run_gate

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS = ROOT / "expectations"
TEMPLATES = ROOT / "report_templates"
JUNE = date(2025, 6, 1)
MONTHS = [date(2025, m, 1) for m in range(1, 7)]
MATTER_TYPES = ("咨询", "求助", "投诉", "举报", "建议")
CHANNELS = ("网上信访", "来信", "来访", "12345转办", "网格上报")
CATEGORIES = [
    ("602001", "政治综合"),
    ("602005", "城乡建设"),
    ("602011", "劳动和社会保障"),
    ("602018", "其他"),
]
TOWNS = [("369901001", "东湖街道"), ("369901002", "望江街道")]
DISTRICT = ("369901", "江东区")
# A personal value planted in every hotline row: it must never reach a result, file or message.
PLANTED_NAME = "欧阳翊璟"
PLANTED_PHONE = "16612345678"


# --- the warehouse -------------------------------------------------------------------------------------


def _days(month: date) -> list[date]:
    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return [month + timedelta(days=i) for i in range((nxt - month).days)]


def _instant(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BUREAU_TZ)


def _batch(conn, source: str, name: str, day: date, rows: int, quarantined: int = 0) -> int:
    batch_id = conn.execute(
        """
        INSERT INTO ops.load_batches (source, file_name, file_sha256, file_date, status, source_rows,
                                      loaded_rows, quarantined_rows, started_at, finished_at)
        VALUES (%s, %s, %s, %s, 'loaded', %s, %s, %s, %s, %s) RETURNING batch_id
        """,
        (
            source,
            name,
            uuid.uuid4().hex,
            day,
            rows + quarantined,
            rows,
            quarantined,
            _instant(day + timedelta(days=1), 1),
            _instant(day + timedelta(days=1), 1, 5),
        ),
    ).fetchone()[0]
    for n in range(quarantined):
        conn.execute(
            "INSERT INTO ops.quarantine (batch_id, row_number, source, file_name, field, reason) "
            "VALUES (%s, %s, %s, %s, '受理时间', 'unreadable timestamp')",
            (batch_id, 900 + n, source, name),
        )
    return batch_id


def _build(conn: psycopg.Connection) -> None:
    online.ensure_schema(conn)
    grid.ensure_schema(conn)
    conn.execute(
        """
        CREATE SCHEMA IF NOT EXISTS reference;
        CREATE SCHEMA IF NOT EXISTS marts;
        CREATE TABLE reference.categories (
            category_code text, category_name text, parent_code text, level integer
        );
        CREATE TABLE reference.regions (region_code text, region_name text, parent_code text, level integer);
        CREATE TABLE marts.dim_category (category_code text PRIMARY KEY, category_name text);
        CREATE TABLE marts.dim_region (town_code text PRIMARY KEY, town_name text, district_code text);
        CREATE TABLE marts.fct_cases (
            case_id text PRIMARY KEY, channel text NOT NULL, category_code text, town_code text,
            received_at timestamp NOT NULL, received_date date NOT NULL, received_month date NOT NULL,
            closed_date date, working_days_to_close integer, is_on_time boolean, person_key text
        );
        CREATE TABLE reference.channels (channel text PRIMARY KEY);
        INSERT INTO reference.channels
        VALUES ('网上信访'), ('12345转办'), ('来信'), ('来访'), ('网格上报'), ('12345热线'), ('网格排查');
        CREATE TABLE marts.fct_case_events (
            case_id text NOT NULL, event_number integer NOT NULL, event_source text NOT NULL,
            source_record_id text NOT NULL, source_seq integer NOT NULL, event_type text NOT NULL,
            event_at timestamp NOT NULL, previous_event_at timestamp
        );
        """
    )
    for code, name in CATEGORIES:
        conn.execute("INSERT INTO reference.categories VALUES (%s, %s, NULL, 1)", (code, name))
        conn.execute("INSERT INTO marts.dim_category VALUES (%s, %s)", (code, name))
    conn.execute("INSERT INTO reference.regions VALUES (%s, %s, '369900', 2)", DISTRICT)
    for code, name in TOWNS:
        conn.execute("INSERT INTO reference.regions VALUES (%s, %s, %s, 3)", (code, name, DISTRICT[0]))
        conn.execute("INSERT INTO marts.dim_region VALUES (%s, %s, %s)", (code, name, DISTRICT[0]))

    first_grid_batch = _batch(conn, "grid_events", "gridsys:initial", date(2024, 12, 31), 0)
    for i in range(3):
        conn.execute(
            "INSERT INTO raw.grid_grids (grid_code, grid_name, town_code, source_updated_at, batch_id) "
            "VALUES (%s, %s, %s, '2024-12-31', %s)",
            (f"G{i}", f"第{i}网格", TOWNS[i % 2][0], first_grid_batch),
        )
        conn.execute(
            "INSERT INTO raw.grid_workers (worker_code, worker_key, name_masked, phone_masked, "
            "source_updated_at, batch_id) VALUES (%s, %s, '欧*', '166****5678', '2024-12-31', %s)",
            (f"W{i}", uuid.uuid4().hex, first_grid_batch),
        )

    n = 0
    for month in MONTHS:
        for day in _days(month):
            ordinal = day.toordinal()
            # 12345 hotline: one export file a day, four rows (one more quarantined on the 1st).
            rows = 4
            hotline_batch = _batch(
                conn,
                "hotline",
                f"12345_gongdan_{day:%Y%m%d}.csv",
                day,
                rows,
                quarantined=1 if day.day == 1 else 0,
            )
            for i in range(rows):
                n += 1
                number = f"GD{day:%Y%m%d}{i:05d}"
                received = datetime.combine(day, time(8 + 3 * i, 15))
                closed = i % 2 == 0
                category = CATEGORIES[(ordinal + i) % len(CATEGORIES)]
                town = TOWNS[i % 2]
                conn.execute(
                    """
                    INSERT INTO raw.hotline_work_orders (batch_id, source_row, file_date, work_order_no,
                        received_at, caller_key, caller_name_masked, caller_phone_masked, matter_type,
                        category_name, district_name, town_name, address_masked, content, handling_unit,
                        status, closed_at, callback_result, loaded_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '江东区住建局',
                            %s, %s, %s, %s)
                    """,
                    (
                        hotline_batch,
                        i + 1,
                        day,
                        number,
                        received,
                        f"caller-{n}",
                        PLANTED_NAME,
                        PLANTED_PHONE,
                        MATTER_TYPES[i + ordinal % 2],
                        category[1],
                        DISTRICT[1],
                        town[1],
                        f"{PLANTED_NAME}家门口",
                        f"来电人{PLANTED_NAME}反映，电话{PLANTED_PHONE}",
                        "已办结" if closed else "办理中",
                        received + timedelta(hours=2) if closed else None,
                        "满意" if closed else None,
                        _instant(day + timedelta(days=1), 1, 30),
                    ),
                )
                conn.execute(
                    "INSERT INTO marts.fct_cases "
                    "VALUES (%s, '12345热线', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        f"HL-{number}",
                        category[0],
                        town[0],
                        received,
                        day,
                        month,
                        day if closed else None,
                        0 if closed else None,
                        True if closed else None,
                        f"caller-{n}",
                    ),
                )
            # Grid system: two screening events a day, one of them escalated to a petition.
            grid_batch = _batch(conn, "grid_events", f"gridsys:{day}", day, 2)
            for i in range(2):
                event_id = f"WG{day:%Y%m%d}{i:02d}"
                reported = datetime.combine(day, time(9 + 5 * i))
                escalated = f"XF{day:%Y%m%d}{1:03d}" if i == 1 else None
                status = "已上报信访" if escalated else "已化解"
                resolved = None if escalated else reported + timedelta(hours=3)
                updated = reported + timedelta(hours=4)
                category = CATEGORIES[(ordinal + i) % len(CATEGORIES)][0]
                conn.execute(
                    """
                    INSERT INTO raw.grid_screening_events (event_id, grid_code, worker_code, reported_at,
                        category_code, description, people_involved, status, resolved_at,
                        escalated_petition_no, source_updated_at, first_batch_id, batch_id, loaded_at)
                    VALUES (%s, %s, %s, %s, %s, %s, 2, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    (
                        event_id,
                        f"G{i}",
                        f"W{i}",
                        reported,
                        category,
                        f"{PLANTED_NAME}与邻居纠纷",
                        status,
                        resolved,
                        escalated,
                        updated,
                        grid_batch,
                        grid_batch,
                        _instant(day + timedelta(days=1), 0, 15),
                    ),
                )
                conn.execute(
                    """
                    INSERT INTO raw.grid_event_status_history (event_id, status, source_updated_at,
                        resolved_at, escalated_petition_no, batch_id, source_row)
                    VALUES (%s, %s, %s, %s, %s, %s, %s)
                    """,
                    (event_id, status, updated, resolved, escalated, grid_batch, i + 1),
                )
                conn.execute(
                    "INSERT INTO marts.fct_cases "
                    "VALUES (%s, '网格排查', %s, %s, %s, %s, %s, %s, 0, true, NULL)",
                    (f"WG-{event_id}", category, TOWNS[i][0], reported, day, month, day),
                )
            # Online platform: one API window a day, two petitions registered, two events each.
            online_batch = _batch(conn, "online_petitions", f"api:{day}", day, 2)
            for i in range(2):
                petition = f"XF{day:%Y%m%d}{i:03d}"
                registered = datetime.combine(day, time(10 + 4 * i))
                callback = registered + timedelta(days=1)
                category = CATEGORIES[(ordinal + i) % len(CATEGORIES)][0]
                channel = CHANNELS[(ordinal + i) % len(CHANNELS)]
                conn.execute(
                    """
                    INSERT INTO raw.online_petitions (petition_no, channel, registered_at, updated_at, status,
                        petitioner_key, petitioner_name_masked, petitioner_address_masked, group_size,
                        category_code, purpose_code, town_code, title, content, hotline_work_order_no,
                        grid_event_id, event_count, record_sha256, batch_id, first_loaded_at, last_loaded_at)
                    VALUES (%s, %s, %s, %s, '回访', %s, %s, %s, 1, %s, '01', %s, '反映问题', %s, %s, %s, 2,
                            %s, %s, %s, %s)
                    """,
                    (
                        petition,
                        channel,
                        registered,
                        callback,
                        f"person-{petition}",
                        PLANTED_NAME,
                        f"{PLANTED_NAME}家",
                        category,
                        TOWNS[i][0],
                        f"{PLANTED_NAME}反映",
                        f"GD{day:%Y%m%d}{0:05d}" if i == 0 else None,
                        f"WG{day:%Y%m%d}{1:02d}" if i == 1 else None,
                        uuid.uuid4().hex,
                        online_batch,
                        _instant(day + timedelta(days=1), 0, 20),
                        _instant(day + timedelta(days=1), 0, 20),
                    ),
                )
                for seq, (kind, at, rating) in enumerate(
                    [("登记", registered, None), ("回访", callback, "满意")], start=1
                ):
                    conn.execute(
                        """
                        INSERT INTO raw.online_petition_events (petition_no, seq, event_type, event_at,
                            rating, note, batch_id, loaded_at)
                        VALUES (%s, %s, %s, %s, %s, '', %s, %s)
                        """,
                        (
                            petition,
                            seq,
                            kind,
                            at,
                            rating,
                            online_batch,
                            _instant(day + timedelta(days=1), 0, 20),
                        ),
                    )
                conn.execute(
                    "INSERT INTO marts.fct_cases VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 3, true, %s)",
                    (
                        f"XF-{petition}",
                        channel,
                        category,
                        TOWNS[i][0],
                        registered,
                        day,
                        month,
                        day + timedelta(days=3),
                        f"person-{petition}",
                    ),
                )
    # The timeline mart: one registration event per matter.
    conn.execute(
        """INSERT INTO marts.fct_case_events
           SELECT case_id, 1, 'petition', case_id, 1, '登记', received_at, NULL FROM marts.fct_cases"""
    )


@pytest.fixture(scope="module")
def template_db(server_url: str) -> str:
    name = f"xinfang_qtpl_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_url) | {"dbname": name}
    with psycopg.connect(make_conninfo(**params)) as conn:
        _build(conn)
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def warehouse(server_url: str, template_db: str) -> str:
    """URL of a private copy of the template warehouse."""
    name = f"xinfang_qtest_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_conninfo(**(conninfo_to_dict(server_url) | {"dbname": name}))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _gate(url: str, out: Path, *, period: date = JUNE, expectations: Path = EXPECTATIONS):
    """Run the gate; returns (results, error or None)."""
    try:
        return run_gate(expectations, out, period=period, database_url=url, templates_dir=TEMPLATES), None
    except QualityGateFailed as exc:
        summary = json.loads((out / "quality_summary.json").read_text(encoding="utf-8"))
        return [SuiteResult(**_suite_fields(s)) for s in summary["suites"]], exc


def _suite_fields(s: dict) -> dict:
    from xinfang.quality.gates import CheckResult

    fields = {k: v for k, v in s.items() if k != "failed"}
    fields["checks"] = [CheckResult(**c) for c in s["checks"]]
    fields["skipped"] = [CheckResult(**c) for c in s["skipped"]]
    return fields


def _check(results: list[SuiteResult], suite: str, number: int):
    (r,) = [r for r in results if r.suite == suite]
    (c,) = [c for c in [*r.checks, *r.skipped] if c.number == number]
    return c


def _failed(results: list[SuiteResult]) -> set[tuple[str, int]]:
    return {(r.suite, c.number) for r in results for c in r.failed}


def _suite_file(tmp_path: Path, spec: dict) -> Path:
    folder = tmp_path / "suites"
    folder.mkdir(exist_ok=True)
    (folder / f"{spec['name']}.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return folder


# --- the shipped suites on good data ---------------------------------------------------------------------


def test_shipped_suites_pass_on_good_data_with_every_check_run(warehouse, tmp_path):
    results, error = _gate(warehouse, tmp_path / "out")
    assert error is None, str(error)
    assert {r.suite for r in results} == {
        "raw_hotline_work_orders",
        "raw_online_petitions",
        "raw_online_petition_events",
        "raw_grid_screening_events",
        "ops_load_batches",
        "fct_case_events",
        "fct_cases",
    }
    # Five months of history: volume and distribution checks ran, none was skipped.
    assert [c for r in results for c in r.skipped] == []
    kinds = {c.check for r in results for c in r.checks}
    assert {"volume", "distribution", "referential_integrity", "freshness", "reconciliation"} <= kinds
    volume = _check(results, "raw_hotline_work_orders", 1)
    assert volume.status == "passed"
    assert volume.observed_value == 30 * 4
    assert volume.details["history"] == {
        "2025-01": 124,
        "2025-02": 112,
        "2025-03": 124,
        "2025-04": 120,
        "2025-05": 124,
    }
    assert volume.details["bounds"] == {"min_value": 60, "max_value": 182}  # 120.8 ± 50 %, rounded outwards
    # Freshness is measured against the end of June, not against today.
    fresh = _check(results, "raw_hotline_work_orders", 14)
    assert fresh.observed_value == pytest.approx(24 - 17.25)
    assert fresh.details["newest"] == "2025-06-30T17:15:00"


# --- volume ---------------------------------------------------------------------------------------------


def test_volume_spike_against_history_fails(warehouse, tmp_path):
    # Three times the usual petitions registered in June (e.g. a window loaded under two labels).
    batch = _sql(
        warehouse,
        "SELECT min(batch_id) FROM ops.load_batches "
        "WHERE source = 'online_petitions' AND file_date = '2025-06-10'",
    )[0][0]
    _sql(
        warehouse,
        """
        INSERT INTO raw.online_petitions (petition_no, channel, registered_at, updated_at, status,
            petitioner_key, petitioner_name_masked, petitioner_address_masked, group_size, category_code,
            purpose_code, town_code, title, content, hotline_work_order_no, grid_event_id, event_count,
            record_sha256, batch_id, first_loaded_at, last_loaded_at)
        SELECT petition_no || '-DUP' || k, channel, registered_at, updated_at, status, petitioner_key || k,
               petitioner_name_masked, petitioner_address_masked, group_size, category_code, purpose_code,
               town_code, title, content, hotline_work_order_no, grid_event_id, event_count,
               record_sha256, %s, first_loaded_at, last_loaded_at
        FROM raw.online_petitions CROSS JOIN generate_series(1, 2) AS k
        WHERE registered_at >= '2025-06-01'
        """,
        (batch,),
    )
    results, error = _gate(warehouse, tmp_path / "out")
    assert error is not None
    assert ("raw_online_petitions", 1) in _failed(results)
    spike = _check(results, "raw_online_petitions", 1)
    assert spike.observed_value == 180
    assert spike.details["bounds"]["max_value"] < 180
    assert "raw_online_petitions check #1 expect_table_row_count_to_be_between" in str(error)
    assert "observed 180" in str(error)


def test_volume_drop_against_history_fails(warehouse, tmp_path):
    # Most of June's grid events lost (history rows stay: the ledger still reconciles).
    _sql(warehouse, "DELETE FROM raw.grid_screening_events WHERE reported_at >= '2025-06-06'")
    results, error = _gate(warehouse, tmp_path / "out")
    assert ("raw_grid_screening_events", 1) in _failed(results)
    drop = _check(results, "raw_grid_screening_events", 1)
    assert drop.observed_value == 10
    assert drop.details["bounds"]["min_value"] > 10
    assert "raw_grid_screening_events check #1" in str(error)


def test_volume_without_enough_history_is_recorded_as_skipped_not_passed(warehouse, tmp_path):
    # Hotline files were first loaded from April: only April and May are history for June.
    _sql(warehouse, "DELETE FROM raw.hotline_work_orders WHERE file_date < '2025-04-01'")
    _sql(
        warehouse,
        "DELETE FROM ops.quarantine WHERE source = 'hotline' AND file_name < '12345_gongdan_20250401.csv'",
    )
    _sql(warehouse, "DELETE FROM ops.load_batches WHERE source = 'hotline' AND file_date < '2025-04-01'")
    results, error = _gate(warehouse, tmp_path / "out")
    assert error is None, str(error)
    skipped = _check(results, "raw_hotline_work_orders", 1)
    assert skipped.status == "skipped" and skipped.success is None
    assert skipped.details["note"].startswith("insufficient history: 2 usable month(s)")
    assert skipped.details["history"] == {"2025-04": 120, "2025-05": 124}
    rows = _sql(
        warehouse,
        "SELECT status, success, details->>'note' FROM ops.quality_results "
        "WHERE suite = 'raw_hotline_work_orders' AND check_no = 1",
    )
    assert rows == [("skipped", None, skipped.details["note"])]
    html = (tmp_path / "out" / "quality_report.html").read_text(encoding="utf-8")
    assert "历史数据不足，本次未检查" in html


# --- distributions --------------------------------------------------------------------------------------


def test_distribution_shift_against_history_fails_and_names_the_values(warehouse, tmp_path):
    _sql(
        warehouse,
        "UPDATE raw.hotline_work_orders SET matter_type = '投诉' "
        "WHERE file_date >= '2025-06-01' AND matter_type <> '举报'",
    )
    results, error = _gate(warehouse, tmp_path / "out")
    assert ("raw_hotline_work_orders", 12) in _failed(results)
    shift = _check(results, "raw_hotline_work_orders", 12)
    by_value = {row["matter_type"]: row for row in shift.details["sample"]}
    assert by_value["投诉"]["share_change"] > 0.1
    assert by_value["咨询"]["period_share"] == 0
    assert (
        "raw_hotline_work_orders check #12 expect_column_values_to_be_between on column share_change"
        in str(error)
    )
    assert "matter_type=" in str(error)


def test_mean_out_of_bounds_fails(warehouse, tmp_path):
    _sql(
        warehouse,
        "UPDATE raw.grid_screening_events SET people_involved = 400 WHERE reported_at >= '2025-06-01'",
    )
    results, _ = _gate(warehouse, tmp_path / "out")
    mean = _check(results, "raw_grid_screening_events", 13)
    assert mean.status == "failed" and mean.observed_value == 400


# --- referential integrity ------------------------------------------------------------------------------


def test_events_of_unknown_petitions_fail_with_their_keys(warehouse, tmp_path):
    batch = _sql(warehouse, "SELECT max(batch_id) FROM ops.load_batches WHERE source = 'online_petitions'")[
        0
    ][0]
    _sql(
        warehouse,
        "INSERT INTO raw.online_petition_events "
        "(petition_no, seq, event_type, event_at, note, batch_id, loaded_at) "
        "VALUES ('XF-ORPHAN-0001', 1, '登记', '2025-06-15 10:00', '', %s, now())",
        (batch,),
    )
    results, error = _gate(warehouse, tmp_path / "out")
    assert _failed(results) == {("raw_online_petition_events", 7)}
    orphan = _check(results, "raw_online_petition_events", 7)
    assert orphan.unexpected_count == 1
    assert orphan.details["sample"] == [{"petition_no": "XF-ORPHAN-0001", "seq": 1}]
    assert "petition_no=XF-ORPHAN-0001" in str(error)


def test_timeline_rows_of_unknown_cases_and_unknown_work_orders_fail_with_their_keys(warehouse, tmp_path):
    """The two orphan checks whose parent is large (cases, work orders) read only the keys asked for."""
    _sql(
        warehouse,
        "INSERT INTO marts.fct_case_events VALUES "
        "('XF-ORPHAN-0002', 1, 'petition', 'XF-ORPHAN-0002', 1, '登记', '2025-06-15 10:00', NULL)",
    )
    # More than the 5 % allowed for timing between systems: every June petition names a work order
    # the hotline never exported.
    _sql(
        warehouse,
        "UPDATE raw.online_petitions SET hotline_work_order_no = 'GD-UNKNOWN-' || petition_no "
        "WHERE registered_at >= '2025-06-01'",
    )
    results, _ = _gate(warehouse, tmp_path / "out")
    assert {("fct_case_events", 2), ("raw_online_petitions", 12)} <= _failed(results)
    events = _check(results, "fct_case_events", 2)
    assert events.unexpected_count == 1
    assert events.details["sample"] == [{"case_id": "XF-ORPHAN-0002", "event_number": 1}]
    petitions = _check(results, "raw_online_petitions", 12)
    june = _sql(warehouse, "SELECT count(*) FROM raw.online_petitions WHERE registered_at >= '2025-06-01'")[
        0
    ][0]
    assert petitions.unexpected_count == june > 0


def test_fact_keys_missing_from_their_dimension_fail(warehouse, tmp_path):
    _sql(
        warehouse,
        "UPDATE marts.fct_cases SET category_code = '699999' WHERE case_id = 'HL-GD2025061500002'",
    )
    results, _ = _gate(warehouse, tmp_path / "out")
    assert ("fct_cases", 11) in _failed(results)
    assert _check(results, "fct_cases", 11).details["sample"] == [
        {"case_id": "HL-GD2025061500002", "category_code": "699999"}
    ]


# --- freshness ------------------------------------------------------------------------------------------


def test_stale_source_fails_and_backfilled_month_stays_fresh(warehouse, tmp_path):
    # The grid system stopped delivering on 25 June: its newest times are days before the month's end.
    _sql(warehouse, "DELETE FROM raw.grid_screening_events WHERE reported_at >= '2025-06-25'")
    _sql(warehouse, "UPDATE raw.grid_screening_events SET loaded_at = '2025-06-25 00:15+08'")
    results, _ = _gate(warehouse, tmp_path / "june")
    failed = _failed(results)
    assert {("raw_grid_screening_events", n) for n in (14, 15, 16)} <= failed
    reported = _check(results, "raw_grid_screening_events", 15)
    assert reported.observed_value == pytest.approx(6 * 24 + 24 - 14)  # 24 June 14:00 to 1 July 00:00
    loaded = _check(results, "raw_grid_screening_events", 16)
    assert loaded.observed_value == pytest.approx(6 * 24 - 0.25)
    assert loaded.details["newest"] == "2025-06-25T00:15:00+08:00"
    # May, checked today, is judged at the end of May: the same loads are fresh for it.
    may, _ = _gate(warehouse, tmp_path / "may", period=date(2025, 5, 1))
    for n in (14, 15, 16):
        assert _check(may, "raw_grid_screening_events", n).status == "passed"


# --- the load ledger ------------------------------------------------------------------------------------


def test_unreconciled_batch_missing_day_and_unresolved_failure_fail(warehouse, tmp_path):
    # A hotline row lost after its batch was recorded.
    _sql(warehouse, "DELETE FROM raw.hotline_work_orders WHERE work_order_no = 'GD2025061000003'")
    # The online window of 12 June never loaded (its batch filed under another day).
    _sql(
        warehouse,
        "UPDATE ops.load_batches SET file_date = '2025-06-11' "
        "WHERE source = 'online_petitions' AND file_date = '2025-06-12'",
    )
    # A file that failed and was never loaded again; another that failed before it was loaded (batch 0).
    _sql(
        warehouse,
        "INSERT INTO ops.load_batches "
        "(batch_id, source, file_name, file_sha256, file_date, status, notes, started_at) VALUES "
        "(DEFAULT, 'hotline', 'broken_20250620.csv', 'x1', '2025-06-20', 'failed', 'bad encoding', now()), "
        "(0, 'hotline', '12345_gongdan_20250621.csv', 'x2', '2025-06-21', 'failed', 'truncated', now())",
    )
    results, _ = _gate(warehouse, tmp_path / "out")
    assert {("ops_load_batches", 1), ("ops_load_batches", 2), ("ops_load_batches", 3)} <= _failed(results)
    (unreconciled,) = _check(results, "ops_load_batches", 1).details["sample"]
    assert unreconciled["file_name"] == "12345_gongdan_20250610.csv" and unreconciled["source"] == "hotline"
    (unresolved,) = _check(results, "ops_load_batches", 2).details["sample"]
    assert unresolved["file_name"] == "broken_20250620.csv"
    assert _check(results, "ops_load_batches", 3).details["sample"] == [
        {"file_date": "2025-06-12", "loaded_batches": 0, "source": "online_petitions"}
    ]


# --- results table, summary files, idempotency ----------------------------------------------------------


def test_results_table_holds_one_row_per_check_and_a_rerun_replaces_them(warehouse, tmp_path):
    out = tmp_path / "out"
    results, _ = _gate(warehouse, out)
    checks = sum(len(r.checks) + len(r.skipped) for r in results)
    first = _sql(
        warehouse,
        "SELECT run_id, count(*), count(DISTINCT (suite, check_no)) FROM ops.quality_results "
        "WHERE period = '2025-06-01' GROUP BY run_id",
    )
    assert len(first) == 1 and first[0][1] == first[0][2] == checks
    row = _sql(
        warehouse,
        """SELECT layer, table_name, check_kind, expectation, column_name, scope, status, success,
                  element_count, unexpected_count, title
           FROM ops.quality_results WHERE suite = 'fct_cases' AND check_no = 9""",
    )
    assert row == [
        (
            "marts",
            "marts.fct_cases",
            "validity",
            "expect_column_values_to_be_between",
            "working_days_to_close",
            "period",
            "passed",
            True,
            30 * (4 + 2 + 2),
            0,
            "办结用时（工作日）在0至400之间",
        )
    ]
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(files) == {"quality_summary.json", "quality_summary.md", "quality_report.html"}

    # Same data again: the period's rows are replaced (new run id, same count), the files are kept.
    _gate(warehouse, out)
    second = _sql(
        warehouse,
        "SELECT run_id, count(*) FROM ops.quality_results WHERE period = '2025-06-01' GROUP BY run_id",
    )
    assert len(second) == 1 and second[0][1] == checks and second[0][0] != first[0][0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files

    # Another month adds its own rows and leaves June's alone.
    _gate(warehouse, tmp_path / "may", period=date(2025, 5, 1))
    periods = _sql(
        warehouse, "SELECT period, count(*) FROM ops.quality_results GROUP BY period ORDER BY period"
    )
    assert periods == [(date(2025, 5, 1), checks), (date(2025, 6, 1), checks)]

    # A verdict that changes rewrites the files and the rows.
    _sql(
        warehouse,
        "UPDATE marts.fct_cases SET working_days_to_close = -7 WHERE case_id = 'HL-GD2025060300000'",
    )
    _, error = _gate(warehouse, out)
    assert error is not None
    summary = json.loads((out / "quality_summary.json").read_text(encoding="utf-8"))
    assert summary["passed"] is False and summary["period"] == "2025-06"
    assert _sql(
        warehouse,
        "SELECT status, unexpected_count, details->'sample' FROM ops.quality_results "
        "WHERE period = '2025-06-01' AND suite = 'fct_cases' AND check_no = 9",
    ) == [("failed", 1, [{"case_id": "HL-GD2025060300000", "working_days_to_close": -7}])]
    assert _sql(warehouse, "SELECT count(*) FROM ops.quality_results WHERE period = '2025-06-01'") == [
        (checks,)
    ]


def test_failure_message_names_suite_check_and_data(warehouse, tmp_path):
    _sql(
        warehouse,
        "UPDATE marts.fct_cases SET working_days_to_close = -7 WHERE case_id = 'HL-GD2025060300000'",
    )
    _, error = _gate(warehouse, tmp_path / "out")
    message = str(error)
    assert message.startswith(
        "data-quality gate failed for 2025-06, nothing will be published: 1 check(s) failed"
    )
    assert "fct_cases check #9 expect_column_values_to_be_between on column working_days_to_close" in message
    assert "[marts.fct_cases, rows of the period]" in message
    assert "1 of 240 rows unexpected" in message
    assert "case_id=HL-GD2025060300000, working_days_to_close=-7" in message
    md = (tmp_path / "out" / "quality_summary.md").read_text(encoding="utf-8")
    assert "fct_cases #9" in md and "working_days_to_close" in md


def test_personal_data_never_reaches_results_files_or_messages(warehouse, tmp_path):
    # Bad values in rows full of personal data, including a check on a personal column itself.
    _sql(
        warehouse,
        "UPDATE raw.hotline_work_orders SET matter_type = '其他' WHERE work_order_no = 'GD2025060500001'",
    )
    suites = _suite_file(
        tmp_path,
        {
            "name": "pii_probe",
            "meta": {
                "table": "raw.hotline_work_orders",
                "period_column": "file_date",
                "key_columns": ["work_order_no", "caller_name_masked"],
            },
            "expectations": [
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": "caller_name_masked", "value_set": ["x"]},
                },
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": "content", "value_set": ["x"]},
                    "meta": {"sample_columns": ["work_order_no", "address_masked"]},
                },
                {
                    "type": "expect_column_max_to_be_between",
                    "kwargs": {"column": "caller_phone_masked", "max_value": "0"},
                },
            ],
        },
    )
    for folder in (EXPECTATIONS, suites):  # the probe last: each run replaces the period's rows
        out = tmp_path / folder.name
        results, error = _gate(warehouse, out, expectations=folder)
        assert error is not None
        if folder == EXPECTATIONS:
            assert ("raw_hotline_work_orders", 3) in _failed(results)
        texts = [str(error), *(p.read_text(encoding="utf-8") for p in out.iterdir())]
        texts.append(
            json.dumps(
                _sql(warehouse, "SELECT json_agg(q) FROM ops.quality_results AS q")[0][0], ensure_ascii=False
            )
        )
        for text in texts:
            assert PLANTED_NAME not in text and PLANTED_PHONE not in text
            assert "家门口" not in text
    probe = _sql(
        warehouse,
        "SELECT check_no, status, unexpected_count, details->'sample' FROM ops.quality_results "
        "WHERE suite = 'pii_probe' ORDER BY 1",
    )
    assert [r[:3] for r in probe] == [(1, "failed", 120), (2, "failed", 120), (3, "failed", None)]
    # Rows are still named by their keys; the personal columns are left out.
    assert {"work_order_no"} == set(probe[0][3][0])
    assert {"work_order_no"} == set(probe[1][3][0])


# --- mechanism --------------------------------------------------------------------------------------------


def test_timestamptz_period_column_uses_bureau_months(warehouse, tmp_path):
    # 1 July 03:00 in Beijing is still 30 June in UTC: the month is decided in bureau time.
    _sql(
        warehouse,
        "UPDATE raw.hotline_work_orders SET loaded_at = '2025-07-01 03:00+08' "
        "WHERE work_order_no = 'GD2025061500000'",
    )
    suites = _suite_file(
        tmp_path,
        {
            "name": "by_load_time",
            "meta": {"table": "raw.hotline_work_orders", "period_column": "loaded_at"},
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "work_order_no"}},
            ],
        },
    )
    with psycopg.connect(warehouse) as conn:
        conn.execute("ALTER DATABASE " + conninfo_to_dict(warehouse)["dbname"] + " SET timezone = 'UTC'")
    results, error = _gate(warehouse, tmp_path / "out", expectations=suites)
    assert error is None
    # Files of 31 May .. 29 June were loaded in June (01:30 the next day), less the row moved to July.
    assert _check(results, "by_load_time", 1).element_count == 30 * 4 - 1


def test_suite_on_a_missing_table_fails_the_gate_with_the_reason(warehouse, tmp_path):
    suites = _suite_file(
        tmp_path,
        {
            "name": "fct_case_notes",
            "meta": {"table": "marts.fct_case_notes", "period_column": "event_month"},
            "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}],
        },
    )
    _, error = _gate(warehouse, tmp_path / "out", expectations=suites)
    assert "fct_case_notes check #0 suite_could_not_run" in str(error)
    assert "relation marts.fct_case_notes does not exist" in str(error)


def test_a_check_that_cannot_run_fails_and_others_still_run(warehouse, tmp_path):
    suites = _suite_file(
        tmp_path,
        {
            "name": "typo",
            "meta": {"table": "marts.fct_cases", "period_column": "received_month"},
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such_column"}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "case_id"}},
            ],
        },
    )
    results, _ = _gate(warehouse, tmp_path / "out", expectations=suites)
    assert _failed(results) == {("typo", 1)}
    assert "no_such_column" in _check(results, "typo", 1).details["error"]
    assert _check(results, "typo", 2).status == "passed"


# --- the HTML report --------------------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag in ("h1", "h2", "h3")
        if self._in_heading:
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_heading:
            self.headings[-1] += data


def test_html_report_is_offline_escaped_and_shows_the_failing_data(warehouse, tmp_path):
    _sql(
        warehouse,
        "UPDATE marts.fct_cases SET working_days_to_close = -7 WHERE case_id = 'HL-GD2025060300000'",
    )
    _sql(
        warehouse,
        "UPDATE raw.hotline_work_orders SET matter_type = '<script>x</script>' "
        "WHERE work_order_no = 'GD2025060500001'",
    )
    _, error = _gate(warehouse, tmp_path / "out")
    assert error is not None
    raw = (tmp_path / "out" / "quality_report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(raw)
    assert (
        "http://" not in raw and "https://" not in raw and "//" not in raw.replace("/*", "").replace("*/", "")
    )
    tags = [t for t, _ in page.tags]
    assert "link" not in tags and "img" not in tags and "script" not in tags and "iframe" not in tags
    assert all("src" not in attrs and "href" not in attrs for _, attrs in page.tags)
    assert "&lt;script&gt;x&lt;/script&gt;" in raw
    assert page.headings[0] == "数据质量报告 2025年6月"
    assert "二、未通过的检查" in page.headings
    text = "".join(page.text)
    assert "本月报告和数据抽取暂停发布" in text
    assert "marts.fct_cases" in text and "working_days_to_close" in text
    assert "case_id：HL-GD2025060300000；working_days_to_close：-7" in text
    assert "work_order_no：GD2025060500001；file_date：2025-06-05；matter_type：<script>x</script>" in text
    assert any(h.startswith("网上信访件（原始层）") for h in page.headings)


# --- the DAG's contract -----------------------------------------------------------------------------------


def test_gate_task_passes_then_blocks_publication_when_the_data_breaks(warehouse, workdirs, monkeypatch):
    from xinfang.orchestration import tasks

    monkeypatch.setenv("XINFANG_DATABASE_URL", warehouse)
    run = datetime(2025, 7, 2, 8, 0, tzinfo=BUREAU_TZ)  # the report run for June
    summary = tasks.quality_gate(run)
    assert summary["period"] == "2025-06" and summary["suites"] == 7
    assert Path(summary["report"]).is_file()
    # June's loads of all three sources: 30 hotline files of 4 rows (+1 quarantined on the 1st),
    # 30 online and 30 grid windows of 2 rows each.
    assert json.loads(Path(summary["summary"]).with_suffix(".json").read_text(encoding="utf-8"))["load"] == {
        "source_rows": 121 + 60 + 60,
        "loaded_rows": 120 + 60 + 60,
        "quarantined_rows": 1,
        "files": 30 * 3,
    }

    _sql(
        warehouse,
        "UPDATE marts.fct_cases SET working_days_to_close = -7 WHERE case_id = 'HL-GD2025060300000'",
    )
    with pytest.raises(QualityGateFailed, match=r"fct_cases check #9 .*case_id=HL-GD2025060300000"):
        tasks.quality_gate(run)
    # Should the render task run anyway (cleared by hand), it refuses on the gate's record.
    with pytest.raises(RuntimeError, match="says failed; refusing to publish"):
        tasks.publish_report(run)
    assert not (workdirs["output"] / "reports").exists()


def test_report_and_extract_tasks_run_only_after_the_gate():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "monthly_risk_report.py"))
    assert bag.import_errors == {}
    dag = bag.dags["monthly_risk_report"]
    gate = dag.get_task("quality_gate")
    # The gate comes first; the report is rendered only after the risk model has run on gated data.
    assert gate.downstream_task_ids == {"risk_model", "build_extract"}
    for task_id in ("risk_model", "build_extract"):
        task = dag.get_task(task_id)
        assert task.upstream_task_ids == {"quality_gate"}
        assert task.trigger_rule == "all_success"
    assert dag.get_task("render_report").upstream_task_ids == {"risk_model"}
    assert dag.get_task("render_report").trigger_rule == "all_success"
    assert dag.get_task("mail_report").upstream_task_ids == {"render_report"}
    assert dag.get_task("deliver_extract").upstream_task_ids == {"build_extract"}
