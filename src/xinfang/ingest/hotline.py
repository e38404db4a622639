"""Loader of the 12345 hotline's daily work-order exports (GB18030 CSV).

Each file is validated row by row: good rows are pseudonymised and COPied into
raw.hotline_work_orders (personal data into restricted.hotline_callers), bad
rows go to the quarantine with their row, field and reason. A file whose
checksum was loaded before is skipped, so re-running an interval is a no-op.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import date, datetime
from pathlib import Path

import psycopg

from xinfang import pii
from xinfang.ingest import batches
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


def _parse(path: Path) -> tuple[list[tuple[int, dict[str, str]]], list[Rejection], list[str]]:
    """Rows of the file keyed by data-row number, field-count rejections and notes."""
    # surrogateescape keeps undecodable bytes visible so the row, not the file, is rejected.
    text = path.read_bytes().decode(ENCODING, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise UnusableFileError(path.name, "empty file: no header row") from None
    missing = [h for h in COLUMNS if h not in header]
    if missing:
        raise UnusableFileError(path.name, f"header lacks column(s) {', '.join(missing)}")
    notes = []
    extra = [h for h in header if h not in COLUMNS]
    if extra:
        notes.append(f"ignored unknown column(s) {', '.join(extra)}")
        log.warning("%s: ignoring unknown column(s) %s", path.name, ", ".join(extra))
    rows, rejections = [], []
    for number, values in enumerate(reader, start=1):
        if len(values) != len(header):
            record = _storable(dict(zip(header, values, strict=False)))
            rejections.append(
                Rejection(number, "*", f"row has {len(values)} fields, header has {len(header)}", record)
            )
            continue
        rows.append((number, dict(zip(header, values, strict=True))))
    return rows, rejections, notes


def load_file(conn: psycopg.Connection, path: Path, *, pii_key: bytes) -> BatchResult:
    """Load one export file; skip it when the same bytes were loaded before.

    `conn` must be in autocommit mode: the load runs in its own transaction, and
    the 'failed' ledger row of an unusable file must outlive the raised error.
    """
    if not conn.autocommit:
        raise ValueError("load_file needs an autocommit connection (db.connect(autocommit=True))")
    started = batches.utcnow()
    sha256 = batches.file_sha256(path)
    day = file_date_of(path)
    existing = batches.already_loaded(conn, SOURCE, sha256)
    if existing is not None:
        log.info("%s already loaded as batch %d (same checksum); skipping", path.name, existing)
        return BatchResult(SOURCE, path.name, skipped=True, batch_id=existing)
    try:
        rows, rejections, notes = _parse(path)
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
    good_raw, good_pii = [], []
    for number, raw in rows:
        try:
            checked = _validate(raw, ref)
        except RowError as err:
            rejections.append(Rejection(number, err.field, err.reason, _storable(raw)))
            continue
        key = pii.person_key(checked["phone"], pii_key)
        prefix = raw["所属区县"] + raw["所属街镇"]
        good_raw.append(
            (
                number,
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
        )
        good_pii.append(
            (number, checked["work_order_no"], key, raw["来电人姓名"], checked["phone"], raw["事发地址"])
        )
    rejections.sort(key=lambda r: r.row_number)
    source_rows = len(rows) + sum(1 for r in rejections if r.field == "*")
    with conn.transaction():
        # Two loads of the same file at once (DAG and CLI): the second waits, then skips.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{SOURCE}:{sha256}",))
        existing = batches.already_loaded(conn, SOURCE, sha256)
        if existing is not None:
            log.info("%s was loaded meanwhile as batch %d; skipping", path.name, existing)
            return BatchResult(SOURCE, path.name, skipped=True, batch_id=existing)
        batch_id = batches.open_batch(
            conn,
            source=SOURCE,
            file_name=path.name,
            sha256=sha256,
            file_date=day,
            source_rows=source_rows,
            loaded_rows=len(good_raw),
            rejections=rejections,
            notes=notes,
            started_at=started,
        )
        # psycopg's write_row is C code in the binary build: cheaper than encoding COPY text in Python.
        with conn.cursor() as cur:
            with cur.copy(f"COPY raw.hotline_work_orders ({', '.join(RAW_COLUMNS)}) FROM STDIN") as cp:
                for row in good_raw:
                    cp.write_row((batch_id, *row))
            with cur.copy(f"COPY restricted.hotline_callers ({', '.join(PII_COLUMNS)}) FROM STDIN") as cp:
                for row in good_pii:
                    cp.write_row((batch_id, *row))
        batches.verify_reconciliation(conn, batch_id, "raw.hotline_work_orders")
    log.info(
        "%s loaded as batch %d: %d source rows = %d loaded + %d quarantined",
        path.name,
        batch_id,
        source_rows,
        len(good_raw),
        len(rejections),
    )
    return BatchResult(
        SOURCE,
        path.name,
        skipped=False,
        batch_id=batch_id,
        source_rows=source_rows,
        loaded_rows=len(good_raw),
        quarantined_rows=len(rejections),
        notes=notes,
    )


def load_day(conn: psycopg.Connection, landing_dir: Path, day: date, *, pii_key: bytes) -> BatchResult:
    """Load the export of one business day; its absence fails loudly (the vendor is late)."""
    path = landing_dir / f"12345_gongdan_{day:%Y%m%d}.csv"
    if not path.exists():
        raise FileNotFoundError(f"hotline export for {day} not found: {path}")
    batches.ensure_schema(conn)
    return load_file(conn, path, pii_key=pii_key)
