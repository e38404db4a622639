"""The half-year work summary: prose placeholders, GB/T 9704 layout read back from the PDF, PDF/A.

The PDF is rendered by real WeasyPrint from the shipped template and the
shipped 2025H1 prose file, with figures shaped like the warehouse's rows;
poppler's tools read page size, text positions and fonts back. The e2e module
checks the demo's summary against SQL on the warehouse.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import page_png

from xinfang.config import BUREAU_TZ
from xinfang.orchestration.schedules import halfyear_label_for, halfyear_run_time
from xinfang.publish import halfyear_context as hc
from xinfang.publish.halfyear_report import assemble_context
from xinfang.publish.prose import ProseError, join_lines, parse_prose
from xinfang.reports.render import render_pdf

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "report_templates"
PROSE = TEMPLATES / "prose" / "2025H1.yml"
H1 = hc.HalfYear(2025, 1)
MM = 72 / 25.4  # points per millimetre

# A 2025H1 row shaped like marts.rpt_halfyear_indicators, with the seed document's figures.
ROW: dict[str, Any] = {
    "half_year": "2025H1",
    "petitions_received": 12_296,
    "petitions_received_prev_year": 13_926,
    "petitions_change_yoy": -0.117,
    "online_petitions": 10_452,
    "online_share": 0.8500,
    "online_share_change_pp_yoy": 18.02,
    "repeat_share": 0.1581,
    "repeat_share_change_pp_yoy": -3.88,
    "first_handling_resolution_rate": 0.9234,
    "first_petitions": 10_353,
    "first_petitions_judged": 10_353,
    "first_handling_resolution_change_pp_yoy": 5.61,
    "satisfaction_rate": 0.9149,
    "satisfaction_change_pp_yoy": 1.7,
    "satisfaction_best_in_3_years": True,
    "repeats_after_unsatisfied_share": 0.21,
    "mean_working_days_to_answer": 12.0,
    "legal_limit_days": 60,
    "share_under_legal_limit": 0.4,
    "group_petitions": 57,
    "escalated_petitions": 31,
    "township_full_time_ratio": 0.68,
    "training_classes": 4,
    "training_person_times": 320,
    "cadres_sent_down": 15,
    "cadres_brought_up": 20,
    "cadres_promoted": 7,
}
EXTRA: dict[str, Any] = {
    "hotline_solved": 412,
    "hotline_livelihood_share": 0.65,
    "warnings_issued": 14,
    "risks_defused": 9,
    "risk_months": [f"2025-0{m}-01" for m in range(1, 7)],
    "risk_period": "上半年",
    "risk_since": "1月",
    "bounced_departments": [
        {"department_code": "SZ02", "department_name": "市住房和城乡建设局", "bounces": 40, "matters": 31},
        {"department_code": "SZ03", "department_name": "市自然资源和规划局", "bounces": 22, "matters": 20},
    ],
}
PREVIOUS = {
    "online_share": 0.67,
    "repeat_share": 0.197,
    "first_handling_resolution_rate": 0.867,
    "satisfaction_rate": 0.898,
    "mean_working_days_to_answer": 15.5,
    "share_under_legal_limit": 0.26,
    "repeats_after_unsatisfied_share": 0.24,
    "group_petitions": 70,
    "escalated_petitions": 40,
    "township_full_time_ratio": 0.6,
    "training_classes": 3,
    "training_person_times": 250,
    "cadres_sent_down": 10,
    "cadres_brought_up": 12,
    "cadres_promoted": 5,
    "online_petitions": 9330,
}
QUALITY = {"period": "2025-06", "totals": {"suites": 7, "checks": 96}}


def _context(**changes: Any) -> dict[str, Any]:
    months = H1.months()
    context = assemble_context(
        H1,
        ROW | changes.pop("row", {}),
        EXTRA,
        previous=changes.pop("previous", PREVIOUS),
        monthly=[
            {"month_start": m, "petitions_received": 2000 + 10 * i, "previous_year": 2300}
            for i, m in enumerate(months)
        ],
        districts=[
            {"district_name": "江东区", "current": 3100, "previous": 3500},
            {"district_name": "临河县", "current": 2000, "previous": 2100},
        ],
        progress=changes.pop("progress", []),
        next_targets=[
            {
                "target_code": "first_handling_resolution_rate",
                "target_name": "初信初访一次性化解率",
                "comparison": ">=",
                "target_value": 0.95,
                "unit": "ratio",
                "set_in": "2025H1",
                "month_start": date(2025, 6, 1),
                "actual_value": 0.9012,
                "baseline_value": 0.9012,
                "is_final": False,
                "is_met": False,
                "is_baseline": True,
            }
        ],
        quality=QUALITY,
        prose_file=changes.pop("prose_file", PROSE),
    )
    return context | {"revision": 1, "generated_at": "2025-07-02 10:00"} | changes


@pytest.fixture(scope="module")
def summary_pdf(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("halfyear") / "summary.pdf"
    render_pdf("halfyear_summary.html.j2", _context(), out, templates_dir=TEMPLATES)
    return out


def _bbox_lines(pdf: Path) -> tuple[list[tuple[float, float]], list[list[dict]]]:
    """Per page: (width, height) and the text lines with their boxes (points, origin top-left)."""
    xhtml = subprocess.run(
        ["pdftotext", "-bbox-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    root = ET.fromstring(re.sub(r'\sxmlns="[^"]+"', "", xhtml, count=1))
    sizes, pages = [], []
    for page in root.iter("page"):
        sizes.append((float(page.get("width")), float(page.get("height"))))
        lines = []
        for line in page.iter("line"):
            words = [w.text or "" for w in line.iter("word")]
            lines.append(
                {
                    "text": "".join(words),
                    "x0": float(line.get("xMin")),
                    "x1": float(line.get("xMax")),
                    "y0": float(line.get("yMin")),
                    "y1": float(line.get("yMax")),
                }
            )
        pages.append(lines)
    return sizes, pages


def _text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True).stdout


# --- figures as the summary writes them ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.85, "85%"),
        (0.923, "92.3%"),
        (0.9234, "92.3%"),
        (0.0, "0%"),
        (1.0, "100%"),
        (0.0005, "0.1%"),
        (None, "—"),
    ],
)
def test_percentages_drop_a_trailing_zero_decimal(value, expected):
    assert hc.pct(value) == expected


def test_volumes_changes_and_points_in_words():
    assert hc.wan(12_296) == "1.23" and hc.wan(12_350) == "1.24"
    assert hc.change_words(-0.117) == "下降11.7%" and hc.change_words(0.0004) == "持平"
    assert hc.change_words(0.05) == "上升5%"
    assert hc.pp_words(5.61) == "提升5.6个百分点" and hc.pp_words(-3.88) == "下降3.9个百分点"
    assert hc.pp_words(18.02) == "提升18个百分点" and hc.pp_words(0.04) == "持平"
    assert hc.pp_words(1.2, up="上升") == "上升1.2个百分点"
    assert hc.number(12.0) == "12" and hc.number(11.46) == "11.5"


def test_half_years_and_their_schedule():
    assert hc.HalfYear.parse("2025h1") == H1 and H1.label == "2025H1"
    assert (H1.start, H1.end, H1.last_month) == (date(2025, 1, 1), date(2025, 7, 1), date(2025, 6, 1))
    assert hc.HalfYear(2025, 2).next == hc.HalfYear(2026, 1) and H1.previous == hc.HalfYear(2024, 2)
    with pytest.raises(ValueError, match="expected YYYYH1 or YYYYH2"):
        hc.HalfYear.parse("2025-06")
    # The DAG runs at 10:00 on 2 July for H1 and on 2 January for the year before's H2.
    for label in ("2025H1", "2025H2"):
        assert halfyear_label_for(halfyear_run_time(label)) == label
    assert halfyear_run_time("2025H2") == datetime(2026, 1, 2, 10, 0, tzinfo=BUREAU_TZ)
    assert halfyear_label_for(datetime(2025, 7, 1, 1, 0, tzinfo=BUREAU_TZ)) == "2025H1"


# --- prose ---------------------------------------------------------------------------------------------


def test_prose_file_is_filled_with_the_figures():
    context = _context()
    prose = context["prose"]
    assert prose.title == "市信访局2025年上半年工作总结暨下半年工作计划"
    assert "全市共受理信访总量1.23万件次，同比下降11.7%" in prose.achievements_overview
    assert "初信初访一次性化解率达92.3%，同比提升5.6个百分点" in prose.achievements_overview
    assert "重复信访占比降至15.8%，较去年同期下降3.9个百分点" in prose.achievements_overview
    assert "满意度达91.5%，创近三年新高" in prose.achievements_overview
    assert [len(p.points) for p in prose.achievements] == [3, 3, 3]
    assert len(prose.problems) == 4 and len(prose.plan) == 5
    paragraphs = re.findall(r'"(?:[^"\\]|\\.)*"', json.dumps(dataclasses.asdict(prose), ensure_ascii=False))
    assert len(paragraphs) > 60
    assert not [p for p in paragraphs if "{" in p or "}" in p]
    # Lines of the file join without spaces between Chinese characters.
    assert " " not in prose.preamble


def test_a_first_handling_rate_still_in_its_follow_up_is_marked_provisional():
    prose = _context(row={"first_petitions_judged": 4_281})["prose"]
    assert "初信初访一次性化解率达92.3%（暂计），同比提升5.6个百分点" in prose.achievements_overview


def test_satisfaction_that_is_not_a_record_is_compared_with_last_year():
    prose = _context(row={"satisfaction_best_in_3_years": False, "satisfaction_change_pp_yoy": -0.4})["prose"]
    assert "满意度达91.5%，较去年同期下降0.4个百分点" in prose.achievements_overview


def test_wrong_placeholders_and_missing_paragraphs_are_all_listed():
    document = yaml.safe_load(PROSE.read_text(encoding="utf-8"))
    document["achievements"]["overview"] = document["achievements"]["overview"].replace(
        "{petitions_received_wan}", "{petitions_recieved_wan}"
    )
    document["problems"]["points"][1]["text"] = "{most_bounced_departments:>10}退回较多，另有{}。"
    del document["plan"]["parts"][2]["lead"]
    document["closing"] = "下半年{year"
    figures = hc.figures(ROW, EXTRA, H1)
    with pytest.raises(ProseError) as caught:
        parse_prose(document, "2025H1", figures, source="prose/2025H1.yml")
    message = str(caught.value)
    assert message.startswith("prose/2025H1.yml: 5 problem(s)")
    assert (
        "achievements.overview: unknown placeholder {petitions_recieved_wan} "
        "(did you mean {petitions_received_wan}?)" in message
    )
    assert (
        "problems.points[2].text: placeholder {most_bounced_departments:>10} is not a plain name" in message
    )
    assert "problems.points[2].text: placeholder {} is not a plain name" in message
    assert "plan.parts[3].lead: paragraph missing or empty" in message
    assert "closing: unbalanced brace" in message


def test_more_points_than_the_numerals_and_an_empty_title_are_errors():
    document = yaml.safe_load(PROSE.read_text(encoding="utf-8"))
    document["problems"]["points"] = [{"title": f"问题{n}", "text": "内容。"} for n in range(11)]
    document["title"] = []
    with pytest.raises(ProseError) as caught:
        parse_prose(document, "2025H1", hc.figures(ROW, EXTRA, H1))
    assert "problems.points: 11 points; at most 10 (一是…十是)" in str(caught.value)
    assert "title: empty list" in str(caught.value)


def test_a_missing_rate_fails_the_sentence_instead_of_printing_a_dash():
    figures = hc.figures(ROW | {"township_full_time_ratio": None}, EXTRA, H1)
    assert figures["township_full_time_ratio"] is None
    document = yaml.safe_load(PROSE.read_text(encoding="utf-8"))
    with pytest.raises(
        ProseError, match=r"problems\.points\[1\]\.text: placeholder \{township_full_time_ratio\}"
    ):
        parse_prose(document, "2025H1", figures)


def test_a_figure_the_warehouse_lacks_is_an_error_not_a_blank():
    figures = hc.figures(ROW, EXTRA | {"warnings_issued": None, "risks_defused": None}, H1)
    document = yaml.safe_load(PROSE.read_text(encoding="utf-8"))
    with pytest.raises(ProseError, match=r"placeholder \{warnings_issued\} has no value in the warehouse"):
        parse_prose(document, "2025H1", figures, source="2025H1.yml")


def test_the_file_must_be_the_half_years_own():
    document = yaml.safe_load(PROSE.read_text(encoding="utf-8"))
    with pytest.raises(ProseError, match=r"half_year: says '2025H1', but this is the file for 2025H2"):
        parse_prose(document, "2025H2", hc.figures(ROW, EXTRA, hc.HalfYear(2025, 2)))


def test_a_missing_prose_file_says_what_to_do(tmp_path):
    with pytest.raises(ProseError, match=r"no prose file for 2025H1: copy the previous half-year's file"):
        _context(prose_file=tmp_path / "2025H1.yml")


def test_joining_wrapped_lines():
    assert (
        join_lines("信访总量\n  {x}万件次，\n同比 下降。12345 热线 and more")
        == "信访总量{x}万件次，同比下降。12345热线and more"
    )


# --- the PDF -------------------------------------------------------------------------------------------


def test_text_carries_the_outline_and_figures(summary_pdf):
    text = re.sub(r"\s+", "", _text(summary_pdf))
    for heading in (
        "一、2025年上半年工作开展情况及成效",
        "（一）聚焦源头治理，矛盾化解质效实现新提升",
        "二、存在的主要问题",
        "三、下半年重点工作计划",
        "（五）以“制度创新”为保障，构建长效工作机制",
    ):
        assert heading in text, heading
    for figure in ("1.23万件次", "同比下降11.7%", "92.3%", "15.8%", "91.5%", "线上信访占比达85%"):
        assert figure in text, figure
    assert "一是深化“网格+信访”融合机制。" in text
    assert "附件：1．主要指标统计表" in text
    assert "市信访局2025年7月2日" in text
    assert "下半年工作目标及基线" in text and "≥95%" in text


def test_layout_follows_gbt_9704(summary_pdf):
    sizes, pages = _bbox_lines(summary_pdf)
    assert len(pages) >= 5
    for width, height in sizes:  # A4
        assert width == pytest.approx(210 * MM, abs=0.5) and height == pytest.approx(297 * MM, abs=0.5)
    left, right, top, bottom = 28 * MM, (210 - 26) * MM, 37 * MM, (297 - 35) * MM

    def body(lines):
        return [ln for ln in lines if ln["y1"] <= bottom + 1]

    def folio(lines):
        return [ln for ln in lines if ln["y0"] > bottom + 1]

    for n, lines in enumerate(pages, start=1):
        text_lines = body(lines)
        assert min(ln["x0"] for ln in text_lines) >= left - 0.5, n
        assert max(ln["x1"] for ln in text_lines) <= right + 0.5, n
        # Glyph boxes reach a little above the line box (the faces' ascent), hence 2 pt.
        assert min(ln["y0"] for ln in text_lines) >= top - 2, n
        # "— N —" in 4号 (14 pt), 7 mm below the type area; odd pages right, even left, one character in.
        (number,) = folio(lines)
        assert number["text"] == f"—{n}—", number
        assert number["y0"] >= bottom + 7 * MM - 1 and number["y0"] <= bottom + 7 * MM + 6
        if n % 2:
            assert number["x1"] == pytest.approx(right - 14, abs=1.5), n
        else:
            assert number["x0"] == pytest.approx(left + 14, abs=1.5), n

    # A page of running text: 22 lines at the 28.9 pt pitch; full lines hold 28 characters, margin to margin.
    page2 = sorted(body(pages[1]), key=lambda ln: ln["y0"])
    assert len(page2) == 22
    pitches = [b["y0"] - a["y0"] for a, b in itertools.pairwise(page2)]
    assert all(p == pytest.approx(28.9, abs=0.6) for p in pitches), pitches
    # Hanzi and full-width punctuation only (Latin, digits and curly quotes are narrower).
    full = [
        ln
        for ln in page2
        if ln["x0"] < left + 2 and ln["x1"] > right - 3 and re.fullmatch(r"[^\x00-\x7f“”‘’]+", ln["text"])
    ]
    assert full, page2
    assert {len(ln["text"]) for ln in full} == {28}


def test_progress_on_the_targets_set_last_time_is_an_appendix(tmp_path):
    progress = [
        {
            "target_code": "township_full_time_ratio",
            "target_name": "乡镇（街道）信访专干配备率",
            "comparison": ">=",
            "target_value": 1.0,
            "unit": "ratio",
            "set_in": "2024H2",
            "month_start": date(2025, 6, 1),
            "actual_value": 0.68,
            "baseline_value": 0.61,
            "is_final": True,
            "is_met": False,
            "is_baseline": False,
        },
        {
            "target_code": "backlog_open",
            "target_name": "积案存量",
            "comparison": "<=",
            "target_value": 0,
            "unit": "matters",
            "set_in": "2024H2",
            "month_start": date(2025, 6, 1),
            "actual_value": 0,
            "baseline_value": 37,
            "is_final": True,
            "is_met": True,
            "is_baseline": False,
        },
    ]
    out = tmp_path / "progress.pdf"
    render_pdf("halfyear_summary.html.j2", _context(progress=progress), out, templates_dir=TEMPLATES)
    text = re.sub(r"\s+", "", _text(out))
    # -layout keeps a table row on one line.
    layout = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    )
    section = re.sub(r"[ \t]+", "", layout.stdout.rsplit("上期确定目标完成情况", 1)[1])
    assert "乡镇（街道）信访专干配备率≥100%61%68%2025年6月未达成" in section
    assert "积案存量≤03702025年6月已达成" in section
    assert "附件：1．主要指标统计表" in text and "4．上期确定目标完成情况" in text


def test_fonts_are_embedded(summary_pdf):
    out = subprocess.run(["pdffonts", str(summary_pdf)], check=True, capture_output=True, text=True).stdout
    rows = out.splitlines()[2:]
    assert rows
    assert all(re.search(r"\byes\s+yes\s+(yes|no)\s+\d+\s+\d+\s*$", row) for row in rows), out
    names = " ".join(rows)
    assert "XF-Song-Bold" in names and "XF-Hei" in names and "XF-Kai" in names


def test_pdfa_option_writes_pdf_a_3b(tmp_path):
    out = tmp_path / "archive.pdf"
    render_pdf("halfyear_summary.html.j2", _context(), out, templates_dir=TEMPLATES, pdf_variant="pdf/a-3b")
    meta = subprocess.run(["pdfinfo", "-meta", str(out)], check=True, capture_output=True, text=True).stdout
    assert 'pdfaid:part="3"' in meta and 'pdfaid:conformance="B"' in meta
    assert "市信访局2025年上半年工作总结暨下半年工作计划" in meta
    plain = tmp_path / "plain.pdf"
    render_pdf("halfyear_summary.html.j2", _context(), plain, templates_dir=TEMPLATES)
    assert (
        "pdfaid"
        not in subprocess.run(
            ["pdfinfo", "-meta", str(plain)], check=True, capture_output=True, text=True
        ).stdout
    )


def test_page_images_for_the_record(summary_pdf, tmp_path):
    # Page 1 and the first appendix page as PNG, kept next to the PDF for a human look.
    _, pages = _bbox_lines(summary_pdf)
    appendix = next(n for n, lines in enumerate(pages, start=1) if any(ln["text"] == "附件1" for ln in lines))
    for page in (1, appendix):
        png = page_png(summary_pdf, summary_pdf.with_name(f"page-{page}"), page=page, dpi=60)
        assert png.stat().st_size > 10_000


def test_the_docs_list_exactly_the_placeholders_there_are():
    docs = (ROOT / "docs" / "halfyear_summary.md").read_text(encoding="utf-8")
    section = docs.split("## Placeholders", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.MULTILINE))
    assert documented == set(hc.figures(ROW, EXTRA, H1))
