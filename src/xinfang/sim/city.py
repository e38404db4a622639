"""The fictional prefecture-level city every simulator shares.

Region codes follow the shape of GB/T 2260 administrative codes (6 digits for a
district, 9 for a town/street) under a made-up prefecture code, so nothing here
names a real place. Below the towns, communities/villages (社区/村, town code +
3 digits) and grids (网格, community code + 2 digits) carry the grid system's
codes; their number and names are drawn from a generator seeded by the town
code, so they never change while the town list does not.
`dbt_project/seeds/regions.csv` is generated from this module
(`xinfang sim regions-seed`) and a test keeps the two in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CITY_NAME = "清江市"
CITY_CODE = "369900"


@dataclass(frozen=True)
class Grid:
    code: str  # community code + 2 digits
    name: str
    community_code: str


@dataclass(frozen=True)
class Community:
    code: str  # town code + 3 digits
    name: str
    kind: str  # 社区 (urban) or 村 (village)
    town_code: str
    grids: tuple[Grid, ...]


@dataclass(frozen=True)
class Town:
    code: str
    name: str
    district_code: str
    communities: tuple[Community, ...] = ()

    @property
    def grids(self) -> tuple[Grid, ...]:
        return tuple(g for c in self.communities for g in c.grids)


@dataclass(frozen=True)
class District:
    code: str
    name: str
    kind: str  # 区 or 县
    weight: float  # share of the city's population, drives volumes
    towns: tuple[Town, ...]


_LAYOUT: list[tuple[str, str, float, list[str]]] = [
    ("江东区", "区", 0.24, ["东湖街道", "望江街道", "白沙街道", "新村街道"]),
    ("江西区", "区", 0.20, ["西门街道", "桥头街道", "柳林街道"]),
    ("高新区", "区", 0.16, ["科创街道", "云谷街道", "新港镇"]),
    ("南湖区", "区", 0.14, ["南湖街道", "湖滨街道", "石桥镇"]),
    ("临河县", "县", 0.14, ["临河镇", "马渡镇", "青山乡", "河口镇"]),
    ("北山县", "县", 0.12, ["北山镇", "松岭镇", "石门乡"]),
]


# Name stems of communities and villages; a town draws its own without repeats.
_COMMUNITY_STEMS = (
    "桂花", "东风", "红星", "幸福", "和平", "光明", "新华", "向阳", "团结", "前进", "建设", "滨江",
    "丰收", "金山", "长青", "双桥", "石板", "杨柳", "李家", "王家", "张家", "陈家", "刘庄", "周庄",
    "大塘", "高坡", "龙泉", "凤凰", "梨园", "枫林",
)  # fmt: skip


def _communities(town_code: str, town_name: str) -> tuple[Community, ...]:
    # Seeded by the code alone, so a town keeps its communities and grids across releases.
    rng = random.Random(int(town_code))
    urban = town_name.endswith("街道")
    stems = rng.sample(_COMMUNITY_STEMS, rng.randint(3, 6))
    communities = []
    for k, stem in enumerate(stems, start=1):
        # A township seat is usually a 社区; the rest of a 镇/乡 are villages.
        kind = "社区" if urban or k == 1 else "村"
        code = f"{town_code}{k:03d}"
        name = f"{stem}{kind}"
        grids = tuple(
            Grid(code=f"{code}{g:02d}", name=f"{name}第{g}网格", community_code=code)
            for g in range(1, rng.randint(2, 4) + 1)
        )
        communities.append(Community(code=code, name=name, kind=kind, town_code=town_code, grids=grids))
    return tuple(communities)


def _build() -> tuple[District, ...]:
    districts = []
    for i, (name, kind, weight, town_names) in enumerate(_LAYOUT, start=1):
        code = f"{CITY_CODE[:4]}{i:02d}"
        towns = tuple(
            Town(
                code=f"{code}{j:03d}",
                name=t,
                district_code=code,
                communities=_communities(f"{code}{j:03d}", t),
            )
            for j, t in enumerate(town_names, start=1)
        )
        districts.append(District(code=code, name=name, kind=kind, weight=weight, towns=towns))
    return tuple(districts)


DISTRICTS: tuple[District, ...] = _build()


TOWNS: tuple[Town, ...] = tuple(t for d in DISTRICTS for t in d.towns)
TOWNS_BY_CODE: dict[str, Town] = {t.code: t for t in TOWNS}
DISTRICTS_BY_CODE: dict[str, District] = {d.code: d for d in DISTRICTS}
GRIDS: tuple[Grid, ...] = tuple(g for t in TOWNS for g in t.grids)


def town_of_grid(grid_code: str) -> Town:
    return TOWNS_BY_CODE[grid_code[:9]]


def region_rows() -> list[dict[str, str]]:
    """Rows of the regions seed: city, districts, towns, communities (level 4) and grids (level 5)."""
    rows = [{"region_code": CITY_CODE, "region_name": CITY_NAME, "parent_code": "", "level": "1"}]
    for d in DISTRICTS:
        rows.append({"region_code": d.code, "region_name": d.name, "parent_code": CITY_CODE, "level": "2"})
        for t in d.towns:
            rows.append({"region_code": t.code, "region_name": t.name, "parent_code": d.code, "level": "3"})
    # Deeper levels follow the first three, so the seed's old rows keep their order.
    for t in TOWNS:
        for c in t.communities:
            rows.append({"region_code": c.code, "region_name": c.name, "parent_code": t.code, "level": "4"})
            for g in c.grids:
                rows.append(
                    {"region_code": g.code, "region_name": g.name, "parent_code": c.code, "level": "5"}
                )
    return rows
