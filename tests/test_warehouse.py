"""The dbt warehouse over the default simulated world, built by real dbt on a real PostgreSQL.

Three years of petitions (through the platform's API), the staff roster, the
grid system's events and a month of 12345 exports are loaded by the real
loaders into a fresh database; `dbt build` then seeds, builds and tests every
model (unit tests included). The tests assert the seed document's 2025 H1
headline figures by SQL on the report marts, that the incremental hotline
models give what a full rebuild gives while touching only the new rows, that
each rule's unit test fails when the rule is broken, and that the docs build
offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xinfang import db
from xinfang.ingest import batches, grid, hotline, online, staff
from xinfang.sim import grid_system, web_api
from xinfang.sim.hotline import SimConfig, write_exports
from xinfang.sim.world import WorldConfig

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
KEY = b"warehouse-test-key"
# The bureau's 2025 H1 summary (DOMAIN.md table), with the sources issue's tolerances.
SEED = {
    "petitions_received": 12_300,
    "petitions_change_yoy": -0.117,
    "first_handling_resolution_rate": 0.923,
    "first_handling_resolution_change_pp_yoy": 5.6,
    "repeat_share": 0.158,
    "repeat_share_change_pp_yoy": -3.9,
    "satisfaction_rate": 0.915,
    "online_share": 0.85,
    "online_share_change_pp_yoy": 18.0,
}
HOTLINE_DAYS = (date(2025, 6, 1), date(2025, 6, 30))


def run_dbt(url: str, *args: str, project: Path = PROJECT, target: Path) -> subprocess.CompletedProcess:
    """dbt in its own process (as Cosmos and `xinfang` run it) against `url`, with a private target."""
    env = {**os.environ, **db.dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"}
    cmd = [
        str(Path(sys.executable).with_name("dbt")),
        *args,
        "--profiles-dir",
        str(project),
        "--project-dir",
        str(project),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def _grid_url(url: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = f"{params['dbname']}_gridsys"
    return make_conninfo(**params)


@pytest.fixture(scope="module")
def warehouse(module_database_url, tmp_path_factory, monkeypatch_module):
    url = module_database_url
    workdir = tmp_path_factory.mktemp("warehouse")
    monkeypatch_module.setenv("XINFANG_DATA_DIR", str(workdir / "data"))
    config = WorldConfig()
    as_of = datetime(2026, 6, 30, 23, 59)
    server = web_api.PetitionAPIServer(
        ("127.0.0.1", 0),
        token="warehouse-token",
        records_provider=web_api.world_provider(seed=config.seed, as_of=as_of),
        staff_provider=web_api.world_staff_provider(seed=config.seed, as_of=as_of),
    )
    web_api.start_in_thread(server)
    grid_url = _grid_url(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            batches.ensure_schema(conn)
            petitions = online.load_window(
                conn,
                base_url=server.url,
                token="warehouse-token",
                since=datetime(2022, 12, 1),
                until=datetime(2026, 7, 1),
                pii_key=KEY,
                page_size=web_api.MAX_PAGE_SIZE,
            )
            roster = staff.load_window(
                conn,
                base_url=server.url,
                token="warehouse-token",
                since=datetime(2000, 1, 1),
                until=datetime(2026, 7, 1),
                pii_key=KEY,
                page_size=web_api.MAX_PAGE_SIZE,
            )
            landing = workdir / "landing"
            files = write_exports(*HOTLINE_DAYS, landing, SimConfig())
            for path in files:
                hotline.load_file(conn, path, pii_key=KEY)
        grid_system.advance_to(datetime(2025, 12, 31, 23, 59), url=grid_url)
        with psycopg.connect(url) as conn:
            grid.load_changes(conn, grid_url, pii_key=KEY)
    finally:
        server.shutdown()
        server.server_close()
    assert petitions.loaded_rows > 70_000 and roster.loaded_rows > 400
    target = workdir / "dbt_target"
    built = _ok(run_dbt(url, "build", target=target))
    yield {"url": url, "target": target, "workdir": workdir, "landing": landing, "build_log": built.stdout}
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{conninfo_to_dict(grid_url)["dbname"]}" WITH (FORCE)')


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _one(url: str, query: str, params: tuple = ()) -> dict:
    with psycopg.connect(url) as conn:
        cur = conn.execute(query, params)
        names = [c.name for c in cur.description]
        row = cur.fetchone()
    assert row is not None, query
    return dict(zip(names, row, strict=True))


def test_build_ran_every_unit_test(warehouse):
    # dbt build runs unit tests before their model; a build that skipped them would not say so.
    results = json.loads((warehouse["target"] / "run_results.json").read_text(encoding="utf-8"))
    unit = {
        r["unique_id"].split(".")[-1]: r["status"]
        for r in results["results"]
        if r["unique_id"].startswith("unit_test.")
    }
    assert len(unit) >= 7, unit
    assert set(unit.values()) == {"pass"}, unit


def test_2025h1_headline_figures_from_the_marts(warehouse):
    h1 = _one(warehouse["url"], "SELECT * FROM marts.rpt_halfyear_indicators WHERE half_year = '2025H1'")
    print({k: v for k, v in h1.items() if k in SEED or k.startswith("township") or k.startswith("train")})
    assert abs(h1["petitions_received"] - SEED["petitions_received"]) <= 0.01 * SEED["petitions_received"]
    assert float(h1["petitions_change_yoy"]) == pytest.approx(SEED["petitions_change_yoy"], abs=0.005)
    for rate in ("first_handling_resolution_rate", "repeat_share", "satisfaction_rate", "online_share"):
        assert float(h1[rate]) == pytest.approx(SEED[rate], abs=0.005), rate
    for change in (
        "first_handling_resolution_change_pp_yoy",
        "repeat_share_change_pp_yoy",
        "online_share_change_pp_yoy",
    ):
        assert float(h1[change]) == pytest.approx(SEED[change], abs=0.5), change
    assert h1["satisfaction_best_in_3_years"] is True
    # Staffing and training as the summary states them: 68 %, 4 classes / 320 person-times, 15 / 20 / 7.
    assert float(h1["township_full_time_ratio"]) == pytest.approx(0.68, abs=0.005)
    assert (h1["training_classes"], h1["training_person_times"]) == (4, 320)
    assert (h1["cadres_sent_down"], h1["cadres_brought_up"], h1["cadres_promoted"]) == (15, 20, 7)


def test_2025h1_summary_pdf_prints_the_seed_figures_as_the_marts_give_them(warehouse, tmp_path, monkeypatch):
    """The half-year summary over the default world (every H1 first petition past its follow-up)."""
    from xinfang.config import get_settings
    from xinfang.publish import halfyear_report
    from xinfang.publish.halfyear_context import HalfYear
    from xinfang.risk.monthly import run_month

    monkeypatch.setenv("XINFANG_OUTPUT_DIR", str(tmp_path))
    h1 = HalfYear(2025, 1)
    with psycopg.connect(warehouse["url"]) as conn:
        run_month(conn, date(2025, 6, 1), tag=False)  # the risk model's sentence needs one month at least
        conn.commit()
        summary = halfyear_report.publish(
            conn, h1, {"period": "2025-06", "totals": {"suites": 7, "checks": 1}}, get_settings()
        )
    text = re.sub(
        r"\s+",
        "",
        subprocess.run(["pdftotext", str(summary.path), "-"], capture_output=True, text=True).stdout,
    )
    row = _one(warehouse["url"], "SELECT * FROM marts.rpt_halfyear_indicators WHERE half_year = '2025H1'")
    assert row["first_petitions_judged"] == row["first_petitions"]

    def pct(value, digits=1):
        # Half up on the decimal value, as the report rounds.
        exponent = Decimal(1).scaleb(-digits)
        return (
            f"{(Decimal(str(value)) * 100).quantize(exponent, rounding=ROUND_HALF_UP)}".removesuffix(".0")
            + "%"
        )

    wan = (Decimal(row["petitions_received"]) / 10000).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    from_sql = [
        f"{wan}万件次",
        f"同比下降{pct(-row['petitions_change_yoy'])}",
        f"一次性化解率达{pct(row['first_handling_resolution_rate'])}，",
        f"重复信访占比降至{pct(row['repeat_share'])}",
        f"满意度达{pct(row['satisfaction_rate'])}",
        f"线上信访占比达{pct(row['online_share'], 0)}",
    ]
    seed = [
        "1.23万件次",
        "同比下降11.7%",
        "一次性化解率达92.3%，",
        "重复信访占比降至15.8%",
        "满意度达91.5%",
        "线上信访占比达85%",
    ]
    assert from_sql == seed
    for phrase in seed:
        assert phrase in text, phrase
    assert "（暂计）" not in text and "6月共发出风险预警" in text


def test_marts_reconcile_with_the_raw_layer(warehouse):
    url = warehouse["url"]
    counts = _one(
        url,
        """
        SELECT
            (SELECT count(*) FROM raw.online_petitions) AS raw_petitions,
            (SELECT sum(registration_count) FROM marts.fct_cases WHERE matter_source = 'petition') AS folded,
            (SELECT count(DISTINCT work_order_no) FROM raw.hotline_work_orders) AS raw_orders,
            (SELECT count(*) FROM marts.fct_cases WHERE matter_source = 'hotline') AS hotline_cases,
            (SELECT count(*) FROM marts.fct_cases f JOIN raw.online_petitions p
                ON p.hotline_work_order_no = f.work_order_no WHERE f.matter_source = 'hotline') AS doubled,
            (SELECT count(*) FROM raw.grid_screening_events) AS raw_grid,
            (SELECT count(*) FROM marts.fct_cases WHERE matter_source = 'grid') AS grid_cases,
            (SELECT count(*) FROM raw.grid_screening_events
                WHERE escalated_petition_no IS NOT NULL) AS escalated
        """,
    )
    # Every petition is in exactly one matter (duplicates folded); no converted work order or escalated
    # grid event is a matter of its own besides its petition.
    assert counts["folded"] == counts["raw_petitions"]
    assert counts["doubled"] == 0
    assert counts["grid_cases"] == counts["raw_grid"] - counts["escalated"]
    converted = _one(
        url,
        """SELECT count(DISTINCT h.work_order_no) AS n FROM raw.hotline_work_orders h
           JOIN raw.online_petitions p ON p.hotline_work_order_no = h.work_order_no""",
    )["n"]
    assert counts["hotline_cases"] == counts["raw_orders"] - converted


def _table_digest(url: str, relation: str, order_by: str) -> tuple[int, str]:
    # loaded_through_batch_id is run bookkeeping (which run wrote the row), not content.
    row = _one(
        url,
        f"""SELECT count(*) AS n,
                   md5(string_agg((to_jsonb(t) - 'loaded_through_batch_id')::text, '|'
                                  ORDER BY {order_by})) AS digest
            FROM {relation} AS t""",
    )
    return row["n"], row["digest"]


def test_incremental_run_processes_only_new_rows_and_matches_a_full_rebuild(warehouse):
    url, target = warehouse["url"], warehouse["target"]
    day = HOTLINE_DAYS[1] + timedelta(days=1)
    (path,) = write_exports(day, day, warehouse["landing"], SimConfig())
    with psycopg.connect(url, autocommit=True) as conn:
        loaded = hotline.load_file(conn, path, pii_key=KEY)
    assert loaded.loaded_rows > 0

    # int_cases__hotline is a view over the incremental table: a full refresh replaces the table and
    # drops the view with it, so it is always selected with its neighbours.
    hotline_path = ("int_hotline__work_orders", "int_cases__hotline", "fct_cases")
    _ok(run_dbt(url, "run", "--select", *hotline_path, target=target))
    results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    affected = {
        r["unique_id"].split(".")[-1]: r["adapter_response"].get("rows_affected") for r in results["results"]
    }
    # The day's file holds new orders and later versions of older ones: the incremental model
    # rewrites at most those orders, not the month before.
    distinct_in_file = _one(
        url,
        "SELECT count(DISTINCT work_order_no) AS n FROM raw.hotline_work_orders WHERE batch_id = %s",
        (loaded.batch_id,),
    )["n"]
    assert 0 < affected["int_hotline__work_orders"] <= distinct_in_file
    incremental = {
        rel: _table_digest(url, rel, "case_id" if "cases" in rel else "work_order_no")
        for rel in ("marts.fct_cases", "intermediate.int_hotline__work_orders")
    }

    _ok(run_dbt(url, "run", "--full-refresh", "--select", *hotline_path, target=target))
    rebuilt = {
        rel: _table_digest(url, rel, "case_id" if "cases" in rel else "work_order_no")
        for rel in ("marts.fct_cases", "intermediate.int_hotline__work_orders")
    }
    assert incremental == rebuilt


def test_docs_generate_offline(warehouse):
    target = warehouse["target"]
    result = _ok(run_dbt(warehouse["url"], "docs", "generate", target=target))
    catalog = json.loads((target / "catalog.json").read_text(encoding="utf-8"))
    assert "model.xinfang.fct_cases" in catalog["nodes"], result.stdout[-2000:]
    html = (target / "index.html").read_text(encoding="utf-8")
    assert len(html) > 100_000
    # A single-file site: no script, style sheet, image or font fetched from elsewhere.
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=\"https?://", html)
    assert not re.search(r"url\(\s*['\"]?https?://", html)


# --- every rule's unit test fails when the rule is broken ----------------------------------------

# (file, text of the rule, broken text, unit test that must then fail)
MUTATIONS = [
    (
        "models/marts/core/dim_date.sql",
        "holidays.day_kind = 'workday',",
        "false,",
        "dim_date_counts_workdays_across_holidays_and_tiaoxiu",
    ),
    (
        "models/intermediate/hotline/int_cases__hotline.sql",
        "closed_day.workday_number - received_day.workday_number",
        "closed_day.workday_number - received_day.workday_number + 1",
        "hotline_working_days_and_due_dates_follow_the_official_calendar",
    ),
    (
        "models/intermediate/petitions/int_petitions__judged.sql",
        # The first of the two windows (the repeat's), keyed by full category instead of top level.
        "partition by petitioner_key, left(category_code, 6) order by registered_at, petition_no\n"
        "        ),\n        same_person_matter_so_far",
        "partition by petitioner_key, category_code order by registered_at, petition_no\n"
        "        ),\n        same_person_matter_so_far",
        "repeat_detection_uses_person_top_category_and_window",
    ),
    (
        "models/intermediate/petitions/int_petitions__judged.sql",
        "and not coalesce(next_registered_at <= first_reply_at + followup, false)",
        "",
        "first_handling_resolution_rule",
    ),
    (
        "models/marts/core/fct_cases.sql",
        "else cast(cases.closed_at as date) <= cases.due_date",
        "else cast(cases.closed_at as date) < cases.due_date",
        "fct_cases_on_time_satisfaction_and_group_rules",
    ),
    (
        "models/intermediate/petitions/int_petitions__transfers.sql",
        "ordered.transfer_type = '退回' as is_bounce",
        "ordered.transfer_type = '转送' as is_bounce",
        "bounce_and_ping_pong_detection",
    ),
    (
        "models/intermediate/petitions/int_petitions__registrations.sql",
        "lag(first_reply_at) over same_matter > registered_at",
        "true",
        "duplicate_registration_folds_into_first",
    ),
    (
        "models/marts/core/dim_staff.sql",
        "seen.seen_from <= periods.valid_from",
        "seen.seen_from < periods.valid_from",
        "dim_staff_keeps_type2_history_of_posting_and_full_time",
    ),
    (
        "models/marts/reporting/rpt_warning_ledger.sql",
        "order by level_rank desc",
        "order by level_rank asc",
        "warning_levels_follow_the_seed_thresholds",
    ),
]


@pytest.mark.parametrize("path, rule, broken, unit_test", MUTATIONS, ids=[m[3] for m in MUTATIONS])
def test_unit_test_fails_when_its_rule_is_broken(warehouse, tmp_path, path, rule, broken, unit_test):
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    model = project / path
    text = model.read_text(encoding="utf-8")
    assert text.count(rule) == 1, f"rule text not found once in {path}"
    model.write_text(text.replace(rule, broken), encoding="utf-8")
    result = run_dbt(warehouse["url"], "test", "--select", unit_test, project=project, target=tmp_path / "t")
    assert result.returncode != 0, f"{unit_test} still passes with the rule broken"
    name = re.escape(unit_test)
    assert re.search(rf"(FAIL|ERROR)\S* {name}|{name}.*(FAIL|ERROR)", result.stdout), result.stdout[-3000:]
