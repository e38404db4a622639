"""Builders of small hotline export files for the ingestion tests.

Files are written with the csv module in GB18030, the way the vendor writes
them, from rows the tests describe field by field. Personal data is drawn so
that every name, phone and address is unique to the run and easy to search for.
"""

from __future__ import annotations

import csv
import dataclasses
import email
import email.policy
import io
import itertools
import random
import socket
import subprocess
import uuid
from collections import Counter
from datetime import date, timedelta
from email.message import EmailMessage
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


# --- SMTP ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)


class RecordingHandler:
    """Accepts mail, except addresses in ``reject`` (550) and ``defer_once`` (451, first time only)."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.reject: set[str] = set()
        self.defer_once: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        if address.lower() in self.defer_once:
            self.defer_once.discard(address.lower())
            return "451 4.3.0 temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def count_by_recipient(self) -> Counter[str]:
        return Counter(rcpt.lower() for m in self.messages for rcpt in m.rcpt_tos)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_png(pdf: Path, prefix: Path, *, page: int, dpi: int = 50) -> Path:
    """One page of a PDF rendered by poppler's pdftoppm (for the record and for a look)."""
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            str(dpi),
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(pdf),
            str(prefix),
        ],
        check=True,
    )
    return prefix.with_suffix(".png")
