"""Run the Great Expectations suites in `expectations/` against the warehouse.

Suites are plain GX JSON files (name, meta.table, expectations) kept under
version control; they run in an ephemeral GX context so no GX project folder,
Data Docs or usage statistics are involved. A failed suite raises
QualityGateFailed after the summary is written, so the failure is documented
and nothing downstream (reports, extracts) runs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from xinfang import db
from xinfang.config import BUREAU_TZ

log = logging.getLogger(__name__)


class QualityGateFailed(Exception):
    pass


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    column: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: Any = None


@dataclass
class SuiteResult:
    suite: str
    table: str
    success: bool
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]


def load_suite_file(path: Path) -> dict[str, Any]:
    spec = json.loads(path.read_text(encoding="utf-8"))
    table = spec.get("meta", {}).get("table", "")
    if "." not in table:
        raise ValueError(f"{path}: meta.table must name the relation as schema.table, got {table!r}")
    if not spec.get("expectations"):
        raise ValueError(f"{path}: suite has no expectations")
    return spec


def run_suite(path: Path, *, database_url: str | None = None) -> SuiteResult:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = load_suite_file(path)
    schema, table = spec["meta"]["table"].split(".", 1)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_sql(name="warehouse", connection_string=db.sqlalchemy_url(database_url))
    asset = source.add_table_asset(name=table, table_name=table, schema_name=schema)
    batch = asset.add_batch_definition_whole_table("whole_table")
    suite = gx.ExpectationSuite(name=spec["name"])
    for item in spec["expectations"]:
        suite.add_expectation(
            ExpectationConfiguration(type=item["type"], kwargs=item["kwargs"]).to_domain_obj()
        )
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec['name']}_gate", data=batch, suite=suite)
    )
    outcome = validation.run(result_format="SUMMARY")
    checks = [
        CheckResult(
            expectation=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column") or r.expectation_config.kwargs.get("column_A"),
            success=bool(r.success),
            element_count=r.result.get("element_count"),
            unexpected_count=r.result.get("unexpected_count"),
            observed_value=_plain(r.result.get("observed_value")),
        )
        for r in outcome.results
    ]
    result = SuiteResult(
        suite=spec["name"], table=spec["meta"]["table"], success=bool(outcome.success), checks=checks
    )
    log.info(
        "quality suite %s on %s: %d checks, %d failed",
        result.suite,
        result.table,
        len(checks),
        len(result.failed),
    )
    return result


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def run_gate(
    expectations_dir: Path,
    summary_dir: Path,
    *,
    load_stats: dict[str, int] | None = None,
    database_url: str | None = None,
) -> list[SuiteResult]:
    """Run every suite, write the summary, raise if any suite failed."""
    suites = sorted(expectations_dir.glob("*.json"))
    if not suites:
        raise QualityGateFailed(f"no expectation suites found in {expectations_dir}")
    results = [run_suite(p, database_url=database_url) for p in suites]
    write_summary(results, summary_dir, load_stats or {})
    failed = [r for r in results if not r.success]
    if failed:
        details = "; ".join(
            f"{r.suite}: " + ", ".join(f"{c.expectation}({c.column})" for c in r.failed) for r in failed
        )
        raise QualityGateFailed(f"data-quality gate failed, nothing will be published: {details}")
    return results


def write_summary(results: list[SuiteResult], summary_dir: Path, load_stats: dict[str, int]) -> Path:
    """JSON for machines and a short Chinese Markdown note for people."""
    summary_dir.mkdir(parents=True, exist_ok=True)
    checked_at = datetime.now(BUREAU_TZ).strftime("%Y-%m-%d %H:%M:%S")
    payload = {
        "checked_at": checked_at,
        "passed": all(r.success for r in results),
        "load": load_stats,
        "suites": [asdict(r) | {"failed": len(r.failed)} for r in results],
    }
    json_path, md_path = summary_dir / "quality_summary.json", summary_dir / "quality_summary.md"
    if json_path.exists() and md_path.exists():
        previous = json.loads(json_path.read_text(encoding="utf-8"))
        if {**previous, "checked_at": None} == json.loads(
            json.dumps({**payload, "checked_at": None}, default=str)
        ):
            # Same verdict on the same data: keep the first record, so a re-run changes no file.
            return summary_dir / "quality_summary.md"
    json_path.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    lines = [
        "# 数据质量检查摘要",
        "",
        f"- 检查时间：{checked_at}",
        f"- 结论：{'通过' if payload['passed'] else '未通过（暂停发布报告和数据抽取）'}",
    ]
    if load_stats:
        lines.append(
            f"- 数据接入：源数据 {load_stats.get('source_rows', 0)} 行，"
            f"入库 {load_stats.get('loaded_rows', 0)} 行，"
            f"隔离 {load_stats.get('quarantined_rows', 0)} 行"
        )
    lines += ["", "| 检查集 | 数据表 | 检查项 | 未通过 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.suite} | {r.table} | {len(r.checks)} | {len(r.failed)} |" for r in results]
    for r in results:
        for c in r.failed:
            lines.append(
                f"- 未通过：{r.suite} · {c.expectation} · 字段 {c.column} · 异常 {c.unexpected_count} 行"
            )
    path = summary_dir / "quality_summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
