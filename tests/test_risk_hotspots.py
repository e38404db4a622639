"""Emerging hotspot detection (xinfang.risk.hotspots) on synthetic complaint texts and in PostgreSQL.

The background imitates the bureau's routine: a year of petitions and grid
matters in two districts, written from a few templates that name companies,
estates and communities drawn from pools, evenly over time. Hotspots are
planted on top of it; nothing in the detector knows their names.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from xinfang.risk.hotspots import (
    SUBJECT_MAX_CHARS,
    CaseText,
    Hotspot,
    HotspotParams,
    entity_names,
    find_hotspots,
    hotspot_key,
    normalize_text,
    poisson_tail,
    run_hotspots,
    subject_label,
)

DISTRICTS = {
    "369905": (
        "临河县",
        {"369905001": "临河镇", "369905002": "马渡镇", "369905003": "青山乡", "369905004": "河口镇"},
    ),
    "369901": ("江东区", {"369901001": "东湖街道", "369901002": "望江街道"}),
}
COMMUNITIES = ("桂花村", "东风村", "红星社区", "幸福村")
COMPANIES = ("宏达建筑公司", "华盛劳务公司", "鑫源化工厂", "金桥置业", "恒信商贸", "远航物流", "永兴装饰公司")
ESTATES = ("锦绣", "阳光", "翠湖", "金地", "和园", "御景")
CATEGORY_NAMES = {
    "60200601": "欠薪讨薪",
    "60201501": "物业管理",
    "60201102": "环境污染",
    "60201401": "征地拆迁",
    "602005": "政法",
    "60201201": "社会救助",
}
# (category, title, content) of petitions; {company}/{estate} are drawn independently in title and content.
PETITION_TEMPLATES = (
    ("60200601", "反映{company}拖欠工资", "本人在{town}某工地务工，{company}拖欠工资{amount}元至今未付。"),
    ("60200601", "反映{company}拖欠农民工工资", "{company}拖欠{n}名工人工资，要求尽快结清。"),
    ("60201501", "反映{estate}小区物业服务问题", "{town}{estate}小区物业不作为，电梯长期故障，要求整改。"),
    ("60201102", "反映{company}污染问题", "{town}{company}夜间排放异味气体，影响居民休息。"),
    ("60201401", "反映{town}征地补偿问题", "{town}征地补偿标准不明确，村民要求公开补偿方案。"),
    ("602005", "对案件处理结果不服", "对{town}派出所处理的纠纷案件结果不服，要求重新调查。"),
    ("60201201", "申请低保未获答复", "家庭困难申请最低生活保障后长时间未得到答复。"),
)
GRID_TEMPLATES = (
    ("60201501", "{community}小区物业与业主因维修基金使用发生矛盾"),
    ("602005", "{community}村民因排水沟问题发生邻里纠纷"),
    ("60200601", "{community}工人反映{company}拖欠工资"),
    ("60201102", "{community}养殖场异味引发群众不满"),
)

START = date(2024, 1, 1)
END = date(2024, 12, 31)
WINDOW_END = date(2024, 11, 30)
PLANTED_COMPANY = "星河精密机械有限公司"


def _case(
    case_id: str,
    day: date,
    district: str,
    town: str,
    category: str,
    title: str,
    content: str,
    *,
    person: str | None,
    group: int = 1,
    source: str | None = None,
) -> CaseText:
    name, towns = DISTRICTS[district]
    return CaseText(
        case_id=case_id,
        matter_source=source or ("petition" if person else "grid"),
        received_date=day,
        district_code=district,
        district_name=name,
        town_code=town,
        town_name=towns[town],
        grid_code=f"{town}00101",
        category_code=category,
        category_name=CATEGORY_NAMES[category],
        top_category_code=category[:6],
        person_key=person,
        group_size=group,
        title=title,
        content=content,
    )


def background(seed: int = 7, start: date = START, end: date = END, per_day: int = 9) -> list[CaseText]:
    """Routine complaints: every day the same mix of templates, places and pooled names."""
    rng = random.Random(seed)
    towns = [(d, t) for d, (_, ts) in DISTRICTS.items() for t in ts]
    out = []
    day = start
    while day <= end:
        for i in range(per_day):
            district, town = rng.choice(towns)
            town_name = DISTRICTS[district][1][town]
            fill = {
                "town": town_name,
                "community": rng.choice(COMMUNITIES),
                "amount": rng.randrange(3, 80) * 1000,
                "n": rng.randrange(5, 60),
            }
            if rng.random() < 0.3:
                category, text = rng.choice(GRID_TEMPLATES)
                content = text.format(company=rng.choice(COMPANIES), **fill)
                out.append(
                    _case(f"WG-{day:%Y%m%d}{i:03d}", day, district, town, category, "", content, person=None)
                )
            else:
                category, title, content = rng.choice(PETITION_TEMPLATES)
                title = title.format(company=rng.choice(COMPANIES), estate=rng.choice(ESTATES), **fill)
                content = content.format(company=rng.choice(COMPANIES), estate=rng.choice(ESTATES), **fill)
                out.append(
                    _case(
                        f"XF-{day:%Y%m%d}{i:03d}",
                        day,
                        district,
                        town,
                        category,
                        title,
                        content,
                        person=f"P{day:%Y%m%d}{i:03d}",
                    )
                )
        day += timedelta(days=1)
    return out


def planted(
    n: int,
    *,
    last_day: date = WINDOW_END,
    days: int = 20,
    company: str = PLANTED_COMPANY,
    towns: tuple[str, ...] = ("369905004",),
    prefix: str = "PL",
    seed: int = 3,
) -> list[CaseText]:
    """n complaints about one company's unpaid wages, spread over the `days` days up to `last_day`."""
    rng = random.Random(seed)
    texts = (
        (
            f"反映{company}拖欠工资",
            "本人在{town}" + company + "的车间务工，公司拖欠工资{amount}元，老板失联。",
        ),
        (f"{company}欠薪", company + "拖欠{n}名工人{m}个月工资，多次讨要无果，要求政府协调。"),
    )
    out = []
    for k in range(n):
        day = last_day - timedelta(days=(k * days) // n)
        town = towns[k % len(towns)]
        fill = {
            "town": DISTRICTS["369905"][1][town],
            "amount": rng.randrange(3, 80) * 1000,
            "n": rng.randrange(5, 60),
            "m": rng.randrange(2, 8),
        }
        if k % 3 == 2:
            content = f"{rng.choice(COMMUNITIES)}务工人员反映{company}拖欠工资，涉及{fill['n']}人"
            out.append(
                _case(f"WG-{prefix}{k:03d}", day, "369905", town, "60200601", "", content, person=None)
            )
        else:
            title, content = texts[k % 2]
            out.append(
                _case(
                    f"XF-{prefix}{k:03d}",
                    day,
                    "369905",
                    town,
                    "60200601",
                    title,
                    content.format(**fill),
                    person=f"{prefix}-person-{k}",
                    group=12 if k % 4 == 0 else 1,
                )
            )
    return out


@pytest.fixture(scope="module")
def routine() -> list[CaseText]:
    return background()


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def test_routine_background_raises_no_hotspot(routine: list[CaseText]) -> None:
    # Thousands of similar texts (same templates, same pooled companies in the same towns) every month.
    assert len(routine) > 3000
    for end in (date(2024, 9, 30), date(2024, 10, 31), WINDOW_END):
        assert find_hotspots(routine, window_end=end) == []


def test_a_planted_cluster_naming_one_company_is_found(routine: list[CaseText]) -> None:
    plant = planted(12)
    hotspots = find_hotspots(routine + plant, window_end=WINDOW_END)
    assert len(hotspots) == 1
    h = hotspots[0]
    assert PLANTED_COMPANY in h.subject
    assert set(h.case_ids) == {c.case_id for c in plant}
    assert (h.district_code, h.district_name) == ("369905", "临河县")
    assert h.town_codes == ("369905004",) and h.town_names == ("河口镇",)
    assert (h.category_code, h.category_name) == ("60200601", "欠薪讨薪")
    assert h.n_cases == 12
    assert h.n_persons == 8  # 8 petitions by distinct petitioners, 4 grid matters without one
    assert h.n_group == 2 and h.n_people == sum(c.group_size for c in plant)
    assert h.first_date == min(c.received_date for c in plant) and h.last_date == WINDOW_END
    assert h.recent_cases == sum(1 for c in plant if c.received_date > WINDOW_END - timedelta(days=14))
    assert h.baseline < 0.5 and h.score > 8
    assert h.key == hotspot_key("369905", h.subject)


def test_the_cluster_spans_towns_and_keeps_its_key_as_it_grows(routine: list[CaseText]) -> None:
    towns = ("369905001", "369905002", "369905004")
    small = planted(7, towns=towns, days=12)
    grown = planted(25, towns=towns, days=28, seed=5)
    first = find_hotspots(routine + small, window_end=WINDOW_END)
    later = find_hotspots(routine + grown, window_end=WINDOW_END)
    assert [h.n_cases for h in first] == [7] and [h.n_cases for h in later] == [25]
    assert first[0].key == later[0].key
    assert first[0].town_codes == later[0].town_codes == towns
    # Another subject in the same district, or the same subject elsewhere, is another hotspot.
    assert hotspot_key("369905", "远东纺织有限公司") != first[0].key
    assert hotspot_key("369901", first[0].subject) != first[0].key


def test_a_cluster_at_its_usual_rate_is_not_emerging(routine: list[CaseText]) -> None:
    # The same company is complained about 10 times every month of the year: large, but routine.
    steady = []
    for month in range(1, 12):
        steady += planted(10, last_day=date(2024, month, 28), days=27, prefix=f"M{month:02d}", seed=month)
    assert sum(1 for c in steady if c.received_date > WINDOW_END - timedelta(days=30)) == 10
    assert find_hotspots(routine + steady, window_end=WINDOW_END) == []
    # The control: the very same November cases without their history are a hotspot.
    november = [c for c in steady if c.case_id.startswith(("XF-M11", "WG-M11"))]
    assert len(november) == 10
    assert [h.n_cases for h in find_hotspots(routine + november, window_end=WINDOW_END)] == [10]


def test_cases_after_the_window_end_are_ignored(routine: list[CaseText]) -> None:
    # A cluster received in December does not exist for the November window ...
    december = planted(15, last_day=date(2024, 12, 20), prefix="DEC")
    assert find_hotspots(routine + december, window_end=WINDOW_END) == []
    # ... and later cases change nothing about a hotspot of the window.
    plant = planted(9)
    later = planted(20, last_day=date(2024, 12, 20), prefix="LATE", seed=9)
    assert find_hotspots(routine + plant + later, window_end=WINDOW_END) == find_hotspots(
        [c for c in routine if c.received_date <= WINDOW_END] + plant, window_end=WINDOW_END
    )


def test_two_companies_complained_about_in_the_same_words_are_two_hotspots(routine: list[CaseText]) -> None:
    other = "远东纺织有限公司"
    cases = routine + planted(12) + planted(8, company=other, towns=("369905001",), prefix="B")
    found = {h.subject: h for h in find_hotspots(cases, window_end=WINDOW_END)}
    assert sorted(found) == sorted([PLANTED_COMPANY, other])
    assert found[other].n_cases == 8 and found[other].town_codes == ("369905001",)
    assert all(cid.split("-")[1].startswith("B") for cid in found[other].case_ids)


def test_a_surge_without_a_shared_name_must_be_local(routine: list[CaseText]) -> None:
    def surge(towns: tuple[str, ...]) -> list[CaseText]:
        out = []
        for k in range(12):
            town = towns[k % len(towns)]
            name = DISTRICTS["369905"][1][town]
            content = f"{name}电工王建军负责的高压线路改造后频繁停电，冰箱损坏，要求供电部门赔偿。"
            day = WINDOW_END - timedelta(days=k)
            out.append(
                _case(f"XF-S{k:02d}", day, "369905", town, "602005", "反映停电问题", content, person=f"s{k}")
            )
        return out

    # The same complaint from one town is a local hotspot, named after the town ...
    local = find_hotspots(routine + surge(("369905003",)), window_end=WINDOW_END)
    assert [(h.n_cases, h.town_codes) for h in local] == [(12, ("369905003",))]
    # The label is the town and the category, never the shared words: they name a third party here.
    assert local[0].subject == "青山乡政法"
    assert "王建军" not in local[0].subject
    # ... spread over the whole district it is a trend of the category, not a hotspot.
    spread = surge(("369905001", "369905002", "369905003", "369905004"))
    assert find_hotspots(routine + spread, window_end=WINDOW_END) == []


def test_a_grid_matter_and_its_escalated_petition_count_once(routine: list[CaseText]) -> None:
    plant = planted(12)
    escalated = [
        dataclasses.replace(
            c,
            case_id=c.case_id.replace("WG-", "XF-E"),
            matter_source="petition",
            received_date=c.received_date + timedelta(days=2),
            title="网格上报：" + c.content[:20],
            content=c.content + "，经网格员排查未能就地化解，上报信访部门。",
            person_key="e-" + c.case_id,
        )
        for c in plant
        if c.matter_source == "grid" and c.received_date <= WINDOW_END - timedelta(days=2)
    ]
    assert len(escalated) == 4
    (h,) = find_hotspots(routine + plant + escalated, window_end=WINDOW_END)
    assert h.n_cases == 12
    assert {e.case_id for e in escalated} <= set(h.case_ids)
    (kept_apart,) = find_hotspots(
        routine + plant + escalated, window_end=WINDOW_END, params=HotspotParams(merge_escalated=False)
    )
    assert kept_apart.n_cases == 16


def test_one_petitioner_repeating_is_no_hotspot(routine: list[CaseText]) -> None:
    plant = [
        dataclasses.replace(c, person_key="the-same-person", matter_source="petition") for c in planted(10)
    ]
    assert find_hotspots(routine + plant, window_end=WINDOW_END) == []
    distinct = [dataclasses.replace(c, person_key=f"p{i}") for i, c in enumerate(plant)]
    assert len(find_hotspots(routine + distinct, window_end=WINDOW_END)) == 1


def test_the_output_is_deterministic_and_independent_of_input_order(routine: list[CaseText]) -> None:
    cases = routine + planted(12) + planted(8, company="远东纺织有限公司", towns=("369905001",), prefix="B")
    cases += [dataclasses.replace(cases[-1])]  # a repeated row
    first = find_hotspots(cases, window_end=WINDOW_END)
    shuffled = list(cases)
    random.Random(1).shuffle(shuffled)
    assert len(first) == 2
    assert first == find_hotspots(shuffled, window_end=WINDOW_END)
    assert [h.score for h in first] == sorted((h.score for h in first), reverse=True)


def test_the_output_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    cases = background(per_day=4, start=date(2024, 6, 1)) + planted(10)
    data = tmp_path / "cases.pickle"
    data.write_bytes(pickle.dumps(cases))
    script = (
        "import pickle, sys; from datetime import date; from xinfang.risk.hotspots import find_hotspots; "
        f"print(repr(find_hotspots(pickle.load(open({str(data)!r}, 'rb')), window_end=date(2024, 11, 30))))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONDONTWRITEBYTECODE": "1"}
        run = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(run.stdout)
    assert len(outputs) == 1
    assert PLANTED_COMPANY in outputs.pop()


def test_the_subject_is_short_plain_text(routine: list[CaseText]) -> None:
    hostile = '<img src=x onerror="alert(1)">清江长风建设集团第三工程有限公司'
    long_name = "清江" + "长风远景宏图" * 8 + "有限公司"
    for company in (hostile, long_name):
        found = find_hotspots(routine + planted(12, company=company), window_end=WINDOW_END)
        assert len(found) == 1, company
        subject = found[0].subject
        assert 4 <= len(subject) <= SUBJECT_MAX_CHARS
        assert all(ch.isalnum() for ch in subject), subject
    assert "有限公司" in subject


def test_text_normalisation_and_names() -> None:
    text = normalize_text(
        "再次反映：反映星河有限公司拖欠工资", "2025年03月05日已反映此事，至今未解决。欠款12,500元"
    )
    assert "再次" not in text and "2025" not in text and "12" not in text and "#元" in text
    assert "星河有限公司" in entity_names(text)
    names = entity_names(normalize_text("", "李家村村民对新港物流园二期征地补偿方案不满"))
    assert "新港物流园" in names and "李家村" in names and not any(n.startswith("民") for n in names)
    # Town names are never part of a name.
    assert entity_names("本人在临河镇星河有限公司务工", places=("临河镇",)) >= {"星河有限公司"}
    assert not any("临河镇" in n for n in entity_names("本人在临河镇星河有限公司务工", places=("临河镇",)))


def test_the_subject_is_the_name_all_texts_share(routine: list[CaseText]) -> None:
    reference = [normalize_text(c.title, c.content) for c in routine[:2000]]
    places = ("临河县", "临河镇", "河口镇", "马渡镇")
    land = [
        normalize_text(
            "反映新港物流园二期征地补偿标准过低", "新港物流园二期征地项目涉及前进村，补偿标准低。"
        ),
        normalize_text("新港物流园二期征地项目安置问题", "新港物流园二期征地项目未落实社保安置。"),
        normalize_text("", "新港物流园二期征地项目涉及幸福村，村民要求重新评估。"),
        normalize_text("", "梨园村村民对新港物流园二期征地补偿方案不满，30人聚集"),
        normalize_text("", "团结村村民对新港物流园二期征地补偿方案不满，12人聚集"),
    ]
    # In all five texts: 新港物流园; 新港物流园二期征地项目 only in three of them.
    assert subject_label(land, reference + land, places=places) == "新港物流园"
    wage = [
        normalize_text(
            "反映清江鼎固建筑工程有限公司拖欠工资", "本人在临河镇清江鼎固建筑工程有限公司承建的工地务工。"
        ),
        normalize_text(
            "清江鼎固建筑工程有限公司拖欠农民工工资", "清江鼎固建筑工程有限公司拖欠40名工人工资。"
        ),
        normalize_text("", "李家村务工人员反映清江鼎固建筑工程有限公司拖欠工资，涉及20人"),
        normalize_text(
            "再次反映：反映清江鼎固建筑工程有限公司拖欠工资", "本人在河口镇清江鼎固建筑工程有限公司务工。"
        ),
    ]
    assert subject_label(wage, reference + wage, places=places) == "清江鼎固建筑工程有限公司"
    # A name in a third of the district's texts is no subject: three times its share is not enough.
    common = [normalize_text("反映宏达建筑公司拖欠工资", f"宏达建筑公司拖欠{k}名工人工资") for k in range(10)]
    others = [normalize_text("申请低保未获答复", f"家庭困难申请最低生活保障{k}") for k in range(20)]
    assert subject_label(common, common + others) == ""
    assert subject_label(common, common + others * 3) == "宏达建筑公司"


def test_poisson_tail() -> None:
    assert poisson_tail(0, 2.0) == 1.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - 2.718281828459045**-2.0)
    # P(X >= 5 | 0.5) = 1 - sum_{k<5} e^-0.5 0.5^k / k!
    assert poisson_tail(5, 0.5) == pytest.approx(1.7212e-4, rel=1e-3)
    assert poisson_tail(3, 10.0) == pytest.approx(1 - 61 * 2.718281828459045**-10.0)
    assert poisson_tail(40, 1.0) < 1e-40


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        HotspotParams(window_days=0)
    with pytest.raises(ValueError):
        HotspotParams(link_similarity=1.5)


# --------------------------------------------------------------------------------------------------
# Warehouse
# --------------------------------------------------------------------------------------------------

_TABLE = """
create schema if not exists marts;
drop table if exists marts.fct_case_texts;
create table marts.fct_case_texts (
    case_id text primary key, matter_source text not null, received_date date not null,
    district_code text, district_name text, town_code text, town_name text, grid_code text,
    category_code text, category_name text, top_category_code text, person_key text,
    group_size integer, title text not null, content text not null
)
"""


def _insert(conn: psycopg.Connection, cases: list[CaseText]) -> None:
    fields = [f.name for f in dataclasses.fields(CaseText)]
    sql = f"insert into marts.fct_case_texts ({', '.join(fields)}) values ({', '.join(['%s'] * len(fields))})"
    with conn.cursor() as cur:
        cur.executemany(sql, [dataclasses.astuple(c) for c in cases])


def _stored(conn: psycopg.Connection) -> tuple[list, list]:
    spots = conn.execute("select * from risk.hotspots order by as_of_month, rank").fetchall()
    cases = conn.execute("select * from risk.hotspot_cases order by 1, 2, 3").fetchall()
    return spots, cases


def test_run_hotspots_writes_the_month_idempotently(module_database_url: str) -> None:
    plant = planted(12)
    december = planted(15, last_day=date(2024, 12, 20), prefix="DEC", company="远东纺织有限公司")
    with psycopg.connect(module_database_url) as conn:
        conn.execute(_TABLE)
        _insert(conn, background(per_day=6, start=date(2024, 3, 1)) + plant + december)
        conn.commit()

        first = run_hotspots(conn, as_of_month=date(2024, 11, 1))
        conn.commit()
        stored_once = _stored(conn)
        second = run_hotspots(conn, as_of_month=date(2024, 11, 17))  # any day of the month
        conn.commit()
        assert first == second
        assert _stored(conn) == stored_once

        spots, cases = stored_once
        assert len(first) == 1 and len(spots) == 1
        row = conn.execute(
            "select as_of_month, hotspot_key, rank, district_code, town_codes, town_names, category_code, "
            "subject, n_cases, n_persons, n_group, recent_cases, baseline, score, first_date, last_date "
            "from risk.hotspots"
        ).fetchone()
        h: Hotspot = first[0]
        assert row[:8] == (
            date(2024, 11, 1), h.key, 1, "369905", ["369905004"], ["河口镇"], "60200601", h.subject,
        )  # fmt: skip
        assert PLANTED_COMPANY in row[7]
        assert row[8:12] == (12, 8, 2, h.recent_cases)
        assert float(row[12]) == pytest.approx(h.baseline) and float(row[13]) == pytest.approx(h.score)
        assert row[14:] == (h.first_date, WINDOW_END)
        assert sorted(c[2] for c in cases) == sorted(c.case_id for c in plant)  # nothing from December

        # Another month is stored beside it and does not disturb it; rerunning it replaces only it.
        dec = run_hotspots(conn, as_of_month=date(2024, 12, 1))
        conn.commit()
        assert [d.subject for d in dec] == ["远东纺织有限公司"]
        run_hotspots(conn, as_of_month=date(2024, 12, 1))
        conn.commit()
        months = conn.execute(
            "select as_of_month, count(*) from risk.hotspots group by 1 order by 1"
        ).fetchall()
        assert months == [(date(2024, 11, 1), 1), (date(2024, 12, 1), 1)]
        nov = [r for r in _stored(conn)[1] if r[0] == date(2024, 11, 1)]
        assert nov == stored_once[1]

        # A failure while writing leaves the stored month untouched (one transaction).
        conn.execute(
            "alter table risk.hotspot_cases add constraint no_pl check (case_id not like 'XF-PL%') not valid"
        )
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation):
            run_hotspots(conn, as_of_month=date(2024, 11, 1))
        conn.rollback()
        assert [r for r in _stored(conn)[1] if r[0] == date(2024, 11, 1)] == stored_once[1]
