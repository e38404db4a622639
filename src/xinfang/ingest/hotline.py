"""Loader of the 12345 hotline's daily work-order exports (GB18030 CSV).

Each file is validated row by row: good rows are pseudonymised and COPied into
raw.hotline_work_orders (personal data into restricted.hotline_callers), bad
rows go to the quarantine with their row, field and reason. A file whose
checksum was loaded before is skipped, so re-running an interval is a no-op.

The whole file loads in one transaction, but not in one piece: rows are
decoded, checked and pseudonymised chunk by chunk while a writer thread COPies
the previous chunk (`hotline_copy.copy_in_background`), so PostgreSQL and
Python work at the same time. Rows of the usual shape take a fast path that
the tests hold to produce the same bytes as `_validate` plus the `pii` functions.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import psycopg

from xinfang import pii
from xinfang.ingest import batches, hotline_copy
from xinfang.ingest.batches import BatchResult, Rejection, RowError, UnusableFileError
from xinfang.ingest.reference import ReferenceData, reference_data

log = logging.getLogger(__name__)

SOURCE = "hotline"
ENCODING = "gb18030"
FILE_NAME = re.compile(r"^12345_gongdan_(\d{8})\.csv$")

# Export header -> raw column. The vendor's interface document lists these.
COLUMNS = {
    "工单编号": "work_order_no",
    "受理时间": "received_at",
    "来电人姓名": "caller_name",
    "来电号码": "caller_phone",
    "诉求类型": "matter_type",
    "问题分类": "category_name",
    "所属区县": "district_name",
    "所属街镇": "town_name",
    "事发地址": "address",
    "诉求内容": "content",
    "承办单位": "handling_unit",
    "办理状态": "status",
    "办结时间": "closed_at",
    "回访结果": "callback_result",
}
PERSONAL_FIELDS = {"来电人姓名", "来电号码", "事发地址"}
MATTER_TYPES = frozenset({"咨询", "求助", "投诉", "举报", "建议"})
STATUSES = frozenset({"办理中", "已办结"})
CALLBACK_RESULTS = frozenset({"", "满意", "基本满意", "不满意", "未回访"})
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M")
WORK_ORDER_NO = re.compile(r"^[A-Za-z0-9-]{6,40}$")
PHONE = re.compile(r"^\d{7,13}$")
# Bytes that were not valid GB18030, kept as lone surrogates by the surrogateescape decoder.
_UNDECODED = re.compile("[\udc80-\udcff]")

RAW_COLUMNS = (
    "batch_id",
    "source_row",
    "file_date",
    "work_order_no",
    "received_at",
    "caller_key",
    "caller_name_masked",
    "caller_phone_masked",
    "matter_type",
    "category_name",
    "district_name",
    "town_name",
    "address_masked",
    "content",
    "handling_unit",
    "status",
    "closed_at",
    "callback_result",
)
PII_COLUMNS = (
    "batch_id",
    "source_row",
    "work_order_no",
    "caller_key",
    "caller_name",
    "caller_phone",
    "address",
)
# COPY text format: the server reads it a little faster than CSV, and Python can write it with
# plain string joins. Binary would spare the server about a tenth of its parsing, but building
# it row by row in Python costs more than that.
_COPY_WORK_ORDERS = f"COPY raw.hotline_work_orders ({', '.join(RAW_COLUMNS)}) FROM STDIN"
_COPY_CALLERS = f"COPY restricted.hotline_callers ({', '.join(PII_COLUMNS)}) FROM STDIN"
_NULL = hotline_copy.NULL
# Both number patterns of pii.scrub_text (phone, ID) contain three digits in a row.
_THREE_DIGITS = re.compile(r"\d{3}")


def file_date_of(path: Path) -> date:
    match = FILE_NAME.match(path.name)
    if not match:
        raise UnusableFileError(path.name, "file name does not follow 12345_gongdan_YYYYMMDD.csv")
    return datetime.strptime(match.group(1), "%Y%m%d").date()


def _timestamp(header: str, value: str) -> datetime:
    value = value.strip()
    if len(value) == 19 and value[4] == "-":
        # The vendor's usual form; fromisoformat is C code and far cheaper than strptime.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise RowError(header, f"impossible or unreadable timestamp {value!r}") from None
        if parsed.tzinfo is not None:
            # The export is in bureau time without offsets; an offset means another writer.
            raise RowError(header, f"timestamp with a time-zone offset {value!r}")
        return parsed
    for fmt in TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
    raise RowError(header, f"impossible or unreadable timestamp {value!r}")


def _validate(raw: dict[str, str], ref: ReferenceData) -> dict[str, object]:
    for header, value in raw.items():
        if _UNDECODED.search(value):
            raise RowError(header, "bytes that are not valid GB18030")
        if "\x00" in value:
            raise RowError(header, "NUL character (cannot be stored)")
    number = raw["工单编号"].strip()
    if not WORK_ORDER_NO.match(number):
        raise RowError("工单编号", "missing or malformed work-order number")
    received = _timestamp("受理时间", raw["受理时间"])
    phone = pii.normalise_phone(raw["来电号码"])
    if not PHONE.match(phone):
        raise RowError("来电号码", "missing or malformed phone number")  # value withheld: personal data
    if raw["诉求类型"] not in MATTER_TYPES:
        raise RowError("诉求类型", f"unknown matter type {raw['诉求类型']!r}")
    if raw["问题分类"] not in ref.category_names:
        raise RowError("问题分类", f"unknown category {raw['问题分类']!r}")
    towns = ref.towns_by_district.get(raw["所属区县"])
    if towns is None:
        raise RowError("所属区县", f"unknown district {raw['所属区县']!r}")
    if raw["所属街镇"] not in towns:
        raise RowError("所属街镇", f"town {raw['所属街镇']!r} is not in district {raw['所属区县']!r}")
    if raw["办理状态"] not in STATUSES:
        raise RowError("办理状态", f"unknown status {raw['办理状态']!r}")
    closed = _timestamp("办结时间", raw["办结时间"]) if raw["办结时间"].strip() else None
    if raw["办理状态"] == "已办结" and closed is None:
        raise RowError("办结时间", "closed work order without a closing time")
    if closed is not None and closed < received:
        raise RowError("办结时间", f"closing time {raw['办结时间']!r} is before the receiving time")
    if raw["回访结果"] not in CALLBACK_RESULTS:
        raise RowError("回访结果", f"unknown call-back result {raw['回访结果']!r}")
    return {"work_order_no": number, "received_at": received, "closed_at": closed, "phone": phone}


def _storable(record: dict[str, str]) -> dict[str, str]:
    """The record with undecodable bytes shown as \\xNN: lone surrogates cannot be stored as UTF-8."""
    return {
        # NUL is no more storable in jsonb than in text: shown escaped like the undecodable bytes.
        k: v.encode(ENCODING, "surrogateescape").decode(ENCODING, "backslashreplace").replace("\x00", "\\x00")
        for k, v in record.items()
    }


@dataclass
class _Export:
    """An export file whose header has been checked; its records are decoded and read while they load."""

    header: list[str]
    records: Iterator[tuple[list[str], bool, bool]]  # see hotline_copy.split_records; header excluded
    notes: list[str]


def _open_export(path: Path, data: bytes) -> _Export:
    records = hotline_copy.split_records(hotline_copy.text_blocks(data, ENCODING))
    try:
        first = next(records)[0]
    except StopIteration:
        raise UnusableFileError(path.name, "empty file: no header row") from None
    header = [h.strip().lstrip("\ufeff") for h in first]
    missing = [h for h in COLUMNS if h not in header]
    if missing:
        raise UnusableFileError(path.name, f"header lacks column(s) {', '.join(missing)}")
    notes = []
    extra = [h for h in header if h not in COLUMNS]
    if extra:
        notes.append(f"ignored unknown column(s) {', '.join(extra)}")
        log.warning("%s: ignoring unknown column(s) %s", path.name, ", ".join(extra))
    return _Export(header, records, notes)


@dataclass
class _Tally:
    source_rows: int = 0
    loaded_rows: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def _copy_stamp(value: str) -> tuple[datetime, str] | None:
    """The vendor's usual timestamp form parsed, with its COPY text; None sends the row to `_validate`."""
    value = value.strip()
    if len(value) != 19 or value[4] != "-":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        return None
    return parsed, parsed.isoformat(" ")


def _encode(
    export: _Export,
    ref: ReferenceData,
    *,
    pii_key: bytes,
    batch_id: int,
    day: date,
    encoding: str,
    tally: _Tally,
    chunk_rows: int = 10_000,
    fast_path: bool = True,
) -> Iterator[tuple[bytes, bytes]]:
    """COPY text of the good rows for raw.hotline_work_orders and restricted.hotline_callers, in chunks.

    Every row is held to the rules of `_validate` and pseudonymised as `xinfang.pii`
    does. A row of the usual shape takes a fast path: the same checks written
    out on the list of values, the keyed hash from precomputed HMAC states, masks
    and scrubbed texts memoised for the load (names and complaint texts repeat),
    COPY text built with one f-string. Anything else (a row that fails a check,
    an unusual timestamp or phone form, undecodable bytes) goes through
    `_validate` and the `pii` functions themselves, so every quarantine reason
    comes from one place. Rejections and counts are collected in `tally`.
    `fast_path=False` sends every row the reference way (the tests compare both).
    """
    header = export.header
    width = len(header)
    # Last occurrence wins, as in dict(zip(header, values)) of the reference path.
    at = {h: i for i, h in enumerate(header)}
    i_no, i_recv, i_name, i_phone, i_matter, i_cat, i_dist, i_town = (at[h] for h in list(COLUMNS)[:8])
    i_addr, i_content, i_unit, i_status, i_closed, i_callback = (at[h] for h in list(COLUMNS)[8:])
    categories = ref.category_names
    towns_by_district = ref.towns_by_district
    person_key = hotline_copy.keyed_hasher(pii_key)
    bid, file_day = str(batch_id), day.isoformat()
    number_ok = WORK_ORDER_NO.match
    three_digits = _THREE_DIGITS.search
    # Per-load memos: they hold personal data, so they live and die with this call.
    stamps: dict[str, tuple[datetime, str] | None] = {}
    masked_names: dict[str, str] = {}
    scrubbed: dict[str, str] = {}
    raw_lines: list[str] = []
    pii_lines: list[str] = []
    rejections = tally.rejections
    number = 0
    limit = min(1_000, chunk_rows)
    for number, (values, needs_escape, unclean) in enumerate(export.records, start=1):
        if len(values) != width:
            record = _storable(dict(zip(header, values, strict=False)))
            rejections.append(
                Rejection(number, "*", f"row has {len(values)} fields, header has {width}", record)
            )
            continue
        fast = fast_path and not (unclean and _suspect_values(values))
        if fast:
            work_order_no = values[i_no].strip()
            phone = values[i_phone]
            received = stamps.get(values[i_recv], False)
            if received is False:
                received = stamps[values[i_recv]] = _copy_stamp(values[i_recv])
            status = values[i_status]
            closed_text = values[i_closed]
            if closed_text.strip():
                closed = stamps.get(closed_text, False)
                if closed is False:
                    closed = stamps[closed_text] = _copy_stamp(closed_text)
                closed_ok = closed is not None and received is not None and closed[0] >= received[0]
            else:
                closed = None
                closed_ok = status != "已办结"
            district, town = values[i_dist], values[i_town]
            towns = towns_by_district.get(district)
            fast = (
                received is not None
                and closed_ok
                and number_ok(work_order_no) is not None
                # 11 ASCII digits: normalise_phone leaves it as it is and PHONE matches it.
                and len(phone) == 11
                and phone.isdigit()
                and phone.isascii()
                and values[i_matter] in MATTER_TYPES
                and values[i_cat] in categories
                and towns is not None
                and town in towns
                and status in STATUSES
                and values[i_callback] in CALLBACK_RESULTS
            )
        if not fast:
            raw = dict(zip(header, values, strict=True))
            try:
                checked = _validate(raw, ref)
            except RowError as err:
                rejections.append(Rejection(number, err.field, err.reason, _storable(raw)))
                continue
            work_row, caller_row = _pseudonymise(raw, checked, pii_key, day)
            raw_lines.append(hotline_copy.copy_line((batch_id, number, *work_row)))
            pii_lines.append(hotline_copy.copy_line((batch_id, number, *caller_row)))
        else:
            name, address, content = values[i_name], values[i_addr], values[i_content]
            key = person_key(phone)
            name_masked = masked_names.get(name)
            if name_masked is None:
                name_masked = masked_names[name] = pii.mask_name(name)
            # pii.mask_phone of 11 digits; pii.mask_address with the district and town as prefix.
            phone_masked = phone[:3] + "****" + phone[7:]
            prefix = district + town
            address_masked = prefix + "***" if prefix and address.startswith(prefix) else "***"
            if (len(address) >= 4 and address in content) or (len(name) >= 2 and name in content):
                content = pii.scrub_text(content, name=name, address=address)
            else:
                # Neither the caller's name nor address occurs, so only the number patterns
                # can change the text; both need three digits in a row to match.
                text = content
                content = scrubbed.get(text)
                if content is None:
                    content = scrubbed[text] = pii.scrub_text(text) if three_digits(text) else text
            matter, category = values[i_matter], values[i_cat]
            unit, callback = values[i_unit], values[i_callback]
            if needs_escape:
                # Rare: a backslash or tab in the line, or a quoted record (which may hold CR/LF).
                (work_order_no, name_masked, matter, category, district, town, address_masked, content) = map(
                    hotline_copy.escape,
                    (work_order_no, name_masked, matter, category, district, town, address_masked, content),
                )
                unit, status, callback, name, address = map(
                    hotline_copy.escape, (unit, status, callback, name, address)
                )
            raw_lines.append(
                f"{bid}\t{number}\t{file_day}\t{work_order_no}\t{received[1]}\t{key}\t{name_masked}\t"
                f"{phone_masked}\t{matter}\t{category}\t{district}\t{town}\t{address_masked}\t"
                f"{content}\t{unit}\t{status}\t{closed[1] if closed else _NULL}\t{callback or _NULL}\n"
            )
            pii_lines.append(f"{bid}\t{number}\t{work_order_no}\t{key}\t{name}\t{phone}\t{address}\n")
        if len(raw_lines) >= limit:
            # Small chunks first, so the server starts working while this side warms up.
            limit = min(limit * 2, chunk_rows)
            tally.loaded_rows += len(raw_lines)
            yield "".join(raw_lines).encode(encoding), "".join(pii_lines).encode(encoding)
            raw_lines.clear()
            pii_lines.clear()
    tally.source_rows = number
    if raw_lines:
        tally.loaded_rows += len(raw_lines)
        yield "".join(raw_lines).encode(encoding), "".join(pii_lines).encode(encoding)


def _suspect_values(values: list[str]) -> bool:
    joined = "".join(values)
    return "\x00" in joined or _UNDECODED.search(joined) is not None


def _pseudonymise(
    raw: dict[str, str], checked: dict[str, object], pii_key: bytes, day: date
) -> tuple[tuple, tuple]:
    """The reference form of a good row for both tables, from the `pii` functions themselves."""
    key = pii.person_key(checked["phone"], pii_key)
    prefix = raw["所属区县"] + raw["所属街镇"]
    work_row = (
        day,
        checked["work_order_no"],
        checked["received_at"],
        key,
        pii.mask_name(raw["来电人姓名"]),
        pii.mask_phone(checked["phone"]),
        raw["诉求类型"],
        raw["问题分类"],
        raw["所属区县"],
        raw["所属街镇"],
        pii.mask_address(raw["事发地址"], prefix),
        pii.scrub_text(raw["诉求内容"], name=raw["来电人姓名"], address=raw["事发地址"]),
        raw["承办单位"],
        raw["办理状态"],
        checked["closed_at"],
        raw["回访结果"] or None,
    )
    caller_row = (checked["work_order_no"], key, raw["来电人姓名"], checked["phone"], raw["事发地址"])
    return work_row, caller_row


def load_file(conn: psycopg.Connection, path: Path, *, pii_key: bytes) -> BatchResult:
    """Load one export file; skip it when the same bytes were loaded before.

    `conn` must be in autocommit mode: the load runs in its own transaction, and
    the 'failed' ledger row of an unusable file must outlive the raised error.
    """
    if not conn.autocommit:
        raise ValueError("load_file needs an autocommit connection (db.connect(autocommit=True))")
    started = batches.utcnow()
    # One read: the checksum and the loaded rows come from the same bytes.
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    day = file_date_of(path)
    existing = batches.already_loaded(conn, SOURCE, sha256)
    if existing is not None:
        log.info("%s already loaded as batch %d (same checksum); skipping", path.name, existing)
        return BatchResult(SOURCE, path.name, skipped=True, batch_id=existing)
    try:
        export = _open_export(path, data)
    except UnusableFileError as exc:
        batches.record_failed_batch(
            conn,
            source=SOURCE,
            file_name=path.name,
            sha256=sha256,
            file_date=day,
            problem=exc.problem,
            started_at=started,
        )
        raise
    ref = reference_data()
    tally = _Tally()
    with conn.transaction():
        # Two loads of the same file at once (DAG and CLI): the second waits, then skips.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{SOURCE}:{sha256}",))
        existing = batches.already_loaded(conn, SOURCE, sha256)
        if existing is not None:
            log.info("%s was loaded meanwhile as batch %d; skipping", path.name, existing)
            return BatchResult(SOURCE, path.name, skipped=True, batch_id=existing)
        batch_id = batches.begin_batch(
            conn,
            source=SOURCE,
            file_name=path.name,
            sha256=sha256,
            file_date=day,
            notes=export.notes,
            started_at=started,
        )
        # Rows are parsed while earlier chunks are being COPied: see hotline_copy.copy_in_background.
        chunks = _encode(
            export, ref, pii_key=pii_key, batch_id=batch_id, day=day, encoding=conn.info.encoding, tally=tally
        )
        hotline_copy.copy_in_background(conn, (_COPY_WORK_ORDERS, _COPY_CALLERS), chunks)
        tally.rejections.sort(key=lambda r: r.row_number)
        batches.finish_batch(
            conn,
            batch_id,
            source=SOURCE,
            file_name=path.name,
            source_rows=tally.source_rows,
            loaded_rows=tally.loaded_rows,
            rejections=tally.rejections,
        )
        batches.verify_reconciliation(conn, batch_id, "raw.hotline_work_orders")
    log.info(
        "%s loaded as batch %d: %d source rows = %d loaded + %d quarantined",
        path.name,
        batch_id,
        tally.source_rows,
        tally.loaded_rows,
        len(tally.rejections),
    )
    return BatchResult(
        SOURCE,
        path.name,
        skipped=False,
        batch_id=batch_id,
        source_rows=tally.source_rows,
        loaded_rows=tally.loaded_rows,
        quarantined_rows=len(tally.rejections),
        notes=export.notes,
    )


def load_day(conn: psycopg.Connection, landing_dir: Path, day: date, *, pii_key: bytes) -> BatchResult:
    """Load the export of one business day; its absence fails loudly (the vendor is late)."""
    path = landing_dir / f"12345_gongdan_{day:%Y%m%d}.csv"
    if not path.exists():
        raise FileNotFoundError(f"hotline export for {day} not found: {path}")
    batches.ensure_schema(conn)
    return load_file(conn, path, pii_key=pii_key)
