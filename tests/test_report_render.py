"""The monthly risk report, rendered by real WeasyPrint and read back with poppler's tools."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from xinfang.reports import render as render_module
from xinfang.reports.charts import bar_chart_svg, line_chart_svg
from xinfang.reports.fonts import FONTS_DIR, KAI, uncovered_chars
from xinfang.reports.render import FetchRefused, SafeURLFetcher, render_pdf

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "report_templates"
TEMPLATE = "monthly_risk_report.html.j2"
RARE = "堃犇"  # both outside GB2312, so outside the packaged subsets


def make_context() -> dict[str, Any]:
    return {
        "bureau_name": "市信访局",
        "period": {"year": 2025, "month": 6, "label": "2025年6月"},
        "revision": 2,
        "generated_at": "2025-07-02 08:00",
        "headline": {
            "total": 1234,
            "prev_total": 1100,
            "closed": 1003,
            "closed_rate": 0.8128,
            "on_time_rate": 0.934,
            "satisfaction_rate": 0.915,
            "quarantined": 3,
        },
        "by_district": [
            {"name": "东城区", "count": 317},
            {"name": "西城区", "count": 268},
            {"name": "高新技术产业开发区", "count": 211},
            {"name": "南湖区", "count": 187},
            {"name": "北山县", "count": 151},
        ],
        "by_category": [
            {"code": "602015", "name": "城乡建设", "count": 320, "share": 0.2593},
            {"code": "602006", "name": "劳动社保", "count": 120, "share": 0.0972},
            {"code": "602013", "name": "农村农业", "count": 110, "share": 0.0891},
        ],
        "by_matter_type": [{"name": "投诉", "count": 512}, {"name": "求助", "count": 388}],
        "warnings": [
            {
                "level": "红",
                "district": "东城区",
                "category": "劳动社保",
                "summary": "某工地拖欠农民工工资，涉及23人",
                "department": "区人社局",
                "action": "县级领导包案",
            },
            {
                "level": "蓝",
                "district": "南湖区",
                "category": "城乡建设",
                "summary": "小区物业管理纠纷",
                "department": "南湖街道",
                "action": "网格员入户化解",
            },
        ],
        "quality": {
            "passed": True,
            "checks": 12,
            "failed": 0,
            "source_rows": 1237,
            "loaded_rows": 1234,
            "quarantined_rows": 3,
        },
    }


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def pdf_text(pdf: Path) -> str:
    return _run("pdftotext", "-layout", str(pdf), "-")


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
    h = ctx["headline"]
    change = (h["total"] - h["prev_total"]) / h["prev_total"] * 100
    expected = [
        ctx["bureau_name"],
        "月度风险预警报告",
        ctx["period"]["label"],
        f"第{ctx['revision']}版",
        ctx["generated_at"].replace(" ", ""),
        f"本月共受理群众诉求{h['total']:,}件",
        f"环比上升{change:.1f}%",
        f"上月{h['prev_total']:,}件",
        f"已办结{h['closed']:,}件",
        "办结率81.3%",
        "按时办结率93.4%",
        "群众满意率91.5%",
        f"另有{h['quarantined']}条记录",
        "投诉512件",
        "求助388件",
        f"本月源数据{ctx['quality']['source_rows']:,}条",
        f"入库{ctx['quality']['loaded_rows']:,}条",
        f"隔离{ctx['quality']['quarantined_rows']}条",
        "12项数据质量检查全部通过",
        "本月共发现需预警事项2项",
        "红色预警",
        "蓝色预警",
        "某工地拖欠农民工工资，涉及23人",
        "责任单位：区人社局",
        "处置建议：网格员入户化解",
    ]
    for district in ctx["by_district"]:
        expected += [district["name"], str(district["count"])]
    for category in ctx["by_category"]:
        expected += [
            category["code"],
            category["name"],
            str(category["count"]),
            f"{category['share'] * 100:.1f}%",
        ]
    missing = [item for item in expected if flat(item) not in text]
    assert not missing, missing
    assert "None" not in text


def test_layout_one_or_two_pages_with_page_numbers(
    sample_pdf: tuple[Path, render_module.RenderResult],
) -> None:
    pdf, result = sample_pdf
    pages = pdf_pages(pdf)
    assert 1 <= pages <= 2
    assert result.pages == pages
    text = pdf_text(pdf)
    for n in range(1, pages + 1):
        assert re.search(rf"—\s*{n}\s*—", text), n
    headings = [line.strip() for line in text.splitlines() if re.match(r"\s*[一二三四]、", line)]
    assert [h[:2] for h in headings] == ["一、", "二、", "三、", "四、"]


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
    # The chart's title and axis labels are real text, which a raster chart would not give.
    assert "各区县受理量" in flat(pdf_text(pdf))


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


def test_hostile_summary_is_printed_as_text_and_never_fetched(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    hostile = f'<img src="http://127.0.0.1:{port}/x.png"><link rel=stylesheet href="file:///etc/passwd">'
    ctx = make_context()
    ctx["warnings"][0]["summary"] = hostile
    result = render_pdf(TEMPLATE, ctx, tmp_path / "hostile.pdf", templates_dir=TEMPLATES_DIR)
    assert flat(hostile) in flat(pdf_text(result.path))
    assert result.refused_urls == ()
    assert _connections(listener) == 0


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
    ctx["warnings"][1]["summary"] = f"张{RARE[0]}与李{RARE[1]}反映小区物业管理纠纷"
    result = render_pdf(TEMPLATE, ctx, tmp_path / "rare.pdf", templates_dir=TEMPLATES_DIR)
    assert result.uncovered_chars == 2
    text = flat(pdf_text(result.path))
    assert f"张{RARE[0]}与李{RARE[1]}反映" in text
    fonts = pdf_fonts(result.path)
    assert all(font["emb"] == "yes" for font in fonts)
    assert any(font["name"].endswith("+XF-Fallback") for font in fonts), fonts


def test_missing_optional_values_and_no_warnings(tmp_path: Path) -> None:
    ctx = make_context()
    ctx["headline"]["prev_total"] = None
    ctx["headline"]["satisfaction_rate"] = None
    ctx["headline"]["quarantined"] = 0
    ctx["warnings"] = []
    ctx["quality"].update(passed=False, failed=2)
    result = render_pdf(TEMPLATE, ctx, tmp_path / "sparse.pdf", templates_dir=TEMPLATES_DIR)
    text = flat(pdf_text(result.path))
    assert "本月未发现需预警事项" in text
    assert "上月无可比数据" in text
    assert "暂无群众满意度回访数据" in text
    assert "环比" not in text
    assert "12项数据质量检查中有2项未通过" in text
    assert "None" not in text


def test_flat_month_says_chiping(tmp_path: Path) -> None:
    ctx = make_context()
    ctx["headline"]["prev_total"] = ctx["headline"]["total"]
    result = render_pdf(TEMPLATE, ctx, tmp_path / "flat.pdf", templates_dir=TEMPLATES_DIR)
    assert "与上月（1,234件）持平" in flat(pdf_text(result.path))


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
    ctx["warnings"][0]["summary"] = "独特的敏感原文内容"
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
