"""The provincial extract: province person keys, the Frictionless package, validation, delivery once.

A small warehouse of its own (tables named like the dbt views, typed from the
published schema) keeps these tests fast and their rows known; the demo's
real extract is checked in test_e2e_pipeline.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from xinfang import pii
from xinfang.config import BUREAU_TZ
from xinfang.db import connect
from xinfang.extract import delivery, person_keys
from xinfang.extract import schema as published
from xinfang.extract.commands import acknowledge
from xinfang.extract.package import (
    DESCRIPTOR_NAME,
    MANIFEST_NAME,
    ExtractError,
    Period,
    build_package,
    file_sha256,
    read_package,
)
from xinfang.extract.transfer import Ack, LocalStore, write_ack
from xinfang.extract.validate import validate_package

CITY = "369900"
KEY_ID = "0123456789abcdef"
_SQL_TYPES = {
    "string": "text",
    "integer": "integer",
    "date": "date",
    "datetime": "timestamp",
    "boolean": "boolean",
}
HEX = "ab" * 32

# matter_id -> (received, closed, person_key); events: (matter_id, number, event date)
MATTERS = {
    "XF-1": (date(2025, 5, 20), date(2025, 6, 30), HEX),
    "XF-2": (date(2025, 6, 30), None, "cd" * 32),
    "HL-3": (date(2025, 6, 29), date(2025, 6, 29), None),
    "WG-4": (date(2025, 6, 10), None, None),
    "HL-5": (date(2025, 7, 1), None, None),  # after June: in no June package
}
EVENTS = [("XF-1", 1, date(2025, 5, 20)), ("XF-1", 2, date(2025, 6, 30)), ("WG-4", 1, date(2025, 6, 30))]


def _create(conn: psycopg.Connection, resource: dict) -> None:
    columns = ", ".join(f"{f['name']} {_SQL_TYPES[f['type']]}" for f in resource["schema"]["fields"])
    conn.execute(f"CREATE TABLE marts.{resource['name']} ({columns})")


def _insert(conn: psycopg.Connection, table: str, rows: list[dict]) -> None:
    for row in rows:
        names = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        conn.execute(f"INSERT INTO marts.{table} ({names}) VALUES ({marks})", list(row.values()))


@pytest.fixture(scope="module")
def warehouse(module_database_url: str) -> Iterator[str]:
    with connect(module_database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA marts; CREATE SCHEMA raw; CREATE SCHEMA restricted")
        for resource in published.load_schema()["resources"]:
            _create(conn, resource)
        for matter_id, (received, closed, key) in MATTERS.items():
            _insert(
                conn,
                "ext_province__matters",
                [
                    {
                        "matter_id": matter_id,
                        "city_code": CITY,
                        "matter_source": {"XF": "petition", "HL": "hotline", "WG": "grid"}[matter_id[:2]],
                        "category_name": "劳动社保",
                        "town_name": "江东街道",
                        "received_date": received,
                        "closed_date": closed,
                        "is_on_time": closed is not None,
                        "group_size": 1,
                        "person_key": key,
                    }
                ],
            )
        for matter_id, number, day in EVENTS:
            _insert(
                conn,
                "ext_province__matter_events",
                [
                    {
                        "matter_id": matter_id,
                        "event_number": number,
                        "event_type": "交办",
                        "event_at": datetime.combine(day, datetime.min.time()).replace(hour=9, minute=30),
                        "event_date": day,
                    }
                ],
            )
        for month in (date(2025, 5, 1), date(2025, 6, 1), date(2025, 7, 1)):
            _insert(
                conn,
                "ext_province__department_summary",
                [
                    {
                        "stat_month": month,
                        "department_code": "SZ01",
                        "department_name": "市人社局",
                        "received_count": 2,
                    }
                ],
            )
            _insert(
                conn,
                "ext_province__region_summary",
                [
                    {
                        "stat_month": month,
                        "town_code": "369901001",
                        "town_name": "江东街道",
                        "received_count": 2,
                    }
                ],
            )
        conn.execute(
            "CREATE TABLE marts.dim_region (region_code text, region_level integer); "
            "INSERT INTO marts.dim_region VALUES ('369900', 1), ('369901', 2)"
        )
        conn.execute(
            "CREATE TABLE raw.province_person_keys (person_key text PRIMARY KEY, province_person_key text "
            "NOT NULL, key_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE restricted.online_petitioners (person_key text, id_number text, phone text); "
            "CREATE TABLE restricted.hotline_callers (caller_key text, caller_phone text)"
        )
    yield module_database_url


@pytest.fixture()
def conn(warehouse: str) -> Iterator[psycopg.Connection]:
    with connect(warehouse, autocommit=True) as c:
        yield c


def _build(conn, period: Period, out: Path):
    return build_package(conn, period, out, city_code=CITY, province_key_id=KEY_ID)


def _rows(path: Path, name: str) -> list[dict[str, str]]:
    with open(path / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _rewrite_manifest_entry(package: Path, file_name: str) -> None:
    """Make the manifest agree with an edited file, as a careless or malicious sender would."""
    manifest = json.loads((package / MANIFEST_NAME).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        if entry["name"] == file_name:
            entry["bytes"] = (package / file_name).stat().st_size
            entry["sha256"] = file_sha256(package / file_name)
    (package / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")


# --- person keys ---------------------------------------------------------------------------------


def test_province_person_keys_link_people_across_cities_without_identities(conn) -> None:
    province_key = b"province-issued-key"
    id_number, phone = "110105199001010021", "13812345678"
    # Two cities: different city keys, so different city pseudonyms of the same person.
    city_a, city_b = b"city-a", b"city-b"
    conn.execute(
        "TRUNCATE raw.province_person_keys, restricted.online_petitioners, restricted.hotline_callers"
    )
    conn.execute(
        "INSERT INTO restricted.online_petitioners VALUES (%s, %s, %s), (%s, NULL, %s)",
        (pii.person_key(id_number, city_a), id_number, phone, pii.person_key(phone, city_a), phone),
    )
    conn.execute(
        "INSERT INTO restricted.hotline_callers VALUES (%s, %s), (%s, %s)",
        (pii.person_key(phone, city_a), phone, pii.person_key(phone, city_a), phone),
    )
    first = person_keys.refresh(conn, pii_key=city_a, province_key=province_key)
    assert first.added == 2 and first.key_id == person_keys.key_id(province_key)
    rows = dict(
        conn.execute("SELECT person_key, province_person_key FROM raw.province_person_keys").fetchall()
    )
    assert rows == {
        pii.person_key(id_number, city_a): person_keys.province_person_key(id_number, province_key),
        pii.person_key(phone, city_a): person_keys.province_person_key(phone, province_key),
    }
    # City B, same person, own city key: the province key comes out the same.
    assert person_keys.province_person_key(id_number, province_key) == rows[pii.person_key(id_number, city_a)]
    assert pii.person_key(id_number, city_b) != pii.person_key(id_number, city_a)
    assert person_keys.refresh(conn, pii_key=city_a, province_key=province_key).added == 0

    # A new province key re-keys everyone.
    rotated = person_keys.refresh(conn, pii_key=city_a, province_key=b"next-year-key")
    assert rotated.replaced_other_key == 2 and rotated.added == 2
    assert {r[0] for r in conn.execute("SELECT DISTINCT key_id FROM raw.province_person_keys")} == {
        person_keys.key_id(b"next-year-key")
    }

    # An identifier that does not reproduce its city key stops the refresh, naming no value.
    conn.execute("INSERT INTO restricted.hotline_callers VALUES ('f00d', %s)", (phone,))
    with pytest.raises(person_keys.PersonKeyError) as caught:
        person_keys.refresh(conn, pii_key=city_a, province_key=b"third-key")
    assert "restricted.hotline_callers" in str(caught.value) and phone not in str(caught.value)
    conn.execute(
        "TRUNCATE raw.province_person_keys, restricted.online_petitioners, restricted.hotline_callers"
    )


# --- the package ---------------------------------------------------------------------------------


def test_monthly_full_and_daily_incremental_packages(conn, tmp_path) -> None:
    full = _build(conn, Period.month(date(2025, 6, 1)), tmp_path)
    assert full.name == f"{CITY}_full_2025-06_v{published.SCHEMA_VERSION}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [full.name]  # no temp folders left
    names = {f.name for f in full.files}
    assert names == {
        "ext_province__matters.csv",
        "ext_province__matter_events.csv",
        "ext_province__department_summary.csv",
        "ext_province__region_summary.csv",
        DESCRIPTOR_NAME,
        "CHANGELOG.md",
    }
    assert sorted(p.name for p in full.path.iterdir()) == sorted(names | {MANIFEST_NAME})
    matters = _rows(full.path, "ext_province__matters")
    # Received up to the month's end, in key order; HL-5 (July) is not in it.
    assert [r["matter_id"] for r in matters] == ["HL-3", "WG-4", "XF-1", "XF-2"]
    fields = [f["name"] for f in published.load_schema()["resources"][0]["schema"]["fields"]]
    assert list(matters[0]) == fields
    assert {r["is_on_time"] for r in matters} == {"true", "false"}
    events = _rows(full.path, "ext_province__matter_events")
    assert [(r["matter_id"], r["event_at"]) for r in events] == [
        ("WG-4", "2025-06-30T09:30:00"),
        ("XF-1", "2025-05-20T09:30:00"),
        ("XF-1", "2025-06-30T09:30:00"),
    ]
    assert [r["stat_month"] for r in _rows(full.path, "ext_province__department_summary")] == [
        "2025-05-01",
        "2025-06-01",
    ]
    manifest = json.loads((full.path / MANIFEST_NAME).read_text(encoding="utf-8"))
    by_name = {f["name"]: f for f in manifest["files"]}
    assert by_name["ext_province__matters.csv"]["rows"] == 4
    assert by_name["ext_province__matters.csv"]["sha256"] == file_sha256(
        full.path / "ext_province__matters.csv"
    )
    descriptor = json.loads((full.path / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    matters_resource = descriptor["resources"][0]
    assert matters_resource["title"] == "事项" and matters_resource["schema"]["primaryKey"] == ["matter_id"]
    assert descriptor["resources"][1]["schema"]["foreignKeys"][0]["reference"]["resource"] == (
        "ext_province__matters"
    )
    assert all(
        f["title"] and f["description"] for r in descriptor["resources"] for f in r["schema"]["fields"]
    )

    report = validate_package(full.path)
    assert report.ok, report.text()
    assert report.checks_run == ["manifest", "schema", "data", "privacy"]

    daily = _build(conn, Period.day(date(2025, 6, 30)), tmp_path)
    assert daily.name == f"{CITY}_daily_2025-06-30_v{published.SCHEMA_VERSION}"
    # Received (XF-2), closed (XF-1) or handled (XF-1, WG-4) that day.
    assert [r["matter_id"] for r in _rows(daily.path, "ext_province__matters")] == ["WG-4", "XF-1", "XF-2"]
    assert [
        (r["matter_id"], r["event_number"]) for r in _rows(daily.path, "ext_province__matter_events")
    ] == [
        ("WG-4", "1"),
        ("XF-1", "2"),
    ]
    assert not (daily.path / "ext_province__region_summary.csv").exists()
    assert validate_package(daily.path).ok


def test_rebuild_of_the_same_data_changes_no_file(conn, tmp_path) -> None:
    first = _build(conn, Period.month(date(2025, 6, 1)), tmp_path)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.path.iterdir()}
    second = _build(conn, Period.month(date(2025, 6, 1)), tmp_path)
    assert second.content_sha256 == first.content_sha256
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in second.path.iterdir()} == before


def test_tampered_files_fail_validation_at_both_layers(conn, tmp_path) -> None:
    package = _build(conn, Period.month(date(2025, 6, 1)), tmp_path).path
    data = package / "ext_province__matters.csv"
    data.write_text(data.read_text(encoding="utf-8").replace("XF-2", "XF-9"), encoding="utf-8")

    report = validate_package(package)
    assert not report.ok and report.checks_run == ["manifest"]
    assert any("ext_province__matters.csv" in f.location and "SHA-256" in f.message for f in report.findings)

    # With the manifest "fixed" too, the descriptor's hash still tells (Frictionless).
    _rewrite_manifest_entry(package, data.name)
    report = validate_package(package)
    assert not report.ok and "data" in report.checks_run
    assert any(f.check == "data" and "hash-count" in f.message for f in report.findings), report.text()
    assert "结论：不通过" in report.text()


def test_broken_keys_and_types_are_found_by_row_and_field(conn, tmp_path) -> None:
    package = _build(conn, Period.month(date(2025, 6, 1)), tmp_path).path
    events = package / "ext_province__matter_events.csv"
    text = (
        events.read_text(encoding="utf-8")
        .replace("WG-4,1,", "WG-404,1,")
        .replace(",2025-06-30T", ",2025-13-30T")
    )
    events.write_text(text, encoding="utf-8")
    descriptor = json.loads((package / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    for resource in descriptor["resources"]:
        if resource["path"] == events.name:
            resource["bytes"] = events.stat().st_size
            resource["hash"] = "sha256:" + file_sha256(events)
    (package / DESCRIPTOR_NAME).write_text(json.dumps(descriptor, ensure_ascii=False), encoding="utf-8")
    _rewrite_manifest_entry(package, events.name)
    _rewrite_manifest_entry(package, DESCRIPTOR_NAME)

    report = validate_package(package)
    found = {(f.location, f.message.split("：")[0]) for f in report.findings}
    assert ("ext_province__matter_events.csv 第2行", "foreign-key") in found, report.text()
    assert any(loc.endswith("字段 event_at") and kind == "type-error" for loc, kind in found), report.text()


def test_schema_drift_stops_the_build(conn, tmp_path) -> None:
    conn.execute("ALTER TABLE marts.ext_province__region_summary ADD COLUMN petitioner_name text")
    try:
        with pytest.raises(ExtractError, match=r"petitioner_name.*new\s+schema version"):
            _build(conn, Period.month(date(2025, 6, 1)), tmp_path)
    finally:
        conn.execute("ALTER TABLE marts.ext_province__region_summary DROP COLUMN petitioner_name")
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    assert list(tmp_path.iterdir()) == []


def _refused_build(conn, tmp_path, monkeypatch, block_chars: int | None, **values: str) -> str:
    """The error of a monthly build with matter WG-4's columns set to `values` (restored after),
    the privacy scan reading blocks of `block_chars` (short blocks: one line each)."""
    if block_chars:
        from xinfang.extract import validate

        monkeypatch.setattr(validate, "_SCAN_BLOCK_CHARS", block_chars)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in values)
    where = "FROM marts.ext_province__matters WHERE matter_id = 'WG-4'"
    before = conn.execute(sql.SQL("SELECT {} " + where).format(columns)).fetchone()
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
    update = sql.SQL("UPDATE marts.ext_province__matters SET {} WHERE matter_id = 'WG-4'").format(assignments)
    conn.execute(update, tuple(values.values()))
    try:
        with pytest.raises(ExtractError) as caught:
            _build(conn, Period.month(date(2025, 6, 1)), tmp_path)
    finally:
        conn.execute(update, tuple(before))
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("来电13812345678反映", "手机号"),
        ("电话138-1234-5678", "手机号"),
        ("+86 138 1234 5678", "手机号"),
        ("110105199001010029", "身份证号"),
        ("110105900101002", "身份证号"),
        ("人民路12号", "门牌地址"),
        ("3栋2单元501室", "门牌地址"),
    ],
)
# The privacy scan reads a file in blocks of lines; with blocks shorter than a row every block
# holds one line, and the line numbers must still add up across them.
@pytest.mark.parametrize("block_chars", [None, 80])
def test_personal_data_in_any_cell_stops_the_build(
    conn, tmp_path, monkeypatch, value, what, block_chars
) -> None:
    message = _refused_build(conn, tmp_path, monkeypatch, block_chars, category_name=value)
    findings = [line for line in message.splitlines() if "疑似" in line]
    assert len(findings) == 1, message
    assert f"ext_province__matters.csv 第3行 字段 category_name：疑似{what}" in findings[0]
    assert value not in message  # the finding never repeats the personal data
    assert list(tmp_path.iterdir()) == []  # nothing published


@pytest.mark.parametrize("block_chars", [None, 80])
@pytest.mark.parametrize("quoted", [False, True], ids=["split", "csv"])
def test_a_pseudonym_that_is_no_province_hmac_stops_the_build(
    conn, tmp_path, monkeypatch, quoted, block_chars
) -> None:
    """Read by splitting lines, or by the csv module where a quoted cell (a comma) requires it."""
    values = {"person_key": "not-a-key"} | ({"category_name": "劳动,社保"} if quoted else {})
    message = _refused_build(conn, tmp_path, monkeypatch, block_chars, **values)
    assert "ext_province__matters.csv 第3行 字段 person_key：假名编码应为64位十六进制HMAC值" in message, (
        message
    )
    assert len([line for line in message.splitlines() if "假名编码" in line]) == 1
    assert "not-a-key" not in message


def test_the_fast_privacy_scan_finds_the_lines_the_patterns_find() -> None:
    """The scan searches each pattern's core first; on any text it must mark the lines the
    patterns themselves mark over the whole text (the slow, obvious way)."""
    from xinfang.extract import validate

    def obvious(text: str) -> list[int]:
        starts = validate._line_starts(text)
        hits = (
            m
            for p in (validate._ID_NUMBER, validate._MOBILE, validate._STREET_ADDRESS)
            for m in p.finditer(text)
        )
        return sorted({bisect.bisect_right(starts, m.start()) for m in hits if validate._is_personal(m)})

    pieces = [
        "13812345678",
        "+86 138-1234-5678",
        "0086-13912345678",
        "86 139 1234 5678",
        "138\n1234 5678",
        "110105199001010021",
        "110105199001010022",
        "１１０１０５１９９００１０１００２１",
        "130503670401001",
        "人民路12号",
        "3栋2单元501室",
        "12单元",
        "江东街道",
        "GD2025060100123",
        "ab" * 32,
        "2025-06-30T08:00:00",
        "1",
        "9",
        "-",
        " ",
        ",",
        "\n",
        "X",
        "a",
        "f",
        "+",
        "号",
        "路",
        "室",
        "０",
    ]
    rng = random.Random(20251128)
    marked = 0
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        assert validate._hit_lines(text) == obvious(text), text
        marked += len(obvious(text))
    assert marked > 200  # the texts do hold personal data, on many lines


def test_an_id_shaped_number_failing_its_check_digit_is_not_flagged(conn, tmp_path) -> None:
    conn.execute(
        "UPDATE marts.ext_province__matters SET category_name = '110105199001010021' WHERE matter_id = 'WG-4'"
    )
    try:
        assert validate_package(_build(conn, Period.month(date(2025, 6, 1)), tmp_path).path).ok
    finally:
        conn.execute(
            "UPDATE marts.ext_province__matters SET category_name = '劳动社保' WHERE matter_id = 'WG-4'"
        )


def test_a_descriptor_naming_a_url_or_outside_file_is_refused_unopened(conn, tmp_path) -> None:
    package = _build(conn, Period.month(date(2025, 6, 1)), tmp_path).path
    secret = tmp_path / "secret.csv"
    secret.write_text("matter_id\nX\n", encoding="utf-8")
    for bad in ("http://127.0.0.1:9/ext_province__matters.csv", str(secret), "../secret.csv"):
        descriptor = json.loads((package / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
        descriptor["resources"][0]["path"] = bad
        (package / DESCRIPTOR_NAME).write_text(json.dumps(descriptor, ensure_ascii=False), encoding="utf-8")
        _rewrite_manifest_entry(package, DESCRIPTOR_NAME)
        report = validate_package(package)
        assert not report.ok and report.checks_run == ["manifest", "schema"], bad
        assert any("不是清单中的数据文件" in f.message for f in report.findings), report.text()


def test_a_package_of_an_unknown_schema_version_is_rejected(conn, tmp_path) -> None:
    package = _build(conn, Period.month(date(2025, 6, 1)), tmp_path).path
    manifest = json.loads((package / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["schema_version"] = "9.0.0"
    (package / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    report = validate_package(package)
    assert any("未知的模式版本" in f.message for f in report.findings), report.text()


def test_published_schema_matches_the_dbt_models_and_the_changelog() -> None:
    from xinfang.config import get_settings

    manifest = json.loads((get_settings().dbt_target_dir / "manifest.json").read_text(encoding="utf-8"))
    assert published.schema_from_dbt_manifest(manifest) == published.load_schema(), (
        "the extract models changed: publish a new schema version (xinfang extract schema --write)"
    )
    versions = published.changelog_versions()
    assert versions[0] == published.SCHEMA_VERSION
    assert set(published.published_versions()) <= set(versions)
    assert published.SCHEMA_VERSION in published.published_versions()


def test_validate_command_reports_in_chinese_and_acknowledges(conn, tmp_path) -> None:
    inbox = tmp_path / "inbox"
    good = _build(conn, Period.month(date(2025, 6, 1)), inbox).path
    bad = _build(conn, Period.day(date(2025, 6, 30)), inbox).path
    (bad / "ext_province__matters.csv").write_bytes(b"matter_id\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "xinfang.cli",
            "extract",
            "validate",
            str(inbox),
            "--ack",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "结论：通过" in run.stdout and "结论：不通过" in run.stdout
    assert "共校验2个数据包：通过1个，不通过1个" in run.stdout
    acks = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in inbox.glob("*.ack.json")}
    assert acks[f"{good.name}.ack.json"]["status"] == "accepted"
    assert acks[f"{good.name}.ack.json"]["manifest_sha256"] == file_sha256(good / MANIFEST_NAME)
    assert acks[f"{bad.name}.ack.json"]["status"] == "rejected"
    assert any("SHA-256" in p for p in acks[f"{bad.name}.ack.json"]["problems"])
    assert [r["ok"] for r in json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))] == [False, True]

    assert (
        subprocess.run(
            [sys.executable, "-m", "xinfang.cli", "extract", "validate", str(good)],
            capture_output=True,
            env=env,
        ).returncode
        == 0
    )


# --- delivery ------------------------------------------------------------------------------------


def _channel() -> str:
    """A channel of the test's own: the ledger and acknowledgements are shared by the module."""
    return f"dropfolder-{uuid.uuid4().hex[:8]}"


def test_delivery_goes_once_and_follows_up_acknowledgements(conn, tmp_path) -> None:
    city = f"T{uuid.uuid4().hex[:6]}"
    channel = _channel()
    package = build_package(
        conn, Period.month(date(2025, 6, 1)), tmp_path / "out", city_code=city, province_key_id=KEY_ID
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = LocalStore()
    first = delivery.deliver(conn, package.path, store, channel=channel, remote_root=str(inbox))
    assert first.status == "delivered" and first.bytes_sent == package.bytes
    delivered = inbox / package.name
    assert sorted(p.name for p in inbox.iterdir()) == [package.name]
    assert validate_package(delivered).ok
    assert (
        delivery.deliver(conn, package.path, store, channel=channel, remote_root=str(inbox)).status
        == "skipped"
    )

    # No acknowledgement yet, not overdue: waiting.
    [waiting] = delivery.check_acknowledgements(conn, store, channel=channel)
    assert waiting.status == "awaiting" and waiting.artifact_key == first.artifact_key

    # Overdue and gone from the inbox: uploaded again, deadline moved on.
    shutil.rmtree(delivered)
    later = datetime.now(BUREAU_TZ) + timedelta(hours=25)
    [again] = delivery.check_acknowledgements(conn, store, channel=channel, now=later)
    assert (again.status, again.detail) == ("redelivered", "uploaded")
    assert validate_package(delivered).ok
    [still] = delivery.check_acknowledgements(conn, store, channel=channel, now=later)
    assert still.status == "awaiting"

    # An acknowledgement of other content proves nothing; the receiver's real one is recorded.
    write_ack(store, str(inbox), package.name, Ack(package.name, "accepted", later, "0" * 64))
    [ignored] = delivery.check_acknowledgements(conn, store, channel=channel)
    assert ignored.status == "awaiting"
    acknowledge(validate_package(delivered))
    [accepted] = delivery.check_acknowledgements(conn, store, channel=channel)
    assert accepted.status == "accepted"
    assert delivery.check_acknowledgements(conn, store, channel=channel) == []
    row = conn.execute(
        "SELECT status, redeliveries FROM ops.extract_acknowledgements WHERE artifact_key = %s",
        (first.artifact_key,),
    ).fetchone()
    assert row == ("accepted", 1)


def _two_delivered_packages(conn, tmp_path: Path):
    """Two cities' daily packages delivered to one inbox over a channel of the test's own."""
    channel = _channel()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = LocalStore()
    packages = []
    for _ in range(2):
        city = f"T{uuid.uuid4().hex[:6]}"
        packages.append(
            build_package(
                conn, Period.day(date(2025, 6, 30)), tmp_path / "out", city_code=city, province_key_id=KEY_ID
            )
        )
        delivery.deliver(conn, packages[-1].path, store, channel=channel, remote_root=str(inbox))
    return channel, inbox, store, packages


def test_rejection_and_exhausted_redeliveries_fail_for_an_operator(conn, tmp_path) -> None:
    channel, inbox, store, (rejected, silent) = _two_delivered_packages(conn, tmp_path)
    write_ack(
        store,
        str(inbox),
        rejected.name,
        Ack(
            rejected.name,
            "rejected",
            datetime.now(BUREAU_TZ),
            file_sha256(rejected.path / MANIFEST_NAME),
            ("行数不符",),
        ),
    )
    later = datetime.now(BUREAU_TZ) + timedelta(hours=25)
    with pytest.raises(delivery.AcknowledgementError, match="行数不符"):
        delivery.check_acknowledgements(conn, store, channel=channel, now=later, max_redeliveries=1)
    # The silent one was redelivered once (verified in place); the next overdue look gives up.
    with pytest.raises(
        delivery.AcknowledgementError, match="no acknowledgement after 1 redeliveries"
    ) as caught:
        delivery.check_acknowledgements(
            conn, store, channel=channel, now=later + timedelta(hours=25), max_redeliveries=1
        )
    assert read_package(inbox / silent.name).content_sha256 == silent.content_sha256
    # The rejection is still reported: a retry of the task must not make it pass.
    assert "行数不符" in str(caught.value)

    # A corrected revision closes it.
    corrected = build_package(
        conn,
        Period.day(date(2025, 6, 30)),
        tmp_path / "out",
        city_code=rejected.name.split("_")[0],
        province_key_id=KEY_ID,
        folder_name=f"{rejected.name}_r2",
    )
    delivery.deliver(conn, corrected.path, store, channel=channel, remote_root=str(inbox), revision=2)
    with pytest.raises(delivery.AcknowledgementError) as caught:
        delivery.check_acknowledgements(
            conn, store, channel=channel, now=later + timedelta(hours=50), max_redeliveries=1
        )
    assert "行数不符" not in str(caught.value) and silent.name in str(caught.value)


def test_one_bad_acknowledgement_does_not_stop_the_follow_up_of_the_others(conn, tmp_path) -> None:
    channel, inbox, store, (broken, good) = _two_delivered_packages(conn, tmp_path)
    (inbox / f"{broken.name}.ack.json").write_text('{"package": "x"', encoding="utf-8")
    acknowledge(validate_package(inbox / good.name))
    with pytest.raises(delivery.AcknowledgementError, match=f"{broken.name}: follow-up failed"):
        delivery.check_acknowledgements(conn, store, channel=channel)
    statuses = dict(
        conn.execute(
            "SELECT remote_name, status FROM ops.extract_acknowledgements WHERE channel = %s", (channel,)
        ).fetchall()
    )
    assert statuses == {broken.name: "awaiting", good.name: "accepted"}


def test_a_changed_package_is_not_delivered_under_the_same_revision(conn, tmp_path) -> None:
    city = f"T{uuid.uuid4().hex[:6]}"
    channel = _channel()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = LocalStore()
    package = build_package(
        conn, Period.day(date(2025, 6, 30)), tmp_path / "out", city_code=city, province_key_id=KEY_ID
    )
    delivery.deliver(conn, package.path, store, channel=channel, remote_root=str(inbox))
    conn.execute("UPDATE marts.ext_province__matters SET group_size = 7 WHERE matter_id = 'XF-2'")
    try:
        changed = build_package(
            conn, Period.day(date(2025, 6, 30)), tmp_path / "out", city_code=city, province_key_id=KEY_ID
        )
        corrected = build_package(
            conn,
            Period.day(date(2025, 6, 30)),
            tmp_path / "out",
            city_code=city,
            province_key_id=KEY_ID,
            folder_name=f"{package.name}_r2",
        )
    finally:
        conn.execute("UPDATE marts.ext_province__matters SET group_size = 1 WHERE matter_id = 'XF-2'")
    from xinfang.delivery.ledger import ArtifactChangedError

    with pytest.raises(ArtifactChangedError):
        delivery.deliver(conn, changed.path, store, channel=channel, remote_root=str(inbox))
    # The folder says which revision it is.
    with pytest.raises(ExtractError, match="not revision 2"):
        delivery.deliver(conn, changed.path, store, channel=channel, remote_root=str(inbox), revision=2)
    second = delivery.deliver(
        conn, corrected.path, store, channel=channel, remote_root=str(inbox), revision=2
    )
    assert second.status == "delivered" and second.remote_path.endswith(f"{package.name}_r2")
    assert validate_package(inbox / f"{package.name}_r2").ok


def test_the_receivers_guide_lists_every_published_field() -> None:
    from xinfang.config import get_settings

    guide = (get_settings().project_root / "docs" / "province_extract_zh.md").read_text(encoding="utf-8")
    assert f"当前模式版本 **{published.SCHEMA_VERSION}**" in guide
    for resource in published.load_schema()["resources"]:
        assert f"`{resource['name']}.csv`" in guide
        types = {
            "string": "文本",
            "integer": "整数",
            "date": "日期",
            "datetime": "日期时间",
            "boolean": "布尔",
        }
        for field in resource["schema"]["fields"]:
            required = "是" if field.get("constraints", {}).get("required") else ""
            cells = [
                f"`{field['name']}`",
                field["title"],
                types[field["type"]],
                required,
                field["description"],
            ]
            row = "| " + " | ".join(cells) + " |"
            assert row in guide, (resource["name"], field["name"])


def test_a_delivered_package_is_not_rebuilt_when_its_interval_runs_again(
    conn, warehouse, workdirs, monkeypatch
):
    """Re-running a DAG for a delivered period changes nothing, even if the warehouse moved on."""
    from xinfang.config import get_settings
    from xinfang.publish import province_extract

    monkeypatch.setenv("XINFANG_DATABASE_URL", warehouse)
    settings = get_settings()
    day = Period.day(date(2025, 6, 30))
    built = province_extract.build(conn, day, settings)
    delivered = province_extract.deliver(conn, built.path, settings)
    assert delivered.status == "delivered"
    stamps = {p.name: p.stat().st_mtime_ns for p in built.path.iterdir()}

    conn.execute("UPDATE marts.ext_province__matters SET group_size = 9 WHERE matter_id = 'XF-2'")
    try:
        again = province_extract.build(conn, day, settings)
    finally:
        conn.execute("UPDATE marts.ext_province__matters SET group_size = 1 WHERE matter_id = 'XF-2'")
    assert again.content_sha256 == built.content_sha256
    assert {p.name: p.stat().st_mtime_ns for p in again.path.iterdir()} == stamps
    assert province_extract.deliver(conn, again.path, settings).status == "skipped"

    # Not yet delivered (another day): built from the current data.
    other = province_extract.build(conn, Period.day(date(2025, 6, 29)), settings)
    assert [r["matter_id"] for r in _rows(other.path, "ext_province__matters")] == ["HL-3"]


def _edit(package: Path, file_name: str, text: str | bytes) -> None:
    """Replace a file and make manifest (and descriptor hash) agree, as a sender would."""
    target = package / file_name
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    descriptor = json.loads((package / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    for resource in descriptor["resources"]:
        if resource["path"] == file_name:
            resource["bytes"] = target.stat().st_size
            resource["hash"] = "sha256:" + file_sha256(target)
    (package / DESCRIPTOR_NAME).write_text(json.dumps(descriptor, ensure_ascii=False), encoding="utf-8")
    manifest = json.loads((package / MANIFEST_NAME).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        if entry["name"] in (file_name, DESCRIPTOR_NAME):
            entry["bytes"] = (package / entry["name"]).stat().st_size
            entry["sha256"] = file_sha256(package / entry["name"])
    (package / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")


def test_a_data_file_the_descriptor_does_not_name_cannot_slip_through(conn, tmp_path) -> None:
    package = _build(conn, Period.day(date(2025, 6, 30)), tmp_path).path
    (package / "people.csv").write_text("x\n1\n", encoding="utf-8")
    manifest = json.loads((package / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["files"].append(
        {"name": "people.csv", "rows": 1, "bytes": 4, "sha256": file_sha256(package / "people.csv")}
    )
    (package / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    report = validate_package(package)
    assert any("people.csv 不是描述文件中的资源" in f.message for f in report.findings), report.text()


def test_descriptor_properties_outside_the_allow_list_are_refused(conn, tmp_path) -> None:
    package = _build(conn, Period.day(date(2025, 6, 30)), tmp_path).path
    descriptor = json.loads((package / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    descriptor["resources"][0]["dialect"] = {"delimiter": ";"}
    descriptor["profile"] = "data-package"
    _edit(package, DESCRIPTOR_NAME, json.dumps(descriptor, ensure_ascii=False))
    report = validate_package(package)
    messages = [f.message for f in report.findings]
    assert "不允许的属性 dialect" in messages and "不允许的属性 profile" in messages, report.text()


def test_malformed_input_gives_findings_not_a_crash(conn, tmp_path) -> None:
    gbk = _build(conn, Period.day(date(2025, 6, 30)), tmp_path / "a").path
    text = (gbk / "ext_province__matters.csv").read_text(encoding="utf-8")
    _edit(gbk, "ext_province__matters.csv", text.encode("gbk"))
    report = validate_package(gbk)
    assert not report.ok and "结论：不通过" in report.text()
    assert any("UnicodeDecodeError" in f.message for f in report.findings), report.text()

    odd = _build(conn, Period.day(date(2025, 6, 30)), tmp_path / "b").path
    manifest = json.loads((odd / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["files"][0]["bytes"] = "abc"
    manifest["kind"] = []
    (odd / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    report = validate_package(odd)
    assert any("字节数为" in f.message for f in report.findings)
    assert "结论：不通过" in report.text()

    rows = _build(conn, Period.day(date(2025, 6, 30)), tmp_path / "c").path
    manifest = json.loads((rows / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["files"][0]["rows"] += 1
    (rows / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    assert any("数据行数为" in f.message for f in validate_package(rows).findings)


def test_symlinks_in_a_package_are_refused(conn, tmp_path) -> None:
    package = _build(conn, Period.day(date(2025, 6, 30)), tmp_path).path
    secret = tmp_path / "secret.md"
    shutil.copy(package / "CHANGELOG.md", secret)
    (package / "CHANGELOG.md").unlink()
    (package / "CHANGELOG.md").symlink_to(secret)
    report = validate_package(package)
    assert any(f.location == "CHANGELOG.md" and "不是普通文件" in f.message for f in report.findings)


def test_revision_folders_validate_and_a_folder_without_manifest_is_rejected(conn, tmp_path) -> None:
    inbox = tmp_path / "inbox"
    built = _build(conn, Period.day(date(2025, 6, 30)), inbox)
    shutil.copytree(built.path, inbox / f"{built.name}_r10")
    assert validate_package(inbox / f"{built.name}_r10").ok
    (inbox / "junk").mkdir()
    (inbox / "junk" / "ext_province__matters.csv").write_text("matter_id\n", encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    run = subprocess.run(
        [sys.executable, "-m", "xinfang.cli", "extract", "validate", str(inbox / "junk"), "--ack"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1 and "结论：不通过" in run.stdout, run.stdout + run.stderr
    ack = json.loads((inbox / "junk.ack.json").read_text(encoding="utf-8"))
    assert ack["status"] == "rejected" and ack["manifest_sha256"] == ""


def test_the_daily_gate_waits_for_every_load_and_a_good_rebuild_after_them(conn) -> None:
    from xinfang.publish.province_extract import DayNotReady, require_day_ready

    conn.execute("CREATE SCHEMA IF NOT EXISTS ops")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ops.load_batches (source text, file_date date, status text, "
        "finished_at timestamptz)"
    )
    day = date(2031, 1, 2)
    loaded = datetime(2031, 1, 3, 1, 40, tzinfo=BUREAU_TZ)
    conn.execute(
        "INSERT INTO ops.load_batches VALUES ('hotline', %s, 'loaded', %s), "
        "('grid_events', %s, 'loaded', %s), ('online_petitions', %s, 'failed', %s)",
        (day, loaded, day, loaded, day, loaded),
    )
    with pytest.raises(DayNotReady, match="online_petitions"):
        require_day_ready(conn, day, loaded + timedelta(hours=1))
    conn.execute(
        "INSERT INTO ops.load_batches VALUES ('online_petitions', %s, 'loaded', %s)",
        (day, loaded + timedelta(minutes=5)),
    )
    with pytest.raises(DayNotReady, match="never"):
        require_day_ready(conn, day, None)
    with pytest.raises(DayNotReady, match="not been rebuilt"):
        require_day_ready(conn, day, loaded + timedelta(minutes=4))
    require_day_ready(conn, day, loaded + timedelta(minutes=6))


def test_a_package_in_the_ledger_is_frozen_even_after_a_failed_delivery(
    conn, warehouse, workdirs, monkeypatch
):
    from xinfang.config import get_settings
    from xinfang.delivery import ledger
    from xinfang.publish import province_extract

    monkeypatch.setenv("XINFANG_DATABASE_URL", warehouse)
    settings = get_settings()
    day = Period.day(date(2025, 6, 29))
    built = province_extract.build(conn, day, settings)
    # A delivery that was claimed and failed (the link was down): the ledger holds the content.
    delivery.ensure_tables(conn)
    key = ledger.DeliveryKey(delivery.artifact_key(built), 1, "dropfolder", delivery.PROVINCE_RECIPIENT)
    ledger.claim(
        conn,
        key,
        kind=delivery.EXTRACT_KIND,
        artifact_path=str(built.path),
        sha256=built.content_sha256,
        size_bytes=built.bytes,
        message_id=None,
    )
    ledger.mark_failed(conn, key, "OSError: link down")
    conn.execute("UPDATE marts.ext_province__matters SET group_size = 9 WHERE matter_id = 'HL-3'")
    try:
        assert province_extract.build(conn, day, settings).content_sha256 == built.content_sha256
        # The local copy damaged: refuse, and say how to send corrected data.
        (built.path / "CHANGELOG.md").write_text("x", encoding="utf-8")
        with pytest.raises(ExtractError, match="--revision 2"):
            province_extract.build(conn, day, settings)
        corrected = province_extract.build(conn, day, settings, revision=2)
    finally:
        conn.execute("UPDATE marts.ext_province__matters SET group_size = 1 WHERE matter_id = 'HL-3'")
    assert corrected.path.name == f"{built.name}_r2"
    assert corrected.content_sha256 != built.content_sha256
    assert province_extract.deliver(conn, corrected.path, settings, revision=2).status == "delivered"
