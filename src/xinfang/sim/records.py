"""Records the simulated source systems hand out, as their vendors document them.

The world model (xinfang.sim.world) produces these; each system's simulator
serves them through its own interface (the online platform's HTTP API, the
grid system's database). Personal data is present here, as in the real
systems; ingestion pseudonymises it on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# 信访渠道 as the petition information system records them.
CHANNELS = ("网上信访", "来信", "来访", "12345转办", "网格上报")
# Channels counted as online (线上信访); a policy choice mirrored in a dbt seed.
ONLINE_CHANNELS = ("网上信访", "12345转办")

EVENT_TYPES = (
    "登记",  # registered
    "受理",  # accepted
    "不予受理",  # not accepted
    "交办",  # assigned to a handling unit
    "转送",  # transferred to another unit
    "退回",  # sent back by a unit that disputes it (a bounce)
    "延期",  # handling extended (at most 30 days)
    "答复",  # written reply: closes the matter
    "回访",  # call-back with a rating
    "复查申请",
    "复查答复",
    "复核申请",
    "复核答复",
    "越级",  # the petitioner went over the handling level
)
RATINGS = ("满意", "基本满意", "不满意")
# 人员类别 of the platform's staff accounts, and the kinds of posting (干部交流) they record.
STAFF_KINDS = ("局机关", "乡镇专职", "乡镇兼职", "网格员")
POSTING_KINDS = ("挂职", "跟岗")  # a bureau cadre sent down to a town; a township cadre brought up


@dataclass(frozen=True)
class Person:
    name: str
    id_number: str
    phone: str
    address: str
    region_code: str  # town code of residence


@dataclass(frozen=True)
class PetitionEvent:
    seq: int
    type: str  # one of EVENT_TYPES
    at: datetime  # bureau time, naive
    unit_code: str | None = None  # unit acting (or receiving, for 交办/转送)
    from_unit_code: str | None = None
    rating: str | None = None  # with 回访
    note: str = ""
    # The platform account (经办人) of `unit_code` that handled the step; None for units whose staff
    # the world does not model (city departments, district governments) and for 越级.
    handler_code: str | None = None


@dataclass(frozen=True)
class Petition:
    """One petition matter (信访件) as the petition information system holds it."""

    number: str  # 信访件编号, natural key
    channel: str
    registered_at: datetime
    petitioner: Person
    group_size: int
    category_code: str
    purpose_code: str
    town_code: str
    grid_code: str
    title: str
    content: str
    events: tuple[PetitionEvent, ...]
    hotline_work_order_no: str | None = None  # when converted from a 12345 work order
    grid_event_id: str | None = None  # when escalated from a grid screening event
    extra: dict = field(default_factory=dict)

    @property
    def updated_at(self) -> datetime:
        return max(e.at for e in self.events)

    def as_of(self, moment: datetime) -> Petition | None:
        """The petition as the system showed it at `moment` (None before registration)."""
        events = tuple(e for e in self.events if e.at <= moment)
        if not events:
            return None
        return Petition(**{**self.__dict__, "events": events})


@dataclass(frozen=True)
class GridEvent:
    """A screening event (矛盾纠纷排查) in the grid management system."""

    event_id: str
    grid_code: str
    worker_code: str
    reported_at: datetime
    category_code: str
    description: str
    people_involved: int
    status: str  # 已上报, 化解中, 已化解, 已上报信访
    resolved_at: datetime | None
    escalated_petition_no: str | None
    updated_at: datetime
