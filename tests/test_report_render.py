"""The monthly risk report, rendered by real WeasyPrint and read back with poppler's tools."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from factories import page_png
from jinja2 import UndefinedError

from xinfang.reports import render as render_module
from xinfang.reports.charts import band_chart_svg, bar_chart_svg, line_chart_svg
from xinfang.reports.fonts import FONTS_DIR, KAI, uncovered_chars
from xinfang.reports.render import FetchRefused, SafeURLFetcher, render_pdf

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "report_templates"
TEMPLATE = "monthly_risk_report.html.j2"
RARE = "堃犇"  # both outside GB2312, so outside the packaged subsets


def _alert(
    no: int, level: str, kind: str, title: str, dept: str, dept_name: str, co: str | None, co_name: str
):
    return {
        "alert_key": f"{kind}:{no}",
        "alert_no": no,
        "kind": kind,
        "level": level,
        "level_rank": {"红": 3, "黄": 2, "蓝": 1}[level],
        "title": title,
        "evidence": f"{title}的依据，涉及{no * 7}件。",
        "action": f"请{dept_name}会同{co_name}处置{title}。",
        "department_code": dept,
        "department_name": dept_name,
        "co_department_code": co,
        "co_department_name": co_name,
    }


def make_context() -> dict[str, Any]:
    wage = _alert(
        1,
        "红",
        "hotspot",
        "临河县临河镇“清江某建筑公司”相关诉求聚集",
        "SZ01",
        "市人社局",
        "QX369905",
        "临河县政府",
    )
    land = _alert(
        2, "黄", "surge", "高新区征地拆迁诉求激增", "SZ03", "市自然资源局", "QX369903", "高新区政府"
    )
    flood = _alert(3, "蓝", "outlook", "全市物业管理诉求预计上升", "SZ02", "市住建局", None, "各区县人民政府")
    band = {"lo95": 8.0, "lo80": 10.0, "mean": 13.0, "hi80": 16.0, "hi95": 19.0}
    return {
        "bureau_name": "市信访局",
        "period": {"year": 2025, "month": 6, "label": "2025年6月"},
        "revision": 2,
        "generated_at": "2025-07-02 08:00",
        "edition": None,
        "glance": {
            "indicators": {
                "petitions_received": 2100,
                "petitions_received_prev_month": 1934,
                "petitions_received_prev_year": 2411,
                "online_share": 0.8495,
                "online_share_change_pp_mom": -0.73,
                "online_share_change_pp_yoy": 18.02,
                "repeat_share": 0.1579,
                "repeat_share_change_pp_mom": 0.31,
                "repeat_share_change_pp_yoy": -3.92,
                "first_handling_resolution_rate": 0.9227,
                "first_handling_resolution_change_pp_mom": 0.0,
                "first_handling_resolution_change_pp_yoy": 5.67,
                "satisfaction_rate": 0.916,
                "satisfaction_change_pp_mom": 1.25,
                "satisfaction_change_pp_yoy": None,
            },
            "first_resolution_final": True,
            "first_resolution_latest": {"month_start": date(2025, 6, 1), "rate": 0.9227},
            "hotline": {"current": 5432, "prev_month": 5100, "prev_year": 4987},
            "grid": {"current": 876, "prev_month": 901, "prev_year": 812},
        },
        "alert_counts": {"红": 1, "黄": 1, "蓝": 1},
        "alerts": [wage, land, flood],
        "departments": [
            {"code": "SZ01", "name": "市人社局", "alerts": [wage]},
            {"code": "SZ03", "name": "市自然资源局", "alerts": [land]},
            {"code": "SZ02", "name": "市住建局", "alerts": [flood]},
        ],
        "co_led": [],
        "followups": [
            {
                "alert_key": "hotspot:1",
                "title": "临河县临河镇“清江某建筑公司”相关诉求聚集",
                "department_code": "SZ01",
                "department_name": "市人社局",
                "co_department_code": "QX369905",
                "previous_level": "黄",
                "current_level": "红",
                "outcome": "升级",
            },
            {
                "alert_key": "surge:9",
                "title": "南湖区物业管理诉求激增",
                "department_code": "SZ02",
                "department_name": "市住建局",
                "co_department_code": "QX369904",
                "previous_level": "蓝",
                "current_level": None,
                "outcome": "已消除",
            },
        ],
        "followup_counts": {"已消除": 1, "降级": 0, "持续": 0, "升级": 1},
        "previous_model_run": True,
        "quality": {
            "passed": True,
            "checks": 12,
            "failed": 0,
            "source_rows": 8437,
            "loaded_rows": 8434,
            "quarantined_rows": 3,
            "files": 33,
        },
        "model": {
            "backtest": {
                "series": 140,
                "median_mase": 0.83,
                "coverage80": 0.812,
                "coverage95": 0.947,
                "origins": 12,
            },
            "key_backtests": [
                {
                    "domain_name": "征地拆迁",
                    "area_name": "全市",
                    "mase": 0.91,
                    "coverage80": 0.75,
                    "coverage95": 1.0,
                }
            ],
            "hotspot_window_days": 30,
            "tag_agreement": 0.9312,
            "tagged_cases": 2011,
        },
        "charts": [
            {
                "key": "land",
                "name": "征地拆迁",
                "labels": ["25.04", "25.05", "25.06", "25.07", "25.08", "25.09"],
                "actual": [11, 14, 37, None, None, None],
                "bands": [None, band, band, band, band, band],
                "this_month": {"actual": 37, **band},
                "next_month": {"target_month": date(2025, 7, 1), "mean": 21.5, "lo80": 15.0, "hi80": 28.0},
            }
        ],
        "district_forecasts": [
            {
                "domain_name": "征地拆迁",
                "area_name": "高新区",
                "actual": 29,
                "mean": 4.2,
                "lo80": 2.0,
                "hi80": 7.0,
                "hi95": 9.0,
                "next_mean": 12.5,
            }
        ],
        "hotspots": [
            {
                "district_name": "临河县",
                "town_names": ["临河镇", "马渡镇"],
                "category_name": "欠薪讨薪",
                "subject": "清江某建筑公司",
                "n_cases": 31,
                "n_persons": 27,
                "n_group": 4,
                "level": "红",
            }
        ],
        "ledger": {
            "districts": [
                {"code": "369901", "name": "江东区", "红": 3, "黄": 17, "蓝": 240},
                {"code": "369905", "name": "临河县", "红": 9, "黄": 25, "蓝": 310},
            ],
            "totals": {"红": 12, "黄": 42, "蓝": 550},
            "prev_totals": {"红": 10, "黄": 40, "蓝": 530},
        },
    }


def make_edition(code: str = "SZ01") -> dict[str, Any]:
    """A department's edition of make_context(): only its own warnings, no city-wide sections."""
    ctx = make_context()
    mine = [a for a in ctx["alerts"] if code in (a["department_code"], a["co_department_code"])]
    for key in ("charts", "district_forecasts", "hotspots", "ledger"):
        del ctx[key]
    names = {a["department_code"]: a["department_name"] for a in ctx["alerts"]}
    ctx |= {
        "edition": {"code": code, "name": names.get(code, code)},
        "alerts": mine,
        "alert_counts": {lv: sum(1 for a in mine if a["level"] == lv) for lv in ("红", "黄", "蓝")},
        "departments": [d for d in ctx["departments"] if d["code"] == code],
        "followups": [f for f in ctx["followups"] if code in (f["department_code"], f["co_department_code"])],
    }
    ctx["followup_counts"] = {
        o: sum(1 for f in ctx["followups"] if f["outcome"] == o) for o in ("已消除", "降级", "持续", "升级")
    }
    return ctx


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def pdf_text(pdf: Path) -> str:
    return _run("pdftotext", "-layout", str(pdf), "-")


def reading_text(pdf: Path) -> str:
    """Text in reading order: a table cell's wrapped lines stay together (unlike -layout)."""
    return _run("pdftotext", str(pdf), "-")


def flat(text: str) -> str:
    """Text without whitespace, so line breaks and justification spaces do not split a figure."""
    return re.sub(r"\s+", "", text)


def pdf_fonts(pdf: Path) -> list[dict[str, str]]:
    lines = _run("pdffonts", str(pdf)).splitlines()[2:]
    fonts = []
    for line in lines:
        # Columns: name type... encoding emb sub uni object-id generation; the type has spaces.
        parts = line.split()
        fonts.append({"name": parts[0], "emb": parts[-5], "sub": parts[-4], "uni": parts[-3]})
    return fonts


def pdf_pages(pdf: Path) -> int:
    return int(re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", str(pdf)), re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def sample_pdf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, render_module.RenderResult]:
    out = tmp_path_factory.mktemp("report") / "monthly.pdf"
    result = render_pdf(TEMPLATE, make_context(), out, templates_dir=TEMPLATES_DIR)
    return out, result


def test_figures_from_context_appear(sample_pdf: tuple[Path, render_module.RenderResult]) -> None:
    pdf, _ = sample_pdf
    text = flat(pdf_text(pdf))
    ctx = make_context()
    expected = [
        ctx["bureau_name"],
        "月度风险预警报告",
        "（全本）",
        ctx["period"]["label"],
        f"第{ctx['revision']}版",
        ctx["generated_at"].replace(" ", ""),
        # 2100 vs 1934 and 2411; rounding half up on the decimal value.
        "本月全市登记信访事项2,100件，环比上升8.6%、同比下降12.9%",
        "12345热线工单5,432件，环比上升6.5%、同比上升8.9%",
        "网格排查矛盾纠纷876件，环比下降2.8%、同比上升7.9%",
        "网上信访占比85.0%（环比下降0.7个百分点，同比提高18.0个百分点）",
        "重复信访率15.8%（环比提高0.3个百分点，同比下降3.9个百分点）",
        "一次性化解率92.3%（环比持平，同比提高5.7个百分点）",
        "群众满意率91.6%（环比提高1.3个百分点）",
        "风险预警3条，其中红色预警1条、黄色预警1条、蓝色预警1条",
        "上月预警2条，本月已消除1条、降级0条、持续0条、升级1条",
        "本月全市征地拆迁类信访事项和矛盾纠纷37件，月初预测13件（80%预测区间10～16件），超出95%预测区间上限",
        "预计7月21.5件（80%预测区间15～28件）",
        "全市征地拆迁月度走势与预测",
        "高新区",
        "清江某建筑公司",
        "红色12件、黄色42件、蓝色550件（上月末分别为10件、40件、530件）",
        "【红色预警】临河县临河镇“清江某建筑公司”相关诉求聚集",
        "处置建议：请市人社局会同临河县政府处置",
        "南湖区物业管理诉求激增",
        "MASE）中位数为0.83，80%预测区间实际覆盖率81.2%，95%预测区间实际覆盖率94.7%",
        "对本月2,011件信访事项的分类与登记类别一致率为93.1%",
        "本月源数据8,437条",
        "入库8,434条",
        "隔离3条",
        "12项数据质量检查全部通过",
        "报告不含信访人个人信息",
    ]
    missing = [item for item in expected if flat(item) not in text]
    assert not missing, missing
    assert "None" not in text


def test_layout_cover_sections_and_page_numbers(
    sample_pdf: tuple[Path, render_module.RenderResult],
) -> None:
    pdf, result = sample_pdf
    pages = pdf_pages(pdf)
    assert pages >= 3 and result.pages == pages
    cover = _run("pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-")
    assert "月度风险预警报告" in flat(cover) and "内部资料" in cover
    assert not re.search(r"—\s*\d+\s*—", cover), "the cover carries no page number"
    for n in range(2, pages + 1):
        page = _run("pdftotext", "-f", str(n), "-l", str(n), "-layout", str(pdf), "-")
        assert re.search(rf"—\s*{n}\s*—", page), n
    text = pdf_text(pdf)
    headings = [line.strip()[:2] for line in text.splitlines() if re.match(r"\s*[一二三四五六七]、", line)]
    assert headings == ["一、", "二、", "三、", "四、", "五、", "六、", "七、"]


def test_fonts_embedded_and_cjk(sample_pdf: tuple[Path, render_module.RenderResult]) -> None:
    pdf, _ = sample_pdf
    fonts = pdf_fonts(pdf)
    assert fonts
    assert all(font["emb"] == "yes" for font in fonts), fonts
    names = {re.sub(r"^[A-Z]{6}\+", "", font["name"]) for font in fonts}
    # Title, level-1 headings and body come from the packaged subsets, not host fonts.
    assert {"XF-Song-Bold", "XF-Hei", "XF-Kai"} <= names, names


def test_chart_is_vector(sample_pdf: tuple[Path, render_module.RenderResult]) -> None:
    pdf, _ = sample_pdf
    image_rows = _run("pdfimages", "-list", str(pdf)).splitlines()[2:]
    assert image_rows == []
    # The chart's title and legend are real text, which a raster chart would not give.
    text = flat(pdf_text(pdf))
    assert "全市征地拆迁月度走势与预测" in text and "95%区间" in text


def test_page_one_renders_to_png(sample_pdf: tuple[Path, render_module.RenderResult], tmp_path: Path) -> None:
    pdf, _ = sample_pdf
    png = page_png(pdf, tmp_path / "page1", page=1)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    # A4 at 50 dpi: 413 x 585 pixels, portrait.
    assert width in (413, 414) and height in (584, 585)
    ink = _run("pdftotext", "-f", "1", "-l", "1", str(pdf), "-")
    assert ink.strip(), "page 1 has no text"


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """A local TCP port that records whether anything connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_hostile_text_is_printed_as_text_and_never_fetched(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    hostile = (
        f'<img src="http://127.0.0.1:{port}/x.png"><img src="file:///etc/passwd">'
        '<link rel=stylesheet href="file:///etc/passwd"><style>body{background:url(https://example.org/a)}</style>'
    )
    ctx = make_context()
    ctx["alerts"][0]["title"] = hostile
    ctx["departments"][0]["alerts"][0]["evidence"] = hostile
    ctx["hotspots"][0]["subject"] = hostile
    ctx["followups"][0]["title"] = hostile
    result = render_pdf(TEMPLATE, ctx, tmp_path / "hostile.pdf", templates_dir=TEMPLATES_DIR)
    assert flat(reading_text(result.path)).count(flat(hostile)) >= 3
    assert result.refused_urls == ()
    assert _connections(listener) == 0
    assert "root:" not in pdf_text(result.path)


def test_unescaped_markup_still_cannot_fetch(tmp_path: Path, listener: socket.socket) -> None:
    """Defence in depth: even markup that bypasses escaping is refused by the URL fetcher."""
    port = listener.getsockname()[1]
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "raw.html.j2").write_text("<html><body><p>正文</p>{{ payload|safe }}</body></html>")
    outside = tmp_path / "secret.css"
    outside.write_text("p { color: red }")
    (templates / "link.css").symlink_to(outside)
    payload = (
        f'<img src="http://127.0.0.1:{port}/x.png">'
        '<link rel=stylesheet href="file:///etc/passwd">'
        '<link rel=stylesheet href="../secret.css">'
        '<link rel=stylesheet href="link.css">'
    )
    result = render_pdf("raw.html.j2", {"payload": payload}, tmp_path / "raw.pdf", templates_dir=templates)
    assert result.pages == 1
    refused = set(result.refused_urls)
    assert f"http://127.0.0.1:{port}/x.png" in refused
    assert "file:///etc/passwd" in refused
    assert outside.as_uri() in refused
    assert (templates / "link.css").as_uri() in refused
    assert _connections(listener) == 0


def test_url_fetcher_rules(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.css").write_text("p {}")
    (tmp_path / "out.css").write_text("p {}")
    fetcher = SafeURLFetcher([root])
    assert fetcher.fetch((root / "ok.css").as_uri()).read() == b"p {}"
    for url in (
        "http://127.0.0.1:9/x.png",
        "https://example.org/x.css",
        "data:text/css,p{}",
        "ftp://example.org/x",
        (tmp_path / "out.css").as_uri(),
        root.as_uri() + "/../out.css",
        "file:///etc/passwd",
        root.as_uri(),  # a folder, not a file
    ):
        with pytest.raises(FetchRefused):
            fetcher.fetch(url)
    assert len(fetcher.refused) == 8


def test_rare_character_uses_fallback_font(tmp_path: Path) -> None:
    for ch in RARE:
        with pytest.raises(UnicodeEncodeError):
            ch.encode("gb2312")
    assert uncovered_chars(f"本月{RARE}本月") == list(RARE)
    ctx = make_context()
    ctx["hotspots"][0]["subject"] = f"{RARE[0]}{RARE[1]}物业管理公司"
    result = render_pdf(TEMPLATE, ctx, tmp_path / "rare.pdf", templates_dir=TEMPLATES_DIR)
    assert result.uncovered_chars == 2
    text = flat(reading_text(result.path))
    assert f"{RARE[0]}{RARE[1]}物业管理公司" in text
    fonts = pdf_fonts(result.path)
    assert all(font["emb"] == "yes" for font in fonts)
    assert any(font["name"].endswith("+XF-Fallback") for font in fonts), fonts


def test_missing_optional_values_and_no_warnings(tmp_path: Path) -> None:
    ctx = make_context()
    ind = ctx["glance"]["indicators"]
    ind["petitions_received_prev_month"] = None
    ind["petitions_received_prev_year"] = 0
    ind["satisfaction_change_pp_mom"] = None
    ctx["glance"]["hotline"] = {"current": 0, "prev_month": None, "prev_year": None}
    # June's first petitions are still inside their 90-day follow-up: February is the latest judged month.
    ctx["glance"]["first_resolution_final"] = False
    ctx["glance"]["first_resolution_latest"] = {"month_start": date(2025, 2, 1), "rate": 0.9234}
    ctx.update(alerts=[], departments=[], followups=[], hotspots=[], previous_model_run=False)
    ctx["alert_counts"] = dict.fromkeys(("红", "黄", "蓝"), 0)
    ctx["model"].update(backtest=None, key_backtests=[], tag_agreement=None)
    ctx["ledger"]["prev_totals"] = None
    ctx["quality"].update(passed=False, failed=2)
    result = render_pdf(TEMPLATE, ctx, tmp_path / "sparse.pdf", templates_dir=TEMPLATES_DIR)
    text = flat(pdf_text(result.path))
    for expected in (
        "本月全市登记信访事项2,100件；",
        "12345热线工单0件；",
        "群众满意率91.6%。",
        "本月初信初访尚在答复后90日跟踪期内，一次性化解率以最近已满跟踪期的2025年2月计为92.3%；",
        "本月未发现需要预警的风险事项",
        "近30日未发现新兴热点聚集",
        "本月无风险预警",
        "上月未运行风险预警模型",
        "12项数据质量检查中有2项未通过",
    ):
        assert flat(expected) in text, expected
    assert "MASE" not in text and "一致率" not in text and "上月末" not in text
    assert "None" not in text


def test_department_edition_carries_only_its_own_warnings(tmp_path: Path) -> None:
    result = render_pdf(TEMPLATE, make_edition("SZ03"), tmp_path / "sz03.pdf", templates_dir=TEMPLATES_DIR)
    text = flat(pdf_text(result.path))
    assert "（市自然资源局专版）" in text
    assert "高新区征地拆迁诉求激增" in text
    for other in (
        "清江某建筑公司",
        "全市物业管理诉求预计上升",
        "南湖区物业管理诉求激增",
        "热点聚集",
        "走势与预测",
    ):
        assert flat(other) not in text, other
    headings = [
        ln.strip()[:2] for ln in pdf_text(result.path).splitlines() if re.match(r"\s*[一二三四五六七]、", ln)
    ]
    assert headings == ["一、", "二、", "三、", "四、"]
    assert "上月无涉及本单位的预警事项" in text


def test_atomic_write_and_strict_context(tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    out.write_bytes(b"old")
    render_pdf(TEMPLATE, make_context(), out, templates_dir=TEMPLATES_DIR)
    assert out.read_bytes().startswith(b"%PDF-")
    broken = make_context()
    del broken["quality"]
    with pytest.raises(UndefinedError):
        render_pdf(TEMPLATE, broken, out, templates_dir=TEMPLATES_DIR)
    assert out.read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]


def test_warm_state_is_reused_and_text_not_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    render_pdf(TEMPLATE, make_context(), tmp_path / "a.pdf", templates_dir=TEMPLATES_DIR)
    font_config = render_module._FONT_CONFIG
    ctx = make_context()
    ctx["alerts"][0]["evidence"] = "独特的敏感原文内容"
    ctx["departments"][0]["alerts"][0]["evidence"] = "独特的敏感原文内容"
    with caplog.at_level(logging.DEBUG, logger="xinfang"):
        result = render_pdf(TEMPLATE, ctx, tmp_path / "b.pdf", templates_dir=TEMPLATES_DIR)
    assert render_module._FONT_CONFIG is font_config
    assert f"{result.pages} pages" in caplog.text
    assert "独特的敏感原文内容" not in caplog.text


def test_bar_chart_svg_escapes_and_is_well_formed() -> None:
    svg = bar_chart_svg(["东城区", "<script>&"], [3, 7.5], title="标题<b>", unit="件", width_mm=120)
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert len(root.findall("s:rect", ns)) == 2
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "<script>&" in texts
    assert "7.5" in texts and "3" in texts
    assert "<script>" not in svg
    assert root.get("width") == "120mm"


def test_line_chart_svg_breaks_at_missing_values() -> None:
    svg = line_chart_svg(
        ["1月", "2月", "3月", "4月"],
        {"受理量": [10, None, 12, 15], "办结量": [8, 9, 11, 14]},
        title="趋势",
        unit="件",
    )
    root = ET.fromstring(svg)
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    # 受理量 has one two-point run after the gap (a lone point is a marker only); 办结量 is one run.
    assert len(paths) == 2
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 7
    with pytest.raises(ValueError):
        line_chart_svg(["1月"], {"x": [1, 2]}, title="t", unit="件")


def test_band_chart_svg_draws_bands_where_forecasts_exist() -> None:
    band = {"lo95": 1.0, "lo80": 2.0, "mean": 3.0, "hi80": 4.0, "hi95": 5.0}
    svg = band_chart_svg(
        ["1月", "2月", "3月", "4月"], [3, 6, None, None], [None, band, band, band], title="走势<x>", unit="件"
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    paths = root.findall(f"{ns}path")
    # Two closed band areas, the dashed mean line, the actual line.
    assert len(paths) == 4
    assert sum(1 for p in paths if p.get("d", "").endswith("Z")) == 2
    assert len(root.findall(f"{ns}circle")) == 2
    assert "走势<x>（单位：件）" in [t.text for t in root.iter(f"{ns}text")]
    with pytest.raises(ValueError):
        band_chart_svg(["1月"], [1, 2], [None], title="t", unit="件")


def test_packaged_fonts_present_with_licences() -> None:
    names = {p.name for p in FONTS_DIR.iterdir()}
    assert {
        "XFSong-Bold.otf",
        "XFHei-Regular.otf",
        "XFKai-Regular.ttf",
        "XFKai-Bold.ttf",
        "README.md",
    } <= names
    assert any("copyright" in name.lower() or "ofl" in name.lower() for name in names)
    assert uncovered_chars("本月共受理群众诉求，环比上升12.2%▲▼±×÷≥≤％‰—…·", KAI) == []
