"""Loader of the online petition platform's API: one time window per batch, incremental.

`load_window` pages through `GET /api/v1/petitions?updated_since&updated_until`
(retrying 429 — after Retry-After —, 5xx, timeouts and broken connections with
exponential backoff and jitter), validates every record (bad ones go to the
quarantine with page, row, field and reason), pseudonymises the petitioner,
COPies the rest into staging tables and upserts from there:

* raw.online_petitions: the latest version of each petition, by petition number;
* raw.online_petition_events: the handling history, one row per (number, seq), insert-if-new;
* restricted.online_petitioners: the raw identifiers, by petition number and person key.

The ledger row, the quarantine, the upserts, the reconciliation check and the
watermark move in one transaction. Fetching happens before it: a window that
cannot be fetched leaves no rows and an unmoved watermark.

Re-running any interval is a no-op. The same window with the same content is
skipped by checksum. A window the watermark has already passed whose content
differs but brings nothing new (on a live platform, petitions changed since
have moved on to later windows) records no batch and writes nothing: every
petition version in it is held already (or a newer one is) and every bad
record is in the quarantine already as it is. A run that does bring something
(a new or corrected version, a new bad record) records its batch as usual,
reconciled over everything it received; so does the first run of a window at
the watermark, even empty, because it moves the watermark.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.types.json import Jsonb

from xinfang import pii
from xinfang.config import BUREAU_TZ, get_settings
from xinfang.ingest import batches, watermarks
from xinfang.ingest.batches import BatchResult, Rejection, RowError
from xinfang.sim.records import CHANNELS, EVENT_TYPES, RATINGS

log = logging.getLogger(__name__)

SOURCE = "online_petitions"
CONNECTION_ID = "xinfang_online_platform"
CONNECTION_ENV = "AIRFLOW_CONN_XINFANG_ONLINE_PLATFORM"
API_PATH = "/api/v1/petitions"
DEFAULT_PAGE_SIZE = 200

PETITION_NO = re.compile(r"^[A-Za-z0-9-]{6,40}$")
PHONE = re.compile(r"^\d{7,13}$")
CODE = re.compile(r"^[0-9A-Za-z]{1,20}$")
# Staff account codes (经办人, 人员编号): JG001, XF36990100101, XF36990100101A, W36990100100101.
STAFF_CODE = re.compile(r"^[A-Z]{1,4}[0-9]{3,20}[A-Z]?$")

PETITION_COLUMNS = (
    "petition_no",
    "channel",
    "registered_at",
    "updated_at",
    "status",
    "petitioner_key",
    "petitioner_phone_key",
    "petitioner_name_masked",
    "petitioner_id_masked",
    "petitioner_phone_masked",
    "petitioner_address_masked",
    "petitioner_region_code",
    "group_size",
    "category_code",
    "purpose_code",
    "town_code",
    "grid_code",
    "title",
    "content",
    "hotline_work_order_no",
    "grid_event_id",
    "event_count",
    "record_sha256",
)
EVENT_COLUMNS = (
    "petition_no",
    "seq",
    "event_type",
    "event_at",
    "unit_code",
    "from_unit_code",
    "rating",
    "note",
    "handler_code",
)
PETITIONER_COLUMNS = ("petition_no", "person_key", "name", "id_number", "phone", "address", "region_code")


# --- talking to the platform ---------------------------------------------------------------------


class PlatformError(Exception):
    """The platform could not be read (after retries, or for a reason retrying cannot fix)."""


class PlatformAuthError(PlatformError):
    pass


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per page, the backoff between them and the per-request timeout (seconds)."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so clients that failed together spread out.
        step = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return step / 2 + self.rng.uniform(0, step / 2)


@dataclass(frozen=True)
class Page:
    number: int
    items: list[dict[str, Any]]
    total: int


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def _get_json(url: str, token: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (the URL is the configured platform, http or https)
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
        if status == 401:
            raise PlatformAuthError(
                f"the online platform refused the token (HTTP 401); check connection {CONNECTION_ID}"
            ) from None
        if status == 429:
            retry_after = _retry_after(exc.headers.get("Retry-After"))
            raise _Retryable("HTTP 429 Too Many Requests", retry_after) from None
        if status >= 500:
            raise _Retryable(f"HTTP {status}") from None
        raise PlatformError(f"the online platform answered HTTP {status} to {_safe(url)}") from None
    except TimeoutError as exc:
        raise _Retryable(f"timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Retryable(f"timed out after {timeout:g} s") from exc
        raise _Retryable(f"connection failed: {exc.reason}") from exc
    except (ConnectionError, OSError) as exc:
        raise _Retryable(f"connection failed: {exc}") from exc
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        # A truncated body from a gateway: worth another try.
        raise _Retryable("answer is not valid JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("items"), list):
        raise PlatformError(f"unexpected answer shape from {_safe(url)}: no 'items' list")
    if not isinstance(parsed.get("total"), int):
        raise PlatformError(f"unexpected answer shape from {_safe(url)}: no integer 'total'")
    return parsed


def _safe(url: str) -> str:
    """The URL without its query: enough to tell which call failed."""
    return url.split("?", 1)[0]


def _query_time(moment: datetime) -> str:
    return to_bureau(moment).replace(tzinfo=BUREAU_TZ).isoformat()


def fetch_page(
    base_url: str,
    token: str,
    since: datetime,
    until: datetime,
    page: int,
    page_size: int,
    retry: RetryPolicy,
    *,
    path: str = API_PATH,
) -> Page:
    """One page of `path` (the petitions, or another endpoint paged the same way: /api/v1/staff)."""
    query = urlencode(
        {
            "updated_since": _query_time(since),
            "updated_until": _query_time(until),
            "page": page,
            "page_size": page_size,
        }
    )
    url = f"{base_url.rstrip('/')}{path}?{query}"
    for attempt in range(1, retry.attempts + 1):
        try:
            body = _get_json(url, token, retry.timeout)
            return Page(number=page, items=body["items"], total=body["total"])
        except _Retryable as exc:
            if attempt == retry.attempts:
                raise PlatformError(
                    f"online platform {path} page {page} failed {retry.attempts} times, last: {exc.reason}"
                ) from exc
            delay = retry.backoff(attempt)
            if exc.retry_after is not None:
                # The server said when: honour it, capped so a silly value cannot stall the run.
                delay = min(retry.max_delay, max(delay, exc.retry_after))
            log.warning(
                "online platform %s page %d attempt %d/%d: %s; retrying in %.1f s",
                path,
                page,
                attempt,
                retry.attempts,
                exc.reason,
                delay,
            )
            retry.sleep(delay)
    raise AssertionError("unreachable")


def fetch_window(
    base_url: str,
    token: str,
    since: datetime,
    until: datetime,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    retry: RetryPolicy | None = None,
    path: str = API_PATH,
) -> list[Page]:
    """Every page of the window, following next_page."""
    retry = retry or RetryPolicy()
    pages, number = [], 1
    while True:
        page = fetch_page(base_url, token, since, until, number, page_size, retry, path=path)
        pages.append(page)
        received = sum(len(p.items) for p in pages)
        if not page.items or received >= page.total:
            break
        number += 1
    received = sum(len(p.items) for p in pages)
    if received != pages[0].total:
        # The window's content moved while paging: offsets shifted, so a record may have been
        # skipped. Fail (the watermark stays) and let the retry read the window again.
        raise PlatformError(
            f"online platform announced {pages[0].total} records in the window but {received} arrived; "
            "the window changed while paging"
        )
    return pages


# --- validation and pseudonymisation -------------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    categories: frozenset[str]
    towns: frozenset[str]
    place_names: dict[str, str]  # town code -> district + town name, the prefix addresses start with


@lru_cache(maxsize=4)
def _codes_from(seeds_dir: Path) -> Codes:
    with (seeds_dir / "categories.csv").open(encoding="utf-8", newline="") as fh:
        categories = frozenset(r["category_code"] for r in csv.DictReader(fh))
    with (seeds_dir / "regions.csv").open(encoding="utf-8", newline="") as fh:
        regions = list(csv.DictReader(fh))
    names = {r["region_code"]: r["region_name"] for r in regions}
    towns = {
        r["region_code"]: names[r["parent_code"]] + r["region_name"] for r in regions if r["level"] == "3"
    }
    return Codes(categories=categories, towns=frozenset(towns), place_names=towns)


def reference_codes() -> Codes:
    """Code lists from the dbt seeds, the one source of truth."""
    return _codes_from(get_settings().dbt_project_dir / "seeds")


def to_bureau(moment: datetime) -> datetime:
    """Naive bureau time; naive input already is."""
    if moment.tzinfo is not None:
        return moment.astimezone(BUREAU_TZ).replace(tzinfo=None)
    return moment


def _time(record: Mapping[str, Any], key: str, where: str) -> datetime:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RowError(where, "missing time")
    try:
        return to_bureau(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise RowError(where, f"impossible or unreadable time {value!r}") from None


def _text(record: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise RowError(where, "missing value")
        return None
    if not isinstance(value, str):
        raise RowError(where, f"expected text, got {type(value).__name__}")
    return value


def _code(record: Mapping[str, Any], key: str, *, allowed: frozenset[str] | None = None) -> str:
    value = _text(record, key, key)
    assert value is not None
    if allowed is not None and value not in allowed:
        raise RowError(key, f"unknown code {value!r}")
    if allowed is None and not CODE.match(value):
        raise RowError(key, f"malformed code {value!r}")
    return value


@dataclass(frozen=True)
class Checked:
    number: str
    updated_at: datetime
    petition: tuple[Any, ...]  # PETITION_COLUMNS
    events: list[tuple[Any, ...]]  # EVENT_COLUMNS
    petitioner: tuple[Any, ...]  # PETITIONER_COLUMNS


def _petitioner(record: Mapping[str, Any], pii_key: bytes, codes: Codes, town: str) -> dict[str, Any]:
    person = record.get("xfr")
    if not isinstance(person, dict):
        raise RowError("xfr", "missing petitioner object")
    # Personal values never appear in reasons: only what is wrong with them.
    name = _text(person, "xm", "xfr.xm")
    id_number = _text(person, "zjhm", "xfr.zjhm", required=False)
    if id_number is not None:
        id_number = id_number.strip().upper()
        if not pii.id_number_valid(id_number):
            raise RowError("xfr.zjhm", "malformed ID number or wrong check digit (value withheld)")
    phone = _text(person, "lxdh", "xfr.lxdh", required=False)
    if phone is not None:
        phone = pii.normalise_phone(phone)
        if not PHONE.match(phone):
            raise RowError("xfr.lxdh", "malformed phone number (value withheld)")
    if id_number is None and phone is None:
        raise RowError("xfr", "petitioner has neither ID number nor phone: no person key")
    address = _text(person, "zz", "xfr.zz")
    region = _text(person, "zzqh", "xfr.zzqh", required=False)
    if region is not None and region not in codes.towns:
        # Free text here could carry an address into the raw layer: only a known town code passes.
        raise RowError("xfr.zzqh", "unknown residence region code (value withheld)")
    assert name is not None and address is not None
    prefix = codes.place_names.get(region or "", "") or codes.place_names.get(town, "")
    return {
        "key": pii.person_key(id_number or phone or "", pii_key),
        # The hotline knows callers by phone only: this key links them to petitioners.
        "phone_key": pii.person_key(phone, pii_key) if phone else None,
        "name": name,
        "id_number": id_number,
        "phone": phone,
        "address": address,
        "region": region,
        "name_masked": pii.mask_name(name),
        "id_masked": pii.mask_id_number(id_number) if id_number else None,
        "phone_masked": pii.mask_phone(phone) if phone else None,
        "address_masked": pii.mask_address(address, prefix),
    }


def _events(record: Mapping[str, Any], number: str) -> list[tuple[Any, ...]]:
    history = record.get("blgc")
    if not isinstance(history, list) or not history:
        raise RowError("blgc", "missing handling history")
    rows, seen = [], set()
    for i, event in enumerate(history):
        where = f"blgc[{i}]"
        if not isinstance(event, dict):
            raise RowError(where, "event is not an object")
        seq = event.get("xh")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise RowError(f"{where}.xh", f"bad sequence number {seq!r}")
        if seq in seen:
            raise RowError(f"{where}.xh", f"sequence number {seq} repeated")
        seen.add(seq)
        kind = event.get("lx")
        if kind not in EVENT_TYPES:
            raise RowError(f"{where}.lx", f"unknown event type {kind!r}")
        at = _time(event, "sj", f"{where}.sj")
        rating = event.get("pj")
        if rating is not None and rating not in RATINGS:
            raise RowError(f"{where}.pj", f"unknown rating {rating!r}")
        unit = _text(event, "dw", f"{where}.dw", required=False)
        from_unit = _text(event, "ydw", f"{where}.ydw", required=False)
        note = _text(event, "bz", f"{where}.bz", required=False) or ""
        # The handler account (经办人) is optional: units outside the platform's accounts have none.
        handler = _text(event, "jbr", f"{where}.jbr", required=False)
        if handler is not None and not STAFF_CODE.match(handler):
            # Platforms often put the handler's name here instead of an account code.
            raise RowError(f"{where}.jbr", "malformed handler code (value withheld)")
        rows.append((number, seq, kind, at, unit, from_unit, rating, pii.scrub_text(note), handler))
    return rows


def validate(record: Any, *, pii_key: bytes, codes: Codes) -> Checked:
    """One API item checked and pseudonymised, or RowError naming the field."""
    if not isinstance(record, dict):
        raise RowError("*", "item is not a JSON object")
    number = _text(record, "xfjbh", "xfjbh")
    assert number is not None
    if not PETITION_NO.match(number):
        raise RowError("xfjbh", f"malformed petition number {number!r}")
    channel = record.get("xfqd")
    if channel not in CHANNELS:
        raise RowError("xfqd", f"unknown channel {channel!r}")
    registered = _time(record, "djsj", "djsj")
    updated = _time(record, "gxsj", "gxsj")
    if updated < registered:
        raise RowError("gxsj", "last change is before registration")
    status = record.get("blzt")
    if status not in EVENT_TYPES:
        raise RowError("blzt", f"unknown status {status!r}")
    size = record.get("rs")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise RowError("rs", f"bad number of petitioners {size!r}")
    category = _code(record, "nrfl", allowed=codes.categories)
    purpose = _code(record, "xfmd")
    town = _code(record, "wtsd", allowed=codes.towns)
    grid = _text(record, "wgbm", "wgbm", required=False)
    title = _text(record, "bt", "bt")
    content = _text(record, "xfnr", "xfnr")
    work_order = _text(record, "rxgdbh", "rxgdbh", required=False)
    grid_event = _text(record, "wgsjbh", "wgsjbh", required=False)
    events = _events(record, number)
    person = _petitioner(record, pii_key, codes, town)
    values = (
        number,
        channel,
        registered,
        updated,
        status,
        person["key"],
        person["phone_key"],
        person["name_masked"],
        person["id_masked"],
        person["phone_masked"],
        person["address_masked"],
        person["region"],
        size,
        category,
        purpose,
        town,
        grid,
        pii.scrub_text(title or "", name=person["name"], address=person["address"]),
        pii.scrub_text(content or "", name=person["name"], address=person["address"]),
        work_order,
        grid_event,
        len(events),
    )
    identifiers = json.dumps(
        [person["name"], person["id_number"], person["phone"], person["address"]], ensure_ascii=False
    )
    # Fingerprint of the version: stored columns, history and a keyed hash of the raw identifiers
    # (keyed so the fingerprint cannot be used to guess a phone number).
    fingerprint = hashlib.sha256(
        json.dumps([values, events, pii.person_key(identifiers, pii_key)], default=str).encode()
    ).hexdigest()
    petitioner = (
        number,
        person["key"],
        person["name"],
        person["id_number"],
        person["phone"],
        person["address"],
        person["region"],
    )
    return Checked(number, updated, (*values, fingerprint), events, petitioner)


# --- loading -------------------------------------------------------------------------------------


def _label_time(moment: datetime) -> str:
    local = to_bureau(moment)
    return local.isoformat(timespec="minutes" if not (local.second or local.microsecond) else "seconds")


def window_label(since: datetime, until: datetime) -> str:
    """The batch's file_name: the window in bureau time, e.g. api:2025-06-01T00:00..2025-06-02T00:00."""
    return f"api:{_label_time(since)}..{_label_time(until)}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BUREAU_TZ)


def ensure_schema(conn: psycopg.Connection) -> None:
    batches.ensure_schema(conn)
    ddl = resources.files("xinfang.ingest").joinpath("ddl_online.sql").read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang.ingest.ddl'))")
        conn.execute(ddl)


@dataclass(frozen=True)
class _Position:
    window_row: int  # 1-based position in the whole window: ops.quarantine.row_number
    page: int
    page_row: int


def _check_all(
    pages: list[Page], pii_key: bytes
) -> tuple[dict[str, tuple[_Position, Checked]], list[tuple[_Position, Rejection]]]:
    codes = reference_codes()
    good: dict[str, tuple[_Position, Checked]] = {}
    rejected: list[tuple[_Position, Rejection]] = []
    window_row = 0
    for page in pages:
        for page_row, record in enumerate(page.items, start=1):
            window_row += 1
            at = _Position(window_row, page.number, page_row)
            try:
                checked = validate(record, pii_key=pii_key, codes=codes)
            except RowError as err:
                rejected.append((at, Rejection(window_row, err.field, err.reason, record)))
                continue
            earlier = good.get(checked.number)
            if earlier is not None:
                # A live clock can move a petition between pages: keep its newest version.
                earlier_at, earlier_checked = earlier
                if checked.updated_at >= earlier_checked.updated_at:
                    keep_at, drop_at = at, earlier_at
                    good[checked.number] = (at, checked)
                else:
                    keep_at, drop_at = earlier_at, at
                reason = (
                    f"petition number repeated in the window (also page {keep_at.page} row "
                    f"{keep_at.page_row}); that version is loaded"
                )
                dropped = pages[drop_at.page - 1].items[drop_at.page_row - 1]
                rejected.append((drop_at, Rejection(drop_at.window_row, "xfjbh", reason, dropped)))
                continue
            good[checked.number] = (at, checked)
    rejected.sort(key=lambda r: r[0].window_row)
    return good, rejected


def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _stage(conn: psycopg.Connection, checked: list[Checked]) -> None:
    """COPY the batch into temporary tables shaped like the targets (dropped at commit)."""
    for name, target, columns in (
        ("stg_online_petitions", "raw.online_petitions", PETITION_COLUMNS),
        ("stg_online_events", "raw.online_petition_events", EVENT_COLUMNS),
        ("stg_online_petitioners", "restricted.online_petitioners", PETITIONER_COLUMNS),
    ):
        conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        conn.execute(
            f"CREATE TEMP TABLE {name} ON COMMIT DROP AS "  # noqa: S608 (module constants only)
            f"SELECT {', '.join(columns)} FROM {target} WITH NO DATA"
        )
    _copy(conn, "stg_online_petitions", PETITION_COLUMNS, [c.petition for c in checked])
    _copy(conn, "stg_online_events", EVENT_COLUMNS, [e for c in checked for e in c.events])
    _copy(conn, "stg_online_petitioners", PETITIONER_COLUMNS, [c.petitioner for c in checked])


def _upsert(conn: psycopg.Connection, batch_id: int) -> dict[str, int]:
    # SQL text below is assembled from the module's column tuples only, never from data.
    columns = ", ".join(PETITION_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in PETITION_COLUMNS if c != "petition_no")
    inserted, updated = conn.execute(
        f"""
        WITH upserted AS (
            INSERT INTO raw.online_petitions ({columns}, batch_id, first_loaded_at, last_loaded_at)
            SELECT {columns}, %(batch)s, now(), now() FROM stg_online_petitions
            ON CONFLICT (petition_no) DO UPDATE
            SET {updates}, batch_id = excluded.batch_id, last_loaded_at = excluded.last_loaded_at
            -- Only a newer (or corrected) version replaces the one held: re-runs change nothing.
            WHERE excluded.updated_at >= raw.online_petitions.updated_at
              AND excluded.record_sha256 <> raw.online_petitions.record_sha256
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
        """,  # noqa: S608
        {"batch": batch_id},
    ).fetchone()
    # Events and petitioners belong to a petition version: only those of the versions now held
    # are taken, so an older version never wins; a corrected row is updated in place.
    events = _upsert_for_held_versions(
        conn, "raw.online_petition_events", "stg_online_events", EVENT_COLUMNS, batch_id
    )
    people = _upsert_for_held_versions(
        conn, "restricted.online_petitioners", "stg_online_petitioners", PETITIONER_COLUMNS, batch_id
    )
    return {"inserted": inserted, "updated": updated, "events": events, "people": people}


def _upsert_for_held_versions(
    conn: psycopg.Connection, target: str, staging: str, columns: tuple[str, ...], batch_id: int
) -> int:
    """Insert staged rows of the held petition versions; update a held row whose content differs.

    The first two columns are the natural key (petition number and seq or person key).
    Names come from the module's constants only, never from data.
    """
    key, payload = columns[:2], columns[2:]
    return conn.execute(
        f"""
        INSERT INTO {target} ({", ".join(columns)}, batch_id, loaded_at)
        SELECT s.{", s.".join(columns)}, %(batch)s, now()
        FROM {staging} s
        JOIN stg_online_petitions p USING (petition_no)
        JOIN raw.online_petitions r ON r.petition_no = p.petition_no AND r.record_sha256 = p.record_sha256
        ON CONFLICT ({", ".join(key)}) DO UPDATE
        SET {", ".join(f"{c} = excluded.{c}" for c in payload)},
            batch_id = excluded.batch_id, loaded_at = excluded.loaded_at
        WHERE ({", ".join(f"{target}.{c}" for c in payload)})
              IS DISTINCT FROM ({", ".join(f"excluded.{c}" for c in payload)})
        """,  # noqa: S608
        {"batch": batch_id},
    ).rowcount


@dataclass(frozen=True)
class _Seen:
    """How a run's records compare with what the warehouse holds."""

    held: int  # this very version is held
    older: int  # a newer version is held: this one would change nothing
    new: int  # not held, or newer than (or a correction of) the version held: would load
    quarantined_before: int  # bad records already in the quarantine exactly as received now
    new_bad: int  # bad records not quarantined before in this form

    @property
    def nothing_new(self) -> bool:
        return self.new == 0 and self.new_bad == 0


def _compare_with_held(
    conn: psycopg.Connection, checked: list[Checked], rejections: list[Rejection]
) -> _Seen:
    """Which records would change the warehouse: the same rule the upsert applies.

    A good record changes something unless its version (fingerprint) is held or a newer one is
    (_upsert replaces a petition only with a newer or same-time different version, and events and
    petitioners come only with the version held). A bad record adds to the quarantine unless the
    same record was quarantined before. Rows are never deleted and the watermark never moves
    back, so a run found to bring nothing new stays so even if another load commits meanwhile.
    """
    sha = PETITION_COLUMNS.index("record_sha256")
    held, older = conn.execute(
        """
        SELECT count(*) FILTER (WHERE r.record_sha256 = s.record_sha256),
               count(*) FILTER (WHERE r.record_sha256 <> s.record_sha256 AND r.updated_at > s.updated_at)
        FROM unnest(%s::text[], %s::text[], %s::timestamp[]) AS s(petition_no, record_sha256, updated_at)
        JOIN raw.online_petitions r USING (petition_no)
        """,
        (
            [c.number for c in checked],
            [c.petition[sha] for c in checked],
            [c.updated_at for c in checked],
        ),
    ).fetchone()
    quarantined_before = 0
    if rejections:
        quarantined_before = conn.execute(
            """
            SELECT count(*) FROM unnest(%s::jsonb[]) AS n(record)
            WHERE EXISTS (
                SELECT FROM restricted.quarantine_records q JOIN ops.load_batches b USING (batch_id)
                WHERE b.source = %s AND q.record = n.record
            )
            """,
            ([Jsonb(r.record) for r in rejections], SOURCE),
        ).fetchone()[0]
    return _Seen(
        held=held,
        older=older,
        new=len(checked) - held - older,
        quarantined_before=quarantined_before,
        new_bad=len(rejections) - quarantined_before,
    )


def _verify(conn: psycopg.Connection, batch_id: int, loaded: int, quarantined: int) -> None:
    """Recount: every accepted record is held (this version or a newer one), every event present."""
    held, missing_events, in_quarantine = conn.execute(
        """
        SELECT
            (SELECT count(*) FROM stg_online_petitions s JOIN raw.online_petitions r USING (petition_no)
             WHERE r.record_sha256 = s.record_sha256 OR r.updated_at > s.updated_at),
            (SELECT count(*) FROM stg_online_events s
             LEFT JOIN raw.online_petition_events e USING (petition_no, seq) WHERE e.petition_no IS NULL),
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
        or missing_events
        or in_quarantine != quarantined
        or (ledger_loaded, ledger_quarantined) != (loaded, quarantined)
        or source_rows != held + in_quarantine
    ):
        raise batches.ReconciliationError(
            f"batch {batch_id}: source {source_rows} != held {held} + quarantined {in_quarantine} "
            f"(ledger says {ledger_loaded} + {ledger_quarantined}; {missing_events} events missing)"
        )


def load_window(
    conn: psycopg.Connection,
    *,
    base_url: str,
    token: str,
    since: datetime,
    until: datetime,
    pii_key: bytes,
    page_size: int = DEFAULT_PAGE_SIZE,
    retry: RetryPolicy | None = None,
) -> BatchResult:
    """Load the petitions changed in [since, until) (naive times are bureau time)."""
    since, until = _aware(since), _aware(until)
    if until <= since:
        raise ValueError(f"empty window {since.isoformat()}..{until.isoformat()}")
    started = batches.utcnow()
    label = window_label(since, until)
    day: date = to_bureau(until - timedelta(microseconds=1)).date()
    ensure_schema(conn)
    try:
        pages = fetch_window(base_url, token, since, until, page_size=page_size, retry=retry)
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
        # A window the watermark has passed (a re-run, a back-fill): on a live platform its content
        # differs from the first run's (petitions changed since have moved to later windows), so
        # the checksum cannot recognise it. A batch is recorded only when the run brings something
        # the warehouse does not hold; otherwise nothing is written at all.
        seen = _compare_with_held(conn, checked, rejections)
        if seen.nothing_new:
            note = (
                f"{len(items)} received: {seen.held} held in this version, {seen.older} older than held, "
                f"{seen.quarantined_before} already quarantined; nothing new and the watermark "
                f"({to_bureau(mark):%Y-%m-%d %H:%M}) is past the window: no batch recorded"
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
                "online petition quarantined: %s page %d row %d field %s: %s",
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
            f"{len(pages)} page(s); petitions {counts['inserted']} new, {counts['updated']} updated, "
            f"{unchanged} unchanged; {counts['events']} new events"
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


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformSettings:
    base_url: str
    token: str = field(repr=False)
    page_size: int = DEFAULT_PAGE_SIZE
    timeout: float = 30.0


def platform_settings(environ: Mapping[str, str] | None = None) -> PlatformSettings:
    """The platform's URL and token from the Airflow connection `xinfang_online_platform`.

    Read from AIRFLOW_CONN_XINFANG_ONLINE_PLATFORM in Airflow's JSON form, e.g.
    {"conn_type": "http", "host": "10.1.2.3", "port": 8765, "schema": "http",
    "password": "<token>", "extra": {"page_size": 200, "timeout": 30}}. The token
    comes from the deployment's secrets, never from the repository.
    """
    env = os.environ if environ is None else environ
    value = env.get(CONNECTION_ENV)
    if not value:
        raise RuntimeError(f"{CONNECTION_ENV} is not set: the online platform connection is not configured")
    try:
        conn = json.loads(value)
    except json.JSONDecodeError:
        raise RuntimeError(f"{CONNECTION_ENV} is not Airflow's JSON connection form") from None
    host = str(conn.get("host") or "")
    token = str(conn.get("password") or "")
    if not host or not token:
        raise RuntimeError(f"{CONNECTION_ENV} needs a host and a password (the API token)")
    if "://" not in host:
        scheme = conn.get("schema") or "http"
        host = f"{scheme}://{host}" + (f":{conn['port']}" if conn.get("port") else "")
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return PlatformSettings(
        base_url=host.rstrip("/"),
        token=token,
        page_size=int(extra.get("page_size", DEFAULT_PAGE_SIZE)),
        timeout=float(extra.get("timeout", 30.0)),
    )
