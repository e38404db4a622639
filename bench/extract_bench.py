"""Build time and size of the provincial extract: the month's full package and one day's increment.

    .venv/bin/python bench/extract_bench.py [--month 2025-06] [--day 2025-06-30] [--runs 3]

Builds the packages from the warehouse (run `make demo` first, or point
XINFANG_DATABASE_URL at a loaded warehouse) into a temporary folder, so the
real outputs and the delivery ledger are not touched, and splits the time:

- person keys: the province-keyed pseudonyms refreshed (incremental: the first
  run pays for everyone not keyed yet, later runs for nobody);
- build: export (one COPY per table in one snapshot) plus validation
  (checksums, schema, Frictionless, personal-data scan), as build_package does;
- validate: the validation alone, i.e. what the province runs on arrival.

Prints a table and writes bench/results/extract.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from results_table import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="2025-06", help="YYYY-MM of the full extract")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2025, 6, 30))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.extract import person_keys
    from xinfang.extract.package import Period, build_package
    from xinfang.extract.validate import validate_package
    from xinfang.publish.province_extract import city_code

    settings = get_settings()
    out = Path(tempfile.mkdtemp(prefix="xinfang-extract-bench-"))
    figures: dict[str, float | int] = {}
    with db.connect() as conn:
        city = city_code(conn)
        conn.commit()
        started = time.perf_counter()
        keys = person_keys.refresh(conn, pii_key=settings.pii_key, province_key=settings.province_key)
        conn.commit()
        figures["person_keys_refresh_s"] = round(time.perf_counter() - started, 2)
        figures["person_keys_added"] = keys.added
        month = date.fromisoformat(f"{args.month}-01")
        for label, period in (("full", Period.month(month)), ("daily", Period.day(args.day))):
            builds, validations = [], []
            for run in range(args.runs):
                started = time.perf_counter()
                package = build_package(
                    conn, period, out / f"{label}-{run}", city_code=city, province_key_id=keys.key_id
                )
                builds.append(time.perf_counter() - started)
                started = time.perf_counter()
                if not validate_package(package.path).ok:
                    print(f"{package.path} failed validation", file=sys.stderr)
                    return 1
                validations.append(time.perf_counter() - started)
                print(f"{label} run {run}: build {builds[-1]:.1f} s, validate {validations[-1]:.1f} s")
            figures[f"{label}_rows"] = package.rows
            figures[f"{label}_bytes"] = package.bytes
            figures[f"{label}_build_median_s"] = round(statistics.median(builds), 2)
            figures[f"{label}_validate_median_s"] = round(statistics.median(validations), 2)
    report(figures, "extract")
    return 0


if __name__ == "__main__":
    sys.exit(main())
