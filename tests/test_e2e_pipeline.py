"""The README's main job, end to end: `xinfang demo` runs the DAGs through Airflow.

One demo run (a fresh database, data and output folder) feeds every test in
this module; the tests then read the real PDF with poppler, the real e-mails,
the real extract and the warehouse, and compare them with each other.
Order matters: the re-run test precedes the quality-gate test, which damages
the warehouse on purpose.
"""

from __future__ import annotations

import csv
import email
import hashlib
import json
import os
import re
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from email import policy
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from xinfang.ingest.grid import with_dbname

pytestmark = pytest.mark.e2e

MONTH = "2025-06"
XINFANG = str(Path(sys.executable).with_name("xinfang"))
NETGUARD = Path(__file__).parent / "netguard"


def _env(database_url: str, data: Path, output: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "XINFANG_PG_"))}
    env.update(
        XINFANG_DATABASE_URL=database_url,
        XINFANG_DATA_DIR=str(data),
        XINFANG_OUTPUT_DIR=str(output),
        XINFANG_PII_KEY="e2e-test-key-not-a-secret",
        PYTHONDONTWRITEBYTECODE="",
    )
    env.pop("XINFANG_SMTP_HOST", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([XINFANG, *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo(module_database_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data, output = root / "data", root / "output"
    database_url = module_database_url
    env = _env(database_url, data, output)
    # The grid system's own database, beside this module's warehouse (not the shared default name).
    grid_db = f"{conninfo_to_dict(database_url)['dbname']}_gridsys"
    env["XINFANG_GRID_DATABASE_URL"] = with_dbname(database_url, grid_db)
    # Every process of the run (Airflow, dbt, GX, WeasyPrint) logs any attempt to leave the machine.
    netlog = root / "network_attempts.log"
    env["XINFANG_NETGUARD_LOG"] = str(netlog)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), env.get("PYTHONPATH")]))
    result = _run(["demo", "--month", MONTH], env)
    (root / "demo.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    assert result.returncode == 0, f"demo failed, log in {root / 'demo.log'}:\n{result.stderr[-4000:]}"
    yield {
        "env": env,
        "data": data,
        "output": output,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "url": database_url,
        "netlog": netlog,
    }
    with psycopg.connect(with_dbname(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{grid_db}" WITH (FORCE)')


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _pdf(demo) -> Path:
    pdfs = sorted((demo["output"] / "reports" / MONTH).glob("*.pdf"))
    assert len(pdfs) == 1, pdfs
    return pdfs[0]


def _pdf_text(path: Path) -> str:
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    # Lines wrap anywhere in Chinese text: compare without white space.
    return re.sub(r"\s+", "", text.stdout)


def test_demo_prints_where_each_output_is(demo):
    for name in ("report", "outbox", "extract", "dropfolder", "quality"):
        line = next((ln for ln in demo["stdout"].splitlines() if ln.strip().startswith(name)), None)
        assert line is not None, f"demo output does not say where the {name} is"
        assert Path(line.split(maxsplit=1)[1]).exists()


def test_demo_never_tries_to_reach_the_network(demo):
    attempts = demo["netlog"].read_text(encoding="utf-8") if demo["netlog"].exists() else ""
    assert attempts == "", f"network access attempted during the demo:\n{attempts[:3000]}"


def test_network_guard_is_active_in_the_demo_processes(demo, tmp_path):
    """The guard itself must work, or the test above proves nothing."""
    log = tmp_path / "probe.log"
    env = demo["env"] | {"XINFANG_NETGUARD_LOG": str(log)}
    probe = (
        "import socket\n"
        "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
        "except OSError:\n    pass"
    )
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, timeout=60)
    assert "192.0.2.1" in log.read_text(encoding="utf-8")


def test_pdf_figures_equal_what_sql_returns(demo):
    text = _pdf_text(_pdf(demo))
    received, prev, closed, closed_rate, on_time, satisfied = _query(
        demo["url"],
        """
        SELECT cases_received, prev_month_received, cases_closed, closed_rate, on_time_rate, satisfaction_rate
        FROM marts.rpt_monthly_overview WHERE month_start = %s
        """,
        (f"{MONTH}-01",),
    )[0]
    # The overview must itself agree with the case-level facts.
    assert (
        received
        == _query(
            demo["url"], "SELECT count(*) FROM marts.fct_cases WHERE received_month = %s", (f"{MONTH}-01",)
        )[0][0]
    )
    assert prev and prev > 0, "the demo loads the month before, so month-on-month change must be known"
    change = (received - prev) / prev * 100
    assert f"本月共受理群众诉求{received:,}件" in text
    assert f"环比{'上升' if change > 0 else '下降'}{abs(change):.1f}%" in text
    assert f"已办结{closed:,}件" in text
    for rate in (closed_rate, on_time, satisfied):
        # Official figures round half up (0.9605 -> 96.1%); binary floats would not.
        percent = (Decimal(rate) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        assert f"{percent}%" in text
    top_district, top_count = _query(
        demo["url"],
        """SELECT district_name, count(*) FROM marts.fct_cases WHERE received_month = %s
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""",
        (f"{MONTH}-01",),
    )[0]
    assert f"{top_district}（{top_count:,}件）" in text


def test_pdf_embeds_cjk_fonts_and_has_no_missing_glyphs(demo):
    listing = subprocess.run(["pdffonts", str(_pdf(demo))], capture_output=True, text=True, check=True).stdout
    rows = [ln.split() for ln in listing.splitlines()[2:] if ln.strip()]
    assert rows, "no fonts in the PDF"
    assert all(r[-5] == "yes" for r in rows), f"a font is not embedded:\n{listing}"
    names = " ".join(r[0] for r in rows)
    assert "XF-Kai" in names and "XF-Hei" in names and "XF-Song" in names
    # A glyph missing from every font shows up as U+FFFD or .notdef boxes in the text layer.
    assert "\ufffd" not in _pdf_text(_pdf(demo))


def test_every_recipient_got_one_mail_with_the_pdf_and_the_ledger_says_so(demo):
    recipients = yaml.safe_load(Path("config/recipients.yml").read_text(encoding="utf-8"))["recipients"]
    emls = sorted((demo["output"] / "outbox" / f"monthly_report-{MONTH}" / "r1").glob("*.eml"))
    assert len(emls) == len(recipients)
    pdf_sha = hashlib.sha256(_pdf(demo).read_bytes()).hexdigest()
    for eml in emls:
        message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert "月度风险预警报告" in message["Subject"]
        attachments = [p.get_content() for p in message.iter_attachments()]
        assert [hashlib.sha256(a).hexdigest() for a in attachments] == [pdf_sha]
    ledger = _query(
        demo["url"],
        "SELECT recipient, status, sha256 FROM ops.delivery_ledger WHERE artifact_key = %s AND revision = 1",
        (f"monthly_report-{MONTH}",),
    )
    assert sorted(r[0] for r in ledger) == sorted(r["email"].lower() for r in recipients)
    assert {r[1] for r in ledger} == {"sent"}
    assert {r[2] for r in ledger} == {pdf_sha}


def test_extract_checksum_rows_and_no_personal_data(demo):
    package = demo["output"] / "extracts" / "province" / MONTH
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    [entry] = manifest["files"]
    data = (package / entry["name"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    rows = list(csv.reader(data.decode("utf-8").splitlines()))
    assert len(rows) - 1 == entry["rows"]
    assert entry["rows"] == _query(demo["url"], "SELECT count(*) FROM marts.ext_province__cases")[0][0]
    assert all(c["description"] for c in entry["columns"])
    delivered = list((demo["output"] / "dropfolder" / "province").glob(f"{MONTH}_v*"))
    assert len(delivered) == 1
    assert (delivered[0] / entry["name"]).read_bytes() == data
    text = data.decode("utf-8")
    people = _query(demo["url"], "SELECT caller_name, caller_phone, address FROM restricted.hotline_callers")
    assert people
    leaks = [value for person in people for value in person if value in text]
    assert leaks == [], f"{len(leaks)} personal values found in the extract"


def test_all_three_sources_loaded_and_every_batch_reconciles(demo):
    rows = _query(
        demo["url"],
        """SELECT source, count(*), count(*) FILTER (WHERE status <> 'loaded'),
                  count(*) FILTER (WHERE source_rows <> loaded_rows + quarantined_rows), sum(loaded_rows)
           FROM ops.load_batches GROUP BY source""",
    )
    by_source = {r[0]: r[1:] for r in rows}
    # The online DAG also loads the platform's staff roster (handlers of petition events).
    assert set(by_source) == {"hotline", "online_petitions", "online_staff", "grid_events"}
    for source, (batches, failed, unreconciled, loaded) in by_source.items():
        assert failed == 0 and unreconciled == 0, source
        assert batches > 0 and loaded > 0, source
    # Two months of daily exports and API windows: one batch per day for each.
    assert by_source["hotline"][0] == by_source["online_petitions"][0] == 61


def _personal_values(url: str) -> tuple[set[str], list[str]]:
    """Raw identifiers from the restricted schema: digit strings, and name/address samples."""
    digits: set[str] = set()
    texts: list[str] = []
    for sql in (
        "SELECT caller_phone, NULL, caller_name, address FROM restricted.hotline_callers",
        "SELECT phone, id_number, name, address FROM restricted.online_petitioners",
        "SELECT phone, NULL, name, NULL FROM restricted.grid_workers",
        "SELECT phone, NULL, name, NULL FROM restricted.online_staff",
    ):
        for phone, id_number, name, address in _query(url, sql):
            digits.update(v for v in (phone, id_number) if v)
            texts.extend(v for v in (name, address) if v and len(v) >= 3)
    # Every phone and ID number is checked; names and addresses by a fixed sample (substring search is slow).
    return digits, sorted(set(texts))[::17]


def _leaks(text: str, digits: set[str], samples: list[str]) -> list[str]:
    # Every run of digits (landlines are 7-8 digits, mobiles 11, IDs 18) is looked up whole.
    found = [t for t in re.findall(r"\d{17}[\dX]|\d{7,}", text) if t in digits]
    return found + [s for s in samples if s in text]


def test_no_personal_data_outside_the_restricted_schema_in_outputs_or_logs(demo):
    digits, samples = _personal_values(demo["url"])
    assert len(digits) > 1000 and len(samples) > 100
    columns = _query(
        demo["url"],
        """SELECT table_schema, table_name, column_name FROM information_schema.columns
           WHERE table_schema NOT IN ('restricted', 'pg_catalog', 'information_schema')
             AND data_type IN ('text', 'character varying', 'jsonb', 'json')""",
    )
    assert columns
    leaks = {}
    for schema, table, column in columns:
        values = _query(
            demo["url"], f'SELECT string_agg("{column}"::text, chr(10)) FROM "{schema}"."{table}"'
        )
        found = _leaks(values[0][0] or "", digits, samples)
        if found:
            leaks[f"{schema}.{table}.{column}"] = len(found)
    files = [p for p in demo["output"].rglob("*") if p.is_file() and p.suffix != ".pdf"]
    files += [p for p in (demo["data"] / "airflow").rglob("*.log")]
    for path in files:
        found = _leaks(path.read_text(encoding="utf-8", errors="replace"), digits, samples)
        if found:
            leaks[str(path)] = len(found)
    for pdf in demo["output"].rglob("*.pdf"):
        if found := _leaks(_pdf_text(pdf), digits, samples):
            leaks[str(pdf)] = len(found)
    if found := _leaks(demo["stdout"] + demo["stderr"], digits, samples):
        leaks["demo console output"] = len(found)
    assert leaks == {}, f"personal data found outside the restricted schema: {leaks}"


def _snapshot(demo) -> dict:
    tables = _query(
        demo["url"],
        """SELECT table_schema || '.' || table_name FROM information_schema.tables
           WHERE table_schema IN ('raw', 'ops', 'restricted', 'marts', 'staging', 'reference')
             AND table_type = 'BASE TABLE' ORDER BY 1""",
    )
    counts = {t: _query(demo["url"], f"SELECT count(*) FROM {t}")[0][0] for (t,) in tables}
    files = {
        str(p.relative_to(demo["output"])): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(demo["output"].rglob("*"))
        if p.is_file()
    }
    return {"counts": counts, "files": files}


def test_second_run_adds_no_rows_and_sends_nothing(demo):
    before = _snapshot(demo)
    result = _run(["demo", "--month", MONTH], demo["env"])
    assert result.returncode == 0, result.stderr[-4000:]
    after = _snapshot(demo)
    assert after["counts"] == before["counts"]
    assert after["files"] == before["files"]


def test_failed_quality_gate_publishes_nothing(demo):
    """Damage the facts for May, run May's report: the gate stops the report, the mail and the extract."""
    may = "2025-05"
    with psycopg.connect(demo["url"]) as conn:
        conn.execute(
            """
            UPDATE marts.fct_cases SET working_days_to_close = -7
            WHERE case_id = (
                SELECT min(case_id) FROM marts.fct_cases WHERE received_month = '2025-05-01'
            )
            """
        )
    result = _run(
        ["dag-test", "monthly_risk_report", "--logical-date", "2025-06-02T08:00:00+08:00"], demo["env"]
    )
    assert result.returncode != 0
    assert "quality_gate" in result.stderr
    summary = json.loads(
        (demo["output"] / "quality" / may / "quality_summary.json").read_text(encoding="utf-8")
    )
    assert summary["passed"] is False
    assert not (demo["output"] / "reports" / may).exists()
    assert not (demo["output"] / "outbox" / f"monthly_report-{may}").exists()
    assert not (demo["output"] / "extracts" / "province" / may).exists()
    assert (
        _query(
            demo["url"], "SELECT count(*) FROM ops.delivery_ledger WHERE artifact_key LIKE %s", (f"%{may}%",)
        )[0][0]
        == 0
    )
