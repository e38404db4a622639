"""Loading the online platform's API into the real database: windows, retries, quarantine, idempotence, PII.

Every test serves its own petitions (fresh numbers and personal data) in its own
window of days, so the session-wide database can be shared with other tests.
"""

from __future__ import annotations

import hmac as hmac_module
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from factories import next_day
from psycopg import sql
from test_online_api import TOKEN, fresh_days, person, petition, serving, static, window_of

from xinfang import pii
from xinfang.config import BUREAU_TZ
from xinfang.db import connect
from xinfang.ingest import online, watermarks
from xinfang.ingest.online import PlatformAuthError, PlatformError, RetryPolicy, load_window
from xinfang.sim.records import Petition
from xinfang.sim.web_api import FaultConfig, StaticProvider, WorldProvider, corrupt, petition_json

PII_KEY = b"test-pii-key-not-for-production"


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as c:
        online.ensure_schema(c)
        yield c


class Sleeps(list):
    """A sleep that records the delay instead of waiting: retries stay fast and checkable."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fast_retry(**overrides: Any) -> RetryPolicy:
    values: dict[str, Any] = {"attempts": 4, "base_delay": 0.01, "max_delay": 60, "timeout": 2.0}
    values.update(overrides)
    values.setdefault("sleep", Sleeps())
    return RetryPolicy(**values)


def load(conn: psycopg.Connection, url: str, since: datetime, until: datetime, **kw: Any):
    kw.setdefault("retry", fast_retry())
    return load_window(conn, base_url=url, token=TOKEN, since=since, until=until, pii_key=PII_KEY, **kw)


def petitions_table(conn: psycopg.Connection, numbers: list[str]) -> list[tuple]:
    return conn.execute(
        "SELECT * FROM raw.online_petitions WHERE petition_no = ANY(%s) ORDER BY petition_no", (numbers,)
    ).fetchall()


def events_table(conn: psycopg.Connection, numbers: list[str]) -> list[tuple]:
    return conn.execute(
        "SELECT * FROM raw.online_petition_events WHERE petition_no = ANY(%s) ORDER BY petition_no, seq",
        (numbers,),
    ).fetchall()


def ledger(conn: psycopg.Connection, batch_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT status, file_name, file_date, source_rows, loaded_rows, quarantined_rows, notes "
        "FROM ops.load_batches WHERE batch_id = %s",
        (batch_id,),
    )
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def day_petitions(day_start: datetime, count: int) -> list[Petition]:
    """`count` petitions registered and accepted that day, served in list order."""
    return [
        petition(
            day_start + timedelta(hours=8, minutes=7 * i),
            ("受理", day_start + timedelta(hours=15, minutes=i)),
        )
        for i in range(count)
    ]


# --- a window loads, reconciles and moves the watermark ------------------------------------------


def test_a_window_loads_petitions_events_and_petitioners(conn: psycopg.Connection) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, 3)
    numbers = [p.number for p in petitions]
    with serving(static(*petitions)) as server:
        result = load(conn, server.url, since, until)

    assert not result.skipped
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 3, 0)
    row = ledger(conn, result.batch_id)
    assert row["status"] == "loaded"
    assert row["file_name"] == f"api:{since:%Y-%m-%dT%H:%M}..{until:%Y-%m-%dT%H:%M}"
    assert row["file_date"] == since.date()
    assert (row["source_rows"], row["loaded_rows"], row["quarantined_rows"]) == (3, 3, 0)
    assert "3 new, 0 updated, 0 unchanged; 6 new events" in row["notes"]

    held = conn.execute(
        "SELECT petition_no, status, event_count, registered_at, batch_id, first_loaded_at = last_loaded_at "
        "FROM raw.online_petitions WHERE petition_no = ANY(%s) ORDER BY petition_no",
        (numbers,),
    ).fetchall()
    assert held == [
        (n, "受理", 2, p.registered_at, result.batch_id, True)
        for n, p in sorted(zip(numbers, petitions, strict=True))
    ]
    events = events_table(conn, numbers)
    assert [(e[0], e[1], e[2]) for e in events] == [
        (n, s, t) for n in sorted(numbers) for s, t in ((1, "登记"), (2, "受理"))
    ]
    people = conn.execute(
        "SELECT petition_no, id_number FROM restricted.online_petitioners WHERE petition_no = ANY(%s)",
        (numbers,),
    ).fetchall()
    assert sorted(people) == sorted((p.number, p.petitioner.id_number) for p in petitions)
    mark = watermarks.get(conn, online.SOURCE)
    assert mark is not None and mark >= until.replace(tzinfo=BUREAU_TZ)


@pytest.mark.parametrize(("count", "page_size", "pages"), [(0, 2, 1), (2, 2, 1), (3, 2, 2), (5, 2, 3)])
def test_pagination_edges_load_every_record_once(
    conn: psycopg.Connection, count: int, page_size: int, pages: int
) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, count)
    with serving(static(*petitions)) as server:
        result = load(conn, server.url, since, until, page_size=page_size)
        requests = server.faults.requests
    assert requests == pages
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (count, count, 0)
    assert f"{pages} page(s)" in ledger(conn, result.batch_id)["notes"]
    assert len(petitions_table(conn, [p.number for p in petitions])) == count


# --- window semantics, updates and history -------------------------------------------------------


def test_a_later_change_is_upserted_and_its_events_appended(conn: psycopg.Connection) -> None:
    day1 = fresh_days(3)[0]
    start = datetime.combine(day1, datetime.min.time())
    changing = petition(
        start + timedelta(hours=9),
        ("受理", start + timedelta(hours=11)),
        ("交办", start + timedelta(days=2, hours=10)),
    )
    quiet = petition(start + timedelta(hours=10))
    provider = WorldProvider([changing, quiet])  # each window as it stood at its end
    windows = [(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in range(3)]
    with serving(provider) as server:
        first = load(conn, server.url, *windows[0])
        before = {r[0]: r for r in petitions_table(conn, [changing.number, quiet.number])}
        second = load(conn, server.url, *windows[1])
        third = load(conn, server.url, *windows[2])

    assert (first.loaded_rows, second.loaded_rows, third.loaded_rows) == (2, 0, 1)
    after = {r[0]: r for r in petitions_table(conn, [changing.number, quiet.number])}
    assert after[quiet.number] == before[quiet.number]
    columns = [d.name for d in conn.execute("SELECT * FROM raw.online_petitions LIMIT 0").description]
    old, new = (dict(zip(columns, r, strict=True)) for r in (before[changing.number], after[changing.number]))
    assert (old["status"], old["event_count"]) == ("受理", 2)
    assert (new["status"], new["event_count"]) == ("交办", 3)
    assert new["updated_at"] == start + timedelta(days=2, hours=10)
    assert new["batch_id"] == third.batch_id and old["batch_id"] == first.batch_id
    assert new["first_loaded_at"] == old["first_loaded_at"]
    assert new["last_loaded_at"] > old["last_loaded_at"]
    history = [(e[1], e[2], e[8]) for e in events_table(conn, [changing.number])]
    assert history == [(1, "登记", first.batch_id), (2, "受理", first.batch_id), (3, "交办", third.batch_id)]
    assert "0 new, 1 updated, 0 unchanged; 1 new events" in ledger(conn, third.batch_id)["notes"]


def test_an_older_version_never_replaces_a_newer_one(conn: psycopg.Connection) -> None:
    start = datetime.combine(fresh_days(2)[0], datetime.min.time())
    day1, day2 = (start, start + timedelta(days=1)), (start + timedelta(days=1), start + timedelta(days=2))
    p = petition(start + timedelta(hours=9), ("受理", start + timedelta(days=1, hours=9)))
    q = petition(start + timedelta(hours=10))  # stays on the first day
    with serving(WorldProvider([p])) as server:
        load(conn, server.url, *day2)
        newest = petitions_table(conn, [p.number])
        # The first day loaded late (a manual back-fill): it holds only the older version, which
        # changes nothing, so no batch is recorded.
        stale = load(conn, server.url, *day1)
    assert stale.skipped and stale.batch_id is None
    assert "1 received: 0 held in this version, 1 older than held" in stale.notes[0]
    assert petitions_table(conn, [p.number]) == newest
    # With something new beside it the batch is recorded; the older version still changes nothing.
    with serving(WorldProvider([p, q])) as server:
        old = load(conn, server.url, *day1)
    assert (old.source_rows, old.loaded_rows) == (2, 2)
    assert petitions_table(conn, [p.number]) == newest
    assert "1 new, 0 updated, 1 unchanged; 1 new events" in ledger(conn, old.batch_id)["notes"]


# --- idempotence ---------------------------------------------------------------------------------


def test_rerunning_a_window_or_an_overlapping_one_changes_nothing(conn: psycopg.Connection) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, 4)
    numbers = [p.number for p in petitions]
    with serving(static(*petitions)) as server:
        first = load(conn, server.url, since, until)
        snapshot = (
            petitions_table(conn, numbers),
            events_table(conn, numbers),
            conn.execute(
                "SELECT * FROM restricted.online_petitioners WHERE petition_no = ANY(%s) ORDER BY 1",
                (numbers,),
            ).fetchall(),
        )
        again = load(conn, server.url, since, until)
        overlapping = load(conn, server.url, since - timedelta(minutes=10), until)

    assert again.skipped and again.batch_id == first.batch_id
    # Another window (other checksum), but every version in it is held and the watermark is past
    # it: nothing recorded.
    assert overlapping.skipped and overlapping.batch_id is None
    assert (
        "4 received: 4 held in this version, 0 older than held, 0 already quarantined"
        in (overlapping.notes[0])
    )
    assert (
        petitions_table(conn, numbers),
        events_table(conn, numbers),
        conn.execute(
            "SELECT * FROM restricted.online_petitioners WHERE petition_no = ANY(%s) ORDER BY 1", (numbers,)
        ).fetchall(),
    ) == snapshot
    loaded = conn.execute(
        "SELECT count(*) FROM ops.load_batches WHERE file_name = ANY(%s) AND status = 'loaded'",
        ([first.file_name, overlapping.file_name],),
    ).fetchone()[0]
    assert loaded == 1


class LivePlatform:
    """The platform as a live system: every request sees the world as of `as_of`, which the test moves.

    The simulator's own provider with a fixed clock, so a petition changed after a window
    has moved to a later one. Petitions can be added or replaced between runs (a change
    committed late, a correction in place); those in `damaged` are served broken, the
    same way every time.
    """

    def __init__(self, petitions: list[Petition], as_of: datetime, damaged: dict[str, str]):
        self.petitions = {p.number: p for p in petitions}
        self.as_of = as_of
        self.damaged = damaged

    def window(self, since: datetime, until: datetime) -> list[dict]:
        # A provider per request: WorldProvider caches windows by their bounds, not by the clock.
        records = WorldProvider(list(self.petitions.values()), as_of=self.as_of).window(since, until)
        return [corrupt(r, self.damaged[r["xfjbh"]]) if r["xfjbh"] in self.damaged else r for r in records]


# Every table the online loader writes, with the column that orders it.
ONLINE_TABLES = (
    "raw.online_petitions",
    "raw.online_petition_events",
    "restricted.online_petitioners",
    "ops.load_batches",
    "ops.quarantine",
    "restricted.quarantine_records",
    "ops.watermarks",
)


def warehouse_state(conn: psycopg.Connection) -> dict[str, tuple]:
    """Row count and a hash of the full content (load timestamps included) of every table written."""
    state: dict[str, tuple] = {}
    for table in ONLINE_TABLES:
        state[table] = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        ).fetchone()
    # Not even a batch number is drawn by a run that records nothing.
    state["ops.load_batches_batch_id_seq"] = conn.execute(
        "SELECT last_value, is_called FROM ops.load_batches_batch_id_seq"
    ).fetchone()
    return state


@dataclass
class LiveRun:
    platform: LivePlatform
    windows: list[tuple[datetime, datetime]]
    batches: list[int]
    stays: Petition
    broken: Petition


@contextmanager
def live_platform_loaded(conn: psycopg.Connection) -> Iterator[tuple[LiveRun, Any]]:
    """Three daily windows loaded as the DAG does, each just after its end, from a live platform.

    Day 0 holds a petition that stays there, a broken one, and two that change again: one on
    day 1, the other on days 1 and 2 (so it leaves day 1's window too). Day 1 registers one more.
    """
    days = [datetime.combine(d, datetime.min.time()) for d in fresh_days(4)]
    d0, d1, d2, d3 = days
    stays = petition(d0 + timedelta(hours=9), ("受理", d0 + timedelta(hours=11)))
    moves_next_day = petition(
        d0 + timedelta(hours=10), ("受理", d0 + timedelta(hours=12)), ("交办", d1 + timedelta(hours=10))
    )
    moves_two_days = petition(
        d0 + timedelta(hours=10, minutes=30),
        ("受理", d1 + timedelta(hours=14)),
        ("答复", d2 + timedelta(hours=15)),
    )
    broken = petition(d0 + timedelta(hours=13))
    registered_day1 = petition(d1 + timedelta(hours=9))
    platform = LivePlatform(
        [stays, moves_next_day, moves_two_days, broken, registered_day1],
        as_of=d1,
        damaged={broken.number: "unknown_category"},
    )
    windows = [(d - timedelta(minutes=10), d + timedelta(days=1)) for d in (d0, d1, d2)]
    batches = []
    with serving(platform) as server:
        for since, until in windows:
            platform.as_of = until + timedelta(minutes=20)  # the DAG's run at 00:20
            result = load(conn, server.url, since, until)
            assert not result.skipped
            batches.append(result.batch_id)
        assert [(ledger(conn, b)["source_rows"], ledger(conn, b)["quarantined_rows"]) for b in batches] == [
            (4, 1),
            (3, 0),
            (1, 0),
        ]
        platform.as_of = d3 + timedelta(days=5)  # the platform lives on; the back-fill comes days later
        yield LiveRun(platform, windows, batches, stays, broken), server


def test_rerunning_old_windows_against_a_live_platform_changes_nothing(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with live_platform_loaded(conn) as (run, server), caplog.at_level(logging.INFO):
        before = warehouse_state(conn)
        # Day 0 now shows only the petition that stayed and the broken one: other content than
        # its first run, nothing new. Day 1 lost a petition to day 2. Day 2 is as it was. The
        # last run is a window over all three (the DAG's window after skipped runs).
        reruns = [load(conn, server.url, *w) for w in run.windows]
        reruns.append(load(conn, server.url, run.windows[0][0], run.windows[2][1]))

    assert warehouse_state(conn) == before
    assert [r.skipped for r in reruns] == [True, True, True, True]
    # Day 2's content is unchanged: found by checksum as the batch that loaded it.
    assert reruns[2].batch_id == run.batches[2]
    no_ops = [reruns[0], reruns[1], reruns[3]]
    assert [r.batch_id for r in no_ops] == [None, None, None]
    # What each no-op saw is returned and logged.
    assert [(r.source_rows, r.loaded_rows, r.quarantined_rows) for r in no_ops] == [
        (2, 0, 0),
        (2, 0, 0),
        (5, 0, 0),
    ]
    assert "1 held in this version, 0 older than held, 1 already quarantined" in reruns[0].notes[0]
    assert "2 held in this version, 0 older than held, 0 already quarantined" in reruns[1].notes[0]
    assert "4 held in this version, 0 older than held, 1 already quarantined" in reruns[3].notes[0]
    logged = [r.getMessage() for r in caplog.records if "no batch recorded" in r.getMessage()]
    assert len(logged) == 3 and reruns[0].file_name in logged[0]


def test_a_new_or_corrected_version_in_an_old_window_still_lands(conn: psycopg.Connection) -> None:
    with live_platform_loaded(conn) as (run, server):
        d0 = run.windows[0][0] + timedelta(minutes=10)
        # A correction in place (same time of last change, another note) and a petition whose
        # change was committed late: both belong to day 0's window.
        stays = run.stays
        corrected = replace(
            stays, events=(stays.events[0], replace(stays.events[1], note="更正：受理单位有误"))
        )
        late = petition(d0 + timedelta(hours=16))
        run.platform.petitions[stays.number] = corrected
        run.platform.petitions[late.number] = late
        result = load(conn, server.url, *run.windows[0])
        again = load(conn, server.url, *run.windows[0])

    assert not result.skipped and result.batch_id not in run.batches
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (3, 2, 1)
    assert "1 new, 1 updated, 0 unchanged" in ledger(conn, result.batch_id)["notes"]
    held = [(e[1], e[7], e[8]) for e in events_table(conn, [stays.number])]
    assert held == [(1, stays.events[0].note, run.batches[0]), (2, "更正：受理单位有误", result.batch_id)]
    assert petitions_table(conn, [late.number])[0][0] == late.number
    assert again.skipped and again.batch_id == result.batch_id  # same content: the checksum finds it
    # Every batch of the story still reconciles: source = loaded + quarantined, quarantine recounted.
    for batch_id in [*run.batches, result.batch_id]:
        row = ledger(conn, batch_id)
        quarantined = conn.execute(
            "SELECT count(*) FROM ops.quarantine WHERE batch_id = %s", (batch_id,)
        ).fetchone()[0]
        assert row["source_rows"] == row["loaded_rows"] + row["quarantined_rows"]
        assert quarantined == row["quarantined_rows"]


# --- retries -------------------------------------------------------------------------------------


def test_429_5xx_and_timeouts_are_retried_and_the_load_completes(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, 3)
    faults = FaultConfig(script=(None, "429", "503", "slow", "500"), retry_after_seconds=3, slow_seconds=1.0)
    sleeps = Sleeps()
    retry = fast_retry(attempts=5, timeout=0.3, sleep=sleeps)
    with serving(static(*petitions), faults) as server, caplog.at_level(logging.WARNING):
        result = load(conn, server.url, since, until, page_size=2, retry=retry)
        requests = server.faults.requests

    assert (result.source_rows, result.loaded_rows) == (3, 3)
    assert requests == 6  # page 1, then page 2 after four failures
    assert len(sleeps) == 4
    assert sleeps[0] >= 3  # Retry-After honoured
    assert sleeps[1] < sleeps[3] or sleeps[1] < 1  # backoff grows from a small base
    lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert any("429" in m for m in lines) and any("503" in m for m in lines)
    assert any("timed out" in m for m in lines) and any("500" in m for m in lines)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    for attempt, step in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        delays = {policy.backoff(attempt) for _ in range(20)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1


def test_persistent_5xx_fails_clearly_without_a_partial_batch(conn: psycopg.Connection) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, 3)
    mark_before = watermarks.get(conn, online.SOURCE)
    # The first page comes through; the second never does.
    faults = FaultConfig(script=(None,), rate_5xx=1.0)
    with serving(static(*petitions), faults) as server, pytest.raises(PlatformError) as caught:
        load(conn, server.url, since, until, page_size=2, retry=fast_retry(attempts=3))

    message = str(caught.value)
    assert "page 2 failed 3 times" in message and "HTTP 50" in message
    label = online.window_label(since, until)
    statuses = conn.execute(
        "SELECT status, notes FROM ops.load_batches WHERE file_name = %s", (label,)
    ).fetchall()
    assert statuses == [("failed", message)]
    assert petitions_table(conn, [p.number for p in petitions]) == []
    assert watermarks.get(conn, online.SOURCE) == mark_before


def test_a_refused_token_fails_at_once_with_a_clear_error(conn: psycopg.Connection) -> None:
    since, until = window_of(next_day())
    sleeps = Sleeps()
    with serving(static(*day_petitions(since, 1))) as server, pytest.raises(PlatformAuthError) as caught:
        load_window(
            conn,
            base_url=server.url,
            token="wrong-secret-value",
            since=since,
            until=until,
            pii_key=PII_KEY,
            retry=fast_retry(sleep=sleeps),
        )
    assert "401" in str(caught.value) and online.CONNECTION_ID in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value)
    assert sleeps == []  # no retry: a token does not get better by waiting


# --- quarantine ----------------------------------------------------------------------------------


def _bad(kind: str, record: dict) -> dict:
    record = dict(record)
    if kind in ("missing_number", "impossible_date", "unknown_category", "unknown_event_type"):
        return corrupt(record, kind)
    if kind == "malformed_id_number":
        record["xfr"] = {**record["xfr"], "zjhm": record["xfr"]["zjhm"][:-1] + "Y"}
    elif kind == "no_id_no_phone":
        record["xfr"] = {**record["xfr"], "zjhm": None, "lxdh": None}
    elif kind == "malformed_phone":
        record["xfr"] = {**record["xfr"], "lxdh": "166123"}
    elif kind == "unknown_channel":
        record["xfqd"] = "微信群"
    elif kind == "unknown_residence_region":
        record["xfr"] = {**record["xfr"], "zzqh": "人民路12号"}
    elif kind == "unknown_town":
        record["wtsd"] = "110105001"
    elif kind == "unknown_rating":
        record["blgc"] = [*record["blgc"], {**record["blgc"][-1], "xh": 9, "lx": "回访", "pj": "很好"}]
    elif kind == "no_history":
        record["blgc"] = []
    elif kind == "not_an_object":
        return ["xfjbh", record["xfjbh"]]  # type: ignore[return-value]
    return record


BAD = {
    "missing_number": "xfjbh",
    "impossible_date": "djsj",
    "unknown_category": "nrfl",
    "unknown_event_type": "blgc[1].lx",
    "malformed_id_number": "xfr.zjhm",
    "no_id_no_phone": "xfr",
    "malformed_phone": "xfr.lxdh",
    "unknown_channel": "xfqd",
    "unknown_town": "wtsd",
    "unknown_residence_region": "xfr.zzqh",
    "unknown_rating": "blgc[2].pj",
    "no_history": "blgc",
    "not_an_object": "*",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_record_is_quarantined_with_page_row_field_and_reason(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    since, until = window_of(next_day())
    petitions = day_petitions(since, 4)
    served = [(p.updated_at, petition_json(p)) for p in petitions]
    served[2] = (served[2][0], _bad(kind, served[2][1]))  # page 2, row 1 with two per page
    with serving(StaticProvider(served)) as server, caplog.at_level(logging.INFO):
        result = load(conn, server.url, since, until, page_size=2)

    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (4, 3, 1)
    row = ledger(conn, result.batch_id)
    assert (row["source_rows"], row["loaded_rows"], row["quarantined_rows"]) == (4, 3, 1)
    q = conn.execute(
        "SELECT row_number, page, page_row, field, reason, file_name FROM ops.quarantine WHERE batch_id = %s",
        (result.batch_id,),
    ).fetchall()
    assert len(q) == 1
    window_row, page, page_row, field, reason, file_name = q[0]
    assert (window_row, page, page_row, field) == (3, 2, 1, BAD[kind])
    assert reason.strip() and file_name == result.file_name
    person_values = served[2][1]["xfr"].values() if isinstance(served[2][1], dict) else []
    for value in person_values:
        if value and len(str(value)) > 4:
            assert str(value) not in reason
    kept = conn.execute(
        "SELECT row_number FROM restricted.quarantine_records WHERE batch_id = %s", (result.batch_id,)
    ).fetchall()
    assert kept == [(3,)]
    good = [p.number for i, p in enumerate(petitions) if i != 2]
    assert [r[0] for r in petitions_table(conn, good)] == sorted(good)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("page 2 row 1" in m and BAD[kind] in m for m in lines), lines


def test_a_petition_repeated_in_the_window_loads_once(conn: psycopg.Connection) -> None:
    since, until = window_of(next_day())
    p = day_petitions(since, 1)[0]
    record = petition_json(p)
    stale = {**record, "blzt": "登记", "blgc": record["blgc"][:1]}
    with serving(StaticProvider([(since + timedelta(hours=1), stale), (p.updated_at, record)])) as server:
        result = load(conn, server.url, since, until)
    assert (result.source_rows, result.loaded_rows, result.quarantined_rows) == (2, 1, 1)
    assert petitions_table(conn, [p.number])[0][4] == "受理"
    field, reason = conn.execute(
        "SELECT field, reason FROM ops.quarantine WHERE batch_id = %s", (result.batch_id,)
    ).fetchone()
    assert field == "xfjbh" and "repeated" in reason


# --- personal data -------------------------------------------------------------------------------


def test_raw_identifiers_stay_in_the_restricted_schema_and_out_of_logs(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    since, until = window_of(next_day())
    with_id = petition(since + timedelta(hours=9))
    phone_only = petition(since + timedelta(hours=10), petitioner=person(id_number=None))
    bad = petition_json(petition(since + timedelta(hours=11)))
    bad["xfr"]["zjhm"] = bad["xfr"]["zjhm"][:-1] + "Y"
    bad_person = bad["xfr"]
    served = [(p.updated_at, petition_json(p)) for p in (with_id, phone_only)]
    served.append((since + timedelta(hours=11), bad))
    with serving(StaticProvider(served)) as server, caplog.at_level(logging.DEBUG):
        result = load(conn, server.url, since, until)
    assert (result.loaded_rows, result.quarantined_rows) == (2, 1)

    secrets: list[str] = [bad_person["xm"], bad_person["zjhm"], bad_person["lxdh"], bad_person["zz"]]
    for p in (with_id, phone_only):
        secrets += [p.petitioner.name, p.petitioner.phone, p.petitioner.address]
        if p.petitioner.id_number:
            secrets.append(p.petitioner.id_number)
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('restricted', 'pg_catalog', 'information_schema') "
        "AND table_type = 'BASE TABLE'"
    ).fetchall()
    assert ("raw", "online_petitions") in tables
    for schema, table in tables:
        for secret in secrets:
            hits = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{} t WHERE t::text LIKE %s").format(
                    sql.Identifier(schema), sql.Identifier(table)
                ),
                (f"%{secret}%",),
            ).fetchone()[0]
            assert hits == 0, f"a raw identifier is in {schema}.{table}"
    logged = caplog.text
    assert not [s for s in secrets if s in logged]

    held = dict(
        (r[0], r[1:])
        for r in conn.execute(
            "SELECT petition_no, petitioner_key, petitioner_name_masked, petitioner_id_masked, "
            "petitioner_phone_masked, petitioner_address_masked FROM raw.online_petitions "
            "WHERE petition_no = ANY(%s)",
            ([with_id.number, phone_only.number],),
        ).fetchall()
    )
    key, name, id_masked, phone_masked, address = held[with_id.number]
    pid = with_id.petitioner.id_number
    assert key == pii.person_key(pid, PII_KEY)  # keyed hash of the ID number when present
    assert name == with_id.petitioner.name[0] + "*" + with_id.petitioner.name[-1]
    assert id_masked == pid[:6] + "********" + pid[-4:]
    assert phone_masked == with_id.petitioner.phone[:3] + "****" + with_id.petitioner.phone[-4:]
    assert address == "江东区东湖街道***"
    key, _, id_masked, _, _ = held[phone_only.number]
    assert key == pii.person_key(phone_only.petitioner.phone, PII_KEY)  # else the phone
    assert id_masked is None
    restricted = conn.execute(
        "SELECT name, phone, address FROM restricted.online_petitioners WHERE petition_no = %s",
        (phone_only.number,),
    ).fetchone()
    assert restricted == (
        phone_only.petitioner.name,
        phone_only.petitioner.phone,
        phone_only.petitioner.address,
    )


# --- configuration and the task body -------------------------------------------------------------


def test_platform_settings_come_from_the_airflow_connection() -> None:
    value = (
        '{"conn_type": "http", "host": "10.1.2.3", "port": 8765, "schema": "https", '
        '"password": "s3cret", "extra": {"page_size": 50}}'
    )
    settings = online.platform_settings({online.CONNECTION_ENV: value})
    assert settings.base_url == "https://10.1.2.3:8765"
    assert (settings.token, settings.page_size) == ("s3cret", 50)
    assert "s3cret" not in repr(settings)
    with pytest.raises(RuntimeError, match=online.CONNECTION_ENV):
        online.platform_settings({})


def test_the_task_loads_the_previous_bureau_day(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, workdirs: dict
) -> None:
    from xinfang.orchestration import tasks
    from xinfang.orchestration.schedules import online_window_for

    day = next_day()
    logical = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(
        hour=0, minute=20, tzinfo=BUREAU_TZ
    )
    since, until = online_window_for(logical)
    assert (until - since) == timedelta(days=1, minutes=10)
    assert until.replace(tzinfo=None) == datetime.combine(day + timedelta(days=1), datetime.min.time())
    petitions = day_petitions(datetime.combine(day, datetime.min.time()), 2)
    with serving(static(*petitions)) as server:
        monkeypatch.setenv(
            online.CONNECTION_ENV, f'{{"conn_type": "http", "host": "{server.url}", "password": "{TOKEN}"}}'
        )
        monkeypatch.setenv("XINFANG_PII_KEY", PII_KEY.decode())
        summary = tasks.ingest_online_petitions(logical)
    assert summary["loaded_rows"] == 2 and not summary["skipped"]
    assert summary["file_name"].startswith("api:") and summary["file_name"].endswith(
        f"{until.replace(tzinfo=None):%Y-%m-%dT%H:%M}"
    )


# --- the world model through a faulty platform ---------------------------------------------------

WORLD_SEED = 7707  # a world of its own: no other test loads these windows


@pytest.fixture(scope="module")
def world_petitions() -> list[Petition]:
    from xinfang.sim.world import WorldConfig, build_world

    world = build_world(WorldConfig(seed=WORLD_SEED))
    return list(world.petitions(datetime(2024, 2, 20).date(), datetime(2024, 3, 7).date()))


def test_world_days_load_through_faults_and_damage_and_reconcile(
    conn: psycopg.Connection, world_petitions: list[Petition]
) -> None:
    provider = WorldProvider(world_petitions, corrupt_rate=0.1, seed=WORLD_SEED)
    clean = WorldProvider(world_petitions)
    faults = FaultConfig(rate_429=0.15, rate_5xx=0.15, seed=WORLD_SEED, retry_after_seconds=1)
    days = [(datetime(2024, 3, d), datetime(2024, 3, d + 1)) for d in (5, 6)]
    with serving(provider, faults) as server:
        results = [load(conn, server.url, *w, page_size=25, retry=fast_retry(attempts=8)) for w in days]

    for (since, until), result in zip(days, results, strict=True):
        served, truth = provider.window(since, until), clean.window(since, until)
        damaged = {t["xfjbh"] for s, t in zip(served, truth, strict=True) if s != t}
        assert result.source_rows == len(served) > 25  # several pages
        assert result.quarantined_rows == len(damaged) > 0
        assert result.loaded_rows == len(served) - len(damaged)
        quarantined = conn.execute(
            "SELECT count(*) FROM ops.quarantine WHERE batch_id = %s", (result.batch_id,)
        ).fetchone()[0]
        assert quarantined == len(damaged)

    # Petitions changed on both days: the second day's version is held, with the first day's events kept.
    first_day = {t["xfjbh"]: t for t in clean.window(*days[0])}
    second_day = {t["xfjbh"]: t for t in clean.window(*days[1])}
    damaged_any = {
        t["xfjbh"] for w in days for s, t in zip(provider.window(*w), clean.window(*w), strict=True) if s != t
    }
    # Every undamaged petition is held in its latest version.
    latest = {
        t["xfjbh"]: len(t["blgc"]) for w in days for t in clean.window(*w) if t["xfjbh"] not in damaged_any
    }
    held = dict(
        conn.execute(
            "SELECT petition_no, event_count FROM raw.online_petitions WHERE petition_no = ANY(%s)",
            (list(latest),),
        ).fetchall()
    )
    assert held == latest
    both = sorted(set(first_day) & set(second_day) - damaged_any)
    assert both, "the world should update some petitions on consecutive days"
    for number in both:
        history = conn.execute(
            "SELECT seq, batch_id FROM raw.online_petition_events WHERE petition_no = %s ORDER BY seq",
            (number,),
        ).fetchall()
        assert [seq for seq, _ in history] == [e["xh"] for e in second_day[number]["blgc"]]
        first_seqs = {e["xh"] for e in first_day[number]["blgc"]}
        assert {b for seq, b in history if seq in first_seqs} == {results[0].batch_id}
        assert {b for seq, b in history if seq not in first_seqs} == {results[1].batch_id}


def test_the_phone_key_links_a_petitioner_to_the_hotline_callers_key(conn: psycopg.Connection) -> None:
    """Hotline callers are known by phone only; petitioners by ID number. The phone key joins them."""
    since, until = window_of(next_day())
    petitions = day_petitions(since, 2)
    with serving(static(*petitions)) as server:
        load(conn, server.url, since, until)
    held = dict(
        conn.execute(
            "SELECT petition_no, petitioner_phone_key FROM raw.online_petitions WHERE petition_no = ANY(%s)",
            ([p.number for p in petitions],),
        ).fetchall()
    )
    for one in petitions:
        # What the hotline loader stores as caller_key for a call from the same phone.
        expected = hmac_module.new(PII_KEY, one.petitioner.phone.encode(), "sha256").hexdigest()
        assert held[one.number] == expected


def test_an_event_corrected_by_a_newer_version_is_updated(conn: psycopg.Connection) -> None:
    start = datetime.combine(fresh_days(2)[0], datetime.min.time())
    first = petition(start + timedelta(hours=9), ("受理", start + timedelta(hours=11)))
    corrected = replace(first.events[1], note="更正：受理意见有误")
    later = replace(first.events[1], seq=3, type="交办", at=start + timedelta(days=1, hours=10), note="")
    second = replace(first, events=(first.events[0], corrected, later))
    with serving(static(first)) as server:
        load(conn, server.url, start, start + timedelta(days=1))
    with serving(static(second)) as server:
        load(conn, server.url, start + timedelta(days=1), start + timedelta(days=2))
    held = [(e[1], e[2], e[7]) for e in events_table(conn, [first.number])]
    assert held == [(1, "登记", first.events[0].note), (2, "受理", "更正：受理意见有误"), (3, "交办", "")]


def test_an_older_versions_events_do_not_overwrite_the_newer_ones(conn: psycopg.Connection) -> None:
    start = datetime.combine(fresh_days(2)[0], datetime.min.time())
    newer = petition(start + timedelta(hours=9), ("受理", start + timedelta(days=1, hours=11)))
    older = replace(
        newer,
        events=(newer.events[0], replace(newer.events[1], note="旧版本", at=start + timedelta(hours=10))),
    )
    with serving(static(newer)) as server:
        load(conn, server.url, start + timedelta(days=1), start + timedelta(days=2))
    with serving(static(older)) as server:
        load(conn, server.url, start, start + timedelta(days=1))
    held = [(e[1], e[7]) for e in events_table(conn, [newer.number])]
    assert held == [(1, newer.events[0].note), (2, newer.events[1].note)]
