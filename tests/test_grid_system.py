"""The grid system simulator and its incremental loader, against the session's real PostgreSQL.

Every test gets a warehouse database and a grid-system database of its own on
the session's server: the watermark of `grid_events` is global to a warehouse,
and parallel sessions must not share the grid system's database either.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from factories import unique_name, unique_phone
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from xinfang.config import BUREAU_TZ
from xinfang.ingest import grid as grid_ingest
from xinfang.ingest import watermarks
from xinfang.ingest.grid import load_changes, with_dbname
from xinfang.sim import grid_system
from xinfang.sim.records import GridEvent

PII_KEY = b"test-pii-key-not-for-production"
T0 = datetime(2025, 6, 1)
T1 = datetime(2025, 6, 10, 23, 59)
T2 = datetime(2025, 6, 20, 23, 59)


# --- a small hand-built world -----------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    code: str
    name: str
    phone: str
    grid_code: str
    unit_code: str
    kind: str = "网格员"
    full_time: bool = True
    hired_on: date = date(2024, 1, 1)
    left_on: date | None = None


@dataclass(frozen=True)
class Grid:
    code: str
    name: str
    community_code: str
    community_name: str
    town_code: str


@dataclass(frozen=True)
class Config:
    start: date = date(2025, 6, 1)


@dataclass
class FakeWorld:
    staff: list[Staff]
    grids: list[Grid]
    events: list[GridEvent]
    config: Config = field(default_factory=Config)

    def grid_events(self, start: date, end: date) -> Iterator[GridEvent]:
        return (e for e in self.events if start <= e.reported_at.date() <= end)


def small_world() -> FakeWorld:
    grids = [
        Grid(f"369901001001{i:02d}", f"东湖社区第{i}网格", "369901001001", "东湖社区", "369901001")
        for i in range(1, 4)
    ]
    staff = [
        Staff(f"WG{i:04d}", unique_name(3), unique_phone(), g.code, "369901001") for i, g in enumerate(grids)
    ]
    staff.append(Staff("ZF0001", unique_name(3), unique_phone(), "", "369901", kind="执法队员"))
    events = []
    categories = ("60201501", "60201402", "60200601")
    for n in range(30):
        reported = T0 + timedelta(days=n % 18, hours=9 + n % 8)
        w = staff[n % 3]
        status, resolved, petition, updated = "已上报", None, None, reported
        if n % 3 == 0:  # resolved after 6 days: resolved by T2 for most, by T1 for a few
            resolved = reported + timedelta(days=6, hours=2)
            status, updated = "已化解", resolved + timedelta(hours=20)
        elif n % 5 == 1:
            status, petition, updated = "已上报信访", f"XF2025{n:06d}", reported + timedelta(days=4)
        elif n % 7 == 2:
            status, updated = "化解中", reported + timedelta(days=1)
        events.append(
            GridEvent(
                event_id=f"WGSJ2025{n:05d}",
                grid_code=w.grid_code,
                worker_code=w.code,
                reported_at=reported,
                category_code=categories[n % 3],
                # Free text as workers type it: their own name and a party's phone.
                description=f"网格员{w.name}排查发现邻里纠纷，当事人电话{unique_phone()}，已登记。",
                people_involved=1 + n % 4,
                status=status,
                resolved_at=resolved,
                escalated_petition_no=petition,
                updated_at=updated,
            )
        )
    return FakeWorld(staff=staff, grids=grids, events=events)


# --- databases --------------------------------------------------------------------------------


def _fresh_db(server_url: str, prefix: str) -> tuple[str, callable]:
    url = with_dbname(server_url, f"{prefix}_{uuid.uuid4().hex[:10]}")
    grid_system.ensure_database(url)

    def drop() -> None:
        with psycopg.connect(with_dbname(server_url, "postgres"), autocommit=True) as admin:
            name = conninfo_to_dict(url)["dbname"]
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return url, drop


@pytest.fixture()
def grid_url(database_url: str) -> Iterator[str]:
    url, drop = _fresh_db(database_url, "xinfang_gridsys_test")
    yield url
    drop()


@pytest.fixture()
def warehouse_url(database_url: str) -> Iterator[str]:
    url, drop = _fresh_db(database_url, "xinfang_test_grid_wh")
    yield url
    drop()


@pytest.fixture()
def warehouse(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn


def count(conn: psycopg.Connection, query: str, *params: object) -> int:
    return conn.execute(query, params).fetchone()[0]


def table_contents(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Everything the loader writes, minus load timestamps, for before/after comparisons."""
    tables = {
        "raw.grid_screening_events": "event_id",
        "raw.grid_event_status_history": "batch_id, source_row",
        "raw.grid_grids": "grid_code",
        "raw.grid_workers": "worker_code",
        "restricted.grid_workers": "worker_code",
        "ops.load_batches": "batch_id",
        "ops.quarantine": "batch_id, row_number",
        "ops.grid_seen_versions": "row_fingerprint",
        "ops.watermarks": "source",
    }
    out = {}
    for table, order in tables.items():
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [d.name for d in cur.description]
        keep = [i for i, n in enumerate(names) if n not in ("loaded_at", "finished_at", "updated_at")]
        out[table] = [tuple(r[i] for i in keep) for r in cur.fetchall()]
    return out


# --- the simulator ----------------------------------------------------------------------------


def test_timeline_derives_intermediate_states_from_the_final_one() -> None:
    reported = datetime(2025, 3, 1, 10, 0)
    resolved = reported + timedelta(days=10)
    event = GridEvent("WGSJ1", "G1", "W1", reported, "60201501", "", 2, "已化解", resolved, None, resolved)

    assert grid_system.state_as_of(event, reported - timedelta(seconds=1)) is None
    row, steps = grid_system.state_as_of(event, reported)
    assert (row[7], row[8], row[10]) == ("已上报", None, reported)
    row, steps = grid_system.state_as_of(event, reported + timedelta(days=5))
    assert row[7] == "化解中" and reported < row[10] < resolved and len(steps) == 2
    row, steps = grid_system.state_as_of(event, resolved)
    assert (row[7], row[8], row[10]) == ("已化解", resolved, resolved)
    assert [s.action for s in steps] == ["上报", "受理化解", "化解办结"]


def test_advance_is_deterministic_and_only_moves_forward(database_url: str) -> None:
    world = small_world()
    stepped, drop_a = _fresh_db(database_url, "xinfang_gridsys_test")
    direct, drop_b = _fresh_db(database_url, "xinfang_gridsys_test")
    try:
        grid_system.advance_to(T1, world, stepped)
        second = grid_system.advance_to(T2, world, stepped)
        grid_system.advance_to(T2, world, direct)
        assert second.events_inserted > 0 and second.events_updated > 0
        again = grid_system.advance_to(T2, world, stepped)
        assert (again.events_inserted, again.events_updated, again.actions_inserted) == (0, 0, 0)
        dumps = []
        for url in (stepped, direct):
            with psycopg.connect(url) as c:
                dumps.append(
                    [
                        c.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                        for t in ("grids", "grid_workers", "event_actions")
                    ]
                    + [
                        c.execute(
                            f"SELECT {', '.join(grid_system.EVENT_COLUMNS)} FROM screening_events "
                            "ORDER BY event_id"
                        ).fetchall()
                    ]
                )
        assert dumps[0] == dumps[1]
        with pytest.raises(ValueError, match="only moves forward"):
            grid_system.advance_to(T1, world, stepped)
    finally:
        drop_a()
        drop_b()


# --- the loader -------------------------------------------------------------------------------


def test_incremental_loads_upsert_keep_history_and_rerun_changes_nothing(
    warehouse: psycopg.Connection, grid_url: str
) -> None:
    world = small_world()
    grid_system.advance_to(T1, world, grid_url)
    first = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)

    reported_by_t1 = [e for e in world.events if e.reported_at <= T1]
    assert not first.skipped
    assert (first.source_rows, first.loaded_rows, first.quarantined_rows) == (
        len(reported_by_t1),
        len(reported_by_t1),
        0,
    )
    assert count(warehouse, "SELECT count(*) FROM raw.grid_screening_events") == len(reported_by_t1)
    assert count(warehouse, "SELECT count(*) FROM raw.grid_grids") == 3
    assert count(warehouse, "SELECT count(*) FROM raw.grid_workers") == 3
    mark1 = watermarks.get(warehouse, "grid_events")
    assert mark1 == max(grid_system.state_as_of(e, T1)[0][10] for e in reported_by_t1).replace(
        tzinfo=BUREAU_TZ
    )

    grid_system.advance_to(T2, world, grid_url)
    second = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T2)

    assert not second.skipped and second.quarantined_rows == 0
    with psycopg.connect(grid_url) as src:
        source_state = src.execute(
            "SELECT event_id, status, resolved_at, escalated_petition_no, updated_at FROM screening_events"
        ).fetchall()
        changed_since_t1 = count(src, "SELECT count(*) FROM screening_events WHERE updated_at > %s", T1)
    assert second.source_rows == changed_since_t1
    loaded_state = warehouse.execute(
        "SELECT event_id, status, resolved_at, escalated_petition_no, source_updated_at "
        "FROM raw.grid_screening_events"
    ).fetchall()
    assert sorted(loaded_state) == sorted(source_state)
    # One history row per version seen: both loads' versions, keyed by (event, status, updated_at).
    assert (
        count(warehouse, "SELECT count(*) FROM raw.grid_event_status_history")
        == first.loaded_rows + second.loaded_rows
    )
    resolved = next(
        e for e in world.events if e.reported_at <= T1 and e.resolved_at and T1 < e.resolved_at <= T2
    )
    history = warehouse.execute(
        "SELECT status FROM raw.grid_event_status_history WHERE event_id = %s ORDER BY source_updated_at",
        (resolved.event_id,),
    ).fetchall()
    as_of_t1 = grid_system.state_as_of(resolved, T1)[0][7]
    assert [h[0] for h in history] == [as_of_t1, "已化解"]  # as seen by the first load, then resolved
    assert (
        count(
            warehouse,
            "SELECT first_batch_id FROM raw.grid_screening_events WHERE event_id = %s",
            resolved.event_id,
        )
        == first.batch_id
    )
    assert watermarks.get(warehouse, "grid_events") > mark1
    for b in (first.batch_id, second.batch_id):
        ledger = warehouse.execute(
            "SELECT source, source_rows, loaded_rows + quarantined_rows, file_name FROM ops.load_batches "
            "WHERE batch_id = %s",
            (b,),
        ).fetchone()
        assert ledger[0] == "grid_events" and ledger[1] == ledger[2]
        assert "screening_events updated_at" in ledger[3]

    before = table_contents(warehouse)
    rerun = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T2)
    rerun_t1 = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)
    assert rerun.skipped and rerun_t1.skipped
    assert table_contents(warehouse) == before


def test_bad_rows_are_quarantined_and_good_rows_still_load(
    warehouse: psycopg.Connection, grid_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = small_world()
    grid_system.advance_to(T1, world, grid_url)
    at = datetime(2025, 6, 5, 10, 0)
    bad = [
        # (event_id, grid_code, category_code, reported_at, resolved_at, status)
        (None, world.grids[0].code, "60201501", at, None, "已上报"),
        ("BADRESOLVE01", world.grids[0].code, "60201501", at, at - timedelta(days=2), "已化解"),
        ("BADGRID00001", "36990100100199", "60201501", at, None, "已上报"),
        ("BADCATEGORY1", world.grids[0].code, "999999", at, None, "已上报"),
        ("BADSTATUS001", world.grids[0].code, "60201501", at, None, "已办结"),
    ]
    with psycopg.connect(grid_url) as src:
        for event_id, grid, category, reported, resolved, status in bad:
            src.execute(
                "INSERT INTO screening_events (event_id, grid_code, worker_code, reported_at, category_code, "
                "description, people_involved, status, resolved_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, '纠纷', 2, %s, %s, %s)",
                (event_id, grid, world.staff[0].code, reported, category, status, resolved, reported),
            )
    caplog.set_level(logging.INFO)

    result = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)

    good = sum(1 for e in world.events if e.reported_at <= T1)
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (good + 5, good, 5)
    rows = warehouse.execute(
        "SELECT row_number, field, reason FROM ops.quarantine WHERE batch_id = %s ORDER BY row_number",
        (result.batch_id,),
    ).fetchall()
    by_field = {f: r for _, f, r in rows}
    assert set(by_field) == {"event_id", "resolved_at", "grid_code", "category_code", "status"}
    assert "missing event id" in by_field["event_id"]
    assert "BADRESOLVE01" in by_field["resolved_at"] and "before reported_at" in by_field["resolved_at"]
    assert "unknown grid code '36990100100199'" in by_field["grid_code"]
    assert "unknown category code '999999'" in by_field["category_code"]
    assert "unknown status '已办结'" in by_field["status"]
    for row_number, field_name, reason in rows:
        line = f"row {row_number} field {field_name}: {reason}"
        assert any(line in m and r.levelname == "WARNING" for r in caplog.records for m in [r.getMessage()])
    assert (
        count(
            warehouse,
            "SELECT count(*) FROM restricted.quarantine_records WHERE batch_id = %s",
            result.batch_id,
        )
        == 5
    )
    assert count(warehouse, "SELECT count(*) FROM raw.grid_screening_events WHERE event_id LIKE 'BAD%%'") == 0
    assert count(warehouse, "SELECT count(*) FROM raw.grid_screening_events") == good
    grid_ingest.batches.verify_reconciliation(warehouse, result.batch_id, "raw.grid_event_status_history")

    # The bad rows are re-read in the next window's overlap but not quarantined twice.
    again = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)
    assert again.skipped
    assert count(warehouse, "SELECT count(*) FROM ops.quarantine") == 5


def test_no_worker_name_or_phone_outside_restricted(
    warehouse: psycopg.Connection, grid_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = small_world()
    caplog.set_level(logging.DEBUG)
    grid_system.advance_to(T2, world, grid_url)
    load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T2)

    workers = [s for s in world.staff if s.kind == "网格员"]
    secrets = [s.name for s in workers] + [s.phone for s in workers]
    secrets += [p for e in world.events for p in __import__("re").findall(r"1\d{10}", e.description)]
    assert count(warehouse, "SELECT count(*) FROM restricted.grid_workers") == len(workers)
    columns = warehouse.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema NOT IN ('restricted', 'pg_catalog', 'information_schema') "
        "AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
    ).fetchall()
    assert columns
    for schema, table, column in columns:
        found = warehouse.execute(
            sql.SQL("SELECT count(*) FROM {}.{} WHERE {}::text LIKE ANY(%s)").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
            ),
            ([f"%{s}%" for s in secrets],),
        ).fetchone()[0]
        assert found == 0, f"personal data in {schema}.{table}.{column}"
    masked = warehouse.execute("SELECT description FROM raw.grid_screening_events LIMIT 1").fetchone()[0]
    assert "*" in masked
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(s in log_text for s in secrets)


def test_dag_task_loads_up_to_the_end_of_the_previous_bureau_day(
    warehouse_url: str, grid_url: str, monkeypatch: pytest.MonkeyPatch, workdirs: dict
) -> None:
    from xinfang.orchestration import schedules, tasks

    world = small_world()
    grid_system.advance_to(T2, world, grid_url)
    monkeypatch.setenv("XINFANG_DATABASE_URL", warehouse_url)
    monkeypatch.setenv("XINFANG_GRID_DATABASE_URL", grid_url)
    monkeypatch.setenv("XINFANG_PII_KEY", PII_KEY.decode())
    # The run at 00:15 on 11 June (bureau time) loads what changed up to the end of 10 June.
    logical = datetime(2025, 6, 10, 16, 15, tzinfo=UTC)
    assert schedules.grid_cutoff_for(logical) == datetime(2025, 6, 10, 23, 59, 59, 999999)

    summary = tasks.ingest_grid_events(logical)

    with psycopg.connect(grid_url) as src:
        expected = count(src, "SELECT count(*) FROM screening_events WHERE updated_at < '2025-06-11'")
    assert summary["source"] == "grid_events" and summary["loaded_rows"] == expected
    with psycopg.connect(warehouse_url) as wh:
        assert count(wh, "SELECT count(*) FROM raw.grid_screening_events") == expected
    assert grid_ingest.source_url() == grid_url
    monkeypatch.delenv("XINFANG_GRID_DATABASE_URL")
    assert conninfo_to_dict(grid_ingest.source_url(warehouse_url))["dbname"] == "xinfang_gridsys"


def ledger_mismatches(conn: psycopg.Connection) -> list[tuple]:
    """Every grid batch recounted against what it left behind: (batch, ledger, recount) when they differ."""
    return conn.execute(
        """
        SELECT b.batch_id,
               (b.source_rows, b.loaded_rows, b.quarantined_rows) AS ledger,
               (h.n + q.n, h.n, q.n) AS recount
        FROM ops.load_batches b
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM raw.grid_event_status_history WHERE batch_id = b.batch_id
        ) h
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM ops.quarantine WHERE batch_id = b.batch_id) q
        WHERE b.source = 'grid_events' AND b.status = 'loaded'
          AND (b.source_rows, b.loaded_rows, b.quarantined_rows) IS DISTINCT FROM (h.n + q.n, h.n, q.n)
        ORDER BY b.batch_id
        """
    ).fetchall()


def test_a_version_corrected_in_place_keeps_every_batch_reconciled(
    warehouse: psycopg.Connection, grid_url: str
) -> None:
    """The vendor corrects a row without touching updated_at (or status): same history key, new content.

    The correction is a new row version and loads, but the version an earlier batch
    loaded must stay that batch's row: otherwise its ledger stops adding up long after
    it was checked.
    """
    world = small_world()
    grid_system.advance_to(T1, world, grid_url)
    worker, grid_code = world.staff[0].code, world.grids[0].code
    reported = T1 - timedelta(days=2)
    updated = T1 - timedelta(minutes=30)  # inside the next load's overlap
    resolved = updated - timedelta(hours=3)
    with psycopg.connect(grid_url) as src:
        for event_id, status, resolved_at, petition_no in (
            ("FIXRESOLVED1", "已化解", resolved, None),
            ("FIXESCALATE1", "已上报信访", None, "XF2025FIX0001"),
        ):
            src.execute(
                "INSERT INTO screening_events (event_id, grid_code, worker_code, reported_at, category_code, "
                "description, people_involved, status, resolved_at, escalated_petition_no, updated_at) "
                "VALUES (%s, %s, %s, %s, '60201501', '纠纷', 2, %s, %s, %s, %s)",
                (event_id, grid_code, worker, reported, status, resolved_at, petition_no, updated),
            )
    first = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)
    assert not first.skipped and first.quarantined_rows == 0
    assert ledger_mismatches(warehouse) == []

    # The correction, as the source's own database shows it: same status, same updated_at.
    with psycopg.connect(grid_url) as src:
        src.execute(
            "UPDATE screening_events SET resolved_at = resolved_at - interval '1 hour' "
            "WHERE event_id = 'FIXRESOLVED1'"
        )
        src.execute(
            "UPDATE screening_events SET escalated_petition_no = 'XF2025FIX0002' "
            "WHERE event_id = 'FIXESCALATE1'"
        )
    second = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)

    assert not second.skipped
    assert (second.source_rows, second.loaded_rows, second.quarantined_rows) == (2, 2, 0)
    assert ledger_mismatches(warehouse) == []
    # Both versions stay in the history, each with the batch that loaded it ...
    history = warehouse.execute(
        "SELECT event_id, status, source_updated_at, resolved_at, escalated_petition_no, batch_id "
        "FROM raw.grid_event_status_history WHERE event_id LIKE 'FIX%%' ORDER BY event_id, batch_id"
    ).fetchall()
    assert history == [
        ("FIXESCALATE1", "已上报信访", updated, None, "XF2025FIX0001", first.batch_id),
        ("FIXESCALATE1", "已上报信访", updated, None, "XF2025FIX0002", second.batch_id),
        ("FIXRESOLVED1", "已化解", updated, resolved, None, first.batch_id),
        ("FIXRESOLVED1", "已化解", updated, resolved - timedelta(hours=1), None, second.batch_id),
    ]
    # ... and the current state is the corrected one.
    current = warehouse.execute(
        "SELECT event_id, resolved_at, escalated_petition_no, first_batch_id, batch_id "
        "FROM raw.grid_screening_events WHERE event_id LIKE 'FIX%%' ORDER BY event_id"
    ).fetchall()
    assert current == [
        ("FIXESCALATE1", None, "XF2025FIX0002", first.batch_id, second.batch_id),
        ("FIXRESOLVED1", resolved - timedelta(hours=1), None, first.batch_id, second.batch_id),
    ]
    for batch_id in (first.batch_id, second.batch_id):
        grid_ingest.batches.verify_reconciliation(warehouse, batch_id, "raw.grid_event_status_history")

    # A re-run after the correction changes nothing, and later loads keep every ledger true.
    before = table_contents(warehouse)
    assert load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1).skipped
    assert table_contents(warehouse) == before
    grid_system.advance_to(T2, world, grid_url)
    assert not load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T2).skipped
    assert ledger_mismatches(warehouse) == []


def test_event_ids_differing_only_by_blanks_load_as_one_event(
    warehouse: psycopg.Connection, grid_url: str
) -> None:
    """The source's UNIQUE event_id lets 'X' and ' X' coexist; the loader strips both to 'X'."""
    world = small_world()
    grid_system.advance_to(T1, world, grid_url)
    at = T1 - timedelta(hours=5)
    with psycopg.connect(grid_url) as src:
        for event_id, updated in (("BLANKDUP01", at), (" BLANKDUP01", at + timedelta(hours=1))):
            src.execute(
                "INSERT INTO screening_events (event_id, grid_code, worker_code, reported_at, category_code, "
                "description, people_involved, status, updated_at) "
                "VALUES (%s, %s, %s, %s, '60201501', '纠纷', 2, '已上报', %s)",
                (event_id, world.grids[0].code, world.staff[0].code, at, updated),
            )
    result = load_changes(warehouse, grid_url, pii_key=PII_KEY, until=T1)

    assert not result.skipped and result.quarantined_rows == 0
    current = warehouse.execute(
        "SELECT source_updated_at FROM raw.grid_screening_events WHERE event_id = 'BLANKDUP01'"
    ).fetchall()
    assert current == [(at + timedelta(hours=1),)]  # the newer of the two
    assert (
        count(warehouse, "SELECT count(*) FROM raw.grid_event_status_history WHERE event_id = 'BLANKDUP01'")
        == 2
    )
    assert ledger_mismatches(warehouse) == []


def test_a_history_keyed_the_old_way_is_rekeyed_by_batch_and_row(warehouse: psycopg.Connection) -> None:
    """Warehouses created before the history became append-only keep their rows under the new key."""
    grid_ingest.batches.ensure_schema(warehouse)
    warehouse.execute(
        """
        CREATE TABLE raw.grid_event_status_history (
            event_id text NOT NULL,
            status text NOT NULL,
            source_updated_at timestamp NOT NULL,
            resolved_at timestamp,
            escalated_petition_no text,
            batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
            source_row integer NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (event_id, status, source_updated_at)
        );
        CREATE INDEX grid_event_status_history_batch ON raw.grid_event_status_history (batch_id);
        """
    )
    batch = warehouse.execute(
        "INSERT INTO ops.load_batches (source, file_name, file_sha256, status, source_rows, loaded_rows, "
        "quarantined_rows, started_at) VALUES ('grid_events', 'old', 'old', 'loaded', 1, 1, 0, now()) "
        "RETURNING batch_id"
    ).fetchone()[0]
    warehouse.execute(
        "INSERT INTO raw.grid_event_status_history "
        "(event_id, status, source_updated_at, batch_id, source_row) "
        "VALUES ('OLDKEY0001', '已上报', %s, %s, 1)",
        (T0, batch),
    )

    for _ in range(2):  # applied before every load: the second time is a no-op
        grid_ingest.ensure_schema(warehouse)

    key = warehouse.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = 'raw.grid_event_status_history'::regclass AND i.indisprimary"
    ).fetchone()[0]
    assert key == ["batch_id", "source_row"]
    indexes = {
        r[0]
        for r in warehouse.execute(
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = 'raw' AND tablename = 'grid_event_status_history'"
        )
    }
    assert indexes == {"grid_event_status_history_pkey", "grid_event_status_history_event"}
    assert warehouse.execute(
        "SELECT event_id, batch_id, source_row FROM raw.grid_event_status_history"
    ).fetchall() == [("OLDKEY0001", batch, 1)]
