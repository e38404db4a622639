"""The period's quality summary files: JSON for machines, Markdown and HTML for people.

output/quality/<YYYY-MM>/quality_summary.json  read by the report publisher (passed, suites[].checks/failed)
output/quality/<YYYY-MM>/quality_summary.md    short Chinese note
output/quality/<YYYY-MM>/quality_report.html   数据质量报告 for bureau staff

The HTML file stands alone and works offline (bureau networks are
air-gapped): CSS inline in the page, no scripts, fonts, images or links.
Every value is HTML-escaped by Jinja's autoescape. Samples of failing rows
hold only what privacy.py lets through (codes, dates, counts).

A re-run that reaches the same verdict on the same data keeps the files of
the first run (their checked_at included), so re-running a month changes no file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from xinfang.quality.period import Period
from xinfang.quality.suites import CHECK_KINDS

if TYPE_CHECKING:
    from xinfang.quality.gates import CheckResult, SuiteResult

TEMPLATE = "quality_report.html.j2"
STATUS_ZH = {"passed": "通过", "failed": "未通过", "skipped": "未检查"}
SCOPE_ZH = {"period": "本月数据", "table": "全表", "query": "专项查询"}
LAYER_ZH = {
    "raw": "原始层",
    "ops": "接入台账",
    "marts": "数据集市",
    "staging": "清洗层",
    "reference": "参考数据",
}
_TITLES = {
    "expect_column_values_to_not_be_null": "「{column}」不为空",
    "expect_column_values_to_be_unique": "「{column}」不重复",
    "expect_column_values_to_be_in_set": "「{column}」取值在允许范围内",
    "expect_column_values_to_be_between": "「{column}」数值在允许范围内",
    "expect_column_values_to_match_regex": "「{column}」格式正确",
    "expect_column_pair_values_a_to_be_greater_than_b": "「{column}」不早于对比字段",
    "expect_column_mean_to_be_between": "「{column}」平均值在合理范围内",
    "expect_column_max_to_be_between": "「{column}」最大值在合理范围内",
    "expect_column_proportion_of_unique_values_to_be_between": "「{column}」不同取值占比在合理范围内",
    "expect_table_row_count_to_be_between": "数据量在合理范围内",
    "expect_table_row_count_to_equal": "数据行数符合预期",
    "suite_could_not_run": "检查集无法运行",
}


def _payload(results: list[SuiteResult], load_stats: dict[str, int], period: Period, checked_at: str) -> dict:
    checks = [c for r in results for c in r.checks]
    return {
        "period": period.label,
        "checked_at": checked_at,
        "passed": all(r.success for r in results),
        "load": load_stats,
        "totals": {
            "suites": len(results),
            "checks": len(checks),
            "failed": sum(len(r.failed) for r in results),
            "skipped": sum(len(r.skipped) for r in results),
        },
        "suites": [asdict(r) | {"failed": len(r.failed)} for r in results],
    }


def _normalised(payload: dict) -> dict:
    return json.loads(json.dumps({**payload, "checked_at": None}, default=str))


def write_summary(
    results: list[SuiteResult],
    summary_dir: Path,
    load_stats: dict[str, int],
    *,
    period: Period,
    checked_at: datetime,
    templates_dir: Path | None = None,
) -> Path:
    """Write (or keep) the three summary files; returns the HTML report's path."""
    summary_dir.mkdir(parents=True, exist_ok=True)
    json_path = summary_dir / "quality_summary.json"
    md_path = summary_dir / "quality_summary.md"
    html_path = summary_dir / "quality_report.html"
    payload = _payload(results, load_stats, period, checked_at.strftime("%Y-%m-%d %H:%M:%S"))
    if json_path.exists():
        previous = json.loads(json_path.read_text(encoding="utf-8"))
        if _normalised(previous) == _normalised(payload):
            # Same verdict on the same data: keep the first record, so a re-run changes no file.
            payload["checked_at"] = previous.get("checked_at", payload["checked_at"])
            if md_path.exists() and html_path.exists():
                return html_path
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    md_path.write_text(_markdown(payload, results), encoding="utf-8")
    html_path.write_text(
        render_html(results, load_stats, period, payload["checked_at"], templates_dir), encoding="utf-8"
    )
    return html_path


def _markdown(payload: dict, results: list[SuiteResult]) -> str:
    load_stats = payload["load"]
    lines = [
        f"# 数据质量检查摘要（{payload['period']}）",
        "",
        f"- 检查时间：{payload['checked_at']}",
        f"- 结论：{'通过' if payload['passed'] else '未通过（暂停发布报告和数据抽取）'}",
        f"- 检查项：执行 {payload['totals']['checks']} 项，未通过 {payload['totals']['failed']} 项，"
        f"因历史数据不足未检查 {payload['totals']['skipped']} 项",
    ]
    if load_stats:
        lines.append(
            f"- 数据接入：源数据 {load_stats.get('source_rows', 0)} 行，"
            f"入库 {load_stats.get('loaded_rows', 0)} 行，"
            f"隔离 {load_stats.get('quarantined_rows', 0)} 行"
        )
    lines += ["", "| 检查集 | 数据表 | 检查项 | 未通过 | 未检查 |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {r.suite} | {r.table} | {len(r.checks)} | {len(r.failed)} | {len(r.skipped)} |" for r in results
    ]
    failed = [(r, c) for r in results for c in r.failed]
    if failed:
        lines += ["", "## 未通过的检查", ""]
        for r, c in failed:
            facts = "；".join(_facts(c))
            lines.append(
                f"- {r.suite} #{c.number} · {_title(c)} · {c.expectation} · 字段 {c.column or '—'} · {facts}"
            )
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------------------------


def _title(check: CheckResult) -> str:
    if check.title:
        return check.title
    template = _TITLES.get(check.expectation, check.expectation)
    return template.format(column=check.column or "")


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("是" if value else "否")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _facts(check: CheckResult) -> list[str]:
    """What the check saw, in short Chinese phrases."""
    d = check.details
    bounds = d.get("bounds", {})
    facts: list[str] = []
    if check.status == "skipped":
        start = d.get("history_starts")
        facts.append(
            f"历史数据不足，本次未检查：前 {d.get('lookback_months')} 个月中可比较的月份只有 "
            f"{d.get('usable_months', 0)} 个（{f'历史数据自 {start} 起' if start else '表中尚无数据'}），"
            f"至少需要 {d.get('min_history_months')} 个"
        )
        months = "、".join(f"{m} 共 {_number(n)} 行" for m, n in d.get("history", {}).items())
        if months:
            facts.append(f"已有月份：{months}")
        return facts
    if d.get("error"):
        facts.append(f"检查无法执行：{d['error']}")
    if "history_mean" in d:
        facts.append(
            f"本月 {_number(check.observed_value)} 行；前 {len(d.get('history', {}))} 个月平均 "
            f"{_number(d['history_mean'])} 行，允许 {_number(bounds.get('min_value'))}–"
            f"{_number(bounds.get('max_value'))} 行（±{round(d.get('tolerance', 0) * 100)}%）"
        )
        return facts
    if "newest" in d:
        limit = bounds.get("max_value")
        facts.append(
            f"最新数据时间 {d['newest'] or '—'}，距统计期末 {_number(check.observed_value)} 小时"
            + (f"（上限 {_number(limit)} 小时）" if limit is not None else "")
        )
        return facts
    if check.element_count is not None:
        text = f"检查 {_number(check.element_count)} 行，异常 {_number(check.unexpected_count or 0)} 行"
        if d.get("unexpected_percent"):
            text += f"（{_number(round(d['unexpected_percent'], 2))}%）"
        facts.append(text)
    elif check.observed_value is not None:
        facts.append(f"观测值 {_number(check.observed_value)}")
    low, high = bounds.get("min_value"), bounds.get("max_value")
    if low is not None and high is not None:
        facts.append(f"允许范围 {_number(low)} 至 {_number(high)}")
    elif low is not None:
        facts.append(f"应不少于 {_number(low)}")
    elif high is not None:
        facts.append(f"应不超过 {_number(high)}")
    if "mostly" in bounds:
        facts.append(f"至少 {_number(round(bounds['mostly'] * 100, 2))}% 的行须满足")
    if "value_set" in bounds:
        facts.append("允许取值：" + "、".join(_number(v) for v in bounds["value_set"]))
    elif "value_set_size" in d:
        facts.append(f"允许取值 {_number(d['value_set_size'])} 个（取自参考表）")
    return facts


def _check_view(check: CheckResult) -> dict[str, Any]:
    return {
        "number": check.number,
        "kind": CHECK_KINDS.get(check.check, check.check),
        "title": _title(check),
        "expectation": check.expectation,
        "column": check.column or "—",
        "scope": SCOPE_ZH.get(check.scope, check.scope),
        "status": check.status,
        "status_zh": STATUS_ZH[check.status],
        "facts": _facts(check),
        "sample": [
            "；".join(f"{k}：{_number(v)}" for k, v in row.items()) for row in check.details.get("sample", [])
        ],
    }


def render_html(
    results: list[SuiteResult],
    load_stats: dict[str, int],
    period: Period,
    checked_at: str,
    templates_dir: Path | None = None,
) -> str:
    if templates_dir is None:
        from xinfang.config import get_settings

        templates_dir = get_settings().templates_dir
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=True,  # every value from the warehouse or a suite file is escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    suites = []
    for r in results:
        checks = sorted([*r.checks, *r.skipped], key=lambda c: c.number)
        suites.append(
            {
                "name": r.suite,
                "title": r.title or r.suite,
                "table": r.table,
                "layer": LAYER_ZH.get(r.layer, r.layer),
                "description": r.description,
                "success": r.success,
                "period_column": r.period_column,
                "counts": {
                    "checks": len(r.checks),
                    "failed": len(r.failed),
                    "skipped": len(r.skipped),
                },
                "checks": [_check_view(c) for c in checks],
            }
        )
    failed = [
        {"suite": r.title or r.suite, "suite_name": r.suite, "table": r.table, **_check_view(c)}
        for r in results
        for c in r.failed
    ]
    totals = {
        "suites": len(results),
        "checks": sum(len(r.checks) for r in results),
        "failed": len(failed),
        "skipped": sum(len(r.skipped) for r in results),
    }
    totals["passed"] = totals["checks"] - totals["failed"]
    return env.get_template(TEMPLATE).render(
        period_label=period.label,
        period_label_zh=period.label_zh,
        checked_at=checked_at,
        passed=not failed,
        totals=totals,
        load=load_stats,
        failed=failed,
        suites=suites,
    )
