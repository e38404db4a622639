"""The fictional prefecture-level city every simulator shares.

Region codes follow the shape of GB/T 2260 administrative codes (6 digits for a
district, 9 for a town/street) under a made-up prefecture code, so nothing here
names a real place. `dbt_project/seeds/regions.csv` is generated from this
module (`xinfang sim regions-seed`) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

CITY_NAME = "清江市"
CITY_CODE = "369900"


@dataclass(frozen=True)
class Town:
    code: str
    name: str
    district_code: str


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


def _build() -> tuple[District, ...]:
    districts = []
    for i, (name, kind, weight, town_names) in enumerate(_LAYOUT, start=1):
        code = f"{CITY_CODE[:4]}{i:02d}"
        towns = tuple(
            Town(code=f"{code}{j:03d}", name=t, district_code=code) for j, t in enumerate(town_names, start=1)
        )
        districts.append(District(code=code, name=name, kind=kind, weight=weight, towns=towns))
    return tuple(districts)


DISTRICTS: tuple[District, ...] = _build()


def region_rows() -> list[dict[str, str]]:
    """Rows of the regions seed: city, districts and towns with their parents."""
    rows = [{"region_code": CITY_CODE, "region_name": CITY_NAME, "parent_code": "", "level": "1"}]
    for d in DISTRICTS:
        rows.append({"region_code": d.code, "region_name": d.name, "parent_code": CITY_CODE, "level": "2"})
        for t in d.towns:
            rows.append({"region_code": t.code, "region_name": t.name, "parent_code": d.code, "level": "3"})
    return rows
