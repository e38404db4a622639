"""Simulator of the grid management system (网格化管理系统): its own PostgreSQL database.

The vendor's system keeps grids, grid workers, screening events (矛盾纠纷排查)
and the actions taken on them in a database of its own; the warehouse reads it
incrementally by `updated_at` (xinfang.ingest.grid). Here that database lives
on the warehouse's server under another name (`xinfang_gridsys` unless
XINFANG_GRID_DATABASE_URL says otherwise) and `advance_to(moment)` brings it
to the state the world model implies at `moment`: events reported so far are
inserted, events whose status moved on are updated with a new `updated_at`.

The world hands out each event in its final state; the intermediate states
follow deterministically from it (see `timeline`), so advancing to the same
moment twice, or in steps, ends in the same tables. The schema is described
as the vendor would in docs/sources/grid_management_system.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Protocol

import psycopg
from psycopg import errors, sql

from xinfang.ingest.grid import source_url, with_dbname
from xinfang.sim.records import GridEvent

log = logging.getLogger(__name__)

REPORTED, IN_PROGRESS, RESOLVED, ESCALATED = "已上报", "化解中", "已化解", "已上报信访"
WORKER_KIND = "网格员"

# The vendor's schema. No foreign keys and a nullable event number: the real
# system accepts what its forms send, which is why the loader validates.
VENDOR_DDL = """
CREATE TABLE IF NOT EXISTS grids (
    grid_code varchar(24) PRIMARY KEY,
    grid_name varchar(64) NOT NULL,
    community_code varchar(24),
    community_name varchar(64),
    town_code varchar(12) NOT NULL,
    worker_code varchar(24),
    updated_at timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS grid_workers (
    worker_code varchar(24) PRIMARY KEY,
    name varchar(32) NOT NULL,
    phone varchar(20),
    grid_code varchar(24),
    unit_code varchar(24),
    full_time boolean NOT NULL DEFAULT true,
    hired_on date,
    left_on date,
    updated_at timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS screening_events (
    id bigserial PRIMARY KEY,
    event_id varchar(40) UNIQUE,
    grid_code varchar(24),
    worker_code varchar(24),
    reported_at timestamp,
    category_code varchar(12),
    description text,
    people_involved integer,
    status varchar(16),
    resolved_at timestamp,
    escalated_petition_no varchar(40),
    created_at timestamp NOT NULL DEFAULT localtimestamp,
    updated_at timestamp NOT NULL
);
CREATE INDEX IF NOT EXISTS screening_events_updated_at ON screening_events (updated_at);
CREATE TABLE IF NOT EXISTS event_actions (
    event_id varchar(40) NOT NULL,
    seq integer NOT NULL,
    action varchar(16) NOT NULL,
    action_at timestamp NOT NULL,
    status_after varchar(16) NOT NULL,
    note text,
    PRIMARY KEY (event_id, seq)
);
-- Simulator bookkeeping, not part of the vendor's schema: how far the system has been advanced.
CREATE TABLE IF NOT EXISTS sim_clock (
    id integer PRIMARY KEY CHECK (id = 1),
    as_of timestamp NOT NULL
);
"""


class GridWorld(Protocol):
    """What the simulator needs of the world model (xinfang.sim.world.World)."""

    staff: Sequence[Any]

    def grid_events(self, start: date, end: date) -> Iterator[GridEvent]: ...


@dataclass(frozen=True)
class Step:
    at: datetime
    action: str
    status: str
    note: str


@dataclass(frozen=True)
class AdvanceResult:
    as_of: datetime
    events_inserted: int
    events_updated: int
    actions_inserted: int
    grids: int
    workers: int


# --- the database -----------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the grid system's database on its server if missing (idempotent, race-safe)."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log.info("created the grid system database %s", dbname)
        except errors.DuplicateDatabase:
            pass  # created concurrently by another process


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.sim.grid_system.ddl'))")
        conn.execute(VENDOR_DDL)


# --- the world's events as of a moment --------------------------------------------------------


def _between(start: datetime, end: datetime, share: float) -> datetime:
    return (start + (end - start) * share).replace(microsecond=0)


def timeline(event: GridEvent) -> list[Step]:
    """The states an event passes through on its way to the final one the world reports."""
    steps = [Step(event.reported_at, "上报", REPORTED, "网格员排查发现并上报")]
    if event.status == IN_PROGRESS:
        if event.updated_at > event.reported_at:
            steps.append(Step(event.updated_at, "受理化解", IN_PROGRESS, "组织调解"))
    elif event.status in (RESOLVED, ESCALATED):
        end = event.resolved_at if event.status == RESOLVED and event.resolved_at else event.updated_at
        mid = _between(event.reported_at, end, 0.3)
        if event.reported_at < mid < end:
            steps.append(Step(mid, "受理化解", IN_PROGRESS, "组织调解"))
        if event.status == RESOLVED:
            steps.append(Step(end, "化解办结", RESOLVED, "双方达成一致，矛盾化解"))
        else:
            steps.append(Step(end, "上报信访", ESCALATED, f"转信访件 {event.escalated_petition_no or ''}"))
        if event.updated_at > end:
            steps.append(Step(event.updated_at, "回访", event.status, "回访确认"))
    elif event.updated_at > event.reported_at:
        steps.append(Step(event.updated_at, "更新", event.status, ""))
    return steps


def state_as_of(event: GridEvent, moment: datetime) -> tuple[tuple, list[Step]] | None:
    """The event's row in screening_events at `moment` and the actions done by then (None before it)."""
    steps = [s for s in timeline(event) if s.at <= moment]
    if not steps:
        return None
    last = steps[-1]
    row = (
        event.event_id,
        event.grid_code,
        event.worker_code,
        event.reported_at,
        event.category_code,
        event.description,
        event.people_involved,
        last.status,
        event.resolved_at if last.status == RESOLVED else None,
        event.escalated_petition_no if last.status == ESCALATED else None,
        last.at,
    )
    return row, steps


EVENT_COLUMNS = (
    "event_id",
    "grid_code",
    "worker_code",
    "reported_at",
    "category_code",
    "description",
    "people_involved",
    "status",
    "resolved_at",
    "escalated_petition_no",
    "updated_at",
)
GRID_COLUMNS = (
    "grid_code",
    "grid_name",
    "community_code",
    "community_name",
    "town_code",
    "worker_code",
    "updated_at",
)
WORKER_COLUMNS = (
    "worker_code",
    "name",
    "phone",
    "grid_code",
    "unit_code",
    "full_time",
    "hired_on",
    "left_on",
    "updated_at",
)


def _on_day(day: date | None, fallback: datetime) -> datetime:
    return datetime.combine(day, time(9, 0)) if day else fallback


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def worker_rows(world: GridWorld, moment: datetime, epoch: datetime) -> list[tuple]:
    """Grid workers hired by `moment`; a departure shows once it has happened."""
    rows = []
    for s in world.staff:
        if _attr(s, "kind") != WORKER_KIND or not _attr(s, "grid_code"):
            continue
        hired = _attr(s, "hired_on", "hired")
        left = _attr(s, "left_on", "left")
        hired_at = _on_day(hired, epoch)
        if hired_at > moment:
            continue
        left_now = left if left and _on_day(left, epoch) <= moment else None
        rows.append(
            (
                s.code,
                s.name,
                _attr(s, "phone"),
                s.grid_code,
                _attr(s, "unit_code"),
                bool(_attr(s, "full_time", default=True)),
                hired,
                left_now,
                _on_day(left_now, epoch) if left_now else hired_at,
            )
        )
    return rows


def grid_rows(world: GridWorld, workers: list[tuple], epoch: datetime) -> list[tuple]:
    """Grids with the worker currently in charge (the last hired who has not left)."""
    in_charge: dict[str, str] = {}
    for w in sorted(workers, key=lambda w: (w[6] or date.min, w[0])):
        if w[7] is None:
            in_charge[w[3]] = w[0]
    rows = []
    for grid_code, name, community_code, community_name, town_code in _grids(world):
        rows.append(
            (grid_code, name, community_code, community_name, town_code, in_charge.get(grid_code), epoch)
        )
    return rows


def _grids(world: GridWorld) -> Iterator[tuple[str, str, str | None, str | None, str]]:
    """(code, name, community code, community name, town code) of every grid: the world's, else the city's."""
    grids = _attr(world, "grids", default=None)
    if grids is not None:
        for g in grids:
            yield g.code, g.name, g.community_code, g.community_name, g.town_code
        return
    from xinfang.sim import city

    for town in city.TOWNS:
        for community in town.communities:
            for g in community.grids:
                yield g.code, g.name, community.code, community.name, town.code


def _world_start(world: Any) -> date:
    config = _attr(world, "config", "cfg")
    return _attr(config, "start", "start_date", default=None) or date(2023, 1, 1)


def default_world() -> GridWorld:
    from xinfang.sim.world import WorldConfig, build_world

    return build_world(WorldConfig())


# --- advancing the system ---------------------------------------------------------------------


def _copy(cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    with cur.copy(
        sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
    ) as cp:
        for r in rows:
            cp.write_row(r)


def _upsert_sql(table: str, key: str, columns: Sequence[str], staged: str) -> sql.Composed:
    """Insert new keys; update rows only when the source moved on (a later updated_at)."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in columns if c != key
    )
    return sql.SQL(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({k}) DO UPDATE SET {sets} "
        "WHERE {t}.updated_at < excluded.updated_at RETURNING (xmax = 0) AS inserted"
    ).format(t=sql.Identifier(table), cols=cols, s=sql.Identifier(staged), k=sql.Identifier(key), sets=sets)


def clock(url: str | None = None) -> datetime:
    """The moment the grid system has been advanced to (datetime.min before the first advance)."""
    url = url or source_url()
    ensure_database(url)
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        row = conn.execute("SELECT as_of FROM sim_clock").fetchone()
    return row[0] if row else datetime.min


def advance_to(moment: datetime, world: GridWorld | None = None, url: str | None = None) -> AdvanceResult:
    """Bring the grid system's tables to their state as of `moment` (bureau time, naive)."""
    if moment.tzinfo is not None:
        from xinfang.config import BUREAU_TZ

        moment = moment.astimezone(BUREAU_TZ).replace(tzinfo=None)
    world = world or default_world()
    url = url or source_url()
    ensure_database(url)
    start = _world_start(world)
    epoch = datetime.combine(start, time(0, 0))
    events, actions = [], []
    for event in world.grid_events(start, moment.date()):
        state = state_as_of(event, moment)
        if state is None:
            continue
        row, steps = state
        events.append(row)
        actions.extend(
            (event.event_id, seq, s.action, s.at, s.status, s.note) for seq, s in enumerate(steps, start=1)
        )
    workers = worker_rows(world, moment, epoch)
    grids = grid_rows(world, workers, epoch)

    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute("LOCK TABLE sim_clock IN EXCLUSIVE MODE")
            clock = conn.execute("SELECT as_of FROM sim_clock").fetchone()
            if clock and clock[0] > moment:
                raise ValueError(f"the grid system is already at {clock[0]}; it only moves forward")
            conn.execute(
                # CREATE AS drops the constraints, so rows stage as they are.
                f"CREATE TEMP TABLE tmp_events ON COMMIT DROP AS "  # noqa: S608 - constant columns
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM screening_events WITH NO DATA;"
                "CREATE TEMP TABLE tmp_actions ON COMMIT DROP AS SELECT * FROM event_actions WITH NO DATA;"
                "CREATE TEMP TABLE tmp_grids ON COMMIT DROP AS SELECT * FROM grids WITH NO DATA;"
                "CREATE TEMP TABLE tmp_workers ON COMMIT DROP AS SELECT * FROM grid_workers WITH NO DATA"
            )
            with conn.cursor() as cur:
                _copy(cur, "tmp_events", EVENT_COLUMNS, events)
                _copy(
                    cur,
                    "tmp_actions",
                    ("event_id", "seq", "action", "action_at", "status_after", "note"),
                    actions,
                )
                _copy(cur, "tmp_grids", GRID_COLUMNS, grids)
                _copy(cur, "tmp_workers", WORKER_COLUMNS, workers)
            flags = [
                r[0]
                for r in conn.execute(
                    _upsert_sql("screening_events", "event_id", EVENT_COLUMNS, "tmp_events")
                ).fetchall()
            ]
            new_actions = conn.execute(
                "INSERT INTO event_actions SELECT * FROM tmp_actions ON CONFLICT DO NOTHING"
            ).rowcount
            conn.execute(_upsert_sql("grid_workers", "worker_code", WORKER_COLUMNS, "tmp_workers"))
            # A grid's worker changes without the clock of the grid moving: compare contents instead.
            conn.execute(
                "INSERT INTO grids SELECT * FROM tmp_grids t ON CONFLICT (grid_code) DO UPDATE SET "
                "grid_name = excluded.grid_name, community_code = excluded.community_code, "
                "community_name = excluded.community_name, town_code = excluded.town_code, "
                "worker_code = excluded.worker_code, updated_at = %s "
                "WHERE (grids.grid_name, grids.community_code, grids.community_name, grids.town_code, "
                "grids.worker_code) IS DISTINCT FROM (excluded.grid_name, excluded.community_code, "
                "excluded.community_name, excluded.town_code, excluded.worker_code)",
                (moment,),
            )
            conn.execute(
                "INSERT INTO sim_clock (id, as_of) VALUES (1, %s) "
                "ON CONFLICT (id) DO UPDATE SET as_of = excluded.as_of",
                (moment,),
            )
    result = AdvanceResult(
        as_of=moment,
        events_inserted=sum(flags),
        events_updated=len(flags) - sum(flags),
        actions_inserted=new_actions,
        grids=len(grids),
        workers=len(workers),
    )
    log.info(
        "grid system advanced to %s: %d events inserted, %d updated, %d actions",
        moment,
        result.events_inserted,
        result.events_updated,
        result.actions_inserted,
    )
    return result
