"""Code lists the loaders validate against, read from the dbt seeds (one source of truth)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from xinfang.config import get_settings


@dataclass(frozen=True)
class ReferenceData:
    category_names: frozenset[str]
    towns_by_district: dict[str, frozenset[str]]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@lru_cache(maxsize=4)
def _load(seeds_dir: Path) -> ReferenceData:
    categories = _read(seeds_dir / "categories.csv")
    regions = _read(seeds_dir / "regions.csv")
    names = {r["region_code"]: r["region_name"] for r in regions}
    towns: dict[str, set[str]] = {}
    for r in regions:
        if r["level"] == "2":
            towns.setdefault(r["region_name"], set())
        elif r["level"] == "3":
            towns.setdefault(names[r["parent_code"]], set()).add(r["region_name"])
    return ReferenceData(
        category_names=frozenset(r["category_name"] for r in categories),
        towns_by_district={d: frozenset(t) for d, t in towns.items()},
    )


def reference_data() -> ReferenceData:
    return _load(get_settings().dbt_project_dir / "seeds")
