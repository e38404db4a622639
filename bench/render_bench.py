"""Cold and warm render time of the monthly risk report and the half-year summary, and the PDF size.

    .venv/bin/python bench/render_bench.py [--month 2025-06] [--half-year 2025H1] [--runs 5] [--out DIR]

Renders the real reports from the warehouse (run `make demo` first, or point
XINFANG_DATABASE_URL at a loaded warehouse): the month's full report, its
largest department edition and the half-year work summary (plain and PDF/A-3b).
The context is built once (SQL, not timed); the first render pays for loading
WeasyPrint's font configuration and the fallback font; the later ones show the
steady cost inside a long-lived worker.
Targets: warm render <= 3 s, PDF <= 2 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "report_templates"
TEMPLATE = "monthly_risk_report.html.j2"
HALFYEAR_TEMPLATE = "halfyear_summary.html.j2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", type=date.fromisoformat, default=date(2025, 6, 1), help="e.g. 2025-06-01")
    parser.add_argument("--half-year", default="2025H1", help="e.g. 2025H1; empty to skip the summary")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PDFs (default: a temp folder)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from xinfang.reports.render import render_pdf  # timed: importing WeasyPrint is part of a cold start

    import_seconds = time.perf_counter() - started
    contexts = _contexts(args.month, args.half_year)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="xinfang-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"import_s": round(import_seconds, 2)}
    for name, (template, context, variant) in contexts.items():
        seconds: list[float] = []
        for run in range(args.runs):
            result = render_pdf(
                template,
                context,
                out_dir / f"{name}-{run}.pdf",
                templates_dir=TEMPLATES_DIR,
                pdf_variant=variant,
            )
            seconds.append(result.seconds)
            print(
                f"{name} run {run}: {result.seconds:.2f} s, {result.pages} pages, "
                f"{result.path.stat().st_size:,} B"
            )
        size = (out_dir / f"{name}-{args.runs - 1}.pdf").stat().st_size
        figures[name] = {
            "pages": result.pages,
            "first_render_s": round(seconds[0], 2),
            "warm_median_s": round(statistics.median(seconds[1:]), 2) if len(seconds) > 1 else None,
            "warm_max_s": round(max(seconds[1:]), 2) if len(seconds) > 1 else None,
            "bytes": size,
        }
    print(f"import weasyprint+xinfang.reports: {import_seconds:.2f} s")
    for name, f in figures.items():
        if name != "import_s":
            print(
                f"{name}: {f['pages']} pages, first {f['first_render_s']} s, "
                f"warm median {f['warm_median_s']} s "
                f"(max {f['warm_max_s']} s), {f['bytes']:,} bytes ({f['bytes'] / 1e6:.2f} MB)"
            )
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "render.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


def _contexts(month: date, half_year: str) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """(template, context, PDF variant) of each report measured, from the warehouse."""
    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.orchestration import runtime
    from xinfang.publish import halfyear_report
    from xinfang.publish.halfyear_context import HalfYear
    from xinfang.publish.monthly_context import build_context, editions_needed

    settings = get_settings()
    runtime.apply(settings)
    quality = {"passed": True, "suites": []}
    with db.connect() as conn:
        full = build_context(conn, month, quality, settings)
        editions = {
            code: build_context(conn, month, quality, settings, edition=code)
            for code in editions_needed(conn, month)
        }
        summary = (
            halfyear_report.build_context(
                conn,
                HalfYear.parse(half_year),
                {"period": "-", "totals": {"suites": 0, "checks": 0}},
                settings,
            )
            if half_year
            else None
        )
    stamp = {"revision": 1, "generated_at": "2025-07-02 08:00"}
    out = {"full": (TEMPLATE, full | stamp, None)}
    if editions:
        code, context = max(editions.items(), key=lambda kv: len(kv[1]["alerts"]))
        out[f"edition-{code}"] = (TEMPLATE, context | stamp, None)
    if summary is not None:
        out[f"summary-{half_year}"] = (HALFYEAR_TEMPLATE, summary | stamp, None)
        out[f"summary-{half_year}-pdfa"] = (HALFYEAR_TEMPLATE, summary | stamp, halfyear_report.PDFA_VARIANT)
    return out


if __name__ == "__main__":
    sys.exit(main())
