"""Score the warnings against the simulator's planted risks: precision, recall and lead time.

The simulator writes its ground truth (`data/sim/ground_truth.json`): each
planted risk with its district, towns, category, start, peak and end, and the
petitions and grid events that carry it. The pipeline never reads that file;
this evaluation does, after running the model month by month over a period
exactly as the monthly DAG would have (each month sees only data received by
its end, and follows up the month before). Those runs are rolled back after
scoring, so the warehouse's published months stay as reported; `--no-run`
scores the warnings stored by the monthly runs instead.

A warning *matches* a planted risk when

* hotspot: at least half of the hotspot's matters are the risk's planted
  matters (case ids ``XF-<petition no>`` / ``WG-<grid event id>``);
* surge or outlook: the warning's domain contains the risk's category, its
  area is the risk's district or the whole city, and its month lies between
  the risk's first month and the month after its end.

Precision = matching warnings / all warnings of the period; recall = risks
with at least one matching warning / all risks; lead time = days from the
first matching warning's report date (the 2nd of the next month, when the
monthly DAG mails it) to the risk's peak week (positive = before the peak).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg

from xinfang.risk.alerts import CITY_CODE

log = logging.getLogger(__name__)

HOTSPOT_OVERLAP = 0.5


@dataclass(frozen=True)
class PlantedRisk:
    id: str
    kind: str
    district_code: str
    category_code: str
    subject: str
    start: date
    peak: date
    end: date
    case_ids: frozenset[str]


@dataclass(frozen=True)
class RiskScore:
    id: str
    subject: str
    detected: bool
    first_warning_month: str | None
    first_warning_kind: str | None
    first_warning_level: str | None
    report_date: str | None
    peak: str
    lead_days: int | None
    matching_warnings: int


def read_ground_truth(path: Path) -> list[PlantedRisk]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return [
            PlantedRisk(
                id=r["id"],
                kind=r["kind"],
                district_code=r["district_code"],
                category_code=r["category_code"],
                subject=r["subject"],
                start=date.fromisoformat(r["start"]),
                peak=date.fromisoformat(r["peak"]),
                end=date.fromisoformat(r["end"]),
                case_ids=frozenset(
                    [f"XF-{n}" for n in r["petition_numbers"]] + [f"WG-{e}" for e in r["grid_event_ids"]]
                ),
            )
            for r in doc["risks"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a ground-truth file of the simulator: {exc}") from exc


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _next_month(m: date) -> date:
    return date(m.year + (m.month == 12), m.month % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    out, m = [], _month_start(first)
    while m <= _month_start(last):
        out.append(m)
        m = _next_month(m)
    return out


def matches(warning: dict[str, Any], risk: PlantedRisk, hotspot_cases: set[str], prefixes: dict) -> bool:
    month = warning["as_of_month"]
    if warning["kind"] == "hotspot":
        return (
            bool(hotspot_cases) and len(hotspot_cases & risk.case_ids) / len(hotspot_cases) >= HOTSPOT_OVERLAP
        )
    _, domain_key, area = warning["alert_key"].split(":")
    in_domain = any(risk.category_code.startswith(p) for p in prefixes.get(domain_key, ()))
    in_area = area in (risk.district_code, CITY_CODE)
    in_time = _month_start(risk.start) <= month <= _next_month(_month_start(risk.end))
    return in_domain and in_area and in_time


def score(
    conn: psycopg.Connection,
    risks: list[PlantedRisk],
    months: list[date],
    prefixes: dict[str, tuple[str, ...]],
) -> dict[str, Any]:
    """Precision, recall and lead time of the stored warnings of `months`."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        warnings = cur.execute(
            "SELECT * FROM risk.alerts WHERE as_of_month = ANY(%s) ORDER BY as_of_month, alert_no", (months,)
        ).fetchall()
        members: dict[tuple, set[str]] = {}
        for row in cur.execute(
            "SELECT as_of_month, hotspot_key, case_id FROM risk.hotspot_cases WHERE as_of_month = ANY(%s)",
            (months,),
        ):
            members.setdefault((row["as_of_month"], row["hotspot_key"]), set()).add(row["case_id"])
    matched_warnings = 0
    per_risk: dict[str, list[dict[str, Any]]] = {r.id: [] for r in risks}
    by_kind: dict[str, list[int]] = {}
    for w in warnings:
        cases = members.get((w["as_of_month"], w["hotspot_key"]), set())
        hit = [r for r in risks if matches(w, r, cases, prefixes)]
        for r in hit:
            per_risk[r.id].append(w)
        matched_warnings += bool(hit)
        counts = by_kind.setdefault(w["kind"], [0, 0])
        counts[0] += bool(hit)
        counts[1] += 1
    scores = []
    for r in risks:
        found = per_risk[r.id]
        first = found[0] if found else None
        report_date = _next_month(first["as_of_month"]) + timedelta(days=1) if first else None
        scores.append(
            RiskScore(
                id=r.id,
                subject=r.subject,
                detected=first is not None,
                first_warning_month=f"{first['as_of_month']:%Y-%m}" if first else None,
                first_warning_kind=first["kind"] if first else None,
                first_warning_level=first["level"] if first else None,
                report_date=report_date.isoformat() if report_date else None,
                peak=r.peak.isoformat(),
                lead_days=(r.peak - report_date).days if report_date else None,
                matching_warnings=len(found),
            )
        )
    total = len(warnings)
    return {
        "months": [f"{m:%Y-%m}" for m in months],
        "warnings": total,
        "matching_warnings": matched_warnings,
        "precision": round(matched_warnings / total, 4) if total else None,
        "recall": round(sum(s.detected for s in scores) / len(scores), 4) if scores else None,
        "by_kind": {
            k: {"warnings": n, "matching": m, "precision": round(m / n, 4) if n else None}
            for k, (m, n) in sorted(by_kind.items())
        },
        "risks": [asdict(s) for s in scores],
    }


def evaluate(
    conn: psycopg.Connection, ground_truth: Path, first: date, last: date, *, run_model: bool = True
) -> dict[str, Any]:
    from xinfang.risk.monthly import domains_for, run_month
    from xinfang.risk.rules import load_rules

    risks = read_ground_truth(ground_truth)
    months = months_between(first, last)
    rules = load_rules()
    prefixes = {d.key: d.category_prefixes for d in domains_for(conn, rules)}
    if not run_model:
        return score(conn, risks, months, prefixes)
    # The months' model runs are rolled back after scoring: the published months' warnings,
    # follow-ups and tags stay exactly as reported (a re-render must not see other figures).
    with conn.transaction(force_rollback=True):
        for m in months:
            run_month(conn, m, rules=rules, tag=False)
        return score(conn, risks, months, prefixes)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ground-truth", type=Path, help="the simulator's file (default: data/sim/ground_truth.json)"
    )
    p.add_argument("--from", dest="first", type=date.fromisoformat, default=date(2024, 1, 1))
    p.add_argument("--to", dest="last", type=date.fromisoformat, default=date(2025, 12, 1))
    p.add_argument(
        "--no-run", action="store_true", help="score the stored warnings without re-running the model"
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")


def render(result: dict[str, Any]) -> str:
    lines = [
        f"months {result['months'][0]}..{result['months'][-1]}: {result['warnings']} warnings, "
        f"{result['matching_warnings']} match a planted risk",
        f"precision {result['precision']}  recall {result['recall']}",
    ]
    for kind, k in result["by_kind"].items():
        lines.append(f"  {kind:<8} {k['matching']}/{k['warnings']} match (precision {k['precision']})")
    for r in result["risks"]:
        if r["detected"]:
            lines.append(
                f"  {r['id']} ({r['subject']}): first warned {r['first_warning_month']} "
                f"({r['first_warning_kind']}, {r['first_warning_level']}), mailed {r['report_date']}, "
                f"peak {r['peak']}, lead {r['lead_days']} days, {r['matching_warnings']} matching warnings"
            )
        else:
            lines.append(f"  {r['id']} ({r['subject']}): NOT detected (peak {r['peak']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from xinfang import db
    from xinfang.config import get_settings
    from xinfang.orchestration import runtime

    settings = get_settings()
    runtime.apply(settings)
    path = args.ground_truth or settings.data_dir / "sim" / "ground_truth.json"
    with db.connect() as conn:
        result = evaluate(conn, path, args.first, args.last, run_model=not args.no_run)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0
