"""Incremental loader of the grid management system (网格化管理系统) database.

Each run reads the screening events whose `updated_at` lies after the stored
watermark (minus an overlap, because the vendor's clock and commit order are
not perfectly monotonic) and at or before the run's cut-off, plus snapshots of
the grids and grid workers, all in one consistent read of the source.

Row versions already handled (re-read in the overlap, or a re-run of the same
window) are recognised by a keyed fingerprint and left out, so re-running any
window changes nothing. New versions are validated: good ones upsert the
current state of `raw.grid_screening_events` by event id and append to
`raw.grid_event_status_history`; bad ones go to the quarantine with row,
field and reason. Worker names and phones are pseudonymised (raw values only
in `restricted.grid_workers`), free text is scrubbed. The batch ledger row,
the reconciliation check and the watermark move in the load's transaction.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xinfang import pii
from xinfang.config import BUREAU_TZ, get_settings
from xinfang.ingest import batches, watermarks
from xinfang.ingest.batches import BatchResult, Rejection, RowError

log = logging.getLogger(__name__)

SOURCE = "grid_events"
GRID_DB_ENV = "XINFANG_GRID_DATABASE_URL"
DEFAULT_DBNAME = "xinfang_gridsys"
# Long enough to cover the vendor's clock skew and transactions committed late.
OVERLAP = timedelta(hours=2)

STATUSES = frozenset({"已上报", "化解中", "已化解", "已上报信访"})
EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{4,40}$")
EARLIEST = datetime(2000, 1, 1)  # the system went live long after; anything earlier is a typo

EVENT_COLUMNS = (
    "id",
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
# Columns of the temporary table the good event rows are COPied into.
STAGED_EVENT_COLUMNS = (
    "source_row",
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
    "source_updated_at",
)
RAW_EVENT_COLUMNS = STAGED_EVENT_COLUMNS[1:]
RAW_GRID_COLUMNS = (*GRID_COLUMNS[:-1], "source_updated_at")
RAW_WORKER_COLUMNS = (
    "worker_code",
    "worker_key",
    "name_masked",
    "phone_masked",
    "grid_code",
    "unit_code",
    "full_time",
    "hired_on",
    "left_on",
    "source_updated_at",
)
PII_WORKER_COLUMNS = ("worker_code", "worker_key", "name", "phone", "source_updated_at")


@dataclass(frozen=True)
class Extract:
    events: list[dict[str, Any]]
    grids: list[dict[str, Any]]
    workers: list[dict[str, Any]]


# --- where the source lives -------------------------------------------------------------------


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def source_url(warehouse_url: str | None = None) -> str:
    """The grid system's database: XINFANG_GRID_DATABASE_URL, else `xinfang_gridsys` beside the warehouse."""
    if env := os.environ.get(GRID_DB_ENV):
        return env
    if warehouse_url is None:
        from xinfang import db

        warehouse_url = db.database_url()
    return with_dbname(warehouse_url, DEFAULT_DBNAME)


# --- schema and reference data ----------------------------------------------------------------


def ensure_schema(conn: psycopg.Connection) -> None:
    batches.ensure_schema(conn)
    ddl = resources.files("xinfang.ingest").joinpath("ddl_grid.sql").read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.ingest.ddl'))")
        conn.execute(ddl)


@lru_cache(maxsize=4)
def _category_codes(seeds_dir: Path) -> frozenset[str]:
    with (seeds_dir / "categories.csv").open(encoding="utf-8", newline="") as fh:
        return frozenset(r["category_code"] for r in csv.DictReader(fh))


def category_codes() -> frozenset[str]:
    """The petition category codes (the dbt seed is the one source of truth)."""
    return _category_codes(get_settings().dbt_project_dir / "seeds")


# --- extract ----------------------------------------------------------------------------------


def _local(moment: datetime | None) -> datetime | None:
    """Bureau wall-clock time, naive, as the vendor stores it."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(BUREAU_TZ).replace(tzinfo=None)


def _fetch(cur: psycopg.Cursor, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur.execute(query, params)
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur]


def extract(source: str, lower: datetime | None, until: datetime | None) -> Extract:
    """Changed events in (lower, until] and the reference tables, in one repeatable-read snapshot."""
    params = {"lower": lower, "until": until}
    bound = "(%(until)s::timestamp IS NULL OR updated_at <= %(until)s)"
    with psycopg.connect(source) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            # A named (server-side) cursor streams a three-year initial load instead of buffering it.
            with conn.cursor(name="grid_events_extract") as cur:
                cur.itersize = 5000
                events = _fetch(
                    cur,
                    f"SELECT {', '.join(EVENT_COLUMNS)} FROM screening_events "  # noqa: S608 - constant columns
                    f"WHERE (%(lower)s::timestamp IS NULL OR updated_at > %(lower)s) AND {bound} "
                    "ORDER BY updated_at, id",
                    params,
                )
            # Reference tables in full, not bounded by `until`: a grid or worker edited after the
            # cut-off still exists, and its events must not be quarantined as unknown codes.
            with conn.cursor() as cur:
                grids = _fetch(
                    cur,
                    f"SELECT {', '.join(GRID_COLUMNS)} FROM grids ORDER BY grid_code",  # noqa: S608
                    params,
                )
                workers = _fetch(
                    cur,
                    f"SELECT {', '.join(WORKER_COLUMNS)} FROM grid_workers ORDER BY worker_code",  # noqa: S608
                    params,
                )
    return Extract(events, grids, workers)


# --- validation and pseudonymisation ----------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _record(row: dict[str, Any]) -> dict[str, str]:
    return {k: _text(v) for k, v in row.items()}


def fingerprint(row: dict[str, Any], key: bytes) -> str:
    """Keyed digest of a source row version: the rows may hold personal data, so a plain hash won't do."""
    canonical = json.dumps(_record(row), ensure_ascii=False, sort_keys=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _timestamp(row: dict[str, Any], name: str, label: str, required: bool) -> datetime | None:
    value = row.get(name)
    if value is None:
        if required:
            raise RowError(name, f"{label}: missing {name}")
        return None
    if not isinstance(value, datetime) or value < EARLIEST:
        raise RowError(name, f"{label}: impossible {name} {_text(value)!r}")
    return value


def validate_event(
    row: dict[str, Any], *, grids: set[str], workers: set[str], categories: frozenset[str]
) -> None:
    """Raise RowError(field, reason) for a row the warehouse cannot take; reasons hold no personal data."""
    event_id = (row.get("event_id") or "").strip()
    if not event_id:
        raise RowError("event_id", f"missing event id (source row id {row.get('id')})")
    if not EVENT_ID.match(event_id):
        raise RowError("event_id", f"malformed event id {event_id!r}")
    label = f"event {event_id}"
    reported = _timestamp(row, "reported_at", label, required=True)
    updated = _timestamp(row, "updated_at", label, required=True)
    resolved = _timestamp(row, "resolved_at", label, required=False)
    if updated < reported:
        raise RowError("updated_at", f"{label}: updated_at {updated} is before reported_at {reported}")
    if resolved is not None and resolved < reported:
        raise RowError("resolved_at", f"{label}: resolved_at {resolved} is before reported_at {reported}")
    if resolved is not None and resolved > updated:
        raise RowError("resolved_at", f"{label}: resolved_at {resolved} is after updated_at {updated}")
    grid = row.get("grid_code")
    if not grid:
        raise RowError("grid_code", f"{label}: missing grid code")
    if grid not in grids:
        raise RowError("grid_code", f"{label}: unknown grid code {grid!r}")
    worker = row.get("worker_code")
    if not worker:
        raise RowError("worker_code", f"{label}: missing worker code")
    if worker not in workers:
        raise RowError("worker_code", f"{label}: unknown worker code {worker!r}")
    category = row.get("category_code")
    if not category:
        raise RowError("category_code", f"{label}: missing category code")
    if category not in categories:
        raise RowError("category_code", f"{label}: unknown category code {category!r}")
    people = row.get("people_involved")
    if people is None or people < 1:
        raise RowError("people_involved", f"{label}: people_involved must be at least 1, got {people!r}")
    status = row.get("status")
    if status not in STATUSES:
        raise RowError("status", f"{label}: unknown status {status!r}")
    if status == "已化解" and resolved is None:
        raise RowError("resolved_at", f"{label}: status 已化解 without resolved_at")
    if status == "已上报信访" and not row.get("escalated_petition_no"):
        raise RowError("escalated_petition_no", f"{label}: status 已上报信访 without a petition number")


def name_scrubber(names: list[str]) -> re.Pattern[str] | None:
    """A pattern of the known workers' names, longest first, so free text can have them masked."""
    usable = sorted({n for n in names if n and len(n) >= 2}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, usable))) if usable else None


def scrub(text: str, names: re.Pattern[str] | None) -> str:
    text = pii.scrub_text(text)
    return names.sub(lambda m: pii.mask_name(m.group(0)), text) if names else text


# --- load -------------------------------------------------------------------------------------


def _copy(cur: psycopg.Cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)


def _stage_snapshots(
    conn: psycopg.Connection, ex: Extract, pii_key: bytes, notes: list[str]
) -> tuple[int, int]:
    """COPY the reference snapshots into temporary tables; how many grids and workers differ from raw."""
    grids = [g for g in ex.grids if g["grid_code"]]
    workers = [w for w in ex.workers if w["worker_code"]]
    dropped = len(ex.grids) - len(grids) + len(ex.workers) - len(workers)
    if dropped:
        notes.append(f"ignored {dropped} reference row(s) without a code")
        log.warning("grid system: ignored %d grid/worker row(s) without a code", dropped)
    conn.execute(
        "CREATE TEMP TABLE tmp_grid_grids (LIKE raw.grid_grids INCLUDING DEFAULTS) ON COMMIT DROP; "
        "CREATE TEMP TABLE tmp_grid_workers (LIKE raw.grid_workers INCLUDING DEFAULTS) ON COMMIT DROP; "
        "CREATE TEMP TABLE tmp_grid_worker_pii (LIKE restricted.grid_workers) ON COMMIT DROP; "
        "ALTER TABLE tmp_grid_grids ALTER batch_id DROP NOT NULL; "
        "ALTER TABLE tmp_grid_workers ALTER batch_id DROP NOT NULL; "
        "ALTER TABLE tmp_grid_worker_pii ALTER batch_id DROP NOT NULL"
    )
    grid_cols, worker_cols = RAW_GRID_COLUMNS, RAW_WORKER_COLUMNS
    pii_rows, worker_rows = [], []
    for w in workers:
        phone = pii.normalise_phone(w["phone"] or "")
        key = pii.person_key(phone or f"worker:{w['worker_code']}", pii_key)
        name = (w["name"] or "").strip()
        worker_rows.append(
            (
                w["worker_code"],
                key,
                pii.mask_name(name),
                pii.mask_phone(phone),
                w["grid_code"],
                w["unit_code"],
                w["full_time"],
                w["hired_on"],
                w["left_on"],
                w["updated_at"],
            )
        )
        pii_rows.append((w["worker_code"], key, name, phone, w["updated_at"]))
    with conn.cursor() as cur:
        _copy(cur, "tmp_grid_grids", grid_cols, [tuple(g[c] for c in GRID_COLUMNS) for g in grids])
        _copy(cur, "tmp_grid_workers", worker_cols, worker_rows)
        _copy(
            cur,
            "tmp_grid_worker_pii",
            PII_WORKER_COLUMNS,
            pii_rows,
        )
    changed_grids = conn.execute(
        f"SELECT count(*) FROM tmp_grid_grids t LEFT JOIN raw.grid_grids r USING (grid_code) "  # noqa: S608
        f"WHERE r.grid_code IS NULL OR (r.source_updated_at <= t.source_updated_at AND "
        f"({', '.join('r.' + c for c in grid_cols)}) IS DISTINCT FROM "
        f"({', '.join('t.' + c for c in grid_cols)}))"
    ).fetchone()[0]
    changed_workers = conn.execute(
        f"SELECT count(*) FROM tmp_grid_workers t LEFT JOIN raw.grid_workers r USING (worker_code) "  # noqa: S608
        f"WHERE r.worker_code IS NULL OR (r.source_updated_at <= t.source_updated_at AND "
        f"({', '.join('r.' + c for c in worker_cols)}) IS DISTINCT FROM "
        f"({', '.join('t.' + c for c in worker_cols)}))"
    ).fetchone()[0]
    return changed_grids, changed_workers


def _upsert(conn: psycopg.Connection, table: str, staged: str, key: str, cols: tuple[str, ...]) -> None:
    """Insert new codes; update those whose row differs and is not older than the stored one."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    conn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}, batch_id) "  # noqa: S608 - module constants only
        f"SELECT {', '.join(cols)}, batch_id FROM {staged} "
        f"ON CONFLICT ({key}) DO UPDATE SET {sets}, batch_id = excluded.batch_id "
        f"WHERE {table}.source_updated_at <= excluded.source_updated_at AND "
        f"({', '.join(f'{table}.{c}' for c in cols)}) IS DISTINCT FROM "
        f"({', '.join(f'excluded.{c}' for c in cols)})"
    )


def _window_name(lower: datetime | None, until: datetime | None) -> str:
    start = f"({lower:%Y-%m-%d %H:%M:%S}" if lower else "(-inf"
    end = f"{until:%Y-%m-%d %H:%M:%S}]" if until else "+inf)"
    return f"gridsys.screening_events updated_at {start}, {end}"


def load_changes(
    conn: psycopg.Connection,
    source_url: str,
    *,
    pii_key: bytes,
    until: datetime | None = None,
    overlap: timedelta = OVERLAP,
) -> BatchResult:
    """Load what changed in the grid system since the watermark, up to `until` (bureau time if naive)."""
    started = batches.utcnow()
    ensure_schema(conn)
    until = _local(until)
    with conn.transaction():
        # One load at a time: the watermark read below must still hold when the load commits.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.ingest.grid'))")
        mark = watermarks.get(conn, SOURCE)
        lower = _local(mark) - overlap if mark is not None else None
        file_name = _window_name(lower, until)
        ex = extract(source_url, lower, until)

        prints = [fingerprint(r, pii_key) for r in ex.events]
        seen = {
            r[0]
            for r in conn.execute(
                "SELECT row_fingerprint FROM ops.grid_seen_versions WHERE row_fingerprint = ANY(%s)",
                (prints,),
            )
        }
        fresh = [(r, p) for r, p in zip(ex.events, prints, strict=True) if p not in seen]
        notes: list[str] = []
        if seen:
            notes.append(
                f"{len(ex.events) - len(fresh)} row version(s) re-read in the overlap already handled"
            )
        changed_grids, changed_workers = _stage_snapshots(conn, ex, pii_key, notes)
        if not fresh and not changed_grids and not changed_workers:
            log.info("%s: nothing new (%d row versions already handled); skipping", file_name, len(ex.events))
            return BatchResult(SOURCE, file_name, skipped=True, notes=notes)

        grids = {g["grid_code"] for g in ex.grids if g["grid_code"]}
        workers = {w["worker_code"] for w in ex.workers if w["worker_code"]}
        names = name_scrubber([w["name"] for w in ex.workers if w["name"]])
        categories = category_codes()
        good: list[tuple] = []
        rejections: list[Rejection] = []
        outcomes: list[tuple[str, int, str]] = []
        for number, (row, print_) in enumerate(fresh, start=1):
            try:
                validate_event(row, grids=grids, workers=workers, categories=categories)
            except RowError as err:
                rejections.append(Rejection(number, err.field, err.reason, _record(row)))
                outcomes.append((print_, number, "quarantined"))
                continue
            good.append(
                (
                    number,
                    row["event_id"].strip(),
                    row["grid_code"],
                    row["worker_code"],
                    row["reported_at"],
                    row["category_code"],
                    scrub(row["description"] or "", names),
                    row["people_involved"],
                    row["status"],
                    row["resolved_at"],
                    row["escalated_petition_no"],
                    row["updated_at"],
                )
            )
            outcomes.append((print_, number, "loaded"))
        if changed_grids or changed_workers:
            notes.append(f"reference snapshot: {changed_grids} grid(s), {changed_workers} worker(s) changed")
        digest = hashlib.sha256(file_name.encode())
        for print_, _, _ in outcomes:
            digest.update(print_.encode())
        digest.update(f"grids:{changed_grids} workers:{changed_workers} at {started}".encode())

        batch_id = batches.open_batch(
            conn,
            source=SOURCE,
            file_name=file_name,
            sha256=digest.hexdigest(),
            file_date=until.date() if until else None,
            source_rows=len(fresh),
            loaded_rows=len(good),
            rejections=rejections,
            notes=notes,
            started_at=started,
        )
        _apply(conn, batch_id, good, outcomes)
        if ex.events:
            newest = max(r["updated_at"] for r in ex.events)
            watermarks.advance(conn, SOURCE, newest.replace(tzinfo=BUREAU_TZ))
        batches.verify_reconciliation(conn, batch_id, "raw.grid_event_status_history")
    log.info(
        "%s loaded as batch %d: %d source rows = %d loaded + %d quarantined",
        file_name,
        batch_id,
        len(fresh),
        len(good),
        len(rejections),
    )
    return BatchResult(
        SOURCE,
        file_name,
        skipped=False,
        batch_id=batch_id,
        source_rows=len(fresh),
        loaded_rows=len(good),
        quarantined_rows=len(rejections),
        notes=notes,
    )


def _apply(
    conn: psycopg.Connection, batch_id: int, good: list[tuple], outcomes: list[tuple[str, int, str]]
) -> None:
    """Set-based writes of one batch: events, their history, reference snapshots, fingerprints."""
    conn.execute(
        "CREATE TEMP TABLE tmp_grid_events ("
        "source_row integer, event_id text, grid_code text, worker_code text, reported_at timestamp, "
        "category_code text, description text, people_involved integer, status text, "
        "resolved_at timestamp, escalated_petition_no text, source_updated_at timestamp) ON COMMIT DROP"
    )
    with conn.cursor() as cur:
        _copy(cur, "tmp_grid_events", STAGED_EVENT_COLUMNS, good)
        _copy(
            cur,
            "ops.grid_seen_versions",
            ("row_fingerprint", "row_number", "outcome", "batch_id"),
            [(*o, batch_id) for o in outcomes],
        )
    cols = ", ".join(RAW_EVENT_COLUMNS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in RAW_EVENT_COLUMNS if c != "event_id")
    # Out-of-order versions (an older one re-read late) never overwrite a newer current state; a
    # version corrected in place (same updated_at) does. One row per event from the batch: event
    # ids that differ only by blanks in the source are one event here, and ON CONFLICT cannot
    # touch a row twice in one statement.
    conn.execute(
        f"INSERT INTO raw.grid_screening_events ({cols}, first_batch_id, batch_id) "  # noqa: S608
        f"SELECT DISTINCT ON (event_id) {cols}, %(b)s, %(b)s FROM tmp_grid_events "
        "ORDER BY event_id, source_updated_at DESC, source_row DESC "
        f"ON CONFLICT (event_id) DO UPDATE SET {sets}, batch_id = excluded.batch_id, loaded_at = now() "
        "WHERE raw.grid_screening_events.source_updated_at <= excluded.source_updated_at",
        {"b": batch_id},
    )
    # History is append-only: every loaded row version is a row of this batch, never rewritten by a
    # later one (a correction with the same status and updated_at included), so the count of each
    # batch's rows stays equal to its ledger's loaded_rows.
    conn.execute(
        "INSERT INTO raw.grid_event_status_history (event_id, status, source_updated_at, resolved_at, "
        "escalated_petition_no, batch_id, source_row) "
        "SELECT event_id, status, source_updated_at, resolved_at, escalated_petition_no, %(b)s, source_row "
        "FROM tmp_grid_events",
        {"b": batch_id},
    )
    for staged in ("tmp_grid_grids", "tmp_grid_workers", "tmp_grid_worker_pii"):
        conn.execute(f"UPDATE {staged} SET batch_id = %s", (batch_id,))  # noqa: S608 - constant names
    _upsert(conn, "raw.grid_grids", "tmp_grid_grids", "grid_code", RAW_GRID_COLUMNS)
    _upsert(conn, "raw.grid_workers", "tmp_grid_workers", "worker_code", RAW_WORKER_COLUMNS)
    _upsert(conn, "restricted.grid_workers", "tmp_grid_worker_pii", "worker_code", PII_WORKER_COLUMNS)
