"""The world model: determinism, well-formed records, cross-system links and calibration."""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from xinfang.sim import city, world
from xinfang.sim.hotline import SimConfig, orders_received_on
from xinfang.sim.records import EVENT_TYPES, ONLINE_CHANNELS, RATINGS, Person, Petition, PetitionEvent
from xinfang.sim.world import WorldConfig, build_world, calibration_from_petitions

SEEDS = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds"
DEFAULT = WorldConfig()
NUMBER = re.compile(rf"^XF{city.CITY_CODE}(\d{{8}})(\d{{5}})$")


def _gb11643_check(first17: str) -> str:
    # ISO 7064 MOD 11-2, written independently of people.id_check_digit.
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


@pytest.fixture(scope="module")
def table() -> dict[str, dict]:
    """The calibration figures of every half-year of the default world (generated once)."""
    return {r["half_year"]: r for r in world.calibration_table(build_world(DEFAULT))}


@pytest.fixture(scope="module")
def april() -> list[Petition]:
    return list(build_world(DEFAULT).petitions(date(2025, 4, 1), date(2025, 4, 30)))


# --- the city ----------------------------------------------------------------------------------------


def test_communities_and_grids_have_stable_nested_codes() -> None:
    rows = city.region_rows()
    levels = Counter(r["level"] for r in rows)
    assert levels["1"] == 1 and levels["2"] == 6 and levels["3"] == 20
    codes = {r["region_code"]: r for r in rows}
    for r in rows:
        if r["level"] in ("4", "5"):
            assert r["region_code"].startswith(r["parent_code"])
            assert len(r["region_code"]) == {"4": 12, "5": 14}[r["level"]]
            assert codes[r["parent_code"]]["level"] == str(int(r["level"]) - 1)
    for t in city.TOWNS:
        assert 3 <= len(t.communities) <= 6
        assert all(2 <= len(c.grids) <= 4 for c in t.communities)
    # The first three levels come first and in the original order.
    assert [r["level"] for r in rows[:27]] == ["1"] + ["2", *["3"] * 4] + ["2", *["3"] * 3] * 3 + [
        "2",
        *["3"] * 4,
        "2",
        *["3"] * 3,
    ]


def test_departments_seed_matches_the_world() -> None:
    with (SEEDS / "departments.csv").open(encoding="utf-8", newline="") as fh:
        assert list(csv.DictReader(fh)) == world.department_rows()
    kinds = Counter(d.kind for d in build_world(DEFAULT).departments)
    assert kinds["区县政府"] == 6 and kinds["乡镇街道"] == 20 and kinds["市直部门"] >= 10


# --- determinism ---------------------------------------------------------------------------------------


def test_same_seed_same_petitions_and_another_seed_different() -> None:
    first, last = date(2025, 3, 10), date(2025, 3, 12)
    a = list(build_world(DEFAULT).petitions(first, last))
    world.clear_caches()  # rebuilt from nothing, not served from a cache
    b = list(build_world(DEFAULT).petitions(first, last))
    other = list(build_world(WorldConfig(seed=7)).petitions(first, last))
    assert a and a == b
    assert [p.petitioner.id_number for p in a] != [p.petitioner.id_number for p in other]


def test_a_day_alone_equals_its_slice_of_a_longer_range() -> None:
    w = build_world(DEFAULT)
    longer = list(w.petitions(date(2025, 5, 5), date(2025, 5, 9)))
    world.clear_caches()
    alone = list(build_world(DEFAULT).petitions(date(2025, 5, 7), date(2025, 5, 7)))
    assert alone
    assert alone == [p for p in longer if p.registered_at.date() == date(2025, 5, 7)]


def test_nothing_outside_the_world() -> None:
    w = build_world(DEFAULT)
    assert list(w.petitions(date(2022, 12, 1), date(2022, 12, 31))) == []
    assert list(w.grid_events(date(2026, 1, 1), date(2026, 1, 5))) == []


# --- well-formed records -------------------------------------------------------------------------------


def test_numbers_people_and_places_are_well_formed(april: list[Petition]) -> None:
    numbers = [p.number for p in april]
    assert len(set(numbers)) == len(numbers)
    assert [p.registered_at for p in april] == sorted(p.registered_at for p in april)
    for p in april:
        m = NUMBER.match(p.number)
        assert m and m.group(1) == f"{p.registered_at:%Y%m%d}"
        ident = p.petitioner.id_number
        assert re.fullmatch(r"\d{17}[\dX]", ident) and ident[17] == _gb11643_check(ident[:17])
        assert ident.startswith(p.petitioner.region_code[:6])
        assert p.town_code in city.TOWNS_BY_CODE and p.grid_code.startswith(p.town_code)
        assert p.channel in ("网上信访", "来信", "来访", "12345转办", "网格上报")
        assert p.category_code in world.CATEGORY_BY_CODE and re.fullmatch(r"60100[1-6]", p.purpose_code)
        assert p.group_size >= 1
    assert any(p.group_size >= 5 for p in april)


def test_event_histories_are_ordered_and_valid(april: list[Petition]) -> None:
    types = Counter()
    for p in april:
        ev = p.events
        assert [e.seq for e in ev] == list(range(1, len(ev) + 1))
        assert all(a.at <= b.at for a, b in itertools.pairwise(ev))
        assert ev[0].type == "登记" and ev[0].at == p.registered_at
        kinds = [e.type for e in ev]
        types.update(kinds)
        assert set(kinds) <= set(EVENT_TYPES)
        for e in ev:
            assert (e.rating is not None) == (e.type == "回访" and e.rating is not None)
            assert e.rating is None or e.rating in RATINGS
        if "不予受理" in kinds:
            assert "受理" not in kinds and "答复" not in kinds
        if "答复" in kinds:
            assert kinds.index("受理") < kinds.index("答复")
        if "回访" in kinds:
            assert kinds.index("答复") < kinds.index("回访")
        if "复查答复" in kinds:
            assert kinds.index("复查申请") < kinds.index("复查答复")
        if "复核申请" in kinds:
            assert kinds.index("复查答复") < kinds.index("复核申请") < kinds.index("复核答复")
        assert kinds.count("延期") <= 1
        if "退回" in kinds:
            assert kinds.count("交办") >= 2
    for kind in EVENT_TYPES:
        assert types[kind] > 0, f"no {kind} event in a month"


def test_replies_mostly_within_the_legal_limit(april: list[Petition]) -> None:
    lags = []
    for p in april:
        accepted = next((e.at for e in p.events if e.type == "受理"), None)
        reply = next((e.at for e in p.events if e.type == "答复"), None)
        if accepted and reply:
            extended = any(e.type == "延期" for e in p.events)
            lags.append(((reply - accepted).days, extended))
    assert sum(1 for days, _ in lags if days <= 60) / len(lags) > 0.97
    assert all(ext for days, ext in lags if days > 60)


# --- links between the systems -------------------------------------------------------------------------


def test_grid_escalations_point_both_ways() -> None:
    w = build_world(DEFAULT)
    first, last = date(2025, 6, 2), date(2025, 6, 15)
    events = list(w.grid_events(first, last))
    petitions = {p.number: p for p in w.petitions(first, last + timedelta(days=14))}
    workers = {s.code: s for s in w.staff if s.kind == "网格员"}
    escalated = [g for g in events if g.escalated_petition_no]
    assert escalated and len(escalated) < len(events) / 5
    for g in events:
        assert workers[g.worker_code].grid_code == g.grid_code
        if g.escalated_petition_no:
            p = petitions[g.escalated_petition_no]
            assert g.status == "已上报信访" and p.channel == "网格上报" and p.grid_event_id == g.event_id
            assert p.registered_at > g.reported_at and p.grid_code == g.grid_code
        else:
            assert g.status in ("已化解", "化解中")
            assert (g.resolved_at is not None) == (g.status == "已化解")
    by_id = {g.event_id: g for g in events}
    for p in w.petitions(first + timedelta(days=15), last):
        if p.channel == "网格上报":
            assert by_id[p.grid_event_id].escalated_petition_no == p.number
        else:
            assert p.grid_event_id is None


def test_converted_work_orders_are_in_the_hotline_export() -> None:
    day = date(2025, 4, 9)
    petitions = list(build_world(DEFAULT).petitions(day, day))
    converted = {p.hotline_work_order_no: p for p in petitions if p.channel == "12345转办"}
    assert converted and all(re.fullmatch(rf"GD{day:%Y%m%d}9\d{{4}}", n) for n in converted)
    assert all(p.hotline_work_order_no is None for p in petitions if p.channel != "12345转办")
    orders = {o.number: o for o in orders_received_on(day, SimConfig(seed=DEFAULT.seed, bad_row_rate=0.0))}
    for number, p in converted.items():
        order = orders[number]
        assert order.received_at < p.registered_at and order.closed_at == p.registered_at
        assert order.fields["来电号码"] == p.petitioner.phone
    own = [n for n in orders if n not in converted]
    assert own and all(int(n[-5:]) < 90000 for n in own)


# --- staff and planted risks -----------------------------------------------------------------------------


def test_staff_reflect_the_half_year_summary() -> None:
    w = build_world(DEFAULT)
    h1 = (date(2025, 1, 1), date(2025, 6, 30))
    postings = [p for s in w.staff for p in s.postings if h1[0] <= p.start <= h1[1]]
    assert Counter(p.kind for p in postings) == {"挂职": 15, "跟岗": 20}
    classes = [c for c in w.training_classes if h1[0] <= c.start <= h1[1]]
    assert len(classes) == 4 and sum(len(c.attendee_codes) for c in classes) == 320
    township = [s for s in w.staff if s.kind in ("乡镇专职", "乡镇兼职") and s.valid_to is None]
    assert sum(s.full_time for s in township) / len(township) == pytest.approx(0.68)
    assert sum(1 for s in w.staff if s.promoted_on and h1[0] <= s.promoted_on <= h1[1]) == 7
    assert {s.grid_code for s in w.staff if s.kind == "网格员"} == {g.code for g in city.GRIDS}


def test_township_posts_at_mid_2025() -> None:
    w = build_world(DEFAULT)
    day = date(2025, 6, 30)
    township = [s for s in w.staff if s.kind in ("乡镇专职", "乡镇兼职")]
    in_post = [s for s in township if s.valid_from <= day and (s.valid_to is None or s.valid_to >= day)]
    assert len(in_post) == 100 and sum(s.full_time for s in in_post) == 68
    assert all(s.kind == ("乡镇专职" if s.full_time else "乡镇兼职") for s in township)
    assert Counter(s.kind for s in w.staff) == {"局机关": 48, "乡镇专职": 68, "乡镇兼职": 42, "网格员": 293}


@pytest.fixture(scope="module")
def postings_period() -> list[Petition]:
    """Petitions of the months every 2025 posting (挂职 from March, 跟岗 from February) runs through."""
    return list(build_world(DEFAULT).petitions(date(2025, 2, 10), date(2025, 9, 30)))


def _duty_unit(s: world.Staff, day: date) -> str | None:
    """Where `s` works on `day` (written independently of world._duties): posting unit, home, or nowhere."""
    if day < s.valid_from or (s.valid_to is not None and day > s.valid_to):
        return None
    posted = [p.unit_code for p in s.postings if p.start <= day <= p.end]
    return posted[0] if posted else s.unit_code


def test_handlers_are_staff_of_the_acting_unit_on_that_day(postings_period: list[Petition]) -> None:
    w = build_world(DEFAULT)
    staff = {s.code: s for s in w.staff}
    handled = Counter()
    for p in postings_period:
        for e in p.events:
            unit = e.unit_code or ""
            if unit == world.BUREAU_CODE or unit.startswith("XZ"):
                assert e.handler_code is not None, (p.number, e.seq)
                s = staff[e.handler_code]
                assert s.kind in world.HANDLER_KINDS  # never a grid worker
                assert _duty_unit(s, e.at.date()) == unit, (p.number, e.seq, e.handler_code)
                handled[s.kind] += 1
                # The choice is the keyed hash of (number, seq), not a generator draw.
                assert e.handler_code == world.pick_handler(DEFAULT.seed, p.number, e.seq, unit, e.at.date())
            else:
                # City departments, district governments, 越级: no staff in the world.
                assert e.handler_code is None
    assert set(handled) == {"局机关", "乡镇专职", "乡镇兼职"}
    # Work is spread over the people on duty, not piled on one.
    per_person = Counter(e.handler_code for p in postings_period for e in p.events if e.handler_code)
    assert len(per_person) > 140 and max(per_person.values()) < 20 * min(per_person.values())


def test_seconded_cadres_handle_the_posting_units_matters_only_within_the_posting(
    postings_period: list[Petition],
) -> None:
    w = build_world(DEFAULT)
    staff = {s.code: s for s in w.staff}
    by_handler: dict[str, list[tuple[date, str]]] = {}
    for p in postings_period:
        for e in p.events:
            if e.handler_code:
                by_handler.setdefault(e.handler_code, []).append((e.at.date(), e.unit_code))
    seconded = [s for s in staff.values() if s.postings]
    assert Counter(s.postings[0].kind for s in seconded) == {"挂职": 15, "跟岗": 20}
    for s in seconded:
        posting = s.postings[0]
        assert (posting.kind == "挂职") == (s.kind == "局机关")
        work = by_handler.get(s.code, [])
        inside = [(d, u) for d, u in work if posting.start <= d <= posting.end]
        outside = [(d, u) for d, u in work if not posting.start <= d <= posting.end]
        assert inside, f"{s.code} handled nothing during the posting"
        assert {u for _, u in inside} == {posting.unit_code}
        assert {u for _, u in outside} <= {s.unit_code}
    # A 挂职 cadre does the posting town's work beside its own officers, and no other town's.
    cadre = next(s for s in seconded if s.postings[0].kind == "挂职")
    town_work = [(d, u) for d, u in by_handler[cadre.code] if u.startswith("XZ")]
    assert town_work and all(cadre.postings[0].start <= d <= cadre.postings[0].end for d, _ in town_work)


def test_ground_truth_names_the_planted_petitions(tmp_path: Path) -> None:
    w = build_world(DEFAULT)
    doc = json.loads(world.write_ground_truth(w, tmp_path / "truth.json").read_text(encoding="utf-8"))
    risks = {r["kind"]: r for r in doc["risks"]}
    wage, land = risks["欠薪"], risks["征地拆迁"]
    for risk in (wage, land):
        first, last = date.fromisoformat(risk["start"]), date.fromisoformat(risk["end"])
        assert first < date.fromisoformat(risk["peak"]) < last
        numbers = set(risk["petition_numbers"])
        found = [p for p in w.petitions(first, last) if p.number in numbers]
        assert len(found) >= 30
        assert all(p.category_code == risk["category_code"] for p in found)
        assert all(p.town_code[:6] == risk["district_code"] for p in found)
        assert risk["grid_event_ids"]
    wage_petitions = [
        p
        for p in w.petitions(date(2025, 3, 3), date(2025, 5, 9))
        if p.number in set(wage["petition_numbers"])
    ]
    assert all(wage["subject"] in p.content for p in wage_petitions if p.channel != "网格上报")
    weekly = Counter((p.registered_at.date() - date(2025, 3, 3)).days // 7 for p in wage_petitions)
    assert weekly[0] < weekly[3] < weekly[7]  # builds up week by week to the peak
    land_petitions = [
        p
        for p in w.petitions(date(2025, 5, 19), date(2025, 7, 25))
        if p.number in set(land["petition_numbers"])
    ]
    assert sum(p.group_size >= 5 for p in land_petitions) >= len(land_petitions) / 2


# --- calibration -------------------------------------------------------------------------------------------


def _p(
    number: str, at: datetime, who: str, category: str, events: list[tuple], channel: str = "网上信访"
) -> Petition:
    person = Person(name="甲", id_number=who, phone="13800000000", address="", region_code="369901001")
    return Petition(
        number=number,
        channel=channel,
        registered_at=at,
        petitioner=person,
        group_size=1,
        category_code=category,
        purpose_code="601003",
        town_code="369901001",
        grid_code="36990100100101",
        title="",
        content="",
        events=tuple(
            PetitionEvent(seq=i, type=t, at=at + timedelta(days=d), rating=r)
            for i, (t, d, r) in enumerate([("登记", 0, None), *events], start=1)
        ),
    )


def test_calibration_definitions_on_a_hand_built_set() -> None:
    ok = [("受理", 0, None), ("答复", 7, None), ("回访", 9, "满意")]
    mon = datetime(2025, 3, 3, 10)  # a Monday
    petitions = [
        # A: first petition, resolved at first handling; 7 calendar days = 5 weekdays to the reply.
        _p("A", mon, "p1", "60201501", ok),
        # B: first, rated 基本满意, but its petitioner is back 30 days after the reply (C): not resolved.
        _p("B", mon, "p2", "60200601", [("受理", 0, None), ("答复", 3, None), ("回访", 4, "基本满意")]),
        # C: repeat of B (same person, same top-level category 602006 though another sub-category).
        _p("C", mon + timedelta(days=33), "p2", "60200602", ok, channel="来访"),
        # D: first, rated 不满意.
        _p("D", mon, "p3", "602005", [("受理", 0, None), ("答复", 2, None), ("回访", 3, "不满意")], "来信"),
        # E: first, satisfied but asks for a review within 90 days: not resolved.
        _p("E", mon, "p4", "602005", [*ok, ("复查申请", 20, None), ("复查答复", 40, None)], "12345转办"),
        # F: same person as A but another top-level category: a first petition, not a repeat; not answered.
        _p("F", mon + timedelta(days=1), "p1", "602005", [("不予受理", 1, None)]),
        # G: p1 again about property, but 400 days after A: outside the 365-day window, so first again.
        _p("G", mon + timedelta(days=400), "p1", "60201501", ok),
        # H: in the window before the half-year: makes I a repeat.
        _p("H", datetime(2024, 12, 20, 9), "p5", "60201401", ok),
        _p("I", datetime(2025, 1, 6, 9), "p5", "60201401", [("受理", 0, None)]),
    ]
    r = calibration_from_petitions(petitions, "2025H1")
    assert r["total"] == 7  # A B C D E F I (H is in 2024, G in 2026)
    assert r["repeat_share"] == pytest.approx(2 / 7)  # C, I
    assert r["first_petitions"] == 5  # A B D E F
    assert r["first_resolution_rate"] == pytest.approx(1 / 5)  # only A
    assert r["rated"] == 5 and r["satisfaction"] == pytest.approx(4 / 5)  # A B C E satisfied, D not
    assert r["online_share"] == pytest.approx(5 / 7)  # A B E(12345) F I; C 来访 and D 来信 are offline
    # Handling: A 5, B 3 (Mon->Thu), C 5, D 2, E 5 weekdays; F and I have no reply.
    assert r["replied"] == 5 and r["mean_handling_workdays"] == pytest.approx((5 + 3 + 5 + 2 + 5) / 5)


def test_2025_h1_matches_the_bureau_summary(table: dict[str, dict]) -> None:
    h1, prev = table["2025H1"], table["2024H1"]
    assert h1["total"] == pytest.approx(12300, rel=0.01)
    assert h1["total"] / prev["total"] - 1 == pytest.approx(-0.117, abs=0.005)
    assert h1["first_resolution_rate"] == pytest.approx(0.923, abs=0.005)
    assert h1["first_resolution_rate"] - prev["first_resolution_rate"] == pytest.approx(0.056, abs=0.007)
    assert h1["repeat_share"] == pytest.approx(0.158, abs=0.005)
    assert h1["repeat_share"] - prev["repeat_share"] == pytest.approx(-0.039, abs=0.007)
    assert h1["satisfaction"] == pytest.approx(0.915, abs=0.005)
    assert h1["satisfaction"] == max(r["satisfaction"] for r in table.values())
    assert h1["online_share"] == pytest.approx(0.85, abs=0.005)
    assert h1["online_share"] - prev["online_share"] == pytest.approx(0.18, abs=0.007)
    assert h1["mean_handling_workdays"] == pytest.approx(12, abs=0.5)


def test_wage_arrears_peak_before_the_spring_festival_and_in_summer() -> None:
    w = build_world(DEFAULT)

    def wage_share(first: date, last: date) -> float:
        ps = [p for p in w.petitions(first, last) if p.grid_event_id is None]
        return sum(p.category_code == world.WAGE_CODE for p in ps) / len(ps)

    pre_festival = wage_share(date(2024, 1, 15), date(2024, 2, 5))  # Spring Festival 2024-02-10
    autumn = wage_share(date(2024, 10, 14), date(2024, 11, 4))
    summer = wage_share(date(2024, 7, 1), date(2024, 7, 21))
    assert pre_festival > 1.6 * autumn and summer > 1.2 * autumn


def test_weekends_and_holidays_are_quieter_and_online() -> None:
    w = build_world(DEFAULT)
    per_day = Counter(p.registered_at.date() for p in w.petitions(date(2024, 9, 23), date(2024, 10, 13)))
    weekdays = [n for d, n in per_day.items() if world.is_office_day(d)]
    off = [n for d, n in per_day.items() if not world.is_office_day(d)]
    assert sum(off) / len(off) < 0.7 * sum(weekdays) / len(weekdays)
    holiday = list(w.petitions(date(2024, 10, 2), date(2024, 10, 4)))
    assert all(p.channel in ONLINE_CHANNELS for p in holiday)
