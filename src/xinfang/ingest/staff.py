"""Loader of the online platform's staff accounts (GET /api/v1/staff): one time window per batch.

The petition platform holds an account for everyone who handles petitions or
reports to it (bureau staff, township petition officers, grid workers); the
handling events of petitions name these accounts (`jbr`, loaded as
raw.online_petition_events.handler_code). `load_window` pages through the
accounts whose last change (`gxsj`) lies in [since, until) with the online
loader's HTTP client (same retries on 429, 5xx and timeouts), validates every
record (bad ones go to the quarantine with page, row, field and reason, the
record itself to restricted.quarantine_records), pseudonymises name and phone,
COPies the rest into staging tables and upserts from there:

* raw.online_staff: the latest version of each account, by staff code;
* raw.online_staff_postings and raw.online_staff_trainings: the postings and
  training records of the version held, replaced as a whole when a newer
  version of the account arrives;
* restricted.online_staff: the raw name and phone.

The ledger row (source = loaded + quarantined), the quarantine, the upserts,
the reconciliation check and the watermark `ops.watermarks['online_staff']`
move in one transaction. Re-running any window is a no-op: the same window
with the same content is skipped by checksum; a window the watermark has
passed whose content differs (on a live platform, accounts changed since have
moved to later windows) but brings no new version and no new bad record
records no batch at all; a version already held changes no row. The first
load (no watermark) starts at ROSTER_EPOCH: an account unchanged for years is
otherwise in no daily window.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from xinfang import pii
from xinfang.config import BUREAU_TZ, get_settings
from xinfang.ingest import batches, online, watermarks
from xinfang.ingest.batches import BatchResult, Rejection, RowError

# The windowed-API helpers the petition loader already has: the same text check,
# time normalisation, COPY into staging and position-in-window bookkeeping.
from xinfang.ingest.online import (
    STAFF_CODE,
    Page,
    PlatformError,
    RetryPolicy,
    _aware,
    _copy,
    _Position,
    _text,
)
from xinfang.sim.records import POSTING_KINDS, STAFF_KINDS

log = logging.getLogger(__name__)

SOURCE = "online_staff"
API_PATH = "/api/v1/staff"
# Where the first load starts: long before any account's last change (the platform went live later).
ROSTER_EPOCH = datetime(2000, 1, 1, tzinfo=BUREAU_TZ)

STAFF_COLUMNS = (
    "staff_code",
    "staff_kind",
    "unit_code",
    "grid_code",
    "full_time",
    "in_post_from",
    "in_post_to",
    "promoted_on",
    "person_key",
    "name_masked",
    "phone_masked",
    "updated_at",
    "posting_count",
    "training_count",
    "record_sha256",
)
POSTING_COLUMNS = ("staff_code", "posting_kind", "unit_code", "start_date", "end_date")
TRAINING_COLUMNS = ("staff_code", "class_code", "class_name", "start_date", "end_date")
PERSON_COLUMNS = ("staff_code", "person_key", "name", "phone")

CLASS_CODE = re.compile(r"^[0-9A-Za-z-]{1,30}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TOWNSHIP_KINDS = {"乡镇专职": True, "乡镇兼职": False}  # kind -> the full-time flag it implies


# --- reference codes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    units: frozenset[str]  # handling units (departments seed): SZ.., QX.., XZ..
    grids: frozenset[str]  # grid codes (regions seed, level 5)


@lru_cache(maxsize=4)
def _units_from(seeds_dir: Path) -> Units:
    with (seeds_dir / "departments.csv").open(encoding="utf-8", newline="") as fh:
        units = frozenset(r["department_code"] for r in csv.DictReader(fh))
    with (seeds_dir / "regions.csv").open(encoding="utf-8", newline="") as fh:
        grids = frozenset(r["region_code"] for r in csv.DictReader(fh) if r["level"] == "5")
    return Units(units=units, grids=grids)


def reference_units() -> Units:
    """Unit and grid codes from the dbt seeds, the one source of truth."""
    return _units_from(get_settings().dbt_project_dir / "seeds")


# --- validation and pseudonymisation -------------------------------------------------------------


def _date(record: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> date | None:
    value = _text(record, key, where, required=required)
    if value is None:
        return None
    # Strictly YYYY-MM-DD: fromisoformat alone would also take 20250101 or week dates.
    if not ISO_DATE.match(value):
        raise RowError(where, f"unreadable date {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RowError(where, f"impossible date {value!r}") from None


def _time(record: Mapping[str, Any], key: str) -> datetime:
    value = _text(record, key, key)
    assert value is not None
    try:
        return online.to_bureau(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise RowError(key, f"impossible or unreadable time {value!r}") from None


def _list(record: Mapping[str, Any], key: str) -> list[Any]:
    value = record.get(key)
    if not isinstance(value, list):
        raise RowError(
            key, "missing list" if value is None else f"expected a list, got {type(value).__name__}"
        )
    return value


@dataclass(frozen=True)
class Checked:
    code: str
    updated_at: datetime
    staff: tuple[Any, ...]  # STAFF_COLUMNS
    postings: list[tuple[Any, ...]]  # POSTING_COLUMNS
    trainings: list[tuple[Any, ...]]  # TRAINING_COLUMNS
    person: tuple[Any, ...]  # PERSON_COLUMNS


def _postings(record: Mapping[str, Any], code: str, units: Units) -> list[tuple[Any, ...]]:
    rows, seen = [], set()
    for i, posting in enumerate(_list(record, "jljl")):
        where = f"jljl[{i}]"
        if not isinstance(posting, dict):
            raise RowError(where, "posting is not an object")
        kind = posting.get("lx")
        if kind not in POSTING_KINDS:
            raise RowError(f"{where}.lx", f"unknown posting kind {kind!r}")
        unit = _text(posting, "dwbm", f"{where}.dwbm")
        if unit not in units.units:
            raise RowError(f"{where}.dwbm", f"unknown unit code {unit!r}")
        start = _date(posting, "ksrq", f"{where}.ksrq")
        end = _date(posting, "jsrq", f"{where}.jsrq")
        assert start is not None and end is not None
        if end < start:
            raise RowError(f"{where}.jsrq", "posting ends before it starts")
        if (kind, start) in seen:
            raise RowError(where, f"posting {kind} from {start} repeated")
        seen.add((kind, start))
        rows.append((code, kind, unit, start, end))
    return rows


def _trainings(record: Mapping[str, Any], code: str) -> list[tuple[Any, ...]]:
    rows, seen = [], set()
    for i, training in enumerate(_list(record, "pxjl")):
        where = f"pxjl[{i}]"
        if not isinstance(training, dict):
            raise RowError(where, "training record is not an object")
        class_code = _text(training, "bcbm", f"{where}.bcbm")
        assert class_code is not None
        if not CLASS_CODE.match(class_code):
            raise RowError(f"{where}.bcbm", f"malformed class code {class_code!r}")
        if class_code in seen:
            raise RowError(f"{where}.bcbm", f"class {class_code} repeated")
        seen.add(class_code)
        name = _text(training, "bcmc", f"{where}.bcmc")
        start = _date(training, "ksrq", f"{where}.ksrq")
        end = _date(training, "jsrq", f"{where}.jsrq")
        assert start is not None and end is not None
        if end < start:
            raise RowError(f"{where}.jsrq", "class ends before it starts")
        rows.append((code, class_code, name, start, end))
    return rows


def validate(record: Any, *, pii_key: bytes, units: Units) -> Checked:
    """One API item checked and pseudonymised, or RowError naming the field."""
    if not isinstance(record, dict):
        raise RowError("*", "item is not a JSON object")
    code = _text(record, "rybh", "rybh")
    assert code is not None
    if not STAFF_CODE.match(code):
        raise RowError("rybh", "malformed staff code (value withheld)")
    # Personal values never appear in reasons: only what is wrong with them.
    name = _text(record, "xm", "xm")
    assert name is not None
    name = name.strip()
    if not name:
        raise RowError("xm", "empty name")
    phone = _text(record, "lxdh", "lxdh")
    assert phone is not None
    phone = pii.normalise_phone(phone)
    if not online.PHONE.match(phone):
        raise RowError("lxdh", "malformed phone number (value withheld)")
    kind = record.get("rylb")
    if kind not in STAFF_KINDS:
        raise RowError("rylb", f"unknown staff kind {kind!r}")
    unit = _text(record, "dwbm", "dwbm")
    if unit not in units.units:
        raise RowError("dwbm", f"unknown unit code {unit!r}")
    grid = _text(record, "wgbm", "wgbm", required=kind == "网格员")
    if grid is not None and grid not in units.grids:
        raise RowError("wgbm", f"unknown grid code {grid!r}")
    full_time = record.get("sfzz")
    if not isinstance(full_time, bool):
        raise RowError("sfzz", f"expected true or false, got {full_time!r}")
    if kind in TOWNSHIP_KINDS and TOWNSHIP_KINDS[kind] != full_time:
        raise RowError("sfzz", f"full-time flag {full_time} contradicts kind {kind}")
    in_post_from = _date(record, "rzrq", "rzrq")
    in_post_to = _date(record, "lzrq", "lzrq", required=False)
    assert in_post_from is not None
    if in_post_to is not None and in_post_to < in_post_from:
        raise RowError("lzrq", "leaving date is before taking up the post")
    promoted = _date(record, "tbrq", "tbrq", required=False)
    updated = _time(record, "gxsj")
    if updated.date() < in_post_from:
        raise RowError("gxsj", "last change is before taking up the post")
    postings = _postings(record, code, units)
    trainings = _trainings(record, code)
    key = pii.person_key(phone, pii_key)
    values = (
        code,
        kind,
        unit,
        grid,
        full_time,
        in_post_from,
        in_post_to,
        promoted,
        key,
        pii.mask_name(name),
        pii.mask_phone(phone),
        updated,
        len(postings),
        len(trainings),
    )
    # Fingerprint of the version: stored columns, postings, trainings and a keyed hash of the raw
    # name and phone (keyed so the fingerprint cannot be used to guess a phone number).
    identifiers = json.dumps([name, phone], ensure_ascii=False)
    fingerprint = hashlib.sha256(
        json.dumps([values, postings, trainings, pii.person_key(identifiers, pii_key)], default=str).encode()
    ).hexdigest()
    return Checked(code, updated, (*values, fingerprint), postings, trainings, (code, key, name, phone))


# --- loading -------------------------------------------------------------------------------------


def window_label(since: datetime, until: datetime) -> str:
    """The batch's file_name, e.g. api:staff:2025-06-01T00:00..2025-06-02T00:00 (bureau time)."""
    return online.window_label(since, until).replace("api:", "api:staff:", 1)


def ensure_schema(conn: psycopg.Connection) -> None:
    batches.ensure_schema(conn)
    ddl = resources.files("xinfang.ingest").joinpath("ddl_staff.sql").read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.ingest.ddl'))")
        conn.execute(ddl)


def _check_all(
    pages: list[Page], pii_key: bytes
) -> tuple[dict[str, tuple[_Position, Checked]], list[tuple[_Position, Rejection]]]:
    units = reference_units()
    good: dict[str, tuple[_Position, Checked]] = {}
    rejected: list[tuple[_Position, Rejection]] = []
    window_row = 0
    for page in pages:
        for page_row, record in enumerate(page.items, start=1):
            window_row += 1
            at = _Position(window_row, page.number, page_row)
            try:
                checked = validate(record, pii_key=pii_key, units=units)
            except RowError as err:
                rejected.append((at, Rejection(window_row, err.field, err.reason, record)))
                continue
            earlier = good.get(checked.code)
            if earlier is not None:
                # A live clock can move an account between pages: keep its newest version.
                earlier_at, earlier_checked = earlier
                if checked.updated_at >= earlier_checked.updated_at:
                    keep_at, drop_at = at, earlier_at
                    good[checked.code] = (at, checked)
                else:
                    keep_at, drop_at = earlier_at, at
                reason = (
                    f"staff code repeated in the window (also page {keep_at.page} row "
                    f"{keep_at.page_row}); that version is loaded"
                )
                dropped = pages[drop_at.page - 1].items[drop_at.page_row - 1]
                rejected.append((drop_at, Rejection(drop_at.window_row, "rybh", reason, dropped)))
                continue
            good[checked.code] = (at, checked)
    rejected.sort(key=lambda r: r[0].window_row)
    return good, rejected


_STAGING = (
    ("stg_online_staff", "raw.online_staff", STAFF_COLUMNS),
    ("stg_online_staff_postings", "raw.online_staff_postings", POSTING_COLUMNS),
    ("stg_online_staff_trainings", "raw.online_staff_trainings", TRAINING_COLUMNS),
    ("stg_online_staff_people", "restricted.online_staff", PERSON_COLUMNS),
)


def _stage(conn: psycopg.Connection, checked: list[Checked]) -> None:
    """COPY the batch into temporary tables shaped like the targets (dropped at commit)."""
    for name, target, columns in _STAGING:
        conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        conn.execute(
            f"CREATE TEMP TABLE {name} ON COMMIT DROP AS "  # noqa: S608 (module constants only)
            f"SELECT {', '.join(columns)} FROM {target} WITH NO DATA"
        )
    _copy(conn, "stg_online_staff", STAFF_COLUMNS, [c.staff for c in checked])
    _copy(conn, "stg_online_staff_postings", POSTING_COLUMNS, [p for c in checked for p in c.postings])
    _copy(conn, "stg_online_staff_trainings", TRAINING_COLUMNS, [t for c in checked for t in c.trainings])
    _copy(conn, "stg_online_staff_people", PERSON_COLUMNS, [c.person for c in checked])


def _upsert(conn: psycopg.Connection, batch_id: int) -> dict[str, int]:
    """Upsert the accounts; replace postings, trainings and raw identifiers of those that changed.

    SQL text is assembled from the module's column tuples only, never from data.
    """
    columns = ", ".join(STAFF_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in STAFF_COLUMNS if c != "staff_code")
    conn.execute("DROP TABLE IF EXISTS pg_temp.stg_online_staff_changed")
    conn.execute(
        "CREATE TEMP TABLE stg_online_staff_changed (staff_code text PRIMARY KEY, inserted boolean) "
        "ON COMMIT DROP"
    )
    conn.execute(
        f"""
        WITH upserted AS (
            INSERT INTO raw.online_staff ({columns}, batch_id, first_loaded_at, last_loaded_at)
            SELECT {columns}, %(batch)s, now(), now() FROM stg_online_staff
            ON CONFLICT (staff_code) DO UPDATE
            SET {updates}, batch_id = excluded.batch_id, last_loaded_at = excluded.last_loaded_at
            -- Only a newer (or corrected) version replaces the one held: re-runs change nothing.
            WHERE excluded.updated_at >= raw.online_staff.updated_at
              AND excluded.record_sha256 <> raw.online_staff.record_sha256
            RETURNING staff_code, (xmax = 0) AS inserted
        )
        INSERT INTO stg_online_staff_changed SELECT staff_code, inserted FROM upserted
        """,  # noqa: S608
        {"batch": batch_id},
    )
    inserted, updated = conn.execute(
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
        "FROM stg_online_staff_changed"
    ).fetchone()
    children = {}
    for staging, target, cols in _STAGING[1:3]:
        # The lists belong to a version: a newer version's lists replace the old ones as a whole
        # (a posting or class dropped at the source disappears here too).
        conn.execute(
            f"DELETE FROM {target} WHERE staff_code IN (SELECT staff_code FROM stg_online_staff_changed)"  # noqa: S608
        )
        children[target] = conn.execute(
            f"""
            INSERT INTO {target} ({", ".join(cols)}, batch_id, loaded_at)
            SELECT s.{", s.".join(cols)}, %(batch)s, now()
            FROM {staging} s JOIN stg_online_staff_changed USING (staff_code)
            """,  # noqa: S608
            {"batch": batch_id},
        ).rowcount
    payload = PERSON_COLUMNS[1:]
    conn.execute(
        f"""
        INSERT INTO restricted.online_staff ({", ".join(PERSON_COLUMNS)}, batch_id, loaded_at)
        SELECT s.{", s.".join(PERSON_COLUMNS)}, %(batch)s, now()
        FROM stg_online_staff_people s JOIN stg_online_staff_changed USING (staff_code)
        ON CONFLICT (staff_code) DO UPDATE
        SET {", ".join(f"{c} = excluded.{c}" for c in payload)},
            batch_id = excluded.batch_id, loaded_at = excluded.loaded_at
        """,  # noqa: S608
        {"batch": batch_id},
    )
    return {
        "inserted": inserted,
        "updated": updated,
        "postings": children["raw.online_staff_postings"],
        "trainings": children["raw.online_staff_trainings"],
    }


@dataclass(frozen=True)
class _Seen:
    """How a run's records compare with what the warehouse holds."""

    held: int  # this very version is held
    older: int  # a newer version is held: this one would change nothing
    quarantined_before: int  # bad records already in the quarantine exactly as received now
    new: int  # would load (not held, newer, or a same-time correction)
    new_bad: int  # bad records not quarantined before in this form

    @property
    def nothing_new(self) -> bool:
        return self.new == 0 and self.new_bad == 0


def _compare_with_held(
    conn: psycopg.Connection, checked: list[Checked], rejections: list[Rejection]
) -> _Seen:
    """Which records would change the warehouse, by the rule _upsert applies (the online loader's too)."""
    sha = STAFF_COLUMNS.index("record_sha256")
    held, older = conn.execute(
        """
        SELECT count(*) FILTER (WHERE r.record_sha256 = s.record_sha256),
               count(*) FILTER (WHERE r.record_sha256 <> s.record_sha256 AND r.updated_at > s.updated_at)
        FROM unnest(%s::text[], %s::text[], %s::timestamp[]) AS s(staff_code, record_sha256, updated_at)
        JOIN raw.online_staff r USING (staff_code)
        """,
        ([c.code for c in checked], [c.staff[sha] for c in checked], [c.updated_at for c in checked]),
    ).fetchone()
    before = 0
    if rejections:
        before = conn.execute(
            """
            SELECT count(*) FROM unnest(%s::jsonb[]) AS n(record)
            WHERE EXISTS (
                SELECT FROM restricted.quarantine_records q JOIN ops.load_batches b USING (batch_id)
                WHERE b.source = %s AND q.record = n.record
            )
            """,
            ([Jsonb(r.record) for r in rejections], SOURCE),
        ).fetchone()[0]
    return _Seen(held, older, before, len(checked) - held - older, len(rejections) - before)


def _verify(conn: psycopg.Connection, batch_id: int, loaded: int, quarantined: int) -> None:
    """Recount: every accepted account is held (this version or a newer one), its lists exactly."""
    held, list_mismatches, in_quarantine = conn.execute(
        """
        WITH current AS (
            SELECT s.staff_code FROM stg_online_staff s JOIN raw.online_staff r USING (staff_code)
            WHERE r.record_sha256 = s.record_sha256
        ),
        staged AS (
            SELECT 'p' AS list, staff_code, posting_kind || '|' || start_date AS item
            FROM stg_online_staff_postings JOIN current USING (staff_code)
            UNION ALL
            SELECT 't', staff_code, class_code FROM stg_online_staff_trainings JOIN current USING (staff_code)
        ),
        held_lists AS (
            SELECT 'p' AS list, staff_code, posting_kind || '|' || start_date AS item
            FROM raw.online_staff_postings JOIN current USING (staff_code)
            UNION ALL
            SELECT 't', staff_code, class_code FROM raw.online_staff_trainings JOIN current USING (staff_code)
        )
        SELECT
            (SELECT count(*) FROM stg_online_staff s JOIN raw.online_staff r USING (staff_code)
             WHERE r.record_sha256 = s.record_sha256 OR r.updated_at > s.updated_at),
            (SELECT count(*) FROM ((TABLE staged EXCEPT TABLE held_lists)
                                   UNION ALL (TABLE held_lists EXCEPT TABLE staged)) AS d),
            (SELECT count(*) FROM ops.quarantine WHERE batch_id = %(batch)s)
        """,
        {"batch": batch_id},
    ).fetchone()
    source_rows, ledger_loaded, ledger_quarantined = conn.execute(
        "SELECT source_rows, loaded_rows, quarantined_rows FROM ops.load_batches WHERE batch_id = %s",
        (batch_id,),
    ).fetchone()
    if (
        held != loaded
        or list_mismatches
        or in_quarantine != quarantined
        or (ledger_loaded, ledger_quarantined) != (loaded, quarantined)
        or source_rows != held + in_quarantine
    ):
        raise batches.ReconciliationError(
            f"batch {batch_id}: source {source_rows} != held {held} + quarantined {in_quarantine} "
            f"(ledger says {ledger_loaded} + {ledger_quarantined}; "
            f"{list_mismatches} posting/training rows differ from the version held)"
        )


def load_window(
    conn: psycopg.Connection,
    *,
    base_url: str,
    token: str,
    since: datetime,
    until: datetime,
    pii_key: bytes,
    page_size: int = online.DEFAULT_PAGE_SIZE,
    retry: RetryPolicy | None = None,
) -> BatchResult:
    """Load the staff accounts changed in [since, until) (naive times are bureau time)."""
    since, until = _aware(since), _aware(until)
    if until <= since:
        raise ValueError(f"empty window {since.isoformat()}..{until.isoformat()}")
    started = batches.utcnow()
    label = window_label(since, until)
    day: date = online.to_bureau(until - timedelta(microseconds=1)).date()
    ensure_schema(conn)
    try:
        pages = online.fetch_window(
            base_url, token, since, until, page_size=page_size, retry=retry, path=API_PATH
        )
    except PlatformError as exc:
        batches.record_failed_batch(
            conn,
            source=SOURCE,
            file_name=label,
            sha256=hashlib.sha256(f"failed {label}".encode()).hexdigest(),
            file_date=day,
            problem=str(exc),
            started_at=started,
        )
        log.error("%s not loaded: %s", label, exc)
        raise
    items = [record for page in pages for record in page.items]
    # The window is part of the checksum: two empty windows are different batches.
    canonical = json.dumps(
        {"window": label, "items": items}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    sha256 = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    existing = batches.already_loaded(conn, SOURCE, sha256)
    if existing is not None:
        log.info("%s already loaded as batch %d (same content); skipping", label, existing)
        return BatchResult(SOURCE, label, skipped=True, batch_id=existing, source_rows=len(items))

    good, rejected = _check_all(pages, pii_key)
    checked = [c for _, c in sorted(good.values(), key=lambda g: g[0].window_row)]
    rejections = [r for _, r in rejected]
    mark = watermarks.get(conn, SOURCE)
    if mark is not None and mark >= until:
        # A window the watermark has passed (a re-run, a back-fill) whose content differs from the
        # first run's: a batch is recorded only when it brings something the warehouse lacks.
        seen = _compare_with_held(conn, checked, rejections)
        if seen.nothing_new:
            note = (
                f"{len(items)} received: {seen.held} held in this version, {seen.older} older than held, "
                f"{seen.quarantined_before} already quarantined; nothing new and the watermark "
                f"({online.to_bureau(mark):%Y-%m-%d %H:%M}) is past the window: no batch recorded"
            )
            log.info("%s is a no-op: %s", label, note)
            return BatchResult(SOURCE, label, skipped=True, source_rows=len(items), notes=[note])
    with conn.transaction():
        batch_id = batches.open_batch(
            conn,
            source=SOURCE,
            file_name=label,
            sha256=sha256,
            file_date=day,
            source_rows=len(items),
            loaded_rows=len(checked),
            rejections=rejections,
            notes=[],
            started_at=started,
        )
        if rejected:
            conn.execute(
                """
                UPDATE ops.quarantine q SET page = v.page, page_row = v.page_row
                FROM unnest(%s::int[], %s::int[], %s::int[]) AS v(row_number, page, page_row)
                WHERE q.batch_id = %s AND q.row_number = v.row_number
                """,
                (
                    [p.window_row for p, _ in rejected],
                    [p.page for p, _ in rejected],
                    [p.page_row for p, _ in rejected],
                    batch_id,
                ),
            )
        for at, rejection in rejected:
            log.warning(
                "staff account quarantined: %s page %d row %d field %s: %s",
                label,
                at.page,
                at.page_row,
                rejection.field,
                rejection.reason,
            )
        _stage(conn, checked)
        counts = _upsert(conn, batch_id)
        unchanged = len(checked) - counts["inserted"] - counts["updated"]
        note = (
            f"{len(pages)} page(s); staff {counts['inserted']} new, {counts['updated']} updated, "
            f"{unchanged} unchanged; {counts['postings']} postings and {counts['trainings']} trainings "
            "written"
        )
        conn.execute("UPDATE ops.load_batches SET notes = %s WHERE batch_id = %s", (note, batch_id))
        _verify(conn, batch_id, len(checked), len(rejections))
        watermarks.advance(conn, SOURCE, until)
    log.info(
        "%s loaded as batch %d: %d received = %d loaded + %d quarantined (%s)",
        label,
        batch_id,
        len(items),
        len(checked),
        len(rejections),
        note,
    )
    return BatchResult(
        SOURCE,
        label,
        skipped=False,
        batch_id=batch_id,
        source_rows=len(items),
        loaded_rows=len(checked),
        quarantined_rows=len(rejections),
        notes=[note],
    )
