"""Run the Great Expectations suites in `expectations/` against the warehouse for one report period.

Suites are GX JSON files kept under version control (format: suites.py and
expectations/README.md). They run in an ephemeral GX context, so no GX project
folder, Data Docs or usage statistics are involved. Each check is validated by
GX against one of three kinds of batch:

- the period's rows of the suite's table (a SQL query over meta.period_column),
- the whole table (meta.scope = "table"),
- a SQL query the suite gives (orphans, reconciliation, completeness) or the
  gate builds (distribution shift against history, freshness against the end
  of the period).

What GX cannot know is worked out in SQL first and handed to GX as ordinary
expectation arguments: the volume band from the previous months' counts, value
sets read from reference tables. So every check that runs produces a real GX
validation result; a check that cannot run for want of history is recorded as
skipped with the reason, never passed silently.

Every run replaces the period's rows in ops.quality_results and writes
output/quality/<YYYY-MM>/quality_summary.{json,md} and quality_report.html.
A failed check raises QualityGateFailed after all that is written, naming the
suite, the check and the data, so nothing downstream (reports, extracts) runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg

from xinfang import db, pii
from xinfang.config import BUREAU_TZ
from xinfang.quality import privacy
from xinfang.quality.period import Period, add_months, sql_date, sql_instant, sql_local_timestamp
from xinfang.quality.suites import (
    CheckSpec,
    History,
    SuiteFileError,
    SuiteSpec,
    load_suite_file,
    load_suites,
    render_sql,
)

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10  # failing rows kept per check (codes, dates and counts only; see privacy.py)
_BOUND_KWARGS = ("min_value", "max_value", "strict_min", "strict_max", "mostly", "regex", "or_equal")


class QualityGateFailed(Exception):
    pass


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    column: str | None
    success: bool | None  # None when skipped
    element_count: int | None
    unexpected_count: int | None
    observed_value: Any = None
    number: int = 0
    check: str = "validity"
    title: str | None = None
    scope: str = "period"
    status: str = "passed"  # 'passed', 'failed' or 'skipped'
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self, suite: SuiteResult) -> str:
        """One line naming the suite, the check and the data, for logs and the gate's error."""
        column = f" on column {self.column}" if self.column else ""
        scope = {"period": "rows of the period", "table": "whole table", "query": "check query"}[self.scope]
        text = f"{suite.suite} check #{self.number} {self.expectation}{column} [{suite.table}, {scope}]"
        facts = []
        if self.unexpected_count:
            facts.append(f"{self.unexpected_count} of {self.element_count} rows unexpected")
        if self.observed_value is not None and not self.unexpected_count:
            facts.append(f"observed {self.observed_value}")
        bounds = {k: v for k, v in self.details.get("bounds", {}).items() if k in ("min_value", "max_value")}
        if bounds:
            facts.append("expected " + ", ".join(f"{k}={v}" for k, v in bounds.items()))
        if "newest" in self.details:
            facts.append(f"newest value {self.details['newest']}, age measured at the end of the period")
        if self.details.get("sample"):
            rows = self.details["sample"][:3]
            facts.append("e.g. " + "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in rows))
        if self.details.get("error"):
            facts.append(f"error: {self.details['error']}")
        return text + (": " + "; ".join(facts) if facts else "")


@dataclass
class SuiteResult:
    suite: str
    table: str
    success: bool
    checks: list[CheckResult] = field(default_factory=list)  # the checks GX ran
    skipped: list[CheckResult] = field(default_factory=list)  # not run, with the reason in details.note
    layer: str = ""
    title: str = ""
    description: str = ""
    period_column: str | None = None

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]


_WHOLE_TABLE = "<the suite's whole table>"  # a check's batch: the table itself, not a query


# --- the warehouse as GX and psycopg see it ------------------------------------------------------------


class _Warehouse:
    """One ephemeral GX context with one SQL datasource, and a psycopg connection for metadata and history."""

    def __init__(self, database_url: str | None):
        # Telemetry stays off even when a caller forgot: bureau networks are air-gapped.
        os.environ["GX_ANALYTICS_ENABLED"] = "False"
        import great_expectations as gx

        self.url = database_url or db.database_url()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        with warnings.catch_warnings():
            # GX suggests its PostgresDatasource, whose URL check requires a host name: the embedded
            # server is reached through a socket directory, which only the generic SQL source accepts.
            warnings.filterwarnings("ignore", message=".*more specific PostgresDatasource.*")
            # Temporary tables: GX runs a query asset's bare SQL once to learn its columns, and
            # the driver buffers the whole result (2.4 GB for fct_cases at 1 million work orders,
            # 14 GB and growing at 10 million). Over a temporary table it asks the catalogue.
            self.source = self.context.data_sources.add_sql(
                name="warehouse", connection_string=db.sqlalchemy_url(self.url), create_temp_table=True
            )
        self.conn = psycopg.connect(self.url, autocommit=True)
        self._assets = 0

    def batch(self, query: str):
        self._assets += 1
        asset = self.source.add_query_asset(name=f"batch_{self._assets}", query=query)
        return asset.add_batch_definition_whole_table("all").get_batch()

    def table_batch(self, schema_name: str, table_name: str):
        """A whole table, read in place (a temporary copy of 10 million rows would cost minutes)."""
        self._assets += 1
        asset = self.source.add_table_asset(
            name=f"batch_{self._assets}", schema_name=schema_name, table_name=table_name
        )
        return asset.add_batch_definition_whole_table("all").get_batch()

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()
        try:
            self.source.get_execution_engine().close()
        except Exception:  # the engine may never have been created
            log.debug("GX execution engine already closed", exc_info=True)


# --- one suite ------------------------------------------------------------------------------------------


class _SuiteRun:
    def __init__(self, spec: SuiteSpec, period: Period, warehouse: _Warehouse):
        self.spec = spec
        self.period = period
        self.wh = warehouse
        self._batches: dict[str, Any] = {}
        self.columns = dict(
            warehouse.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (spec.schema_name, spec.table_name),
            )
        )
        if not self.columns:
            raise LookupError(f"relation {spec.table} does not exist (or is not visible to the gate)")

    # SQL pieces -------------------------------------------------------------------------------------

    def local(self, column: str) -> str:
        """The column as bureau-local time: timestamptz values are instants, everything else already local."""
        if column not in self.columns:
            raise LookupError(f"column {column!r} not found in {self.spec.table}")
        if self.columns[column] == "timestamp with time zone":
            return f"({column} AT TIME ZONE 'Asia/Shanghai')"
        return column

    def in_months(self, first: date, end: date) -> str:
        expr = self.local(self.spec.period_column)
        return f"{expr} >= {sql_date(first)} AND {expr} < {sql_date(end)}"

    def period_query(self) -> str:
        return f"SELECT * FROM {self.spec.table} WHERE {self.in_months(self.period.start, self.period.end)}"  # noqa: S608 - identifiers checked, literals ours

    def placeholders(self) -> dict[str, str]:
        p = self.period
        values = {
            "table": self.spec.table,
            "period_start": sql_date(p.start),
            "period_end": sql_date(p.end),
            "period_start_ts": sql_local_timestamp(p.start),
            "period_end_ts": sql_local_timestamp(p.end),
            "period_start_instant": sql_instant(p.start),
            "period_end_instant": sql_instant(p.end),
        }
        if self.spec.period_column:
            values["period_rows"] = f"({self.period_query()})"
        return values

    def batch(self, query: str):
        if query not in self._batches:
            if query == _WHOLE_TABLE:
                self._batches[query] = self.wh.table_batch(self.spec.schema_name, self.spec.table_name)
            else:
                self._batches[query] = self.wh.batch(query)
        return self._batches[query]

    # history -----------------------------------------------------------------------------------------

    def history(self, settings: History) -> tuple[list[date], dict[date, int], date | None]:
        """Usable previous months (see suites.History), the row count of each, where history starts."""
        expr = self.local(self.spec.period_column)
        first = self.wh.rows(f"SELECT min({expr}) FROM {self.spec.table}")[0][0]  # noqa: S608
        if first is None:
            return [], {}, None
        floor = _first_full_month(first)
        if settings.first_batch_of:
            starts = self.wh.rows(
                "SELECT min(file_date) FROM ops.load_batches "
                "WHERE status = 'loaded' AND source = ANY(%s) AND file_date IS NOT NULL GROUP BY source",
                (list(settings.first_batch_of),),
            )
            if starts:
                floor = max(floor, *(_first_full_month(s) for (s,) in starts))
        months = [m for m in self.period.previous(settings.lookback_months) if m >= floor]
        if not months:
            return [], {}, floor
        counts = dict.fromkeys(months, 0)
        for month, n in self.wh.rows(
            f"SELECT CAST(date_trunc('month', {expr}) AS date), count(*) FROM {self.spec.table} "  # noqa: S608
            f"WHERE {self.in_months(months[0], self.period.start)} GROUP BY 1"
        ):
            counts[month] = n
        return months, counts, floor

    # checks -------------------------------------------------------------------------------------------

    def run(self, check: CheckSpec) -> CheckResult:
        try:
            return self._run(check)
        except Exception as exc:
            # A check that cannot run (missing column, bad SQL, GX error) fails: the gate cannot vouch for it.
            log.warning("quality check %s #%d could not run: %s", self.spec.name, check.number, exc)
            return self._result(check, success=False, details={"error": _short(exc)})

    def _run(self, check: CheckSpec) -> CheckResult:
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        kwargs = dict(check.kwargs)
        details: dict[str, Any] = {}
        meta = check.meta
        if "volume" in meta:
            months, counts, start = self.history(check.history)
            details["history"] = {f"{m:%Y-%m}": n for m, n in counts.items()}
            if len(months) < check.history.min_history_months:
                return self._skipped(check, months, start, details)
            mean = sum(counts.values()) / len(months)
            tolerance = float(meta["volume"]["tolerance"])
            kwargs["min_value"] = math.floor(mean * (1 - tolerance))
            kwargs["max_value"] = math.ceil(mean * (1 + tolerance))
            details["history_mean"] = round(mean, 1)
            details["tolerance"] = tolerance
            query = self.period_query()
        elif "distribution_of" in meta:
            months, counts, start = self.history(check.history)
            details["history"] = {f"{m:%Y-%m}": n for m, n in counts.items()}
            if len(months) < check.history.min_history_months:
                return self._skipped(check, months, start, details)
            query = self.distribution_query(meta["distribution_of"], months[0])
        elif "freshness_of" in meta:
            query, newest_sql = self.freshness_query(
                meta["freshness_of"], bool(meta.get("rows_before_period_end"))
            )
            newest = self.wh.rows(newest_sql)[0][0]
            if isinstance(newest, datetime) and newest.tzinfo is not None:
                newest = newest.astimezone(BUREAU_TZ)  # shown in bureau time, like the period bounds
            details["newest"] = privacy.plain(newest)
            details["relative_to"] = f"{self.period.end.isoformat()} 00:00 (bureau time, end of the period)"
        elif "query" in meta:
            query = render_sql(meta["query"], self.placeholders())
        elif check.scope == "table":
            query = _WHOLE_TABLE
        else:
            query = self.period_query()
        if "value_set_query" in meta:
            values = [r[0] for r in self.wh.rows(render_sql(meta["value_set_query"], self.placeholders()))]
            kwargs["value_set"] = values
            details["value_set_size"] = len(values)

        expectation = ExpectationConfiguration(type=check.type, kwargs=kwargs, meta=meta).to_domain_obj()
        result = self.batch(query).validate(expectation, result_format=self.result_format(check))
        details["bounds"] = _bounds(kwargs)
        return self._from_gx(check, result, details)

    def distribution_query(self, column: str, history_start: date) -> str:
        """Share of each value in the period against its share over the history months."""
        if column not in self.columns:
            raise LookupError(f"column {column!r} not found in {self.spec.table}")
        value = f"coalesce(CAST({column} AS text), '(null)')"
        shares = (
            "SELECT {value} AS v, CAST(count(*) AS numeric) / sum(count(*)) OVER () AS share "
            "FROM {table} WHERE {where} GROUP BY 1"
        )
        current = shares.format(
            value=value, table=self.spec.table, where=self.in_months(self.period.start, self.period.end)
        )
        past = shares.format(
            value=value, table=self.spec.table, where=self.in_months(history_start, self.period.start)
        )
        return (
            f"SELECT coalesce(cur.v, hist.v) AS {column}, "  # noqa: S608 - identifiers checked, literals ours
            "round(coalesce(cur.share, 0), 4) AS period_share, "
            "round(coalesce(hist.share, 0), 4) AS history_share, "
            "round(coalesce(cur.share, 0) - coalesce(hist.share, 0), 4) AS share_change "
            f"FROM ({current}) AS cur FULL OUTER JOIN ({past}) AS hist ON cur.v = hist.v"
        )

    def freshness_query(self, column: str, before_end: bool) -> tuple[str, str]:
        """Age in hours of the newest value of `column` at the end of the period (not at wall-clock now).

        So a backfill of an old month gives the same answer as the run the day after it ended.
        With `before_end`, only values before the end count: source times of later months
        must not make an incomplete month look fresh.
        """
        kind = self.columns.get(column)
        if kind is None:
            raise LookupError(f"column {column!r} not found in {self.spec.table}")
        if kind == "date":
            end = sql_date(self.period.end)
            age = f"CAST(({end} - max({column})) * 24 AS numeric)"
        elif kind == "timestamp with time zone":
            end = sql_instant(self.period.end)
            age = f"round(CAST(extract(epoch FROM ({end} - max({column}))) / 3600 AS numeric), 2)"
        elif kind == "timestamp without time zone":
            end = sql_local_timestamp(self.period.end)
            age = f"round(CAST(extract(epoch FROM ({end} - max({column}))) / 3600 AS numeric), 2)"
        else:
            raise ValueError(f"freshness needs a date or timestamp column; {column} is {kind}")
        where = f" WHERE {column} < {end}" if before_end else ""
        query = f"SELECT {age} AS age_hours FROM {self.spec.table}{where}"  # noqa: S608
        newest = f"SELECT max({column}) FROM {self.spec.table}{where}"  # noqa: S608
        return query, newest

    def result_format(self, check: CheckSpec) -> dict[str, Any]:
        fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
        if check.column and privacy.column_may_hold_personal_data(check.column):
            # GX is not even asked for values of personal columns.
            fmt["exclude_unexpected_values"] = True
        if "distribution_of" in check.meta:
            keys = [check.meta["distribution_of"], "period_share", "history_share"]
        elif check.meta.get("sample_columns"):
            keys = list(check.meta["sample_columns"])
        elif check.scope in ("period", "table"):
            keys = [c for c in self.spec.key_columns if c != check.column]
        else:
            keys = []
        keys = [k for k in keys if not privacy.column_may_hold_personal_data(k)]
        if keys and _is_row_level(check.type):
            fmt["unexpected_index_column_names"] = keys
        return fmt

    # results ------------------------------------------------------------------------------------------

    def _result(self, check: CheckSpec, **values: Any) -> CheckResult:
        defaults = {"element_count": None, "unexpected_count": None, "observed_value": None}
        success = values.pop("success")
        return CheckResult(
            expectation=check.type,
            column=check.column,
            success=success,
            number=check.number,
            check=check.kind,
            title=check.title,
            scope=check.scope,
            status="skipped" if success is None else ("passed" if success else "failed"),
            **(defaults | values),
        )

    def _skipped(
        self, check: CheckSpec, months: list[date], start: date | None, details: dict[str, Any]
    ) -> CheckResult:
        since = f"history starts {start:%Y-%m}" if start else "the table has no rows"
        details["note"] = (
            f"insufficient history: {len(months)} usable month(s) among the previous "
            f"{check.history.lookback_months} ({since}), {check.history.min_history_months} needed"
        )
        details["history_starts"] = f"{start:%Y-%m}" if start else None
        details["usable_months"] = len(months)
        details["lookback_months"] = check.history.lookback_months
        details["min_history_months"] = check.history.min_history_months
        return self._result(check, success=None, details=details)

    def _from_gx(self, check: CheckSpec, result: Any, details: dict[str, Any]) -> CheckResult:
        res = dict(result.result or {})
        error = _gx_error(result.exception_info)
        if error:
            details["error"] = error
        observed = res.get("observed_value")
        statistic = _summary_statistic(check.type) and isinstance(observed, (int, float))
        if check.column and not privacy.showable(check.column, observed) and not statistic:
            # A column's min, max or most common value would be one of its values: not shown for
            # personal columns. A mean, share or count summarises them and is shown.
            observed = None
        sample: list[dict[str, Any]] = []
        if res.get("partial_unexpected_index_list"):
            sample = [privacy.safe_row(row) for row in _index_rows(res["partial_unexpected_index_list"])]
        elif res.get("partial_unexpected_counts") and check.column:
            sample = [
                privacy.safe_row({check.column: item.get("value"), "count": item.get("count")})
                for item in res["partial_unexpected_counts"]
                if "value" in item
            ]
        if check.type == "expect_column_values_to_not_be_null":
            # The failing value is null by definition; the row's keys say which data it is.
            sample = [{k: v for k, v in row.items() if k != check.column} for row in sample]
        sample = [row for row in sample if row]
        if sample:
            # Sorted: the same failure gives the same summary files on a re-run.
            details["sample"] = sorted(
                sample, key=lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False)
            )
        if res.get("unexpected_percent") is not None:
            details["unexpected_percent"] = round(float(res["unexpected_percent"]), 4)
        return self._result(
            check,
            success=bool(result.success) and not error,
            element_count=res.get("element_count"),
            unexpected_count=res.get("unexpected_count"),
            observed_value=privacy.plain(observed),
            details=details,
        )


def _index_rows(index_list: list[Any]) -> list[dict[str, Any]]:
    """GX's failing-row keys as rows.

    GX lists one dict per failing row, except when asked to leave out the values
    (exclude_unexpected_values, used for personal columns): then it gives one dict
    of columns, each holding the list of key values.
    """
    rows: list[dict[str, Any]] = []
    for item in index_list:
        item = dict(item)
        if item and all(isinstance(v, list) for v in item.values()):
            columns = list(item)
            rows.extend(
                dict(zip(columns, values, strict=False)) for values in zip(*item.values(), strict=False)
            )
        else:
            rows.append(item)
    return rows[:SAMPLE_SIZE]


def _first_full_month(first: date | datetime) -> date:
    """The first month whose first day is covered: the month of `first` if it is the 1st, else the next."""
    day = first.date() if isinstance(first, datetime) else first
    month = day.replace(day=1)
    return month if day.day == 1 else add_months(month, 1)


def _is_row_level(expectation_type: str) -> bool:
    """Map expectations (one verdict per row), which can name the failing rows."""
    return expectation_type.startswith(("expect_column_values_", "expect_column_pair_values_")) or (
        expectation_type in ("expect_multicolumn_values_to_be_unique", "expect_compound_columns_to_be_unique")
    )


def _summary_statistic(expectation_type: str) -> bool:
    """Expectations whose observed value is a number about the column, never one of its values."""
    return any(
        part in expectation_type
        for part in (
            "_mean_",
            "_stdev_",
            "_proportion_of_",
            "_unique_value_count_",
            "_sum_",
            "table_row_count",
        )
    )


def _bounds(kwargs: dict[str, Any]) -> dict[str, Any]:
    bounds = {k: privacy.plain(kwargs[k]) for k in _BOUND_KWARGS if kwargs.get(k) is not None}
    values = kwargs.get("value_set")
    if values is not None and len(values) <= 20:
        bounds["value_set"] = privacy.plain(list(values))
    return bounds


def _gx_error(info: Any) -> str | None:
    """The first exception message GX recorded (its exception_info is flat or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return _short(info.get("exception_message") or "GX raised an exception")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return _short(value.get("exception_message") or "GX raised an exception")
    return None


def _short(exc: Any) -> str:
    """An error message fit for the summary, the HTML report and the logs.

    Database errors quote the offending value ('invalid input syntax ... "13812345678"'),
    which may be personal data: quoted literals are replaced and phone- and ID-shaped
    digit runs masked, so only the kind of error and where it happened remain.
    """
    text = " ".join(str(exc).split())
    text = _QUOTED.sub(_hide_value, text)
    return pii.scrub_text(text)[:500]


# A quoted stretch of an error message: kept when it names a relation or column, else hidden.
_QUOTED = re.compile(r"""(["'])(.*?)\1""")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,62}")


def _hide_value(match: re.Match[str]) -> str:
    quote, inner = match.group(1), match.group(2)
    return match.group(0) if _IDENTIFIER.fullmatch(inner) else f"{quote}…{quote}"


def run_suite(
    spec: SuiteSpec | Path, *, period: Period | date, database_url: str | None = None, _warehouse=None
) -> SuiteResult:
    """Validate one suite for the period; a suite that cannot start at all yields one failed check."""
    spec = spec if isinstance(spec, SuiteSpec) else load_suite_file(spec)
    period = period if isinstance(period, Period) else Period.of(period)
    warehouse = _warehouse or _Warehouse(database_url)
    try:
        try:
            run = _SuiteRun(spec, period, warehouse)
            outcomes = [run.run(check) for check in spec.checks]
        except Exception as exc:
            outcomes = [
                CheckResult(
                    expectation="suite_could_not_run",
                    column=None,
                    success=False,
                    element_count=None,
                    unexpected_count=None,
                    number=0,
                    check="completeness",
                    title="检查集无法运行",
                    scope="table",
                    status="failed",
                    details={"error": _short(exc)},
                )
            ]
    finally:
        if _warehouse is None:
            warehouse.close()
    result = SuiteResult(
        suite=spec.name,
        table=spec.table,
        success=all(c.status != "failed" for c in outcomes),
        checks=[c for c in outcomes if c.status != "skipped"],
        skipped=[c for c in outcomes if c.status == "skipped"],
        layer=spec.layer,
        title=spec.title,
        description=spec.description,
        period_column=spec.period_column,
    )
    log.info(
        "quality suite %s on %s for %s: %d checks run, %d failed, %d skipped",
        result.suite,
        result.table,
        period.label,
        len(result.checks),
        len(result.failed),
        len(result.skipped),
    )
    for check in result.failed:
        log.warning("quality check failed: %s", check.describe(result))
    return result


def run_gate(
    expectations_dir: Path,
    summary_dir: Path,
    *,
    period: date | Period,
    load_stats: dict[str, int] | None = None,
    database_url: str | None = None,
    templates_dir: Path | None = None,
) -> list[SuiteResult]:
    """Run every suite for the period, record the results, raise if any check failed."""
    from xinfang.quality import report, store

    period = period if isinstance(period, Period) else Period.of(period)
    try:
        specs = load_suites(expectations_dir)
    except SuiteFileError as exc:
        raise QualityGateFailed(f"data-quality gate cannot run, nothing will be published: {exc}") from exc
    if not specs:
        raise QualityGateFailed(f"no expectation suites found in {expectations_dir}")
    run_id = uuid.uuid4()
    warehouse = _Warehouse(database_url)
    try:
        results = [run_suite(spec, period=period, _warehouse=warehouse) for spec in specs]
    finally:
        warehouse.close()
    checked_at = datetime.now(BUREAU_TZ)
    with db.connect(database_url or warehouse.url) as conn:
        store.save_results(conn, run_id=run_id, period=period, results=results, checked_at=checked_at)
    report.write_summary(
        results,
        summary_dir,
        load_stats or {},
        period=period,
        checked_at=checked_at,
        templates_dir=templates_dir,
    )
    failed = [(r, c) for r in results for c in r.failed]
    if failed:
        details = "; ".join(c.describe(r) for r, c in failed)
        raise QualityGateFailed(
            f"data-quality gate failed for {period.label}, nothing will be published: "
            f"{len(failed)} check(s) failed: {details}"
        )
    return results
