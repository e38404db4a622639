"""Simulator of the 12345 hotline's daily work-order export.

Real hotline platforms hand over one CSV a day, encoded in GB18030 with Chinese
headers. A work order appears in the file of the day it was received; when it
is closed on a later day it appears again, with its new status, in that day's
file. Downstream code must therefore treat the files as a change log keyed by
the work-order number.

Each day's orders are drawn from a generator seeded by (seed, day), so the file
of any day can be regenerated without replaying the days before it.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from xinfang.sim.city import DISTRICTS
from xinfang.sim.people import fake_address, fake_mobile, fake_name

ENCODING = "gb18030"
FILE_PREFIX = "12345_gongdan_"

# The export's column headers, in the vendor's order.
HEADERS = (
    "工单编号",
    "受理时间",
    "来电人姓名",
    "来电号码",
    "诉求类型",
    "问题分类",
    "所属区县",
    "所属街镇",
    "事发地址",
    "诉求内容",
    "承办单位",
    "办理状态",
    "办结时间",
    "回访结果",
)

MATTER_TYPES = (("咨询", 0.38), ("求助", 0.22), ("投诉", 0.26), ("举报", 0.06), ("建议", 0.08))

# (category name in the taxonomy seed, relative weight, handling unit, complaint templates)
CATEGORIES = (
    (
        "物业管理",
        14,
        "市住房和城乡建设局",
        (
            "{town}{estate}小区物业不作为，电梯长期故障无人维修。",
            "{estate}小区物业擅自提高停车费，业主要求说明依据。",
        ),
    ),
    (
        "欠薪讨薪",
        10,
        "市人力资源和社会保障局",
        (
            "在{town}某建筑工地务工，{company}拖欠工资{amount}元至今未付。",
            "{company}拖欠{n}名工人工资，要求尽快结清。",
        ),
    ),
    (
        "征地拆迁",
        5,
        "市自然资源和规划局",
        (
            "{town}征地补偿标准不明确，村民要求公开补偿方案。",
            "{town}拆迁安置房迟迟未交付，要求给出交房时间。",
        ),
    ),
    (
        "交通出行",
        12,
        "市交通运输局",
        ("{town}公交站点设置不合理，居民出行不便。", "{town}路段红绿灯故障，存在安全隐患。"),
    ),
    (
        "环境污染",
        9,
        "市生态环境局",
        ("{town}{company}夜间排放异味气体，影响居民休息。", "{town}河道有污水直排现象。"),
    ),
    ("城市规划", 6, "市自然资源和规划局", ("{town}小区旁规划建设变电站，居民担心辐射。",)),
    ("房屋质量", 6, "市住房和城乡建设局", ("{estate}新交付房屋墙体开裂渗水，开发商拒不维修。",)),
    (
        "社会保险",
        8,
        "市人力资源和社会保障局",
        ("咨询灵活就业人员养老保险缴费标准。", "{company}未为职工缴纳社会保险。"),
    ),
    ("医疗服务", 7, "市卫生健康委员会", ("{town}卫生院服务态度差，就诊排队时间过长。",)),
    ("教育管理", 7, "市教育局", ("{town}学校划片入学政策咨询。", "{town}校外培训机构退费难。")),
    ("社会救助", 5, "市民政局", ("申请低保后长时间未得到答复。", "{town}困难家庭临时救助申请咨询。")),
    ("消费维权", 6, "市市场监督管理局", ("{company}预付卡商家关门，消费者要求退款。",)),
    ("惠农补贴", 3, "市农业农村局", ("{town}耕地地力保护补贴未发放到户。",)),
    ("宅基地", 2, "市自然资源和规划局", ("{town}宅基地审批进度咨询。",)),
)
COMPANIES = ("宏达建筑公司", "华盛劳务公司", "鑫源化工厂", "金桥置业", "恒信商贸", "远航物流")
ESTATES = ("锦绣", "阳光", "翠湖", "金地", "和园", "新城")

STATUS_OPEN = "办理中"
STATUS_CLOSED = "已办结"
RATINGS = (("满意", 0.78), ("基本满意", 0.12), ("不满意", 0.06), ("未回访", 0.04))


@dataclass(frozen=True)
class SimConfig:
    seed: int = 20250101
    orders_per_day: int = 180
    # Share of rows written deliberately malformed, as real exports occasionally are.
    bad_row_rate: float = 0.002
    # Also export the orders the world model (xinfang.sim.world, same seed) turned into petitions
    # (channel 12345转办), so their work-order numbers can be traced back to the hotline.
    petition_conversions: bool = True


@dataclass(frozen=True)
class WorkOrder:
    number: str
    received_at: datetime
    closed_at: datetime | None
    fields: dict[str, str]


def _weighted(rng: random.Random, options):
    values, weights = zip(*options, strict=True)
    return rng.choices(values, weights=weights)[0]


def _day_rng(seed: int, day: date, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{day.isoformat()}:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@lru_cache(maxsize=128)  # a file looks back over earlier days; consecutive files share them
def orders_received_on(day: date, cfg: SimConfig) -> tuple[WorkOrder, ...]:
    """Every work order received on `day`, with its eventual closing time."""
    rng = _day_rng(cfg.seed, day, "orders")
    weekday_factor = 0.7 if day.weekday() >= 5 else 1.0
    count = max(1, round(rng.gauss(cfg.orders_per_day * weekday_factor, cfg.orders_per_day * 0.08)))
    orders = []
    for i in range(count):
        district = rng.choices(DISTRICTS, weights=[d.weight for d in DISTRICTS])[0]
        town = rng.choice(district.towns)
        category, _, unit, templates = rng.choices(CATEGORIES, weights=[c[1] for c in CATEGORIES])[0]
        matter_type = _weighted(rng, MATTER_TYPES)
        received = datetime.combine(day, time(8, 0)) + timedelta(seconds=rng.randrange(11 * 3600))
        # Consultations are mostly answered on the spot; complaints take days.
        days_to_close = 0 if matter_type == "咨询" and rng.random() < 0.7 else int(rng.expovariate(1 / 5))
        closed = None
        if rng.random() > 0.04:  # a few stay open for a long time
            closed = received + timedelta(days=days_to_close, hours=rng.randrange(1, 9))
        text = rng.choice(templates).format(
            town=town.name,
            estate=rng.choice(ESTATES),
            company=rng.choice(COMPANIES),
            amount=rng.randrange(3, 60) * 1000,
            n=rng.randrange(5, 80),
        )
        number = f"GD{day:%Y%m%d}{i + 1:05d}"
        orders.append(
            WorkOrder(
                number=number,
                received_at=received,
                closed_at=closed,
                fields={
                    "工单编号": number,
                    "受理时间": f"{received:%Y-%m-%d %H:%M:%S}",
                    "来电人姓名": fake_name(rng),
                    "来电号码": fake_mobile(rng),
                    "诉求类型": matter_type,
                    "问题分类": category,
                    "所属区县": district.name,
                    "所属街镇": town.name,
                    "事发地址": fake_address(rng, district.name, town.name),
                    "诉求内容": text,
                    "承办单位": unit,
                    "回访结果": _weighted(rng, RATINGS),
                },
            )
        )
    if cfg.petition_conversions:
        orders.extend(_converted_orders(day, cfg.seed))
    return tuple(orders)


def _converted_orders(day: date, seed: int) -> list[WorkOrder]:
    """Orders of `day` handed to the petition system; numbered GD{day}9nnnn, apart from the rest."""
    from xinfang.sim.world import hotline_orders_converted_on  # the world imports the city, not us

    orders = []
    for o in hotline_orders_converted_on(day, seed):
        received, closed = o["received_at"], o["closed_at"]
        orders.append(
            WorkOrder(
                number=o["number"],
                received_at=received,
                closed_at=closed,
                fields={
                    "工单编号": o["number"],
                    "受理时间": f"{received:%Y-%m-%d %H:%M:%S}",
                    "来电人姓名": o["caller_name"],
                    "来电号码": o["caller_phone"],
                    "诉求类型": o["matter_type"],
                    "问题分类": o["category_name"],
                    "所属区县": o["district_name"],
                    "所属街镇": o["town_name"],
                    "事发地址": o["address"],
                    "诉求内容": o["content"],
                    "承办单位": o["handling_unit"],
                    # The petition system calls the petitioner back, not the hotline.
                    "回访结果": "未回访",
                },
            )
        )
    return orders


def _row(order: WorkOrder, as_of: date) -> dict[str, str]:
    closed = order.closed_at is not None and order.closed_at.date() <= as_of
    row = dict(order.fields)
    row["办理状态"] = STATUS_CLOSED if closed else STATUS_OPEN
    row["办结时间"] = f"{order.closed_at:%Y-%m-%d %H:%M:%S}" if closed else ""
    if not closed:
        row["回访结果"] = ""
    return row


def _corrupt(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    """Damage one field the way broken exports do."""
    row = dict(row)
    kind = rng.choice(("missing_number", "bad_date", "unknown_type", "closed_before_received"))
    if kind == "missing_number":
        row["工单编号"] = ""
    elif kind == "bad_date":
        row["受理时间"] = row["受理时间"].replace("-", "/", 1)[:5] + "13/45 25:61"
    elif kind == "unknown_type":
        row["诉求类型"] = "其它类"
    else:
        row["办结时间"] = "2000-01-01 00:00:00"
        row["办理状态"] = STATUS_CLOSED
    return row


def export_rows(day: date, cfg: SimConfig, lookback_days: int = 60) -> list[dict[str, str]]:
    """Rows of the export file for `day`: new orders plus orders closed that day."""
    rows = [_row(o, day) for o in orders_received_on(day, cfg)]
    for back in range(1, lookback_days + 1):
        for order in orders_received_on(day - timedelta(days=back), cfg):
            if order.closed_at is not None and order.closed_at.date() == day:
                rows.append(_row(order, day))
    rng = _day_rng(cfg.seed, day, "defects")
    return [_corrupt(r, rng) if rng.random() < cfg.bad_row_rate else r for r in rows]


def export_path(landing_dir: Path, day: date) -> Path:
    return landing_dir / f"{FILE_PREFIX}{day:%Y%m%d}.csv"


def write_export(day: date, landing_dir: Path, cfg: SimConfig, *, lookback_days: int = 60) -> Path:
    """Write the day's export as the vendor does; an existing file is left as it is."""
    path = export_path(landing_dir, day)
    if path.exists():
        return path
    landing_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding=ENCODING, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADERS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(export_rows(day, cfg, lookback_days))
    tmp.replace(path)
    return path


def write_exports(start: date, end: date, landing_dir: Path, cfg: SimConfig) -> list[Path]:
    days = (end - start).days + 1
    return [write_export(start + timedelta(days=i), landing_dir, cfg) for i in range(days)]
