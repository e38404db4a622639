"""The 红黄蓝 rules file and the warnings drawn from forecasts and hotspots (pure, no database)."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import pytest
import yaml

from xinfang.risk import alerts
from xinfang.risk.rules import RulesError, load_rules, parse_rules

RULES_FILE = Path(__file__).resolve().parents[1] / "config" / "risk_rules.yml"
NAMES = {
    "SZ00": "市信访局",
    "SZ01": "市人力资源和社会保障局",
    "SZ03": "市自然资源和规划局",
    "QX369905": "临河县人民政府",
    "QX369903": "高新区人民政府",
}


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES_FILE)


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


def directory() -> alerts.Directory:
    return alerts.Directory(NAMES)


def _surge(domain_key="wage", name="欠薪讨薪", prefix="60200601", area="369905", area_name="临河县", **kw):
    row = {
        "domain_key": domain_key,
        "domain_name": name,
        "category_prefix": prefix,
        "area_code": area,
        "area_name": area_name,
        "actual": 30,
        "mean": 10.0,
        "hi80": 14.0,
        "hi95": 17.0,
    }
    return row | kw


def _hotspot(**kw):
    row = {
        "hotspot_key": "abc123",
        "district_code": "369905",
        "district_name": "临河县",
        "town_names": ["临河镇", "马渡镇"],
        "category_code": "60200601",
        "category_name": "欠薪讨薪",
        "subject": "清江某建筑工程有限公司",
        "n_cases": 14,
        "n_persons": 12,
        "n_people": 40,
        "n_group": 3,
        "recent_cases": 9,
        "score": 12.5,
        "first_date": date(2025, 3, 5),
        "last_date": date(2025, 3, 28),
    }
    return row | kw


def test_the_shipped_rules_file_is_valid_and_routes_categories(rules) -> None:
    assert {"hotspot", "surge", "outlook"} <= set(rules.rules)
    assert rules.department_for("60200601") == "SZ01"
    # Longest prefix wins: a sub-category not listed falls back to its top-level category.
    assert rules.department_for("60201599") == "SZ02"
    assert rules.department_for("999999") == rules.default_department
    assert [lr.level for lr in rules.rules["hotspot"].levels] == ["红", "黄", "蓝"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["rules"]["hotspot"]["actions"].update({"红": "请{departmnet}处理"}),
            "unknown placeholder",
        ),
        (lambda d: d["rules"]["hotspot"]["levels"].update({"紫": {"min_cases": 1}}), "level must be one of"),
        (
            lambda d: d["rules"]["surge"]["levels"]["红"].update({"above": "hi99"}),
            "rules.surge.levels.红.above",
        ),
        (
            lambda d: d["rules"]["hotspot"]["levels"]["黄"].update({"min_case": 3}),
            "unknown keys ['min_case']",
        ),
        (lambda d: d["rules"]["outlook"]["actions"].pop("蓝"), "missing recommended action for level 蓝"),
        (lambda d: d["domains"][0].update({"categories": [602014]}), "domains entry 1 (land)"),
        (lambda d: d.update({"key_domains": ["land", "rent"]}), "key_domains names 'rent'"),
        (lambda d: d["rules"].update({"backlog": {}}), "rules.backlog: unknown rule"),
        (lambda d: d["rules"]["hotspot"]["levels"]["蓝"].update({"min_cases": -1}), "non-negative number"),
        (lambda d: d["rules"]["outlook"].update({"domains": ["wages"]}), "rules.outlook.domains"),
    ],
)
def test_a_bad_rules_file_names_the_entry_and_field(document, mutate, message) -> None:
    broken = copy.deepcopy(document)
    mutate(broken)
    with pytest.raises(RulesError) as info:
        parse_rules(broken, source="risk_rules.yml")
    assert message in str(info.value)
    assert str(info.value).startswith("risk_rules.yml")


def test_surge_levels_follow_the_ratio_and_the_interval(rules) -> None:
    d = directory()
    [red] = alerts.surge_alerts([_surge(actual=30)], rules, d)  # 3.0 x forecast, 1.76 x hi95
    assert red.level == "红" and red.department_code == "SZ01" and red.co_department_code == "QX369905"
    assert "临河县人民政府" in red.action and "市人力资源和社会保障局" in red.action
    assert "30件" in red.evidence and "10件" in red.evidence
    [blue] = alerts.surge_alerts([_surge(actual=21, mean=13.0)], rules, d)  # 1.6 x, 1.24 x hi95 17
    assert blue.level == "蓝"
    # Far above the mean but barely beyond the interval: within the model's own noise, no warning.
    assert alerts.surge_alerts([_surge(actual=19, mean=10.0)], rules, d) == []
    # Above the ratio but inside the interval: no warning; too few cases: no warning.
    assert alerts.surge_alerts([_surge(actual=16, mean=5.0)], rules, d) == []
    assert alerts.surge_alerts([_surge(actual=11, mean=1.0, hi95=3.0)], rules, d) == []


def test_hotspot_levels_need_cases_and_persons(rules) -> None:
    d = directory()
    [yellow] = alerts.hotspot_alerts([_hotspot()], rules, d)
    assert yellow.level == "黄" and yellow.key == "hotspot:abc123"
    assert "清江某建筑工程有限公司" in yellow.action and "临河镇、马渡镇" in yellow.title
    [red] = alerts.hotspot_alerts([_hotspot(n_cases=30, n_persons=25)], rules, d)
    assert red.level == "红"
    # Many cases from few people is one person's persistence, not a cluster: at most blue.
    [blue] = alerts.hotspot_alerts([_hotspot(n_cases=30, n_persons=3)], rules, d)
    assert blue.level == "蓝"
    assert alerts.hotspot_alerts([_hotspot(n_cases=4, n_persons=4)], rules, d) == []


def test_outlook_compares_next_month_with_last_year(rules) -> None:
    row = _surge(target_month=date(2025, 7, 1), mean=20.0, lo80=15.0, hi80=26.0, last_year=10)
    [a] = alerts.outlook_alerts([row], rules, directory())
    assert a.level == "黄" and a.kind == "outlook" and "7月" in a.evidence
    assert alerts.outlook_alerts([row | {"last_year": 18}], rules, directory()) == []
    # Twice last year on average, but the interval's low end is not above it: too uncertain to warn.
    assert alerts.outlook_alerts([row | {"lo80": 9.0}], rules, directory()) == []
    # The rules file limits the outlook to the key domains.
    assert alerts.outlook_alerts([row | {"domain_key": "top_602006"}], rules, directory()) == []


def test_narrow_domain_and_district_shadow_the_broad_warnings(rules) -> None:
    d = directory()
    raised = alerts.surge_alerts(
        [
            _surge(),  # wage in 临河县
            _surge(domain_key="top_602006", name="劳动社保", prefix="602006"),  # its top category there
            _surge(area="369900", area_name="全市"),  # wage city-wide
            _surge(domain_key="land", name="征地拆迁", prefix="60201401", area="369900", area_name="全市"),
        ],
        rules,
        d,
    )
    kept = {a.key for a in alerts.reduce_noise(raised, rules)}
    assert kept == {"surge:wage:369905", "surge:land:369900"}
    # Only a warning at least as high shadows: a red city-wide surge stays beside a blue district one.
    mixed = alerts.surge_alerts(
        [
            _surge(actual=21, mean=13.0),
            _surge(area="369900", area_name="全市", actual=90, mean=30.0, hi95=45.0),
        ],
        rules,
        d,
    )
    assert {(a.key, a.level) for a in alerts.reduce_noise(mixed, rules)} == {
        ("surge:wage:369905", "蓝"),
        ("surge:wage:369900", "红"),
    }


def test_district_editions_carry_city_wide_warnings() -> None:
    from xinfang.publish.monthly_context import _involves

    city_wide = {"department_code": "SZ02", "co_department_code": None}
    local = {"department_code": "SZ01", "co_department_code": "QX369905"}
    assert _involves(city_wide, "QX369904") and _involves(city_wide, "SZ02") and _involves(city_wide, None)
    assert not _involves(city_wide, "SZ01")
    assert _involves(local, "QX369905") and not _involves(local, "QX369904")


def test_follow_up_outcomes(rules) -> None:
    d = directory()
    current = alerts.hotspot_alerts([_hotspot(n_cases=30, n_persons=25)], rules, d) + alerts.surge_alerts(
        [_surge(actual=21, mean=13.0)], rules, d
    )
    previous = [
        {"alert_key": "hotspot:abc123", "level": "黄"},
        {"alert_key": "surge:wage:369905", "level": "红"},
        {"alert_key": "surge:land:369903", "level": "蓝"},
    ]
    previous = [
        p
        | {
            "title": p["alert_key"],
            "department_code": "SZ01",
            "department_name": "x",
            "co_department_code": None,
        }
        for p in previous
    ]
    outcome = {f.key: (f.outcome, f.current_level) for f in alerts.follow_up(previous, current)}
    assert outcome == {
        "hotspot:abc123": ("升级", "红"),
        "surge:wage:369905": ("降级", "蓝"),
        "surge:land:369903": ("已消除", None),
    }
