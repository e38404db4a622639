"""Suite files: plain GX expectation suites with a few gate-specific keys in `meta`.

A suite file (expectations/*.json) is a GX suite - name, meta, expectations
of {type, kwargs, meta} - so GX reads every expectation as it is. What GX has
no notion of (the report period, history, SQL-built batches) lives in the
`meta` dictionaries and is resolved by the gate before GX validates; the
format is documented in expectations/README.md. Files are checked strictly
here (unknown keys, unknown placeholders, misused shorthands) so that a typo
in a suite fails the gate loudly instead of silently checking nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinfang.quality import privacy

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
PLACEHOLDERS = frozenset(
    {
        "table",  # the suite's relation, schema.table
        "period_rows",  # (SELECT * FROM table WHERE <period_column in the period>)
        "period_start",  # DATE literal, first day of the month
        "period_end",  # DATE literal, first day of the next month (exclusive)
        "period_start_ts",  # naive TIMESTAMP literals (bureau time), for raw source times
        "period_end_ts",
        "period_start_instant",  # TIMESTAMPTZ literals, for loaded_at-like columns
        "period_end_instant",
    }
)

# What a check is about; the HTML report groups and labels checks by it.
CHECK_KINDS = {
    "volume": "数据量",
    "distribution": "分布",
    "referential_integrity": "引用完整性",
    "freshness": "时效性",
    "completeness": "完整性",
    "validity": "有效性",
    "uniqueness": "唯一性",
    "consistency": "一致性",
    "reconciliation": "对账",
}
_DEFAULT_KIND = {
    "expect_column_values_to_not_be_null": "completeness",
    "expect_column_values_to_be_unique": "uniqueness",
    "expect_compound_columns_to_be_unique": "uniqueness",
    "expect_table_row_count_to_be_between": "volume",
    "expect_column_proportion_of_unique_values_to_be_between": "distribution",
    "expect_column_mean_to_be_between": "distribution",
}
_EXPECTATION_META_KEYS = frozenset(
    {
        "check",
        "title",
        "scope",
        "query",
        "sample_columns",
        "volume",
        "distribution_of",
        "freshness_of",
        "rows_before_period_end",
        "value_set_query",
        "history",
        "notes",
    }
)
_SUITE_META_KEYS = frozenset(
    {"table", "layer", "title", "description", "period_column", "key_columns", "history", "notes"}
)
_HISTORY_KEYS = frozenset({"lookback_months", "min_history_months", "first_batch_of"})


class SuiteFileError(ValueError):
    pass


@dataclass(frozen=True)
class History:
    """Which earlier months a volume or distribution check compares the period with.

    The previous `lookback_months` months, but only those at or after the first
    complete month of data: the first month with rows of the table, or - with
    `first_batch_of` - the first month the named sources were loaded for from its
    first day (months before a source was loaded hold only stragglers, such as
    older matters updated later, and would make every month look like a spike).
    Fewer than `min_history_months` such months: the check is skipped, and the
    skip is recorded with its reason.
    """

    lookback_months: int = 6
    min_history_months: int = 3
    first_batch_of: tuple[str, ...] = ()

    def merged(self, overrides: dict[str, Any] | None, where: str) -> History:
        if not overrides:
            return self
        unknown = set(overrides) - _HISTORY_KEYS
        if unknown:
            raise SuiteFileError(f"{where}: unknown history setting(s) {sorted(unknown)}")
        values = {
            "lookback_months": int(overrides.get("lookback_months", self.lookback_months)),
            "min_history_months": int(overrides.get("min_history_months", self.min_history_months)),
            "first_batch_of": tuple(overrides.get("first_batch_of", self.first_batch_of)),
        }
        if (
            values["lookback_months"] < 1
            or not 1 <= values["min_history_months"] <= values["lookback_months"]
        ):
            raise SuiteFileError(f"{where}: need 1 <= min_history_months <= lookback_months, got {values}")
        return History(**values)


@dataclass(frozen=True)
class CheckSpec:
    number: int  # 1-based position in the suite file: the check's key in ops.quality_results
    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    kind: str
    scope: str  # 'period', 'table' or 'query'
    history: History

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    @property
    def title(self) -> str | None:
        return self.meta.get("title")


@dataclass(frozen=True)
class SuiteSpec:
    path: Path
    name: str
    table: str
    layer: str
    title: str
    description: str
    period_column: str | None
    key_columns: tuple[str, ...]
    checks: list[CheckSpec] = field(default_factory=list)

    @property
    def schema_name(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


def _check_sql(sql: Any, where: str) -> str:
    if not isinstance(sql, str) or not re.match(r"^\s*SELECT\s", sql, re.IGNORECASE):
        raise SuiteFileError(f"{where}: a query must be a string starting with SELECT")
    unknown = set(PLACEHOLDER.findall(sql)) - PLACEHOLDERS
    if unknown:
        raise SuiteFileError(
            f"{where}: unknown placeholder(s) {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}"
        )
    # GX hands the query text to SQLAlchemy's text(): ':name' would become a bind parameter
    # and '%' is doubled for the driver, so neither may appear ('::type' casts are fine).
    if re.search(r"(?<![:\w]):[A-Za-z_]", sql) or "%" in sql:
        raise SuiteFileError(f"{where}: a query may not contain ':name' (a bind parameter) or '%'")
    return sql


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise SuiteFileError(f"{where}: {value!r} is not a plain lower-case SQL identifier")
    return value


def _check_spec(number: int, item: Any, suite: dict[str, Any], history: History, where: str) -> CheckSpec:
    where = f"{where} expectation #{number}"
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise SuiteFileError(f"{where}: needs a 'type'")
    type_ = item["type"]
    if not type_.startswith("expect_"):
        raise SuiteFileError(f"{where}: {type_!r} is not a GX expectation type")
    kwargs = item.get("kwargs", {})
    meta = item.get("meta", {})
    if not isinstance(kwargs, dict) or not isinstance(meta, dict):
        raise SuiteFileError(f"{where}: kwargs and meta must be objects")
    unknown = set(meta) - _EXPECTATION_META_KEYS
    if unknown:
        raise SuiteFileError(f"{where}: unknown meta key(s) {sorted(unknown)}")
    period_column = suite.get("period_column")

    shorthands = [k for k in ("volume", "distribution_of", "freshness_of", "query") if k in meta]
    if len(shorthands) > 1:
        raise SuiteFileError(f"{where}: {shorthands} cannot be combined")
    if "volume" in meta:
        if type_ != "expect_table_row_count_to_be_between":
            raise SuiteFileError(f"{where}: meta.volume goes with expect_table_row_count_to_be_between")
        if not period_column:
            raise SuiteFileError(f"{where}: meta.volume needs the suite's meta.period_column")
        if not isinstance(meta["volume"], dict) or not 0 < float(meta["volume"].get("tolerance", 0)) < 10:
            raise SuiteFileError(f"{where}: meta.volume.tolerance must be a fraction such as 0.5 (= ±50 %)")
        if {"min_value", "max_value"} & set(kwargs):
            raise SuiteFileError(f"{where}: volume bounds come from history; do not set min_value/max_value")
    if "distribution_of" in meta:
        column = _identifier(meta["distribution_of"], where)
        if type_ != "expect_column_values_to_be_between" or kwargs.get("column") != "share_change":
            raise SuiteFileError(
                f"{where}: meta.distribution_of goes with expect_column_values_to_be_between "
                "on 'share_change'"
            )
        if not period_column:
            raise SuiteFileError(f"{where}: meta.distribution_of needs the suite's meta.period_column")
        if not privacy.is_text_column_showable(column):
            # The shares are listed per value in results and reports: only code columns qualify.
            raise SuiteFileError(f"{where}: {column!r} is not a code column; its values cannot be reported")
    if "freshness_of" in meta:
        _identifier(meta["freshness_of"], where)
        if type_ != "expect_column_max_to_be_between" or kwargs.get("column") != "age_hours":
            raise SuiteFileError(
                f"{where}: meta.freshness_of goes with expect_column_max_to_be_between on 'age_hours'"
            )
    if "query" in meta:
        _check_sql(meta["query"], where)
    if "value_set_query" in meta:
        _check_sql(meta["value_set_query"], where)
        if "value_set" in kwargs:
            raise SuiteFileError(f"{where}: value_set comes from meta.value_set_query; do not set both")
    for name in meta.get("sample_columns", []):
        _identifier(name, where)

    if "query" in meta or "distribution_of" in meta or "freshness_of" in meta:
        scope = "query"
    else:
        scope = meta.get("scope", "period" if period_column else "table")
        if scope not in ("period", "table"):
            raise SuiteFileError(f"{where}: meta.scope must be 'period' or 'table'")
        if scope == "period" and not period_column:
            raise SuiteFileError(f"{where}: scope 'period' needs the suite's meta.period_column")
    if "{period_rows}" in str(meta.get("query", "")) and not period_column:
        raise SuiteFileError(f"{where}: {{period_rows}} needs the suite's meta.period_column")

    kind = meta.get("check")
    if kind is None:
        if "volume" in meta:
            kind = "volume"
        elif "distribution_of" in meta:
            kind = "distribution"
        elif "freshness_of" in meta:
            kind = "freshness"
        else:
            kind = _DEFAULT_KIND.get(type_, "validity")
    if kind not in CHECK_KINDS:
        raise SuiteFileError(f"{where}: meta.check must be one of {sorted(CHECK_KINDS)}, got {kind!r}")
    return CheckSpec(
        number=number,
        type=type_,
        kwargs=kwargs,
        meta=meta,
        kind=kind,
        scope=scope,
        history=history.merged(meta.get("history"), where),
    )


def load_suite_file(path: Path) -> SuiteSpec:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteFileError(f"{path.name}: not valid JSON: {exc}") from None
    where = path.name
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise SuiteFileError(f"{where}: a suite needs a name")
    meta = spec.get("meta", {})
    unknown = set(meta) - _SUITE_META_KEYS
    if unknown:
        raise SuiteFileError(f"{where}: unknown suite meta key(s) {sorted(unknown)}")
    table = meta.get("table", "")
    parts = table.split(".") if isinstance(table, str) else []
    if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
        raise SuiteFileError(f"{where}: meta.table must name the relation as schema.table, got {table!r}")
    period_column = meta.get("period_column")
    if period_column is not None:
        _identifier(period_column, where)
    key_columns = tuple(_identifier(c, where) for c in meta.get("key_columns", []))
    if not spec.get("expectations"):
        raise SuiteFileError(f"{where}: suite has no expectations")
    history = History().merged(meta.get("history"), where)
    checks = [
        _check_spec(n, item, meta, history, where) for n, item in enumerate(spec["expectations"], start=1)
    ]
    return SuiteSpec(
        path=path,
        name=spec["name"],
        table=table,
        layer=meta.get("layer", parts[0]),
        title=meta.get("title", table),
        description=meta.get("description", ""),
        period_column=period_column,
        key_columns=key_columns,
        checks=checks,
    )


_LAYER_ORDER = {"raw": 0, "ops": 1, "staging": 2, "intermediate": 3, "marts": 4}


def load_suites(expectations_dir: Path) -> list[SuiteSpec]:
    """Every *.json suite of the folder, sources first (raw, ops, ..., marts), then by file name.

    Names must be unique: they key the results table.
    """
    suites = [load_suite_file(p) for p in sorted(expectations_dir.glob("*.json"))]
    suites.sort(key=lambda s: (_LAYER_ORDER.get(s.layer, len(_LAYER_ORDER)), s.path.name))
    names = [s.name for s in suites]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteFileError(f"suite name(s) used by more than one file in {expectations_dir}: {duplicates}")
    return suites


def render_sql(template: str, values: dict[str, str]) -> str:
    """Fill the {placeholders} of a suite's query (values are literals this package renders)."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
