"""The hotline export simulator and the fictional city it shares with the seeds."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import date, datetime, timedelta
from pathlib import Path

from xinfang.sim import city
from xinfang.sim.hotline import HEADERS, SimConfig, write_export, write_exports
from xinfang.sim.people import fake_id_number, fake_mobile

SEEDS = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds"
SMALL = SimConfig(seed=4242, orders_per_day=25, bad_row_rate=0.0)
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def read_export(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_bytes().decode("gb18030")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:]]


def test_regions_seed_matches_the_city() -> None:
    with (SEEDS / "regions.csv").open(encoding="utf-8", newline="") as fh:
        seed_rows = list(csv.DictReader(fh))
    assert seed_rows == city.region_rows()


def test_every_town_code_extends_its_district_code() -> None:
    for row in city.region_rows():
        if row["level"] == "3":
            assert row["region_code"].startswith(row["parent_code"])
            assert len(row["region_code"]) == 9


def test_same_seed_gives_identical_bytes_and_another_seed_different(tmp_path: Path) -> None:
    day = date(2025, 3, 12)
    first = write_export(day, tmp_path / "a", SMALL).read_bytes()
    second = write_export(day, tmp_path / "b", SimConfig(seed=4242, orders_per_day=25, bad_row_rate=0.0))
    other = write_export(day, tmp_path / "c", SimConfig(seed=4243, orders_per_day=25, bad_row_rate=0.0))
    assert first == second.read_bytes()
    assert first != other.read_bytes()


def test_file_is_gb18030_with_the_chinese_headers(tmp_path: Path) -> None:
    path = write_export(date(2025, 3, 13), tmp_path, SMALL)
    data = path.read_bytes()
    try:
        as_utf8 = data.decode("utf-8")
    except UnicodeDecodeError:
        as_utf8 = None
    text = data.decode("gb18030")
    assert as_utf8 != text
    assert not text.startswith("\ufeff")
    header, rows = read_export(path)
    assert header == list(HEADERS)
    assert len(header) == 14
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", h) for h in header)
    assert rows, "a day without work orders"
    assert data.count(b"\r\n") == len(rows) + 1


def test_phones_look_like_chinese_mobiles(tmp_path: Path) -> None:
    rng = random.Random(7)
    for _ in range(500):
        assert MOBILE.match(fake_mobile(rng))
    _, rows = read_export(write_export(date(2025, 3, 14), tmp_path, SMALL))
    assert all(MOBILE.match(r["来电号码"]) for r in rows)


def _gb11643_check(first17: str) -> str:
    # ISO 7064 MOD 11-2: weight of position i (from the left, 0-based) is 2^(17-i) mod 11.
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def test_gb11643_check_on_a_published_example() -> None:
    # The example number of the GB 11643-1999 standard.
    assert _gb11643_check("11010519491231002") == "X"


def test_id_numbers_have_a_valid_check_digit() -> None:
    rng = random.Random(11)
    seen_x = False
    for i in range(2000):
        region = city.DISTRICTS[i % len(city.DISTRICTS)].code
        number = fake_id_number(rng, region)
        assert len(number) == 18
        assert re.fullmatch(r"\d{17}[\dX]", number)
        assert number.startswith(region)
        born = datetime.strptime(number[6:14], "%Y%m%d").date()
        assert date(1940, 1, 1) <= born <= date(2006, 1, 1)
        assert number[17] == _gb11643_check(number[:17])
        seen_x |= number.endswith("X")
    assert seen_x, "2000 numbers without an X check digit: the check is suspicious"


def test_order_closed_later_reappears_closed_in_that_days_file(tmp_path: Path) -> None:
    first = date(2025, 4, 7)
    paths = write_exports(first, first + timedelta(days=10), tmp_path, SMALL)
    files = {first + timedelta(days=i): read_export(p)[1] for i, p in enumerate(paths)}

    opened = {r["工单编号"]: r for r in files[first] if r["办理状态"] == "办理中"}
    assert opened, "no order of the first day stayed open"
    assert all(r["办结时间"] == "" and r["回访结果"] == "" for r in opened.values())
    reappeared = 0
    for day, rows in files.items():
        if day == first:
            continue
        for r in rows:
            if r["工单编号"] in opened:
                reappeared += 1
                assert r["办理状态"] == "已办结"
                assert datetime.strptime(r["办结时间"], "%Y-%m-%d %H:%M:%S").date() == day
                assert r["受理时间"] == opened[r["工单编号"]]["受理时间"]
                assert r["来电号码"] == opened[r["工单编号"]]["来电号码"]
    assert reappeared > 0

    # A file carries orders received that day plus orders closed that day, nothing else.
    for day, rows in files.items():
        for r in rows:
            received = datetime.strptime(r["受理时间"], "%Y-%m-%d %H:%M:%S").date()
            if received != day:
                assert received < day
                assert r["办理状态"] == "已办结"
                assert r["办结时间"].startswith(day.isoformat())


def test_districts_and_towns_in_files_exist_in_the_seed(tmp_path: Path) -> None:
    with (SEEDS / "regions.csv").open(encoding="utf-8", newline="") as fh:
        regions = list(csv.DictReader(fh))
    with (SEEDS / "categories.csv").open(encoding="utf-8", newline="") as fh:
        categories = {r["category_name"] for r in csv.DictReader(fh)}
    names = {r["region_code"]: r["region_name"] for r in regions}
    pairs = {(names[r["parent_code"]], r["region_name"]) for r in regions if r["level"] == "3"}
    _, rows = read_export(write_export(date(2025, 3, 15), tmp_path, SMALL))
    for r in rows:
        assert (r["所属区县"], r["所属街镇"]) in pairs
        assert r["问题分类"] in categories


def test_defect_rate_damages_rows(tmp_path: Path) -> None:
    clean = read_export(write_export(date(2025, 3, 16), tmp_path / "clean", SMALL))[1]
    damaged = read_export(
        write_export(
            date(2025, 3, 16), tmp_path / "bad", SimConfig(seed=4242, orders_per_day=25, bad_row_rate=0.5)
        )
    )[1]
    assert len(clean) == len(damaged)
    assert clean != damaged
