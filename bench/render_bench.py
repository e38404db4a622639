"""Cold and warm render time of the monthly risk report, and the PDF size.

    .venv/bin/python bench/render_bench.py [--runs 5] [--out output/bench]

The first render pays for loading WeasyPrint's font configuration and the
fallback font; the later ones show the steady cost inside a long-lived worker.
Targets: warm render <= 3 s, PDF <= 2 MB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "report_templates"
TEMPLATE = "monthly_risk_report.html.j2"

SAMPLE_CONTEXT: dict[str, Any] = {
    "bureau_name": "市信访局",
    "period": {"year": 2025, "month": 6, "label": "2025年6月"},
    "revision": 1,
    "generated_at": "2025-07-02 08:00",
    "headline": {
        "total": 1234,
        "prev_total": 1100,
        "closed": 1000,
        "closed_rate": 0.81,
        "on_time_rate": 0.93,
        "satisfaction_rate": 0.915,
        "quarantined": 3,
    },
    "by_district": [
        {"name": "东城区", "count": 300},
        {"name": "西城区", "count": 260},
        {"name": "高新技术产业开发区", "count": 210},
        {"name": "南湖区", "count": 180},
        {"name": "北山县", "count": 150},
        {"name": "青溪镇", "count": 134},
    ],
    "by_category": [
        {"code": "602015", "name": "城乡建设", "count": 320, "share": 0.259},
        {"code": "602006", "name": "劳动社保", "count": 120, "share": 0.097},
        {"code": "602013", "name": "农村农业", "count": 110, "share": 0.089},
        {"code": "602012", "name": "民政", "count": 96, "share": 0.078},
        {"code": "602007", "name": "教育", "count": 88, "share": 0.071},
        {"code": "602018", "name": "其他", "count": 500, "share": 0.405},
    ],
    "by_matter_type": [
        {"name": "投诉", "count": 500},
        {"name": "求助", "count": 380},
        {"name": "咨询", "count": 214},
        {"name": "建议", "count": 90},
        {"name": "举报", "count": 50},
    ],
    "warnings": [
        {
            "level": "红",
            "district": "东城区",
            "category": "劳动社保",
            "summary": "某建筑工地拖欠农民工工资，涉及23人，30日内重复来访4次，有集体访苗头",
            "department": "区人社局",
            "action": "县级领导包案，7日内约谈施工总包单位并督促兑付",
        },
        {
            "level": "黄",
            "district": "高新技术产业开发区",
            "category": "城乡建设",
            "summary": "安置房项目延期交付，业主群体反映集中",
            "department": "区住建局",
            "action": "乡镇（街道）领导牵头，每周通报进度",
        },
        {
            "level": "蓝",
            "district": "南湖区",
            "category": "城乡建设",
            "summary": "小区物业管理纠纷，网格内反映较多",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PDFs (default: a temp folder)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from xinfang.reports.render import render_pdf  # timed: importing WeasyPrint is part of a cold start

    import_seconds = time.perf_counter() - started
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="xinfang-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: list[float] = []
    for run in range(args.runs):
        result = render_pdf(TEMPLATE, SAMPLE_CONTEXT, out_dir / f"run{run}.pdf", templates_dir=TEMPLATES_DIR)
        seconds.append(result.seconds)
        print(
            f"run {run}: {result.seconds:.2f} s, {result.pages} pages, {result.path.stat().st_size:,} bytes"
        )
    size = (out_dir / f"run{args.runs - 1}.pdf").stat().st_size
    print(f"import weasyprint+xinfang.reports: {import_seconds:.2f} s")
    print(f"cold render: {seconds[0]:.2f} s")
    if len(seconds) > 1:
        warm = seconds[1:]
        print(f"warm render: median {statistics.median(warm):.2f} s, max {max(warm):.2f} s")
    print(f"PDF size: {size:,} bytes ({size / 1e6:.2f} MB) in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
