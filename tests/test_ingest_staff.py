"""Loading the platform's staff accounts (GET /api/v1/staff) and the handlers of petition events.

Hand-built accounts (codes and people unique to the run, each test in days of
its own) share the session database; the world's roster, loaded through the
DAG's task bodies, gets a database of the module's own so its counts can be
asserted over whole tables.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from test_online_api import (
    TOKEN,
    fresh_days,
    petition,
    serving,
    staff_member,
    staff_provider,
    training_class,
    window_of,
)

from xinfang import pii
from xinfang.config import BUREAU_TZ
from xinfang.db import connect
from xinfang.ingest import online, staff, watermarks
from xinfang.ingest.online import PlatformAuthError, RetryPolicy
from xinfang.sim.city import GRIDS
from xinfang.sim.records import Petition
from xinfang.sim.web_api import FaultConfig, StaticProvider, petition_json, staff_snapshot
from xinfang.sim.world import Posting, Staff, TrainingClass

PII_KEY = b"test-pii-key-not-for-production"


class Sleeps(list):
    """A sleep that records the delay instead of waiting: retries stay fast and checkable."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fast_retry(**overrides: Any) -> RetryPolicy:
    values: dict[str, Any] = {"attempts": 4, "base_delay": 0.01, "max_delay": 60, "timeout": 2.0}
    values.update(overrides)
    values.setdefault("sleep", Sleeps())
    return RetryPolicy(**values)


STAFF_TABLES = (
    "raw.online_staff",
    "raw.online_staff_postings",
    "raw.online_staff_trainings",
    "restricted.online_staff",
)


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as c:
        staff.ensure_schema(c)
        online.ensure_schema(c)
        yield c


def load(conn: psycopg.Connection, url: str, since: datetime, until: datetime, **kw: Any):
    kw.setdefault("retry", fast_retry())
    return staff.load_window(conn, base_url=url, token=TOKEN, since=since, until=until, pii_key=PII_KEY, **kw)


def served(*members: Staff, classes: tuple[TrainingClass, ...] = (), **kw: Any):
    """A platform serving `members` (and no petitions)."""
    return serving(StaticProvider([]), staff=staff_provider(list(members), classes), **kw)


def rows(conn: psycopg.Connection, table: str, codes: list[str]) -> list[tuple]:
    return conn.execute(
        sql.SQL("SELECT * FROM {} WHERE staff_code = ANY(%s) ORDER BY 1, 2, 3").format(
            sql.Identifier(*table.split("."))
        ),
        (codes,),
    ).fetchall()


def state(conn: psycopg.Connection, codes: list[str]) -> dict[str, list[tuple]]:
    """Every row the loader holds for `codes`, load timestamps included."""
    return {table: rows(conn, table, codes) for table in STAFF_TABLES}


def ledger(conn: psycopg.Connection, batch_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT status, file_name, file_date, source_rows, loaded_rows, quarantined_rows, notes "
        "FROM ops.load_batches WHERE batch_id = %s",
        (batch_id,),
    )
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


# --- a window loads, reconciles and moves the watermark ------------------------------------------


def test_a_window_loads_accounts_postings_trainings_and_people(conn: psycopg.Connection) -> None:
    days = fresh_days(2)
    cadre = staff_member(
        days[0] - timedelta(days=400),
        kind="局机关",
        unit_code="SZ00",
        postings=(Posting("挂职", "XZ369901002", days[0], days[0] + timedelta(days=182)),),
    )
    officer = staff_member(days[0] - timedelta(days=30), trainings=("PXT-A", "PXT-B"), promoted_on=days[0])
    worker = staff_member(
        days[0], kind="网格员", grid_code=GRIDS[0].code, full_time=False, trainings=("PXT-B",)
    )
    not_yet = staff_member(days[1])  # takes up the post the day after: not in the window
    classes = (training_class("PXT-A", days[0] - timedelta(days=20)), training_class("PXT-B", days[0]))
    since, until = window_of(days[0])
    with served(cadre, officer, worker, not_yet, classes=classes) as server:
        result = load(conn, server.url, since, until, page_size=2)

    assert not result.skipped
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 3, 0)
    row = ledger(conn, result.batch_id)
    assert row["status"] == "loaded" and row["file_date"] == days[0]
    assert row["file_name"] == f"api:staff:{since:%Y-%m-%dT%H:%M}..{until:%Y-%m-%dT%H:%M}"
    assert (row["source_rows"], row["loaded_rows"], row["quarantined_rows"]) == (3, 3, 0)
    assert "2 page(s); staff 3 new, 0 updated, 0 unchanged; 1 postings and 3 trainings" in row["notes"]
    codes = [cadre.code, officer.code, worker.code, not_yet.code]
    held = conn.execute(
        "SELECT staff_code, staff_kind, unit_code, grid_code, full_time, in_post_from, in_post_to, "
        "promoted_on, updated_at, posting_count, training_count, batch_id FROM raw.online_staff "
        "WHERE staff_code = ANY(%s) ORDER BY staff_code",
        (codes,),
    ).fetchall()
    expected = [
        (cadre.code, "局机关", "SZ00", None, True, cadre.valid_from, None, None, midnight(days[0]), 1, 0),
        (officer.code, "乡镇专职", "XZ369901001", None, True, officer.valid_from, None, days[0],
         midnight(days[0]), 0, 2),
        (worker.code, "网格员", "XZ369901001", GRIDS[0].code, False, days[0], None, None,
         midnight(days[0]), 0, 1),
    ]  # fmt: skip
    assert held == sorted((*e, result.batch_id) for e in expected)
    assert [r[:5] for r in rows(conn, "raw.online_staff_postings", codes)] == [
        (cadre.code, "挂职", "XZ369901002", days[0], days[0] + timedelta(days=182))
    ]
    trainings = [r[:3] for r in rows(conn, "raw.online_staff_trainings", codes)]
    assert sorted(trainings) == sorted(
        [
            (officer.code, "PXT-A", "测试培训班PXT-A"),
            (officer.code, "PXT-B", "测试培训班PXT-B"),
            (worker.code, "PXT-B", "测试培训班PXT-B"),
        ]
    )
    people = conn.execute(
        "SELECT staff_code, name, phone FROM restricted.online_staff WHERE staff_code = ANY(%s)", (codes,)
    ).fetchall()
    assert sorted(people) == sorted((m.code, m.name, m.phone) for m in (cadre, officer, worker))
    mark = watermarks.get(conn, staff.SOURCE)
    assert mark is not None and mark >= until.replace(tzinfo=BUREAU_TZ)


# --- quarantine ----------------------------------------------------------------------------------


def test_bad_accounts_are_quarantined_with_page_row_field_and_reason(conn: psycopg.Connection) -> None:
    day = fresh_days(1)[0]
    since, until = window_of(day)
    good = [staff_member(day) for _ in range(3)]
    records = [staff_snapshot(m, {}, midnight(day))[1] for m in good]
    bad_phone = staff_snapshot(staff_member(day), {}, midnight(day))[1]
    bad_phone["lxdh"] = "无"
    bad_posting = staff_snapshot(
        staff_member(day, postings=(Posting("跟岗", "SZ00", day, day + timedelta(days=60)),)),
        {},
        midnight(day),
    )[1]
    bad_posting["jljl"][0]["dwbm"] = "XZ999999999"
    contradiction = staff_snapshot(staff_member(day), {}, midnight(day))[1]
    contradiction["sfzz"] = False  # a 乡镇专职 who is not full-time
    # Served in this order, two per page: bad ones at page 1 row 2, page 3 rows 1 and 2.
    served_records = [records[0], bad_phone, records[1], records[2], bad_posting, contradiction]
    # The platform orders by (last change, code): a second apart each, they come in the order above.
    provider = StaticProvider(
        [(midnight(day) + timedelta(seconds=i), r) for i, r in enumerate(served_records)], key="rybh"
    )
    with serving(StaticProvider([]), staff=provider) as server:
        result = load(conn, server.url, since, until, page_size=2)

    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (6, 3, 3)
    row = ledger(conn, result.batch_id)
    assert row["source_rows"] == row["loaded_rows"] + row["quarantined_rows"] == 6
    quarantined = conn.execute(
        "SELECT row_number, page, page_row, source, field, reason FROM ops.quarantine "
        "WHERE batch_id = %s ORDER BY row_number",
        (result.batch_id,),
    ).fetchall()
    assert quarantined == [
        (2, 1, 2, "online_staff", "lxdh", "malformed phone number (value withheld)"),
        (5, 3, 1, "online_staff", "jljl[0].dwbm", "unknown unit code 'XZ999999999'"),
        (6, 3, 2, "online_staff", "sfzz", "full-time flag False contradicts kind 乡镇专职"),
    ]
    kept = conn.execute(
        "SELECT row_number, record->>'rybh' FROM restricted.quarantine_records WHERE batch_id = %s "
        "ORDER BY row_number",
        (result.batch_id,),
    ).fetchall()
    assert kept == [(2, bad_phone["rybh"]), (5, bad_posting["rybh"]), (6, contradiction["rybh"])]
    held = conn.execute(
        "SELECT staff_code FROM raw.online_staff WHERE staff_code = ANY(%s)",
        ([r["rybh"] for r in served_records],),
    ).fetchall()
    assert sorted(c for (c,) in held) == sorted(m.code for m in good)


@pytest.mark.parametrize(
    ("damage", "field", "reason"),
    [
        (lambda r: r.update(rybh=""), "rybh", "missing value"),
        # A name where the code belongs is personal data: the reason must not repeat it.
        (lambda r: r.update(rybh="张三"), "rybh", "malformed staff code (value withheld)"),
        (lambda r: r.update(rylb="临时工"), "rylb", "unknown staff kind '临时工'"),
        (lambda r: r.update(rzrq="2025-02-30"), "rzrq", "impossible date '2025-02-30'"),
        (lambda r: r.update(rzrq="20250201"), "rzrq", "unreadable date '20250201'"),
        (lambda r: r.update(lzrq="2001-01-01"), "lzrq", "leaving date is before taking up the post"),
        (lambda r: r.update(rylb="网格员"), "wgbm", "missing value"),
        (lambda r: r.update(jljl=None), "jljl", "missing list"),
        (lambda r: r.update(pxjl=[{"bcbm": "PX-1", "bcmc": "x", "ksrq": "2025-01-02", "jsrq": "2025-01-01"}]),
         "pxjl[0].jsrq", "class ends before it starts"),
        (lambda r: r.update(gxsj="2025-13-01T00:00:00+08:00"), "gxsj", None),
    ],
)  # fmt: skip
def test_validation_names_the_field_at_fault(damage, field: str, reason: str | None) -> None:
    record = staff_snapshot(staff_member(date(2020, 7, 1)), {}, datetime(2025, 6, 1))[1]
    damage(record)
    with pytest.raises(staff.RowError) as caught:
        staff.validate(record, pii_key=PII_KEY, units=staff.reference_units())
    assert caught.value.field == field
    if reason is not None:
        assert caught.value.reason == reason


def test_an_account_repeated_in_the_window_loads_once(conn: psycopg.Connection) -> None:
    day = fresh_days(1)[0]
    since, until = window_of(day)
    member = staff_member(day)
    record = staff_snapshot(member, {}, midnight(day))[1]
    newer = dict(record, gxsj=f"{day:%Y-%m-%d}T08:00:00+08:00", tbrq=day.isoformat())
    provider = StaticProvider(
        [(midnight(day), record), (midnight(day) + timedelta(hours=8), newer)], key="rybh"
    )
    with serving(StaticProvider([]), staff=provider) as server:
        result = load(conn, server.url, since, until)
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (2, 1, 1)
    field, reason = conn.execute(
        "SELECT field, reason FROM ops.quarantine WHERE batch_id = %s", (result.batch_id,)
    ).fetchone()
    assert field == "rybh" and "repeated in the window (also page 1 row 2)" in reason
    assert rows(conn, "raw.online_staff", [member.code])[0][7] == day  # promoted_on of the newer version


# --- idempotence and versions --------------------------------------------------------------------


def test_rerunning_a_window_or_an_overlapping_one_changes_nothing(conn: psycopg.Connection) -> None:
    day = fresh_days(1)[0]
    since, until = window_of(day)
    members = [staff_member(day, trainings=("PXT-R",)) for _ in range(3)]
    codes = [m.code for m in members]
    with served(*members, classes=(training_class("PXT-R", day),)) as server:
        first = load(conn, server.url, since, until)
        before = state(conn, codes)
        batches_before = conn.execute("SELECT count(*) FROM ops.load_batches").fetchone()[0]
        again = load(conn, server.url, since, until)
        overlapping = load(conn, server.url, since - timedelta(minutes=10), until)

    assert not first.skipped and first.loaded_rows == 3
    assert again.skipped and again.batch_id == first.batch_id  # same content: found by checksum
    # Another window (another checksum), but every version in it is held and the watermark is past it.
    assert overlapping.skipped and overlapping.batch_id is None
    assert "3 received: 3 held in this version, 0 older than held" in overlapping.notes[0]
    assert state(conn, codes) == before
    assert conn.execute("SELECT count(*) FROM ops.load_batches").fetchone()[0] == batches_before


def test_a_newer_version_replaces_the_lists_and_an_older_one_never_wins(conn: psycopg.Connection) -> None:
    days = fresh_days(3)
    member = staff_member(
        days[0],
        trainings=("PXT-1", "PXT-2"),
        postings=(Posting("跟岗", "SZ00", days[2], days[2] + timedelta(days=60)),),
    )
    classes = (training_class("PXT-1", days[0]), training_class("PXT-2", days[2]))
    with served(member, classes=classes) as server:
        first = load(conn, server.url, *window_of(days[0]))
        version_one = state(conn, [member.code])
        # Day 3: the posting starts and a second class opens; day 2 (no change) is loaded late.
        third = load(conn, server.url, *window_of(days[2]))
        version_two = state(conn, [member.code])
        # A back-fill over day 1 (another window than the first run's) shows the older version.
        backfill = load(conn, server.url, midnight(days[0]) - timedelta(hours=1), midnight(days[1]))

    assert first.loaded_rows == third.loaded_rows == 1
    assert [r[:2] for r in version_one["raw.online_staff_trainings"]] == [(member.code, "PXT-1")]
    assert version_one["raw.online_staff_postings"] == []
    assert [r[:2] for r in version_two["raw.online_staff_trainings"]] == [
        (member.code, "PXT-1"),
        (member.code, "PXT-2"),
    ]
    # The lists are replaced as a whole, all from the batch of the newer version.
    assert {r[-2] for r in version_two["raw.online_staff_trainings"]} == {third.batch_id}
    assert [r[:4] for r in version_two["raw.online_staff_postings"]] == [
        (member.code, "跟岗", "SZ00", days[2])
    ]
    account = version_two["raw.online_staff"][0]
    assert account[-3] == third.batch_id  # batch_id
    assert account[-2] == version_one["raw.online_staff"][0][-2]  # first_loaded_at kept
    assert "0 new, 1 updated, 0 unchanged" in ledger(conn, third.batch_id)["notes"]
    # The back-filled window shows the older version: it changes nothing (and records no batch).
    assert backfill.skipped and backfill.batch_id is None
    assert "1 older than held" in backfill.notes[0]
    assert state(conn, [member.code]) == version_two


def test_a_leaving_is_a_new_version(conn: psycopg.Connection) -> None:
    days = fresh_days(2)
    member = staff_member(days[0] - timedelta(days=700), valid_to=days[1])
    with served(member) as server:
        result = load(conn, server.url, *window_of(days[1]))
    assert result.loaded_rows == 1
    held = conn.execute(
        "SELECT in_post_from, in_post_to, updated_at FROM raw.online_staff WHERE staff_code = %s",
        (member.code,),
    ).fetchone()
    assert held == (member.valid_from, days[1], midnight(days[1]))


# --- personal data -------------------------------------------------------------------------------


def test_raw_name_and_phone_stay_in_the_restricted_schema_and_out_of_logs(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    day = fresh_days(1)[0]
    since, until = window_of(day)
    member = staff_member(day)
    bad = staff_snapshot(staff_member(day), {}, midnight(day))[1]
    bad["rylb"] = "临时工"
    provider = StaticProvider(
        [(midnight(day), staff_snapshot(member, {}, midnight(day))[1]), (midnight(day), bad)], key="rybh"
    )
    with serving(StaticProvider([]), staff=provider) as server, caplog.at_level(logging.DEBUG):
        result = load(conn, server.url, since, until)
    assert (result.loaded_rows, result.quarantined_rows) == (1, 1)

    secrets = [member.name, member.phone, bad["xm"], bad["lxdh"]]
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('restricted', 'pg_catalog', 'information_schema') "
        "AND table_type = 'BASE TABLE'"
    ).fetchall()
    assert ("raw", "online_staff") in tables
    for schema, table in tables:
        for secret in secrets:
            hits = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{} t WHERE t::text LIKE %s").format(
                    sql.Identifier(schema), sql.Identifier(table)
                ),
                (f"%{secret}%",),
            ).fetchone()[0]
            assert hits == 0, f"a raw name or phone is in {schema}.{table}"
    assert not [s for s in secrets if s in caplog.text]

    key, name, phone = conn.execute(
        "SELECT person_key, name_masked, phone_masked FROM raw.online_staff WHERE staff_code = %s",
        (member.code,),
    ).fetchone()
    assert key == pii.person_key(member.phone, PII_KEY)  # the same key as petitioners' phone key
    assert name == member.name[0] + "*" + member.name[-1]
    assert phone == member.phone[:3] + "****" + member.phone[-4:]
    assert conn.execute(
        "SELECT person_key, name, phone FROM restricted.online_staff WHERE staff_code = %s", (member.code,)
    ).fetchone() == (key, member.name, member.phone)


# --- talking to the platform ---------------------------------------------------------------------


def test_429_and_5xx_are_retried_and_the_load_completes(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    day = fresh_days(1)[0]
    members = [staff_member(day) for _ in range(3)]
    sleeps = Sleeps()
    faults = FaultConfig(script=("429", None, "503", "500"), retry_after_seconds=3)
    with (
        served(*members, faults=faults) as server,
        caplog.at_level(logging.WARNING),
    ):
        result = load(conn, server.url, *window_of(day), page_size=2, retry=fast_retry(sleep=sleeps))
        requests = server.faults.requests
    assert (result.loaded_rows, result.quarantined_rows) == (3, 0)
    assert requests == 5  # page 1: 429 then 200; page 2: 503, 500, 200
    assert sleeps[0] >= 3  # Retry-After honoured
    assert "/api/v1/staff page 2 attempt 2/4: HTTP 500" in caplog.text


def test_a_refused_token_fails_at_once_and_records_a_failed_batch(conn: psycopg.Connection) -> None:
    day = fresh_days(1)[0]
    since, until = window_of(day)
    with served(staff_member(day)) as server, pytest.raises(PlatformAuthError):
        staff.load_window(
            conn,
            base_url=server.url,
            token="wrong",
            since=since,
            until=until,
            pii_key=PII_KEY,
            retry=fast_retry(),
        )
    status = conn.execute(
        "SELECT status FROM ops.load_batches WHERE source = %s AND file_name = %s",
        (staff.SOURCE, staff.window_label(since, until)),
    ).fetchall()
    assert status == [("failed",)]


# --- handlers on petition events -----------------------------------------------------------------


def _with_handlers(p: Petition, *codes: str | None) -> Petition:
    return replace(p, events=tuple(replace(e, handler_code=c) for e, c in zip(p.events, codes, strict=True)))


def test_handler_codes_load_with_the_events_and_a_malformed_one_is_quarantined(
    conn: psycopg.Connection,
) -> None:
    since, until = window_of(fresh_days(1)[0])
    handled = _with_handlers(
        petition(since + timedelta(hours=9), ("受理", since + timedelta(hours=10))), "JG001", "XF36990100102"
    )
    unhandled = petition(since + timedelta(hours=11))
    broken = petition_json(petition(since + timedelta(hours=12)))
    broken["blgc"][0]["jbr"] = "王经办"
    provider = StaticProvider(
        [(handled.updated_at, petition_json(handled)), (unhandled.updated_at, petition_json(unhandled)),
         (since + timedelta(hours=12), broken)]
    )  # fmt: skip
    with serving(provider) as server:
        result = online.load_window(
            conn,
            base_url=server.url,
            token=TOKEN,
            since=since,
            until=until,
            pii_key=PII_KEY,
            retry=fast_retry(),
        )
    assert (result.loaded_rows, result.quarantined_rows) == (2, 1)
    held = conn.execute(
        "SELECT petition_no, seq, handler_code FROM raw.online_petition_events WHERE petition_no = ANY(%s) "
        "ORDER BY 1, 2",
        ([handled.number, unhandled.number],),
    ).fetchall()
    assert sorted(held) == sorted(
        [(handled.number, 1, "JG001"), (handled.number, 2, "XF36990100102"), (unhandled.number, 1, None)]
    )
    assert conn.execute(
        "SELECT field, reason FROM ops.quarantine WHERE batch_id = %s", (result.batch_id,)
    ).fetchone() == ("blgc[0].jbr", "malformed handler code (value withheld)")


# --- the world's roster through the DAG's tasks --------------------------------------------------

WORLD_SEED = 20250101


def test_the_dag_tasks_load_the_world_roster_and_consistent_handlers(
    module_database_url: str, monkeypatch: pytest.MonkeyPatch, workdirs: dict
) -> None:
    from xinfang.orchestration import tasks
    from xinfang.sim import web_api
    from xinfang.sim.world import WorldConfig, build_world

    world = build_world(WorldConfig(seed=WORLD_SEED))
    petitions = web_api.world_provider(seed=WORLD_SEED, start=date(2025, 6, 16), end=date(2025, 7, 1))
    roster = web_api.world_staff_provider(seed=WORLD_SEED)
    logical = datetime(2025, 7, 1, 0, 20, tzinfo=BUREAU_TZ)  # loads 2025-06-30
    with serving(petitions, staff=roster) as server:
        monkeypatch.setenv(
            online.CONNECTION_ENV, f'{{"conn_type": "http", "host": "{server.url}", "password": "{TOKEN}"}}'
        )
        monkeypatch.setenv("XINFANG_PII_KEY", PII_KEY.decode())
        monkeypatch.setenv("XINFANG_DATABASE_URL", module_database_url)
        first = tasks.ingest_online_staff(logical)
        again = tasks.ingest_online_staff(logical)
        next_day = tasks.ingest_online_staff(logical + timedelta(days=1))
        loaded = tasks.ingest_online_petitions(logical)
        # A fortnight of petitions more, so that seconded cadres show up among the handlers.
        with connect(module_database_url, autocommit=True) as conn:
            online.load_window(
                conn,
                base_url=server.url,
                token=TOKEN,
                since=datetime(2025, 6, 16),
                until=datetime(2025, 6, 30),
                pii_key=PII_KEY,
                page_size=500,
            )

    # The first run reads the whole roster, each run after it the day's window.
    assert first["file_name"] == "api:staff:2000-01-01T00:00..2025-07-01T00:00"
    assert first["source_rows"] == first["loaded_rows"] == len(world.staff) and first["quarantined_rows"] == 0
    # Run again, the same logical date reads its own day (the watermark exists now): nothing new.
    assert again["skipped"] and again["batch_id"] is None and again["loaded_rows"] == 0
    assert next_day["file_name"] == "api:staff:2025-06-30T23:50..2025-07-02T00:00"
    assert loaded["loaded_rows"] > 0
    with connect(module_database_url) as conn:
        kinds = dict(conn.execute("SELECT staff_kind, count(*) FROM raw.online_staff GROUP BY 1").fetchall())
        assert kinds == Counter(s.kind for s in world.staff)
        # 专职人员配备率: 68 of the 100 township posts held at 2025-06-30 are full-time.
        posts, full_time = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE full_time) FROM raw.online_staff "
            "WHERE staff_kind IN ('乡镇专职', '乡镇兼职') AND in_post_from <= '2025-06-30' "
            "AND (in_post_to IS NULL OR in_post_to >= '2025-06-30')"
        ).fetchone()
        assert (posts, full_time) == (100, 68)
        postings = dict(
            conn.execute("SELECT posting_kind, count(*) FROM raw.online_staff_postings GROUP BY 1").fetchall()
        )
        assert postings == {"挂职": 15, "跟岗": 20}
        h1_classes, attendances = conn.execute(
            "SELECT count(DISTINCT class_code), count(*) FROM raw.online_staff_trainings "
            "WHERE start_date BETWEEN '2025-01-01' AND '2025-06-30'"
        ).fetchone()
        assert (h1_classes, attendances) == (4, 320)
        assert conn.execute("SELECT count(*) FROM restricted.online_staff").fetchone()[0] == len(world.staff)
        batches = conn.execute(
            "SELECT source_rows, loaded_rows, quarantined_rows FROM ops.load_batches WHERE source = %s",
            (staff.SOURCE,),
        ).fetchall()
        assert batches and all(s == lo + q for s, lo, q in batches)

        # Every handler is a known account, working for the event's unit that day (postings honoured).
        unknown, misplaced, missing, stray = conn.execute(
            """
            WITH e AS (
                SELECT e.*, e.event_at::date AS day FROM raw.online_petition_events e
            ),
            duty AS (
                SELECT e.petition_no, e.seq, e.unit_code, e.handler_code,
                       coalesce(p.unit_code, s.unit_code) AS duty_unit,
                       e.day BETWEEN s.in_post_from AND coalesce(s.in_post_to, e.day) AS in_post
                FROM e JOIN raw.online_staff s ON s.staff_code = e.handler_code
                LEFT JOIN raw.online_staff_postings p
                    ON p.staff_code = s.staff_code AND e.day BETWEEN p.start_date AND p.end_date
            )
            SELECT
                (SELECT count(*) FROM e LEFT JOIN raw.online_staff s ON s.staff_code = e.handler_code
                 WHERE e.handler_code IS NOT NULL AND s.staff_code IS NULL),
                (SELECT count(*) FROM duty WHERE duty_unit <> unit_code OR NOT in_post),
                (SELECT count(*) FROM e WHERE handler_code IS NULL
                 AND (unit_code = 'SZ00' OR unit_code LIKE 'XZ%%')),
                (SELECT count(*) FROM e WHERE handler_code IS NOT NULL
                 AND (unit_code IS NULL OR NOT (unit_code = 'SZ00' OR unit_code LIKE 'XZ%%')))
            """
        ).fetchone()
        assert (unknown, misplaced, missing, stray) == (0, 0, 0, 0)
        seconded = conn.execute(
            """
            SELECT p.posting_kind, count(*) FROM raw.online_petition_events e
            JOIN raw.online_staff_postings p
                ON p.staff_code = e.handler_code AND e.event_at::date BETWEEN p.start_date AND p.end_date
            GROUP BY 1
            """
        ).fetchall()
        assert {kind for kind, _ in seconded} == {"挂职", "跟岗"}
        handled_kinds = {
            k
            for (k,) in conn.execute(
                "SELECT DISTINCT s.staff_kind FROM raw.online_petition_events e "
                "JOIN raw.online_staff s ON s.staff_code = e.handler_code"
            ).fetchall()
        }
        assert handled_kinds == {"局机关", "乡镇专职", "乡镇兼职"}  # grid workers never handle


def test_the_online_dag_runs_the_staff_task_beside_the_petitions() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from xinfang.config import get_settings

    bag = DagBag(dag_folder=str(get_settings().dags_dir / "online_petition_ingest.py"))
    assert bag.import_errors == {}
    dag = bag.dags["online_petition_ingest"]
    assert set(dag.task_ids) == {"load_window", "load_staff"}
    assert not dag.get_task("load_staff").upstream_task_ids  # independent of the petition load
