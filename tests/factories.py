"""Builders of small hotline export files for the ingestion tests.

Files are written with the csv module in GB18030, the way the vendor writes
them, from rows the tests describe field by field. Personal data is drawn so
that every name, phone and address is unique to the run and easy to search for.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import uuid
from datetime import date, timedelta
from pathlib import Path

from xinfang.sim.hotline import HEADERS

ENCODING = "gb18030"

# Compound or rare surnames and given-name characters the simulator never uses,
# so a search for them cannot hit simulated data of other tests.
_SURNAMES = ("欧阳", "诸葛", "上官", "司马", "龚", "敖", "阙", "晏")
_GIVEN = "翊璟琅珩骞昀炜瑾琰璐珂琪澄沅漪"

_rng = random.Random(uuid.uuid4().int)
# A private range of days per run: every file gets a date of its own.
_days = itertools.count(_rng.randrange(3000))


def next_day() -> date:
    return date(2031, 1, 1) + timedelta(days=next(_days))


def export_name(day: date) -> str:
    return f"12345_gongdan_{day:%Y%m%d}.csv"


def unique_name(length: int = 3) -> str:
    surname = _rng.choice([s for s in _SURNAMES if len(s) < length])
    return surname + "".join(_rng.choice(_GIVEN) for _ in range(length - len(surname)))


def unique_phone() -> str:
    return "166" + f"{_rng.randrange(10**8):08d}"


def unique_street() -> str:
    return f"梧桐巷{_rng.randrange(10**6)}号{_rng.randrange(1, 30)}栋{_rng.randrange(101, 2600)}室"


_order_numbers = itertools.count(1)


def row(**overrides: str) -> dict[str, str]:
    """One valid export row (a closed consultation in 江东区东湖街道) with fresh personal data."""
    number = f"T{uuid.uuid4().hex[:12].upper()}{next(_order_numbers):04d}"
    values = {
        "工单编号": number,
        "受理时间": "2025-06-01 09:15:00",
        "来电人姓名": unique_name(3),
        "来电号码": unique_phone(),
        "诉求类型": "投诉",
        "问题分类": "物业管理",
        "所属区县": "江东区",
        "所属街镇": "东湖街道",
        "事发地址": "",
        "诉求内容": "小区电梯长期故障，物业不维修。",
        "承办单位": "市住房和城乡建设局",
        "办理状态": "已办结",
        "办结时间": "2025-06-03 16:40:00",
        "回访结果": "满意",
    }
    values.update(overrides)
    if not values["事发地址"]:
        values["事发地址"] = values["所属区县"] + values["所属街镇"] + unique_street()
    return values


def csv_line(values: list[str]) -> bytes:
    """One CSV record in the export's encoding and line ending."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue().encode(ENCODING)


def write_export(
    directory: Path,
    rows: list[dict[str, str] | list[str] | bytes],
    *,
    headers: tuple[str, ...] | list[str] = HEADERS,
    day: date | None = None,
) -> Path:
    """Write an export file; a row is a dict (by header), a list of fields, or raw bytes of one line."""
    path = directory / export_name(day or next_day())
    out = bytearray(csv_line(list(headers)))
    for r in rows:
        if isinstance(r, bytes):
            out += r
        elif isinstance(r, dict):
            out += csv_line([r.get(h, "") for h in headers])
        else:
            out += csv_line(list(r))
    path.write_bytes(bytes(out))
    return path


def data_row_count(path: Path) -> int:
    """Data rows of a file counted independently of the loader (header excluded)."""
    text = path.read_bytes().decode(ENCODING, errors="replace")
    return sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1
