"""The world behind every simulated source: petitions, petitioners, units, staff and grid events.

One seed fixes everything. Records are generated day by day, each day from
generators seeded by (seed, day, purpose), so any range of days can be produced
without replaying the ones before it and memory stays bounded (a few bounded
per-day caches). The online-petition API, the grid system and the 12345
hotline export all serve records drawn from this module.

How a day is made
-----------------
* Volume: two streams per day. The online stream (网上信访, 12345转办) flows
  every day with a weekday rhythm; the offline stream (来信, 来访, 网格上报) only
  on office days (official calendar with 调休). Each stream's half-year total is
  a calibration target; days share it by month, weekday and holiday weights.
* Repeats: a share of each day's petitions (a calibration target) are repeats:
  the petitioner of an earlier, unresolved first petition (1-365 days back)
  raises the same matter again, through any channel. All other petitions come
  from new petitioners, so every repeat is one by the definition below and no
  first petition is one by accident.
* Outcomes of first petitions are allotted by quota: a target share is
  resolved at first handling (answered, rated satisfied, no review, never
  raised again); the others are rated 不满意, not accepted, or never reached by
  the call-back. Ratings of repeats fill the satisfaction target.
* Grid events: grid workers report screening events every office day; a share
  is escalated to the petition system on a later office day (channel 网格上报,
  both records pointing at each other).
* Planted risks (ground truth for the warning models): a construction
  company's unpaid wages in 临河县 (March-May 2025, growing week by week) and
  the land acquisition of 新港物流园二期 in 新港镇 (group visits, May-July 2025).

Definitions used by `calibration_report` (petitions REGISTERED in the half-year)
---------------------------------------------------------------------------
* total (件次): number of petitions registered.
* online share: channel in ONLINE_CHANNELS / total.
* repeat: the petitioner (same ID number) already has an earlier registered
  petition of the same top-level category (first 6 digits of the code) whose
  registration date is at most 365 days before this one's. first = not repeat.
  repeat share = repeats / total.
* 一次性化解 (first-handling resolution) rate: among first petitions, those
  with a 答复, whose last 回访 rating is 满意 or 基本满意, with no 复查申请 or
  复核申请 within 90 days after the 答复, and with no repeat (same person, same
  top-level category) registered after it and at most 90 days after the 答复.
* satisfaction: among petitions with a rated 回访, (满意 + 基本满意) / rated,
  taking each petition's last rating.
* mean handling time: over petitions with a 答复, the number of Monday-Friday
  dates d with registration date < d <= date of the first 答复 (an
  approximation; the warehouse uses the official calendar).

Links between systems: a 12345转办 petition carries the number of the work
order it came from, `GD{YYYYMMDD}9nnnn` (a range the hotline's own numbers,
`GD{YYYYMMDD}{i:05d}` with i < 90000, never reach); the hotline simulator
appends these orders to its export through `hotline_orders_converted_on` (the
world of the same seed). Staff postings (挂职 sent down, 跟岗 brought up) are
dated `Posting` records on the `Staff` row, beside its valid_from/valid_to.

Handlers (经办人): every petition event acting for a unit whose staff the world
models carries the code of the staff member who handled it (`handler_code`):
a town's petition officers in post on the event's date for the town's unit,
the bureau's staff for the bureau (`SZ00`), each honouring postings (a 挂职
cadre handles the town's matters during the posting and not the bureau's; a
跟岗 township cadre the bureau's and not the town's). City departments and
district governments have no staff in the world: their events have none. The
choice is a keyed hash of (petition number, event seq), never a generator
draw, so handlers change no other figure of the world.

Known gaps: events may run past `WorldConfig.end` (full histories are made at
registration); records exist only for days in [start, end]; handling time
counts Monday-Friday, not the official calendar.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

from xinfang.sim.city import (
    CITY_CODE,
    CITY_NAME,
    DISTRICTS,
    DISTRICTS_BY_CODE,
    GRIDS,
    TOWNS,
    TOWNS_BY_CODE,
    Town,
)
from xinfang.sim.people import fake_address, fake_id_number, fake_mobile, fake_name
from xinfang.sim.records import ONLINE_CHANNELS, GridEvent, Person, Petition, PetitionEvent

# --------------------------------------------------------------------------------------------------
# Calibration targets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HalfYearTarget:
    """What the generated records of one half-year must show (definitions in the module docstring)."""

    half_year: str  # "2025H1"
    petitions: int
    online_share: float
    repeat_share: float
    first_resolution: float
    satisfaction: float
    handling_workdays: float
    grid_events_per_office_day: float
    grid_escalation_rate: float
    hotline_share_of_online: float = 0.35


# 2025 H1 comes from the bureau's summary; the other half-years are set so its
# year-on-year changes hold (2024 H1: 13,930 petitions, 86.7 %, 19.7 %, 67 %).
DEFAULT_TARGETS: tuple[HalfYearTarget, ...] = (
    HalfYearTarget("2023H1", 14450, 0.580, 0.215, 0.835, 0.886, 18.5, 30, 0.085),
    HalfYearTarget("2023H2", 14800, 0.620, 0.206, 0.850, 0.893, 17.0, 33, 0.080),
    HalfYearTarget("2024H1", 13880, 0.670, 0.197, 0.867, 0.898, 15.5, 37, 0.070),
    HalfYearTarget("2024H2", 13300, 0.760, 0.178, 0.895, 0.905, 14.0, 42, 0.060),
    HalfYearTarget("2025H1", 12300, 0.850, 0.158, 0.923, 0.915, 12.0, 48, 0.050),
    HalfYearTarget("2025H2", 11800, 0.860, 0.150, 0.935, 0.912, 11.5, 52, 0.045),
)


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 20250101
    start: date = date(2023, 1, 1)
    end: date = date(2025, 12, 31)
    targets: tuple[HalfYearTarget, ...] = DEFAULT_TARGETS
    # Day-to-day spread of the volume around its seasonal mean (relative).
    daily_noise: float = 0.05
    repeat_window_days: int = 365
    # Mean lag of a repeat after the petition it repeats (days, capped at the window).
    repeat_mean_lag_days: float = 70.0
    followup_days: int = 90
    # How first petitions that are not resolved at first handling fail.
    unresolved_mix: tuple[tuple[str, float], ...] = (("unsat", 0.5), ("no_accept", 0.15), ("unrated", 0.35))
    satisfied_share_basic: float = 0.2  # 基本满意 among satisfied ratings
    repeat_no_accept: float = 0.04
    repeat_unrated: float = 0.05
    review_rate_unsat: float = 0.35  # 不满意 petitioners asking for 复查
    rereview_rate: float = 0.3  # of 复查 answers taken to 复核
    bounce_rate: float = 0.06
    transfer_rate: float = 0.12
    escalation_rate: float = 0.02  # 越级 among repeats and unresolved first petitions
    group_share_visits: float = 0.12
    group_share_other: float = 0.015


def half_year_of(day: date) -> str:
    return f"{day.year}H{1 if day.month <= 6 else 2}"


def half_year_bounds(half_year: str) -> tuple[date, date]:
    year, half = int(half_year[:4]), half_year[-1]
    return (date(year, 1, 1), date(year, 6, 30)) if half == "1" else (date(year, 7, 1), date(year, 12, 31))


def _target(cfg: WorldConfig, day: date) -> HalfYearTarget:
    key = half_year_of(day)
    by_key = {t.half_year: t for t in cfg.targets}
    if key in by_key:
        return by_key[key]
    # Outside the calibrated years, hold the nearest half-year's figures.
    ordered = sorted(by_key)
    return by_key[ordered[0] if key < ordered[0] else ordered[-1]]


# --------------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------------


def _span(first: str, last: str | None = None) -> set[date]:
    a = date.fromisoformat(first)
    b = date.fromisoformat(last) if last else a
    return {a + timedelta(days=i) for i in range((b - a).days + 1)}


# State Council holiday notices 2023-2026 (the same facts as the cn_holidays seed).
HOLIDAYS: frozenset[date] = frozenset(
    set().union(
        *(
            _span(*r)
            for r in (
                ("2023-01-01", "2023-01-02"), ("2023-01-21", "2023-01-27"), ("2023-04-05",),
                ("2023-04-29", "2023-05-03"), ("2023-06-22", "2023-06-24"), ("2023-09-29", "2023-10-06"),
                ("2023-12-30", "2023-12-31"), ("2024-01-01",), ("2024-02-10", "2024-02-17"),
                ("2024-04-04", "2024-04-06"), ("2024-05-01", "2024-05-05"), ("2024-06-10",),
                ("2024-09-15", "2024-09-17"), ("2024-10-01", "2024-10-07"), ("2025-01-01",),
                ("2025-01-28", "2025-02-04"), ("2025-04-04", "2025-04-06"), ("2025-05-01", "2025-05-05"),
                ("2025-05-31", "2025-06-02"), ("2025-10-01", "2025-10-08"), ("2026-01-01", "2026-01-03"),
                ("2026-02-15", "2026-02-23"), ("2026-04-04", "2026-04-06"), ("2026-05-01", "2026-05-05"),
                ("2026-06-19", "2026-06-21"), ("2026-09-25", "2026-09-27"), ("2026-10-01", "2026-10-07"),
            )
        )
    )
)  # fmt: skip
MAKEUP_WORKDAYS: frozenset[date] = frozenset(
    date.fromisoformat(d)
    for d in (
        "2023-01-28", "2023-01-29", "2023-04-23", "2023-05-06", "2023-06-25", "2023-10-07", "2023-10-08",
        "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11", "2024-09-14", "2024-09-29",
        "2024-10-12", "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11", "2026-01-04",
        "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
    )
)  # fmt: skip
SPRING_FESTIVAL = {
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
}


def is_office_day(day: date) -> bool:
    return day in MAKEUP_WORKDAYS or (day.weekday() < 5 and day not in HOLIDAYS)


def next_office_day(day: date) -> date:
    while not is_office_day(day):
        day += timedelta(days=1)
    return day


def add_weekdays(day: date, n: int) -> date:
    """The n-th Monday-Friday date after `day` (n >= 1)."""
    weeks, rest = divmod(n, 5)
    day += timedelta(days=7 * weeks)
    while rest:
        day += timedelta(days=1)
        if day.weekday() < 5:
            rest -= 1
    return day


def weekdays_between(first: date, last: date) -> int:
    """Monday-Friday dates d with first < d <= last (0 when last <= first)."""
    if last <= first:
        return 0
    days = (last - first).days
    weeks, rest = divmod(days, 7)
    count = 5 * weeks
    wd = first.weekday()
    for i in range(1, rest + 1):
        if (wd + i) % 7 < 5:
            count += 1
    return count


# Volume rhythm: the month (Feb low around the Spring Festival, December's year-end push),
# the weekday (Monday peaks), holidays.
_MONTH_FACTOR = (1.08, 0.86, 1.05, 1.0, 0.97, 1.0, 1.03, 1.02, 0.98, 0.9, 1.0, 1.05)
_ONLINE_WEEKDAY = (1.2, 1.08, 1.05, 1.02, 0.98, 0.72, 0.62)
_OFFLINE_WEEKDAY = (1.25, 1.05, 1.0, 0.98, 0.9, 1.0, 1.0)  # weekend entries only apply on 调休 days


def _online_weight(day: date) -> float:
    w = _MONTH_FACTOR[day.month - 1] * _ONLINE_WEEKDAY[day.weekday()]
    return w * 0.55 if day in HOLIDAYS else w


def _offline_weight(day: date) -> float:
    if not is_office_day(day):
        return 0.0
    return _MONTH_FACTOR[day.month - 1] * _OFFLINE_WEEKDAY[day.weekday()]


def _wage_season(day: date) -> float:
    """Weight multiplier of 欠薪讨薪: the run-up to the Spring Festival and the summer."""
    sf = SPRING_FESTIVAL.get(day.year if day.month < 11 else day.year + 1)
    factor = 1.0
    if sf is not None:
        before = (sf - day).days
        if -5 <= before <= 60:
            factor += 2.8 * math.exp(-(((before - 15) / 14) ** 2))
    if day.month in (6, 7, 8):
        factor += 0.9
    return factor


# --------------------------------------------------------------------------------------------------
# Units, categories, staff
# --------------------------------------------------------------------------------------------------

BUREAU_CODE = "SZ00"

_CITY_DEPARTMENTS = (
    ("SZ00", "市信访局"),
    ("SZ01", "市人力资源和社会保障局"),
    ("SZ02", "市住房和城乡建设局"),
    ("SZ03", "市自然资源和规划局"),
    ("SZ04", "市交通运输局"),
    ("SZ05", "市生态环境局"),
    ("SZ06", "市卫生健康委员会"),
    ("SZ07", "市教育局"),
    ("SZ08", "市民政局"),
    ("SZ09", "市市场监督管理局"),
    ("SZ10", "市农业农村局"),
    ("SZ11", "市公安局"),
    ("SZ12", "市城市管理局"),
    ("SZ13", "市纪委监委"),
    ("SZ14", "市委组织部"),
)


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    kind: str  # 市直部门, 区县政府, 乡镇街道
    region_code: str  # the city, district or town the unit belongs to


def district_unit(district_code: str) -> str:
    return f"QX{district_code}"


def town_unit(town_code: str) -> str:
    return f"XZ{town_code}"


def _build_departments() -> tuple[Department, ...]:
    units = [Department(code, name, "市直部门", CITY_CODE) for code, name in _CITY_DEPARTMENTS]
    for d in DISTRICTS:
        units.append(Department(district_unit(d.code), f"{d.name}人民政府", "区县政府", d.code))
    for t in TOWNS:
        name = f"{t.name}办事处" if t.name.endswith("街道") else f"{t.name}人民政府"
        units.append(Department(town_unit(t.code), name, "乡镇街道", t.code))
    return tuple(units)


DEPARTMENTS: tuple[Department, ...] = _build_departments()


def department_rows() -> list[dict[str, str]]:
    """Rows of the departments seed."""
    return [
        {"department_code": d.code, "department_name": d.name, "kind": d.kind, "region_code": d.region_code}
        for d in DEPARTMENTS
    ]


@dataclass(frozen=True)
class CategorySpec:
    code: str
    name: str
    weight: float
    department: str  # the city department in charge
    local_share: float  # share assigned to the township rather than the department
    urban: float  # weight multiplier in 街道 towns
    rural: float  # weight multiplier in 镇/乡 towns
    purpose: str  # 601001-601006
    texts: tuple[tuple[str, str], ...]  # (title, content) templates


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("60201501", "物业管理", 12, "SZ02", 0.6, 1.4, 0.4, "601003", (
        ("反映{estate}小区物业服务问题",
         "{town}{estate}小区物业不作为，电梯长期故障、楼道漏水无人维修，要求督促整改。"),
        ("反映{estate}小区物业费上涨",
         "{estate}小区物业擅自上调物业费和停车费，未经业主大会同意，要求说明依据。"),
    )),
    CategorySpec("60200601", "欠薪讨薪", 9, "SZ01", 0.3, 1.0, 1.1, "601003", (
        ("反映{company}拖欠工资",
         "本人在{town}某工地务工，{company}拖欠工资{amount}元至今未付，多次讨要无果。"),
        ("反映{company}拖欠农民工工资", "{company}拖欠{n}名工人工资，春节临近，要求尽快结清。"),
    )),
    CategorySpec("60201401", "征地拆迁", 5, "SZ03", 0.7, 0.6, 1.5, "601003", (
        ("反映{town}征地补偿问题", "{town}征地补偿标准不明确，村民要求公开补偿方案和资金发放情况。"),
    )),
    CategorySpec("60201505", "拆迁安置", 3, "SZ02", 0.6, 1.1, 0.9, "601003", (
        ("反映拆迁安置房交付问题", "{town}拆迁安置房迟迟未交付，过渡费停发，要求给出交房时间。"),
    )),
    CategorySpec("60201502", "房产管理", 5, "SZ02", 0.3, 1.3, 0.6, "601003", (
        ("反映{estate}项目不动产证办理", "{estate}项目交房多年仍未办理不动产权证，要求开发商尽快办理。"),
    )),
    CategorySpec("60201503", "房屋质量", 4, "SZ02", 0.2, 1.3, 0.6, "601003", (
        ("反映{estate}新房质量问题", "{estate}新交付房屋墙体开裂渗水，开发商拒不维修。"),
    )),
    CategorySpec("60201504", "城市规划", 3, "SZ03", 0.2, 1.3, 0.5, "601001", (
        ("对{town}规划建设的意见", "{town}小区旁规划建设变电站，居民担心影响健康，建议调整选址。"),
    )),
    CategorySpec("60200602", "社会保险", 6, "SZ01", 0.2, 1.0, 1.0, "601003", (
        ("反映{company}未缴社保", "{company}未为职工缴纳社会保险，要求补缴。"),
        ("咨询养老保险待遇", "咨询灵活就业人员养老保险缴费年限和待遇计算标准。"),
    )),
    CategorySpec("60201101", "交通出行", 6, "SZ04", 0.3, 1.2, 0.8, "601001", (
        ("建议调整{town}公交线路", "{town}公交站点设置不合理，居民出行不便，建议增设站点。"),
    )),
    CategorySpec("60201102", "环境污染", 6, "SZ05", 0.4, 1.0, 1.0, "601004", (
        ("反映{company}污染问题", "{town}{company}夜间排放异味气体，影响居民休息，要求查处。"),
        ("反映{town}河道污染", "{town}河道有污水直排现象，气味难闻。"),
    )),
    CategorySpec("60200801", "医疗服务", 4, "SZ06", 0.1, 1.0, 1.0, "601003", (
        ("反映{town}卫生院服务问题", "{town}卫生院服务态度差，医疗费用报销不合理。"),
    )),
    CategorySpec("60200701", "教育管理", 4, "SZ07", 0.1, 1.2, 0.8, "601003", (
        ("反映子女入学问题", "{town}学校划片入学政策不合理，孩子无法就近入学。"),
    )),
    CategorySpec("60201201", "社会救助", 4, "SZ08", 0.6, 0.8, 1.2, "601003", (
        ("申请低保未获答复", "家庭困难申请最低生活保障后长时间未得到答复，要求尽快审批。"),
    )),
    CategorySpec("60201701", "消费维权", 3, "SZ09", 0.1, 1.3, 0.6, "601003", (
        ("反映{company}预付卡退款", "{company}关门停业，预付卡余额无法退还，要求退款。"),
    )),
    CategorySpec("60201301", "惠农补贴", 2, "SZ10", 0.7, 0.1, 2.0, "601003", (
        ("反映{town}惠农补贴未发放", "{town}耕地地力保护补贴未发放到户，要求核查。"),
    )),
    CategorySpec("60201302", "土地承包", 3, "SZ10", 0.8, 0.1, 2.2, "601003", (
        ("反映{town}土地承包纠纷", "{town}村集体土地承包合同到期后被他人强占，要求依法处理。"),
    )),
    CategorySpec("60201402", "宅基地", 2, "SZ03", 0.8, 0.1, 2.2, "601003", (
        ("反映{town}宅基地纠纷", "{town}宅基地审批长期未办理，邻居侵占宅基地，要求处理。"),
    )),
    CategorySpec("602005", "政法", 5, "SZ11", 0.3, 1.0, 1.0, "601002", (
        ("对案件处理结果不服", "对{town}派出所处理的纠纷案件结果不服，认为处理不公，要求重新调查。"),
    )),
    CategorySpec("602004", "纪检监察", 2, "SZ13", 0.0, 1.0, 1.0, "601004", (
        ("举报{town}村干部问题", "举报{town}村干部在集体资金使用中存在违规问题，要求查处。"),
    )),
    CategorySpec("602010", "组织人事", 1, "SZ14", 0.0, 1.0, 1.0, "601002", (
        ("反映退休待遇问题", "本人原为企业职工，对退休待遇核定有异议，要求重新核定。"),
    )),
    CategorySpec("602018", "其他", 3, "SZ12", 0.5, 1.0, 1.0, "601006", (
        ("反映{town}噪声扰民", "{town}夜间施工噪声扰民，多次反映未解决。"),
    )),
)  # fmt: skip
CATEGORY_BY_CODE: dict[str, CategorySpec] = {c.code: c for c in CATEGORIES}
WAGE_CODE = "60200601"
LAND_CODE = "60201401"

# Grid workers find mostly neighbourhood disputes; codes from the same taxonomy.
GRID_CATEGORIES: tuple[tuple[str, float, str], ...] = (
    ("60201501", 0.18, "{community}小区物业与业主因维修基金使用发生矛盾"),
    ("602005", 0.16, "{community}村民因排水沟问题发生邻里纠纷"),
    ("60201302", 0.12, "{community}土地承包边界纠纷"),
    ("60201402", 0.10, "{community}宅基地界址争议"),
    ("60200601", 0.10, "{community}工人反映{company}拖欠工资"),
    ("60201102", 0.12, "{community}养殖场异味引发群众不满"),
    ("60201401", 0.06, "{community}群众对征地补偿方案有疑虑"),
    ("60201502", 0.06, "{community}居民反映房屋产权办理问题"),
    ("60201201", 0.05, "{community}困难群众反映救助申请进度"),
    ("602018", 0.05, "{community}施工噪声扰民"),
)

COMPANIES = (
    "宏达建筑公司", "华盛劳务公司", "鑫源化工厂", "金桥置业", "恒信商贸", "远航物流",
    "永兴装饰工程公司", "润丰食品厂", "天成建材公司", "广源劳务派遣公司",
)  # fmt: skip
ESTATES = ("锦绣", "阳光", "翠湖", "金地", "和园", "新城", "江南", "御景")


@dataclass(frozen=True)
class Posting:
    """A temporary posting: 挂职 (bureau cadre sent down) or 跟岗 (township cadre brought up)."""

    kind: str
    unit_code: str
    start: date
    end: date


@dataclass(frozen=True)
class TrainingClass:
    code: str
    name: str
    start: date
    end: date
    attendee_codes: tuple[str, ...]


@dataclass(frozen=True)
class Staff:
    code: str
    name: str
    phone: str
    kind: str  # 局机关, 乡镇专职, 乡镇兼职, 网格员
    unit_code: str
    grid_code: str | None
    full_time: bool
    valid_from: date
    valid_to: date | None  # None while still in post
    postings: tuple[Posting, ...] = ()
    trainings: tuple[str, ...] = ()  # codes of TrainingClass attended
    promoted_on: date | None = None

    # Aliases in the grid system's vocabulary (hired/left), for its simulator.
    @property
    def hired_on(self) -> date:
        return self.valid_from

    @property
    def left_on(self) -> date | None:
        return self.valid_to


def grid_worker_code(grid_code: str) -> str:
    return f"W{grid_code}"


# Training classes: (code, name, start, attendees); 2025 H1 has 4 classes and 320 person-times.
_TRAININGS = (
    ("PX2023-01", "《信访工作条例》专题培训班", date(2023, 5, 16), 60),
    ("PX2023-02", "基层信访干部业务培训班", date(2023, 10, 24), 60),
    ("PX2024-01", "信访法治化专题培训班", date(2024, 4, 9), 70),
    ("PX2024-02", "网格员矛盾排查化解培训班", date(2024, 9, 10), 70),
    ("PX2025-01", "乡镇新任信访专干培训班（第一期）", date(2025, 3, 11), 80),
    ("PX2025-02", "乡镇新任信访专干培训班（第二期）", date(2025, 4, 15), 80),
    ("PX2025-03", "接待技巧与应急处置培训班", date(2025, 5, 20), 80),
    ("PX2025-04", "网格员政策解读培训班", date(2025, 6, 17), 80),
)


@lru_cache(maxsize=8)
def _build_staff(seed: int) -> tuple[tuple[Staff, ...], tuple[TrainingClass, ...]]:
    # Cached: the handler roster (below) and World read the same, immutable roster.
    rng = random.Random(f"{seed}:staff")
    bureau = [f"JG{i:03d}" for i in range(1, 49)]
    towns_staff: list[tuple[str, Town, bool, date, date | None]] = []
    full_time_left = 68  # 专职人员配备率 68 % of the 100 township posts at 2025-06-30
    posts = [(t, k) for t in TOWNS for k in range(1, 6)]
    full_time_posts = set(rng.sample(range(len(posts)), full_time_left))
    for i, (t, k) in enumerate(posts):
        code = f"XF{t.code}{k:02d}"
        # A few posts changed hands in 2023-2024: the leaver's record is closed, a successor opens.
        if rng.random() < 0.1:
            change = date(2023, 3, 1) + timedelta(days=rng.randrange(600))
            towns_staff.append((code + "A", t, False, date(2016 + rng.randrange(5), 3, 1), change))
            towns_staff.append((code, t, i in full_time_posts, change + timedelta(days=1), None))
        else:
            towns_staff.append((code, t, i in full_time_posts, date(2015 + rng.randrange(9), 7, 1), None))

    sent_down = set(rng.sample(bureau, 15))
    promoted = set(rng.sample(bureau, 7))
    active_town = [c for c, _, _, _, valid_to in towns_staff if valid_to is None]
    brought_up = set(rng.sample(active_town, 20))
    grid_workers = [grid_worker_code(g.code) for g in GRIDS]

    attendance: dict[str, list[str]] = defaultdict(list)
    classes = []
    for code, name, start, n in _TRAININGS:
        pool = (active_town + grid_workers) if "网格员" in name else active_town + grid_workers[:120]
        attendees = tuple(sorted(rng.sample(pool, n)))
        for a in attendees:
            attendance[a].append(code)
        classes.append(TrainingClass(code, name, start, start + timedelta(days=2), attendees))

    staff = []
    for code in bureau:
        postings = ()
        if code in sent_down:
            start = date(2025, 3, 3) + timedelta(days=7 * rng.randrange(8))
            town = rng.choice(TOWNS)
            postings = (Posting("挂职", town_unit(town.code), start, start + timedelta(days=182)),)
        staff.append(
            Staff(
                code=code,
                name=fake_name(rng),
                phone=fake_mobile(rng),
                kind="局机关",
                unit_code=BUREAU_CODE,
                grid_code=None,
                full_time=True,
                valid_from=date(2008 + rng.randrange(15), 9, 1),
                valid_to=None,
                postings=postings,
                trainings=tuple(attendance[code]),
                promoted_on=date(2025, 1, 15) + timedelta(days=rng.randrange(160))
                if code in promoted
                else None,
            )
        )
    for code, town, full_time, valid_from, valid_to in towns_staff:
        postings = ()
        if code in brought_up:
            start = date(2025, 2, 17) + timedelta(days=7 * rng.randrange(16))
            postings = (Posting("跟岗", BUREAU_CODE, start, start + timedelta(days=60)),)
        staff.append(
            Staff(
                code=code,
                name=fake_name(rng),
                phone=fake_mobile(rng),
                kind="乡镇专职" if full_time else "乡镇兼职",
                unit_code=town_unit(town.code),
                grid_code=None,
                full_time=full_time,
                valid_from=valid_from,
                valid_to=valid_to,
                postings=postings,
                trainings=tuple(attendance[code]),
            )
        )
    for g in GRIDS:
        code = grid_worker_code(g.code)
        staff.append(
            Staff(
                code=code,
                name=fake_name(rng),
                phone=fake_mobile(rng),
                kind="网格员",
                unit_code=town_unit(g.code[:9]),
                grid_code=g.code,
                full_time=rng.random() < 0.3,
                valid_from=date(2019 + rng.randrange(4), 1, 1),
                valid_to=None,
                trainings=tuple(attendance[code]),
            )
        )
    return tuple(staff), tuple(classes)


# Kinds of staff who hold a handler account (经办人) on the petition platform. Grid workers report
# through the grid system and never handle a petition step themselves.
HANDLER_KINDS = ("局机关", "乡镇专职", "乡镇兼职")


def _duties(s: Staff) -> list[tuple[str, date, date | None]]:
    """(unit, first day, last day or None) in which `s` handles the unit's matters.

    The home unit while in post, except during a posting; the posting's unit during the posting
    (clipped to the time in post). Posting dates are inclusive.
    """
    postings = sorted(s.postings, key=lambda p: p.start)
    out: list[tuple[str, date, date | None]] = []
    cursor: date | None = s.valid_from
    for p in postings:
        first = max(p.start, s.valid_from)
        last = p.end if s.valid_to is None else min(p.end, s.valid_to)
        if last < first:
            continue
        if cursor is not None and cursor < first:
            out.append((s.unit_code, cursor, first - timedelta(days=1)))
        out.append((p.unit_code, first, last))
        cursor = last + timedelta(days=1)
    if cursor is not None and (s.valid_to is None or cursor <= s.valid_to):
        out.append((s.unit_code, cursor, s.valid_to))
    return out


@lru_cache(maxsize=8)
def _duty_roster(seed: int) -> dict[str, tuple[tuple[str, date, date | None], ...]]:
    """unit code -> (staff code, first day, last day) of everyone who handles its matters at some time."""
    by_unit: dict[str, list[tuple[str, date, date | None]]] = defaultdict(list)
    for s in _build_staff(seed)[0]:
        if s.kind in HANDLER_KINDS:
            for unit, first, last in _duties(s):
                by_unit[unit].append((s.code, first, last))
    return {unit: tuple(sorted(rows)) for unit, rows in by_unit.items()}


@lru_cache(maxsize=65536)
def handler_candidates(seed: int, unit_code: str | None, day: date) -> tuple[str, ...]:
    """Codes of the staff handling `unit_code`'s matters on `day`, sorted; () where the world has none."""
    rows = _duty_roster(seed).get(unit_code or "", ())
    return tuple(code for code, first, last in rows if first <= day and (last is None or day <= last))


def pick_handler(seed: int, number: str, seq: int, unit_code: str | None, day: date) -> str | None:
    """The handler (经办人) of event `seq` of petition `number`, acting for `unit_code` on `day`.

    Chosen by a keyed hash of (number, seq) rather than a draw from the day's generators: adding
    handlers leaves every other figure of the world exactly as it was.
    """
    candidates = handler_candidates(seed, unit_code, day)
    if not candidates:
        return None
    digest = hashlib.blake2b(f"{number}:{seq}".encode(), key=f"{seed}:handler".encode(), digest_size=8)
    return candidates[int.from_bytes(digest.digest(), "big") % len(candidates)]


# --------------------------------------------------------------------------------------------------
# Planted risks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedRisk:
    id: str
    kind: str
    district_code: str
    town_codes: tuple[str, ...]
    category_code: str
    subject: str  # the company or project named
    start: date  # Monday of the first week
    weekly_petitions: tuple[int, ...]
    weekly_grid_events: tuple[int, ...]
    group_share: float
    texts: tuple[tuple[str, str], ...]
    grid_text: str

    @property
    def end(self) -> date:
        return self.start + timedelta(days=7 * len(self.weekly_petitions) - 3)

    @property
    def peak(self) -> date:
        weeks = self.weekly_petitions
        return self.start + timedelta(days=7 * weeks.index(max(weeks)))


PLANTED_RISKS: tuple[PlantedRisk, ...] = (
    PlantedRisk(
        id="RISK-2025-WAGE-01",
        kind="欠薪",
        district_code="369905",
        town_codes=("369905001", "369905002", "369905004"),
        category_code=WAGE_CODE,
        subject="清江鼎固建筑工程有限公司",
        start=date(2025, 3, 3),
        weekly_petitions=(2, 3, 4, 6, 8, 11, 15, 19, 12, 5),
        weekly_grid_events=(1, 2, 2, 3, 4, 6, 8, 10, 6, 2),
        group_share=0.25,
        texts=(
            (
                "反映清江鼎固建筑工程有限公司拖欠工资",
                "本人在{town}清江鼎固建筑工程有限公司承建的安置小区工地务工，公司拖欠工资{amount}元，项目经理失联。",
            ),
            (
                "清江鼎固建筑工程有限公司拖欠农民工工资",
                "清江鼎固建筑工程有限公司拖欠{n}名工人{months}个月工资，多次讨要无果，要求政府协调解决。",
            ),
        ),
        grid_text="{community}务工人员反映清江鼎固建筑工程有限公司拖欠工资，涉及{n}人",
    ),
    PlantedRisk(
        id="RISK-2025-LAND-01",
        kind="征地拆迁",
        district_code="369903",
        town_codes=("369903003",),
        category_code=LAND_CODE,
        subject="新港物流园二期征地项目",
        start=date(2025, 5, 19),
        weekly_petitions=(1, 2, 3, 5, 7, 9, 7, 4, 2, 1),
        weekly_grid_events=(1, 1, 2, 3, 4, 5, 3, 2, 1, 0),
        group_share=0.7,
        texts=(
            (
                "反映新港物流园二期征地补偿标准过低",
                "新港物流园二期征地项目涉及{town}{community}，补偿标准低于周边项目，村民{n}人要求重新评估。",
            ),
            (
                "新港物流园二期征地项目安置问题",
                "新港物流园二期征地项目未落实社保安置，{community}被征地村民要求公开征地批文和补偿方案。",
            ),
        ),
        grid_text="{community}村民对新港物流园二期征地补偿方案不满，{n}人聚集",
    ),
)


def _planted_days(risk: PlantedRisk, weekly: tuple[int, ...], salt: str, seed: int) -> dict[date, int]:
    """How many planted records fall on each office day of the risk's weeks."""
    rng = random.Random(f"{seed}:{risk.id}:{salt}")
    counts: dict[date, int] = defaultdict(int)
    for w, n in enumerate(weekly):
        days = [
            risk.start + timedelta(days=7 * w + k)
            for k in range(7)
            if is_office_day(risk.start + timedelta(days=7 * w + k))
        ]
        for _ in range(n):
            counts[rng.choice(days)] += 1
    return dict(counts)


@lru_cache(maxsize=16)
def _planted_plan(seed: int) -> tuple[dict[date, tuple[str, ...]], dict[date, tuple[str, ...]]]:
    """Risk ids per day: (petition slots, grid events)."""
    petitions: dict[date, list[str]] = defaultdict(list)
    grid: dict[date, list[str]] = defaultdict(list)
    for risk in PLANTED_RISKS:
        for day, n in _planted_days(risk, risk.weekly_petitions, "petitions", seed).items():
            petitions[day].extend([risk.id] * n)
        for day, n in _planted_days(risk, risk.weekly_grid_events, "grid", seed).items():
            grid[day].extend([risk.id] * n)
    return {d: tuple(v) for d, v in petitions.items()}, {d: tuple(v) for d, v in grid.items()}


RISK_BY_ID = {r.id: r for r in PLANTED_RISKS}


# --------------------------------------------------------------------------------------------------
# Per-day generation
# --------------------------------------------------------------------------------------------------


def _rng(seed: int, day: date, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{day.isoformat()}:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _round(x: float, rng: random.Random) -> int:
    """Stochastic rounding: unbiased, so quotas summed over many days hit their targets closely."""
    base = math.floor(x)
    return base + (1 if rng.random() < x - base else 0)


@lru_cache(maxsize=64)
def _stream_sums(cfg: WorldConfig, half_year: str) -> tuple[float, float]:
    first, last = half_year_bounds(half_year)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return sum(_online_weight(d) for d in days), sum(_offline_weight(d) for d in days)


def _in_world(cfg: WorldConfig, day: date) -> bool:
    return cfg.start <= day <= cfg.end


def _stream_counts(cfg: WorldConfig, day: date) -> tuple[int, int]:
    """(online, offline) petitions registered on `day`, before grid escalations are placed."""
    t = _target(cfg, day)
    on_sum, off_sum = _stream_sums(cfg, half_year_of(day))
    rng = _rng(cfg.seed, day, "volume")
    noise = max(0.5, 1 + rng.gauss(0, cfg.daily_noise))
    online = t.petitions * t.online_share * _online_weight(day) / on_sum * noise
    offline = t.petitions * (1 - t.online_share) * _offline_weight(day) / off_sum * noise
    return _round(online, rng), _round(offline, rng)


_TOWN_CUM_WEIGHTS = tuple(
    itertools.accumulate(
        DISTRICTS_BY_CODE[t.district_code].weight / len(DISTRICTS_BY_CODE[t.district_code].towns)
        for t in TOWNS
    )
)


@lru_cache(maxsize=1024)
def _category_weights(day: date) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Cumulative category weights of the day, (urban towns, rural towns)."""
    wage = _wage_season(day)
    season = [wage if c.code == WAGE_CODE else 1.0 for c in CATEGORIES]
    urban = [c.weight * c.urban * f for c, f in zip(CATEGORIES, season, strict=True)]
    rural = [c.weight * c.rural * f for c, f in zip(CATEGORIES, season, strict=True)]
    return tuple(itertools.accumulate(urban)), tuple(itertools.accumulate(rural))


def _category_for(rng: random.Random, town: Town, day: date) -> CategorySpec:
    urban, rural = _category_weights(day)
    return rng.choices(CATEGORIES, cum_weights=urban if town.name.endswith("街道") else rural)[0]


def _person(rng: random.Random, town: Town) -> Person:
    district = DISTRICTS_BY_CODE[town.district_code]
    return Person(
        name=fake_name(rng),
        id_number=fake_id_number(rng, town.code),
        phone=fake_mobile(rng),
        address=fake_address(rng, district.name, town.name),
        region_code=town.code,
    )


_COMMUNITY_NAME = {c.code: c.name for t in TOWNS for c in t.communities}
_TOWN_GRIDS = {t.code: t.grids for t in TOWNS}


def _fill(template: str, rng: random.Random, town: Town, grid_code: str, n: int | None = None) -> str:
    return template.format(
        town=town.name,
        community=_COMMUNITY_NAME[grid_code[:12]],
        estate=rng.choice(ESTATES),
        company=rng.choice(COMPANIES),
        amount=rng.randrange(3, 80) * 1000,
        n=rng.randrange(5, 60) if n is None else n,
        months=rng.randrange(2, 8),
    )


@dataclass(frozen=True)
class _GridSeed:
    event_id: str
    grid_code: str
    reported_at: datetime
    category_code: str
    description: str
    people_involved: int
    escalate_on: date | None  # registration day of the petition it becomes
    outcome: str  # 已化解 or 化解中 (when not escalated)
    settled_at: datetime  # resolution (已化解) or last update (化解中)
    risk_id: str | None


@lru_cache(maxsize=64)
def _grid_day(cfg: WorldConfig, day: date) -> tuple[_GridSeed, ...]:
    if not _in_world(cfg, day):
        return ()
    t = _target(cfg, day)
    rng = _rng(cfg.seed, day, "grid")
    rate = t.grid_events_per_office_day * (1.0 if is_office_day(day) else 0.25)
    n = _round(rate * max(0.3, 1 + rng.gauss(0, 0.15)), rng)
    planted = _planted_plan(cfg.seed)[1].get(day, ())
    codes, weights, texts = zip(*GRID_CATEGORIES, strict=True)
    drafts = []
    for i in range(n + len(planted)):
        risk = RISK_BY_ID[planted[i - n]] if i >= n else None
        if risk is None:
            grid = rng.choice(GRIDS)
            k = rng.choices(range(len(codes)), weights=weights)[0]
            category, text, people = codes[k], texts[k], 1 + int(rng.expovariate(1 / 3))
            escalate = rng.random() < t.grid_escalation_rate
        else:
            town = TOWNS_BY_CODE[rng.choice(risk.town_codes)]
            grid = rng.choice(_TOWN_GRIDS[town.code])
            category, text, people = risk.category_code, risk.grid_text, rng.randrange(5, 60)
            escalate = rng.random() < 0.3
        town = TOWNS_BY_CODE[grid.code[:9]]
        reported = datetime.combine(day, time(8, 0)) + timedelta(seconds=rng.randrange(10 * 3600))
        escalate_on = next_office_day(day + timedelta(days=1 + rng.randrange(3))) if escalate else None
        if escalate_on is not None and not _in_world(cfg, escalate_on):
            escalate_on = None
        resolved = rng.random() < 0.93
        settled = reported + timedelta(hours=1 + rng.expovariate(1 / 60))
        drafts.append(
            (
                grid.code,
                reported,
                category,
                _fill(text, rng, town, grid.code, n=people),
                people,
                escalate_on,
                "已化解" if resolved else "化解中",
                settled,
                risk.id if risk else None,
            )
        )
    drafts.sort(key=lambda d: (d[1], d[0]))
    return tuple(_GridSeed(f"WG{day:%Y%m%d}{i:04d}", *d) for i, d in enumerate(drafts, start=1))


# The longest run of days without an office day (the National Day week) plus the escalation lag.
_ESCALATION_LOOKBACK = 14


@dataclass(frozen=True)
class _FirstSlot:
    person: Person
    category_code: str
    town_code: str
    grid_code: str
    resolved: bool
    failure: str | None  # unsat, no_accept, unrated (when not resolved)
    risk_id: str | None
    grid_event: _GridSeed | None
    title: str
    content: str
    group_size: int


@dataclass(frozen=True)
class _Skeleton:
    online: int
    offline: int  # including grid escalations
    repeats: int
    firsts: tuple[_FirstSlot, ...]
    unresolved: tuple[int, ...]  # indexes of firsts a later repeat may pick


@lru_cache(maxsize=1024)  # small entries; repeats look up skeletons all over the past year
def _escalated_from(cfg: WorldConfig, day: date) -> tuple[_GridSeed, ...]:
    return tuple(g for g in _grid_day(cfg, day) if g.escalate_on is not None)


def _escalations_on(cfg: WorldConfig, day: date) -> list[_GridSeed]:
    found = []
    for back in range(_ESCALATION_LOOKBACK, 0, -1):
        found.extend(g for g in _escalated_from(cfg, day - timedelta(days=back)) if g.escalate_on == day)
    return found


def _group_size(rng: random.Random, share: float) -> int:
    if rng.random() >= share:
        return 1 if rng.random() < 0.9 else rng.randrange(2, 5)
    return min(200, 5 + int(rng.expovariate(1 / 9)))


@lru_cache(maxsize=800)
def _skeleton(cfg: WorldConfig, day: date) -> _Skeleton:
    """Who petitions for the first time on `day`, about what, and how it will end."""
    t = _target(cfg, day)
    rng = _rng(cfg.seed, day, "skeleton")
    online, offline = _stream_counts(cfg, day)
    escalations = _escalations_on(cfg, day)
    offline = max(offline, len(escalations))
    total = online + offline
    repeats = 0 if day <= cfg.start else min(_round(total * t.repeat_share, rng), total - len(escalations))
    planted = list(_planted_plan(cfg.seed)[0].get(day, ()))
    firsts: list[_FirstSlot] = []
    for k in range(total - repeats):
        grid_seed = escalations[k] if k < len(escalations) else None
        risk = None
        if grid_seed is not None:
            grid_code = grid_seed.grid_code
            town = TOWNS_BY_CODE[grid_code[:9]]
            category = CATEGORY_BY_CODE.get(grid_seed.category_code) or CATEGORY_BY_CODE["602018"]
            title = f"网格上报：{grid_seed.description[:20]}"
            content = grid_seed.description + "，经网格员排查未能就地化解，上报信访部门。"
            group = grid_seed.people_involved if grid_seed.people_involved >= 5 and rng.random() < 0.5 else 1
            risk_id = grid_seed.risk_id
        else:
            if planted:
                risk = RISK_BY_ID[planted.pop()]
                town = TOWNS_BY_CODE[rng.choice(risk.town_codes)]
                category = CATEGORY_BY_CODE[risk.category_code]
                texts, group_share = risk.texts, risk.group_share
            else:
                town = rng.choices(TOWNS, cum_weights=_TOWN_CUM_WEIGHTS)[0]
                category = _category_for(rng, town, day)
                texts, group_share = category.texts, cfg.group_share_other
            grid_code = rng.choice(_TOWN_GRIDS[town.code]).code
            title_t, content_t = rng.choice(texts)
            title, content = _fill(title_t, rng, town, grid_code), _fill(content_t, rng, town, grid_code)
            group = _group_size(rng, group_share)
            risk_id = risk.id if risk else None
        firsts.append(
            _FirstSlot(
                person=_person(rng, town),
                category_code=category.code,
                town_code=town.code,
                grid_code=grid_code,
                resolved=True,
                failure=None,
                risk_id=risk_id,
                grid_event=grid_seed,
                title=title,
                content=content,
                group_size=group,
            )
        )
    # Outcome quota: exactly round(target share) of the day's first petitions are resolved.
    n_first = len(firsts)
    resolved_n = _round(n_first * (t.first_resolution + _repeat_leak(t)), rng) if n_first else 0
    order = list(range(n_first))
    rng.shuffle(order)
    # Planted matters are the hard ones: put them first in line for the unresolved outcomes.
    order.sort(key=lambda i: 0 if firsts[i].risk_id and rng.random() < 0.6 else 1)
    unresolved = sorted(order[: n_first - min(resolved_n, n_first)])
    kinds, kind_w = zip(*cfg.unresolved_mix, strict=True)
    for i in unresolved:
        failure = rng.choices(kinds, weights=kind_w)[0]
        firsts[i] = _replace_slot(firsts[i], failure)
    return _Skeleton(online, offline, repeats, tuple(firsts), tuple(unresolved))


def _repeat_leak(t: HalfYearTarget) -> float:
    # Hook for a correction if repeats ever hit resolved petitions; none do by construction.
    return 0.0


def _replace_slot(slot: _FirstSlot, failure: str) -> _FirstSlot:
    return _FirstSlot(**{**slot.__dict__, "resolved": False, "failure": failure})


@dataclass(frozen=True)
class _Origin:
    day: date
    index: int
    slot: _FirstSlot


def _pick_origin(cfg: WorldConfig, day: date, rng: random.Random) -> _Origin:
    span = min(cfg.repeat_window_days, (day - cfg.start).days)
    for attempt in range(12):
        lag = 1 + int(rng.expovariate(1 / cfg.repeat_mean_lag_days))
        if lag > span:
            lag = rng.randint(1, span)
        origin_day = day - timedelta(days=lag)
        sk = _skeleton(cfg, origin_day)
        if sk.unresolved:
            i = rng.choice(sk.unresolved)
            return _Origin(origin_day, i, sk.firsts[i])
        if attempt == 11 and sk.firsts:
            i = rng.randrange(len(sk.firsts))
            return _Origin(origin_day, i, sk.firsts[i])
    # Only reachable in a world a few days old.
    origin_day = day - timedelta(days=1)
    sk = _skeleton(cfg, origin_day)
    return _Origin(origin_day, 0, sk.firsts[0])


@dataclass
class _Draft:
    """A petition before its number is known."""

    registered_at: datetime
    channel: str
    person: Person
    category_code: str
    town_code: str
    grid_code: str
    title: str
    content: str
    group_size: int
    outcome: str  # resolved, unsat, no_accept, unrated, repeat_sat, repeat_unsat
    repeat: bool
    risk_id: str | None
    grid_event: _GridSeed | None
    events: list[tuple] = field(default_factory=list)
    hotline_received: datetime | None = None


@dataclass(frozen=True)
class _PetitionDay:
    petitions: tuple[Petition, ...]
    risk_of: dict[str, str]  # petition number -> planted risk id
    hotline_received: dict[str, datetime]  # petition number -> time the 12345 order came in
    number_of_grid_event: dict[str, tuple[str, datetime]]


def _registration_time(rng: random.Random, day: date, channel: str) -> datetime:
    if channel == "网上信访":
        # Submitted around the clock, mostly in the daytime and evening.
        hour = rng.choices(
            range(24), weights=[1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 9, 7, 8, 9, 9, 8, 7, 6, 6, 6, 5, 3, 2]
        )[0]
        return datetime.combine(day, time(hour)) + timedelta(seconds=rng.randrange(3600))
    start, length = (8.5, 9.0) if channel in ("来访", "来信") else (9.0, 9.0)
    return datetime.combine(day, time(0)) + timedelta(
        seconds=int(3600 * start + rng.random() * 3600 * length)
    )


def _channels(rng: random.Random, t: HalfYearTarget, sk: _Skeleton, n_grid: int) -> list[str]:
    online = [
        "12345转办" if rng.random() < t.hotline_share_of_online else "网上信访" for _ in range(sk.online)
    ]
    offline = ["来访" if rng.random() < 0.55 else "来信" for _ in range(sk.offline - n_grid)]
    channels = online + offline
    rng.shuffle(channels)
    return channels


@lru_cache(maxsize=96)
def _petition_day(cfg: WorldConfig, day: date) -> _PetitionDay:
    if not _in_world(cfg, day):
        return _PetitionDay((), {}, {}, {})
    t = _target(cfg, day)
    sk = _skeleton(cfg, day)
    rng = _rng(cfg.seed, day, "petitions")
    n_grid = sum(1 for s in sk.firsts if s.grid_event is not None)
    channels = _channels(rng, t, sk, n_grid)
    drafts: list[_Draft] = []
    for slot in sk.firsts:
        channel = "网格上报" if slot.grid_event is not None else channels.pop()
        if (
            slot.risk_id
            and slot.grid_event is None
            and slot.group_size >= 5
            and channel != "来访"
            and "来访" in channels
        ):
            # Group matters arrive as visits when the day has any visit left to trade.
            j = channels.index("来访")
            channels[j], channel = channel, "来访"
        drafts.append(_first_draft(rng, day, slot, channel))
    for _ in range(sk.repeats):
        origin = _pick_origin(cfg, day, rng)
        drafts.append(_repeat_draft(rng, day, origin, channels.pop()))
    _allot_repeat_ratings(rng, cfg, t, drafts)
    for d in drafts:
        d.events = _events(rng, cfg, t, d)
    drafts.sort(key=lambda d: (d.registered_at, d.person.id_number))
    return _number(cfg.seed, day, drafts)


def _first_draft(rng: random.Random, day: date, slot: _FirstSlot, channel: str) -> _Draft:
    if slot.grid_event is not None:
        at = datetime.combine(day, time(9, 0)) + timedelta(seconds=rng.randrange(8 * 3600))
    else:
        at = _registration_time(rng, day, channel)
    return _Draft(
        registered_at=at,
        channel=channel,
        person=slot.person,
        category_code=slot.category_code,
        town_code=slot.town_code,
        grid_code=slot.grid_code,
        title=slot.title,
        content=slot.content,
        group_size=slot.group_size,
        outcome="resolved" if slot.resolved else (slot.failure or "unsat"),
        repeat=False,
        risk_id=slot.risk_id,
        grid_event=slot.grid_event,
    )


def _repeat_draft(rng: random.Random, day: date, origin: _Origin, channel: str) -> _Draft:
    slot = origin.slot
    return _Draft(
        registered_at=_registration_time(rng, day, channel),
        channel=channel,
        person=slot.person,
        category_code=slot.category_code,
        town_code=slot.town_code,
        grid_code=slot.grid_code,
        title=f"再次反映：{slot.title}",
        content=f"{origin.day:%Y年%m月%d日}已反映此事，至今未解决。" + slot.content,
        group_size=slot.group_size if slot.group_size >= 5 and rng.random() < 0.5 else 1,
        outcome="repeat",
        repeat=True,
        risk_id=slot.risk_id,
        grid_event=None,
    )


def _allot_repeat_ratings(
    rng: random.Random, cfg: WorldConfig, t: HalfYearTarget, drafts: list[_Draft]
) -> None:
    """Settle how repeats end so the day's ratings meet the satisfaction target."""
    repeats = [d for d in drafts if d.repeat]
    rated_repeats = []
    for d in repeats:
        u = rng.random()
        if u < cfg.repeat_no_accept:
            d.outcome = "no_accept"
        elif u < cfg.repeat_no_accept + cfg.repeat_unrated:
            d.outcome = "unrated"
        else:
            d.outcome = "repeat_sat"
            rated_repeats.append(d)
    rated = sum(1 for d in drafts if d.outcome in ("resolved", "unsat")) + len(rated_repeats)
    first_unsat = sum(1 for d in drafts if d.outcome == "unsat")
    want_unsat = _round(rated * (1 - t.satisfaction), rng) - first_unsat
    for d in rng.sample(rated_repeats, max(0, min(want_unsat, len(rated_repeats)))):
        d.outcome = "repeat_unsat"


def _at(day: date, rng: random.Random, start_h: float = 8.5, hours: float = 9.0) -> datetime:
    return datetime.combine(day, time(0)) + timedelta(seconds=int(3600 * (start_h + rng.random() * hours)))


def _later(at: datetime, rng: random.Random, min_h: float, max_h: float) -> datetime:
    return at + timedelta(seconds=int(3600 * (min_h + rng.random() * (max_h - min_h))))


def _handling_unit(rng: random.Random, d: _Draft) -> str:
    spec = CATEGORY_BY_CODE[d.category_code]
    u = rng.random()
    if u < spec.local_share:
        return town_unit(d.town_code)
    if u < spec.local_share + (1 - spec.local_share) * 0.2:
        return district_unit(d.town_code[:6])
    return spec.department


def _other_unit(rng: random.Random, d: _Draft, not_this: str) -> str:
    options = [
        town_unit(d.town_code),
        district_unit(d.town_code[:6]),
        CATEGORY_BY_CODE[d.category_code].department,
    ]
    options += [code for code, _ in _CITY_DEPARTMENTS[1:]]
    return rng.choice([o for o in options if o != not_this])


def _reply_workdays(rng: random.Random, t: HalfYearTarget) -> int:
    return min(70, max(1, round(rng.gammavariate(2.0, t.handling_workdays / 2))))


def _events(rng: random.Random, cfg: WorldConfig, t: HalfYearTarget, d: _Draft) -> list[tuple]:
    """(at, type, unit, from_unit, rating, note) in time order."""
    reg = d.registered_at
    receiver = town_unit(d.town_code) if d.channel == "网格上报" else BUREAU_CODE
    ev: list[tuple] = [(reg, "登记", receiver, None, None, "")]
    accept_day = next_office_day(reg.date() + timedelta(days=rng.choice((0, 0, 1, 1, 2, 3))))
    accept_at = max(_at(accept_day, rng), _later(reg, rng, 0.2, 2))
    if d.outcome == "no_accept":
        reason = (
            "同一事项已复核终结，不再受理" if d.repeat else "不属于信访事项受理范围，已告知通过法定途径解决"
        )
        ev.append((accept_at, "不予受理", receiver, None, None, reason))
        return ev
    ev.append((accept_at, "受理", receiver, None, None, ""))
    unit = _handling_unit(rng, d)
    at = _later(accept_at, rng, 0.5, 20)
    ev.append((at, "交办", unit, receiver, None, ""))
    if rng.random() < cfg.bounce_rate:
        # The unit disputes the assignment within 5 working days and the bureau reroutes it.
        at = _later(at, rng, 20, 110)
        ev.append((at, "退回", receiver, unit, None, "职责不符，申请退回"))
        new_unit = _other_unit(rng, d, unit)
        at = _later(at, rng, 2, 40)
        ev.append((at, "交办", new_unit, receiver, None, "重新交办"))
        unit = new_unit
    if rng.random() < cfg.transfer_rate:
        other = _other_unit(rng, d, unit)
        at = _later(at, rng, 4, 96)
        ev.append((at, "转送", other, unit, None, "涉及多部门职责，转送协同办理"))
    reply_day = add_weekdays(reg.date(), _reply_workdays(rng, t))
    reply_at = max(_at(reply_day, rng), _later(at, rng, 2, 30))
    if d.outcome != "resolved" and rng.random() < cfg.escalation_rate * (5 if d.risk_id else 1):
        ev.append(
            (
                _later(at, rng, 1, max(2.0, (reply_at - at).total_seconds() / 3600 - 1)),
                "越级",
                None,
                None,
                None,
                "越级到省信访局反映",
            )
        )
    if (reply_at - accept_at).days >= 60:
        # Complex matters are extended once (by at most 30 days) before the 60-day limit runs out.
        ev.append(
            (
                accept_at + timedelta(days=rng.randrange(45, 58), hours=2),
                "延期",
                unit,
                None,
                None,
                "情况复杂，延期30日",
            )
        )
    ev.append((reply_at, "答复", unit, None, None, "已出具书面答复意见"))
    last = reply_at
    if d.outcome == "unrated":
        return _sorted(ev)
    rating = _rating(rng, cfg, d.outcome)
    last = _later(reply_at, rng, 20, 150)
    ev.append((last, "回访", BUREAU_CODE, None, rating, ""))
    if rating == "不满意" and rng.random() < cfg.review_rate_unsat:
        ev.extend(_reviews(rng, cfg, d, last))
    return _sorted(ev)


def _rating(rng: random.Random, cfg: WorldConfig, outcome: str) -> str:
    if outcome in ("unsat", "repeat_unsat"):
        return "不满意"
    return "基本满意" if rng.random() < cfg.satisfied_share_basic else "满意"


def _reviews(rng: random.Random, cfg: WorldConfig, d: _Draft, after: datetime) -> list[tuple]:
    district = district_unit(d.town_code[:6])
    asked = _later(after, rng, 24, 24 * 25)
    answered = _later(asked, rng, 24 * 10, 24 * 30)
    out = [
        (asked, "复查申请", district, None, None, ""),
        (answered, "复查答复", district, None, None, "维持原处理意见"),
    ]
    if rng.random() < cfg.rereview_rate:
        asked2 = _later(answered, rng, 24, 24 * 25)
        out.append((asked2, "复核申请", BUREAU_CODE, None, None, ""))
        out.append((_later(asked2, rng, 24 * 10, 24 * 30), "复核答复", BUREAU_CODE, None, None, "复核维持"))
    return out


def _sorted(ev: list[tuple]) -> list[tuple]:
    return sorted(ev, key=lambda e: e[0])


def _number(seed: int, day: date, drafts: list[_Draft]) -> _PetitionDay:
    petitions = []
    risk_of: dict[str, str] = {}
    received: dict[str, datetime] = {}
    by_grid: dict[str, tuple[str, datetime]] = {}
    hotline_serial = 0
    for serial, d in enumerate(drafts, start=1):
        number = f"XF{CITY_CODE}{day:%Y%m%d}{serial:05d}"
        order_no = None
        if d.channel == "12345转办":
            hotline_serial += 1
            # A range of its own, apart from the hotline's own GD{day}{i:05d} orders (i < 90000).
            order_no = f"GD{day:%Y%m%d}9{hotline_serial:04d}"
            earliest = datetime.combine(day, time(8, 0))
            gap = min(timedelta(hours=5), d.registered_at - earliest)
            received[number] = d.registered_at - gap * _frac(number)
        if d.risk_id:
            risk_of[number] = d.risk_id
        if d.grid_event is not None:
            by_grid[d.grid_event.event_id] = (number, d.registered_at)
        events = tuple(
            PetitionEvent(
                seq=i,
                type=e[1],
                at=e[0],
                unit_code=e[2],
                from_unit_code=e[3],
                rating=e[4],
                note=e[5],
                handler_code=pick_handler(seed, number, i, e[2], e[0].date()),
            )
            for i, e in enumerate(d.events, start=1)
        )
        spec = CATEGORY_BY_CODE[d.category_code]
        petitions.append(
            Petition(
                number=number,
                channel=d.channel,
                registered_at=d.registered_at,
                petitioner=d.person,
                group_size=d.group_size,
                category_code=d.category_code,
                purpose_code=spec.purpose,
                town_code=d.town_code,
                grid_code=d.grid_code,
                title=d.title,
                content=d.content,
                events=events,
                hotline_work_order_no=order_no,
                grid_event_id=d.grid_event.event_id if d.grid_event else None,
            )
        )
    return _PetitionDay(tuple(petitions), risk_of, received, by_grid)


def _frac(key: str) -> float:
    """A stable number in [0.05, 0.95) from a key, for details not worth a generator draw."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return 0.05 + 0.9 * h / 2**32


# --------------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------------


def _days(first: date, last: date) -> Iterator[date]:
    for i in range((last - first).days + 1):
        yield first + timedelta(days=i)


@lru_cache(maxsize=2048)
def _grid_events_built(world: World, day: date) -> tuple[GridEvent, ...]:
    """A day's events, built once: the grid system's clock re-reads every earlier day on each advance."""
    return tuple(world._grid_event(seed) for seed in _grid_day(world.config, day))


class World:
    """Everything the simulated source systems know, generated on demand from `config`."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.departments: tuple[Department, ...] = DEPARTMENTS
        self.staff, self.training_classes = _build_staff(config.seed)
        self.planted_risks: tuple[PlantedRisk, ...] = PLANTED_RISKS

    def _clamp(self, start: date, end: date) -> tuple[date, date]:
        return max(start, self.config.start), min(end, self.config.end)

    def petitions(self, start: date, end: date) -> Iterator[Petition]:
        """Petitions registered in [start, end] with their full event history, in registration order."""
        first, last = self._clamp(start, end)
        for day in _days(first, last) if first <= last else ():
            yield from _petition_day(self.config, day).petitions

    def grid_events(self, start: date, end: date) -> Iterator[GridEvent]:
        """Screening events reported in [start, end], in their latest state, in report order."""
        first, last = self._clamp(start, end)
        for day in _days(first, last) if first <= last else ():
            yield from _grid_events_built(self, day)

    def _grid_event(self, g: _GridSeed) -> GridEvent:
        worker = grid_worker_code(g.grid_code)
        if g.escalate_on is not None:
            number, at = _petition_day(self.config, g.escalate_on).number_of_grid_event[g.event_id]
            status, resolved, updated, petition_no = "已上报信访", None, at, number
        elif g.outcome == "已化解":
            status, resolved, updated, petition_no = "已化解", g.settled_at, g.settled_at, None
        else:
            status, resolved, updated, petition_no = "化解中", None, g.settled_at, None
        return GridEvent(
            event_id=g.event_id,
            grid_code=g.grid_code,
            worker_code=worker,
            reported_at=g.reported_at,
            category_code=g.category_code,
            description=g.description,
            people_involved=g.people_involved,
            status=status,
            resolved_at=resolved,
            escalated_petition_no=petition_no,
            updated_at=updated,
        )

    def hotline_orders(self, day: date) -> list[dict]:
        """12345 work orders received on `day` that became petitions (channel 12345转办)."""
        out = []
        pd = _petition_day(self.config, day)
        for p in pd.petitions:
            if p.hotline_work_order_no is None:
                continue
            town = TOWNS_BY_CODE[p.town_code]
            district = DISTRICTS_BY_CODE[town.district_code]
            out.append(
                {
                    "number": p.hotline_work_order_no,
                    "received_at": pd.hotline_received[p.number],
                    "closed_at": p.registered_at,  # the order closes when it is handed to the petition system
                    "petition_no": p.number,
                    "caller_name": p.petitioner.name,
                    "caller_phone": p.petitioner.phone,
                    "matter_type": "求助"
                    if CATEGORY_BY_CODE[p.category_code].purpose == "601003"
                    else "投诉",
                    "category_name": CATEGORY_BY_CODE[p.category_code].name,
                    "district_name": district.name,
                    "town_name": town.name,
                    "address": p.petitioner.address,
                    "content": p.content,
                    "handling_unit": "市信访局",
                }
            )
        return out

    def ground_truth(self) -> list[dict]:
        """The planted risks with the petitions and grid events that carry them."""
        out = []
        for risk in PLANTED_RISKS:
            # Repeats of a planted matter can come months later; follow them for a while.
            last = min(self.config.end, risk.end + timedelta(days=180))
            numbers = [
                n
                for day in _days(*self._clamp(risk.start, last))
                for n, rid in _petition_day(self.config, day).risk_of.items()
                if rid == risk.id
            ]
            events = [
                g.event_id
                for day in _days(*self._clamp(risk.start, risk.end))
                for g in _grid_day(self.config, day)
                if g.risk_id == risk.id
            ]
            out.append(
                {
                    "id": risk.id,
                    "kind": risk.kind,
                    "district_code": risk.district_code,
                    "town_codes": list(risk.town_codes),
                    "category_code": risk.category_code,
                    "subject": risk.subject,
                    "start": risk.start.isoformat(),
                    "peak": risk.peak.isoformat(),
                    "end": risk.end.isoformat(),
                    "weekly_petitions": list(risk.weekly_petitions),
                    "petition_numbers": sorted(numbers),
                    "grid_event_ids": sorted(events),
                }
            )
        return out


@lru_cache(maxsize=8)
def build_world(config: WorldConfig = WorldConfig()) -> World:
    return World(config)


def clear_caches() -> None:
    """Forget every generated day (tests use it to prove a day is rebuilt identically from scratch)."""
    for cached in (
        build_world, _planted_plan, _stream_sums, _grid_day, _escalated_from, _skeleton, _petition_day,
        _category_weights, _grid_events_built, _build_staff, _duty_roster, handler_candidates,
    ):  # fmt: skip
        cached.cache_clear()


def write_ground_truth(world: World, path: Path) -> Path:
    """Write the planted risks as JSON (for evaluating warnings; the pipeline never reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"seed": world.config.seed, "city": CITY_NAME, "risks": world.ground_truth()}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def hotline_orders_converted_on(day: date, seed: int) -> list[dict]:
    """Hook for the hotline export: orders of `day` converted to petitions in the world of `seed`."""
    return build_world(WorldConfig(seed=seed)).hotline_orders(day)


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------

SATISFIED = ("满意", "基本满意")


def _top(code: str) -> str:
    return code[:6]


def calibration_from_petitions(
    petitions: Iterable[Petition],
    half_year: str,
    *,
    repeat_window_days: int = 365,
    followup_days: int = 90,
) -> dict:
    """The headline figures of `half_year` from petitions (the definitions of the module docstring).

    `petitions` must cover the half-year plus the repeat window before it and the
    follow-up after it, or repeats and later repeats go unseen.
    """
    first_day, last_day = half_year_bounds(half_year)
    allp = list(petitions)
    history: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for p in allp:
        history[(p.petitioner.id_number, _top(p.category_code))].append(p.registered_at)
    for times in history.values():
        times.sort()

    total = online = repeats = firsts = resolved = rated = satisfied = replied = 0
    workdays = 0
    for p in allp:
        if not first_day <= p.registered_at.date() <= last_day:
            continue
        total += 1
        online += p.channel in ONLINE_CHANNELS
        times = history[(p.petitioner.id_number, _top(p.category_code))]
        i = bisect_left(times, p.registered_at)
        is_repeat = i > 0 and (p.registered_at.date() - times[i - 1].date()).days <= repeat_window_days
        repeats += is_repeat
        reply = next((e.at for e in p.events if e.type == "答复"), None)
        ratings = [e.rating for e in p.events if e.type == "回访" and e.rating]
        if ratings:
            rated += 1
            satisfied += ratings[-1] in SATISFIED
        if reply is not None:
            replied += 1
            workdays += weekdays_between(p.registered_at.date(), reply.date())
        if is_repeat:
            continue
        firsts += 1
        if reply is None or not ratings or ratings[-1] not in SATISFIED:
            continue
        horizon = reply + timedelta(days=followup_days)
        if any(e.type in ("复查申请", "复核申请") and e.at <= horizon for e in p.events):
            continue
        j = bisect_left(times, p.registered_at) + 1
        while j < len(times) and times[j] == p.registered_at:
            j += 1
        if j < len(times) and times[j] <= horizon:
            continue
        resolved += 1

    def share(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "half_year": half_year,
        "total": total,
        "online_share": share(online, total),
        "repeat_share": share(repeats, total),
        "first_petitions": firsts,
        "first_resolution_rate": share(resolved, firsts),
        "rated": rated,
        "satisfaction": share(satisfied, rated),
        "replied": replied,
        "mean_handling_workdays": share(workdays, replied),
    }


def calibration_report(world: World, half_year: str) -> dict:
    """Headline figures of `half_year` computed from the world's generated petitions."""
    first_day, last_day = half_year_bounds(half_year)
    cfg = world.config
    window = world.petitions(
        first_day - timedelta(days=cfg.repeat_window_days + 1),
        last_day + timedelta(days=200 + cfg.followup_days),
    )
    return calibration_from_petitions(
        window, half_year, repeat_window_days=cfg.repeat_window_days, followup_days=cfg.followup_days
    )


def _all_half_years(cfg: WorldConfig) -> list[str]:
    keys = []
    for year in range(cfg.start.year, cfg.end.year + 1):
        for h in ("H1", "H2"):
            first, last = half_year_bounds(f"{year}{h}")
            if first >= cfg.start and last <= cfg.end:
                keys.append(f"{year}{h}")
    return keys


def calibration_table(world: World) -> list[dict]:
    """calibration_report for every whole half-year of the world, generating the petitions once."""
    cfg = world.config
    petitions = list(world.petitions(cfg.start, cfg.end))
    return [
        calibration_from_petitions(
            petitions, hy, repeat_window_days=cfg.repeat_window_days, followup_days=cfg.followup_days
        )
        for hy in _all_half_years(cfg)
    ]


def print_calibration(config: WorldConfig = WorldConfig()) -> None:
    rows = calibration_table(build_world(config))
    by_key = {r["half_year"]: r for r in rows}
    print(f"{'half-year':<9} {'total':>7} {'YoY':>7} {'一次性化解':>8} {'Δpp':>6} {'重复占比':>7} {'Δpp':>6} "
          f"{'满意度':>7} {'线上占比':>7} {'Δpp':>6} {'办理工作日':>8}")  # fmt: skip
    for r in rows:
        prev = by_key.get(f"{int(r['half_year'][:4]) - 1}{r['half_year'][4:]}")

        def delta(key: str, r=r, prev=prev) -> str:
            return f"{100 * (r[key] - prev[key]):+.1f}" if prev else ""

        yoy = f"{100 * (r['total'] / prev['total'] - 1):+.1f}%" if prev else ""
        print(
            f"{r['half_year']:<9} {r['total']:>7} {yoy:>7} {100 * r['first_resolution_rate']:>11.1f}% "
            f"{delta('first_resolution_rate'):>6} {100 * r['repeat_share']:>10.1f}% "
            f"{delta('repeat_share'):>6} "
            f"{100 * r['satisfaction']:>9.1f}% {100 * r['online_share']:>10.1f}% {delta('online_share'):>6} "
            f"{r['mean_handling_workdays']:>13.1f}"
        )


if __name__ == "__main__":
    print_calibration()
