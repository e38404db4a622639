"""Suite files, privacy rules and the HTML report, without a database.

The gate's behaviour on data is in test_quality_gate.py; here: the shipped
suites say what the gate promises, a broken suite file is refused with a
reason, only codes, dates and numbers may be shown, and the report page is
self-contained and escaped.
"""

from __future__ import annotations

import json
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xinfang.quality import privacy
from xinfang.quality.gates import CheckResult, SuiteResult
from xinfang.quality.period import Period, add_months
from xinfang.quality.report import render_html
from xinfang.quality.suites import SuiteFileError, load_suite_file, load_suites, render_sql

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS = ROOT / "expectations"


def _write(tmp_path: Path, spec: dict, name: str = "suite.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


def _suite(**meta_and_checks) -> dict:
    expectations = meta_and_checks.pop("expectations")
    return {"name": "probe", "meta": {"table": "raw.x", **meta_and_checks}, "expectations": expectations}


# --- the shipped suites ----------------------------------------------------------------------------------


def test_shipped_suites_cover_raw_ledger_and_mart_layers_in_order():
    suites = load_suites(EXPECTATIONS)
    assert [s.table for s in suites] == [
        "raw.grid_screening_events",
        "raw.hotline_work_orders",
        "raw.online_petition_events",
        "raw.online_petitions",
        "ops.load_batches",
        "marts.fct_case_events",
        "marts.fct_cases",
    ]
    kinds = {s.table: {c.kind for c in s.checks} for s in suites}
    for table in ("raw.grid_screening_events", "raw.hotline_work_orders", "raw.online_petition_events",
                  "raw.online_petitions", "marts.fct_cases"):  # fmt: skip
        assert {"volume", "distribution", "freshness", "referential_integrity"} <= kinds[table], table
    assert {"reconciliation", "completeness"} <= kinds["ops.load_batches"]
    # Every raw source is checked for freshness both on a source time and on its load time.
    for suite in suites:
        if suite.layer == "raw":
            fresh = {c.meta["freshness_of"] for c in suite.checks if c.kind == "freshness"}
            assert any("loaded_at" in f for f in fresh) and any("loaded_at" not in f for f in fresh), (
                suite.name
            )
    # The period of every suite is a column, so each check sees the report month's rows.
    assert all(s.period_column for s in suites)


def test_fct_cases_suite_sticks_to_columns_that_survive_the_model_rewrite():
    suite = load_suite_file(EXPECTATIONS / "fct_cases.json")
    columns = {c.column for c in suite.checks if c.scope != "query"} | {suite.period_column}
    columns |= {c.meta.get("distribution_of") for c in suite.checks} | {
        c.meta.get("freshness_of") for c in suite.checks
    }
    columns.discard(None)
    assert columns <= {
        "case_id",
        "channel",
        "received_date",
        "received_month",
        "working_days_to_close",
        "category_code",
    }


# --- suite files that are refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (_suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {},
                               "meta": {"titel": "x"}}]),
         "unknown meta key"),
        (_suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {},
                               "meta": {"volume": {"tolerance": 0.5}}}]),
         "needs the suite's meta.period_column"),
        (_suite(period_column="d", expectations=[{"type": "expect_table_row_count_to_be_between",
                                                  "kwargs": {"min_value": 3},
                                                  "meta": {"volume": {"tolerance": 0.5}}}]),
         "bounds come from history"),
        (_suite(period_column="d", expectations=[{"type": "expect_column_values_to_be_between",
                                                  "kwargs": {"column": "share_change", "max_value": 0.1},
                                                  "meta": {"distribution_of": "caller_name_masked"}}]),
         "not a code column"),
        (_suite(expectations=[{"type": "expect_column_max_to_be_between", "kwargs": {"column": "loaded_at"},
                               "meta": {"freshness_of": "loaded_at"}}]),
         "on 'age_hours'"),
        (_suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {},
                               "meta": {"query": "SELECT * FROM {tabel}"}}]),
         "unknown placeholder"),
        (_suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {},
                               "meta": {"query": "SELECT * FROM raw.x WHERE a = :a"}}]),
         "bind parameter"),
        (_suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {},
                               "meta": {"query": "DELETE FROM raw.x"}}]),
         "starting with SELECT"),
        (_suite(expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},
                               "meta": {"scope": "period"}}]),
         "needs the suite's meta.period_column"),
        (_suite(expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},
                               "meta": {"check": "vibes"}}]),
         "meta.check must be one of"),
        (_suite(history={"lookback_months": 2, "min_history_months": 3}, expectations=[{"type": "expect_x"}]),
         "min_history_months"),
        ({"name": "probe", "meta": {"table": "x"}, "expectations": [{"type": "expect_x"}]}, "schema.table"),
        (_suite(expectations=[]), "no expectations"),
    ],
)  # fmt: skip
def test_broken_suite_files_are_refused_with_the_reason(tmp_path, spec, reason):
    with pytest.raises(SuiteFileError, match=reason):
        load_suite_file(_write(tmp_path, spec))


def test_two_files_with_one_suite_name_are_refused(tmp_path):
    spec = _suite(expectations=[{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}])
    _write(tmp_path, spec, "a.json")
    _write(tmp_path, spec, "b.json")
    with pytest.raises(SuiteFileError, match=r"more than one file.*\['probe'\]"):
        load_suites(tmp_path)


def test_check_kind_and_scope_are_inferred():
    path = EXPECTATIONS / "raw_hotline_work_orders.json"
    checks = {c.number: c for c in load_suite_file(path).checks}
    assert (checks[1].kind, checks[1].scope) == ("volume", "period")
    assert (checks[3].kind, checks[3].scope) == ("validity", "period")
    assert (checks[10].kind, checks[10].scope) == ("referential_integrity", "query")
    assert (checks[12].kind, checks[12].scope) == ("distribution", "query")
    assert (checks[14].kind, checks[14].scope) == ("freshness", "query")
    assert checks[1].history.first_batch_of == ("hotline",)


def test_placeholders_are_filled_with_the_gates_literals():
    sql = "SELECT * FROM {period_rows} AS r WHERE d < {period_end} AND t < {period_end_instant}"
    filled = render_sql(
        sql, {"period_rows": "(q)", "period_end": "DATE '2025-07-01'", "period_end_instant": "I"}
    )
    assert filled == "SELECT * FROM (q) AS r WHERE d < DATE '2025-07-01' AND t < I"


# --- period arithmetic -----------------------------------------------------------------------------------


def test_period_bounds_and_previous_months():
    june = Period.of(date(2025, 6, 17))
    assert (june.start, june.end, june.label, june.label_zh) == (
        date(2025, 6, 1),
        date(2025, 7, 1),
        "2025-06",
        "2025年6月",
    )
    assert Period(date(2025, 12, 1)).end == date(2026, 1, 1)
    assert Period(date(2025, 2, 1)).previous(3) == [date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1)]
    assert add_months(date(2025, 1, 1), -13) == date(2023, 12, 1)
    with pytest.raises(ValueError, match="first of a month"):
        Period(date(2025, 6, 2))


# --- privacy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("work_order_no", "GD2025060100001", True),
        ("category_code", "602005", True),
        ("matter_type", "投诉", True),
        ("file_name", "12345_gongdan_20250601.csv", True),
        ("town_name", "东湖街道", True),
        ("working_days_to_close", -7, True),
        ("received_date", date(2025, 6, 1), True),
        ("caller_name_masked", "欧*", False),
        ("caller_phone_masked", "166****5678", False),
        ("petitioner_id_masked", "3301**********1234", False),
        ("address_masked", "梧桐巷**号", False),
        ("content", "来电人反映……", False),
        ("description", "纠纷", False),
        ("note", "退回原因", False),
        ("person_key", "9f86d081884c7d65", False),
        ("caller_key", "9f86d081884c7d65", False),
        ("petitioner_phone_key", 12345, False),  # a number in a personal column stays hidden too
        ("handling_unit_free_text", "x", False),
        ("some_column", "free text of unknown meaning", False),  # text needs a code-like name
    ],
)
def test_only_codes_dates_and_numbers_are_shown(column, value, shown):
    assert privacy.showable(column, value) is shown


def test_safe_row_drops_personal_fields_and_renders_dates():
    row = {"petition_no": "XF1", "petitioner_name_masked": "张*", "registered_at": date(2025, 6, 1), "n": 3}
    assert privacy.safe_row(row) == {"petition_no": "XF1", "registered_at": "2025-06-01", "n": 3}


# --- the HTML report -------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def _results() -> list[SuiteResult]:
    failed = CheckResult(
        expectation="expect_column_values_to_be_in_set",
        column="matter_type",
        success=False,
        element_count=120,
        unexpected_count=1,
        number=3,
        title="诉求类型<img src=x onerror=alert(1)>有效",
        status="failed",
        details={
            "bounds": {"value_set": ["咨询"]},
            "sample": [{"work_order_no": "GD1", "matter_type": "<b>x</b>"}],
        },
    )
    skipped = CheckResult(
        expectation="expect_table_row_count_to_be_between",
        column=None,
        success=None,
        element_count=None,
        unexpected_count=None,
        number=1,
        check="volume",
        status="skipped",
        details={
            "note": "insufficient history",
            "history": {"2025-05": 8922},
            "history_starts": "2025-05",
            "usable_months": 1,
            "lookback_months": 6,
            "min_history_months": 3,
        },
    )
    return [
        SuiteResult(
            suite="raw_hotline_work_orders",
            table="raw.hotline_work_orders",
            success=False,
            checks=[failed],
            skipped=[skipped],
            layer="raw",
            title="12345热线工单（原始层）",
            description='见 <a href="#x">说明</a>',
            period_column="file_date",
        )
    ]


def test_report_page_is_self_contained_and_escapes_every_value():
    html = render_html(
        _results(),
        {"source_rows": 10},
        Period(date(2025, 6, 1)),
        "2025-07-02 08:00:00",
        ROOT / "report_templates",
    )
    page = _Tags()
    page.feed(html)
    tags = {t for t, _ in page.tags}
    assert tags.isdisjoint({"link", "script", "img", "a", "iframe", "object", "embed", "base"})
    assert all(not ({"src", "href"} & set(attrs)) for _, attrs in page.tags)
    assert "http://" not in html and "https://" not in html and "//" not in html
    assert "数据质量报告 2025年6月" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;a href=&#34;#x&#34;&gt;" in html
    assert "诉求类型<img" in page.text and "work_order_no：GD1；matter_type：<b>x</b>" in page.text
    assert (
        "历史数据不足，本次未检查：前 6 个月中可比较的月份只有 1 个（历史数据自 2025-05 起），至少需要 3 个"
        in page.text
    )


def test_report_page_says_when_everything_passed():
    results = _results()
    results[0].checks = [CheckResult("expect_column_values_to_not_be_null", "case_id", True, 5, 0, number=2)]
    results[0].success = True
    html = render_html(
        results, {}, Period(date(2025, 6, 1)), "2025-07-02 08:00:00", ROOT / "report_templates"
    )
    assert "执行的 1 项检查全部通过，可以发布本月报告和数据抽取。另有 1 项因历史数据不足未检查" in html
    assert "未通过的检查" not in html
