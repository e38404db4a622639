"""The provincial extract: CSV + manifest built atomically, verified, delivered once."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from xinfang.db import connect
from xinfang.delivery import ledger
from xinfang.extract.province import (
    ExtractError,
    build_extract,
    deliver_extract_to_dropfolder,
    extract_artifact_key,
    verify_extract,
)

PERIOD = "2025-06"
COLUMNS_DOC = {
    "case_id": "信访件编号",
    "district": "所属区县",
    "summary": "诉求摘要",
    "received_on": "登记日期",
}
ROWS = [
    (1, "东城区", "反映小区物业服务问题，要求更换物业公司", "2025-06-02"),
    (2, "西湖区", '诉求含逗号,引号"和\n换行', "2025-06-15"),
    (3, "南山区", None, "2025-06-30"),
]


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture()
def source(conn: psycopg.Connection) -> Iterator[str]:
    """A small source table in a schema of its own; yields 'schema.table'."""
    schema = f"t_extract_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (case_id integer PRIMARY KEY, district text NOT NULL, summary text, "
            "received_on date NOT NULL)"
        ).format(sql.Identifier(schema, "ext_province__cases"))
    )
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(
                sql.Identifier(schema, "ext_province__cases")
            ),
            # Inserted out of order: the extract must sort by the first column.
            list(reversed(ROWS)),
        )
    yield f"{schema}.ext_province__cases"
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _build(conn: psycopg.Connection, relation: str, out_root: Path, version: str):
    return build_extract(
        conn,
        relation=relation,
        period=PERIOD,
        out_root=out_root,
        schema_version=version,
        columns_doc=COLUMNS_DOC,
    )


def _version() -> str:
    # The ledger is shared by the whole test session; a unique schema version keeps keys unique.
    return f"1.{uuid.uuid4().hex[:8]}"


def test_extract_round_trip_manifest_and_tamper_detection(conn, source, tmp_path) -> None:
    out_root = tmp_path / "extracts"
    result = _build(conn, source, out_root, _version())

    assert result.path == out_root / PERIOD
    assert sorted(p.name for p in out_root.iterdir()) == [PERIOD]  # no temp folders left behind
    csv_path = result.path / "ext_province__cases.csv"
    assert sorted(p.name for p in result.path.iterdir()) == ["ext_province__cases.csv", "manifest.json"]

    with open(csv_path, encoding="utf-8", newline="") as fh:
        records = list(csv.reader(fh))
    assert records[0] == list(COLUMNS_DOC)
    assert [tuple(r) for r in records[1:]] == [
        (str(case_id), district, summary or "", received) for case_id, district, summary, received in ROWS
    ]

    manifest = json.loads((result.path / "manifest.json").read_text(encoding="utf-8"))
    (entry,) = manifest["files"]
    raw = csv_path.read_bytes()
    assert manifest["period"] == PERIOD and manifest["schema_version"] == result.schema_version
    assert manifest["generated_at"].endswith("+08:00")
    assert entry["rows"] == len(records) - 1 == len(ROWS)
    assert entry["sha256"] == hashlib.sha256(raw).hexdigest() == result.files[0].sha256
    assert entry["bytes"] == len(raw)
    assert [(c["name"], c["description"]) for c in entry["columns"]] == list(COLUMNS_DOC.items())
    assert {c["name"]: c["type"] for c in entry["columns"]}["received_on"] == "date"
    assert "信访件编号" in (result.path / "manifest.json").read_text(encoding="utf-8")
    assert verify_extract(result.path) == []

    # Same size, one byte different.
    tampered = bytearray(raw)
    tampered[-2] = ord("1") if tampered[-2] != ord("1") else ord("2")
    csv_path.write_bytes(bytes(tampered))
    problems = verify_extract(result.path)
    assert any("sha256" in p and "ext_province__cases.csv" in p for p in problems)

    (result.path / "stray.txt").write_text("x")
    csv_path.unlink()
    problems = verify_extract(result.path)
    assert any("missing" in p for p in problems) and any("stray.txt" in p for p in problems)


def test_dropfolder_delivery_is_once_and_refuses_changed_content(conn, source, tmp_path) -> None:
    out_root, drop = tmp_path / "extracts", tmp_path / "drop"
    version = _version()
    result = _build(conn, source, out_root, version)

    first = deliver_extract_to_dropfolder(conn, result, drop)
    assert first.status == "delivered"
    assert sorted(p.name for p in drop.iterdir()) == [first.target.name]
    assert verify_extract(first.target) == []
    snapshot = {p.name: p.read_bytes() for p in first.target.iterdir()}
    key = ledger.DeliveryKey(extract_artifact_key(PERIOD, version), 1, "dropfolder", "province")
    entry = ledger.get_entry(conn, key)
    assert entry.status == "sent" and entry.sha256 == result.content_sha256 and entry.attempts == 1

    # Re-delivery, and a rebuild of identical data (new generated_at): nothing happens.
    assert deliver_extract_to_dropfolder(conn, result, drop).status == "skipped"
    rebuilt = _build(conn, source, out_root, version)
    assert rebuilt.content_sha256 == result.content_sha256
    assert deliver_extract_to_dropfolder(conn, rebuilt, drop).status == "skipped"
    assert sorted(p.name for p in drop.iterdir()) == [first.target.name]
    assert {p.name: p.read_bytes() for p in first.target.iterdir()} == snapshot
    assert ledger.get_entry(conn, key) == entry

    # A tampered package is never delivered.
    csv_path = rebuilt.path / "ext_province__cases.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace("东城区".encode(), "北城区".encode()))
    with pytest.raises(ExtractError, match="sha256"):
        deliver_extract_to_dropfolder(conn, rebuilt, drop, revision=2)

    # Changed data for the same period and schema version needs a new revision.
    schema, table = source.split(".")
    conn.execute(
        sql.SQL("UPDATE {} SET summary = %s WHERE case_id = 3").format(sql.Identifier(schema, table)),
        ("补充材料后更新的诉求",),
    )
    changed = _build(conn, source, out_root, version)
    assert changed.content_sha256 != result.content_sha256
    with pytest.raises(ledger.ArtifactChangedError, match="revision 2"):
        deliver_extract_to_dropfolder(conn, changed, drop)
    assert {p.name: p.read_bytes() for p in first.target.iterdir()} == snapshot

    second = deliver_extract_to_dropfolder(conn, changed, drop, revision=2)
    assert second.status == "delivered" and second.target != first.target
    assert sorted(p.name for p in drop.iterdir()) == sorted([first.target.name, second.target.name])
    assert "补充材料后更新的诉求" in (second.target / "ext_province__cases.csv").read_text(encoding="utf-8")


def test_invalid_relation_and_undocumented_columns_are_rejected(conn, source, tmp_path) -> None:
    for bad in ("marts.ext_province__cases; DROP TABLE x", "Marts.cases", "cases", 'marts."cases"'):
        with pytest.raises(ValueError, match="invalid relation"):
            build_extract(
                conn, relation=bad, period=PERIOD, out_root=tmp_path, schema_version="1", columns_doc={}
            )
    with pytest.raises(ValueError, match="invalid period"):
        build_extract(
            conn, relation=source, period="../x", out_root=tmp_path, schema_version="1", columns_doc={}
        )

    partial = {k: v for k, v in COLUMNS_DOC.items() if k != "summary"}
    with pytest.raises(ExtractError, match="summary"):
        build_extract(
            conn, relation=source, period=PERIOD, out_root=tmp_path, schema_version="1", columns_doc=partial
        )
    assert list(tmp_path.iterdir()) == []  # the failed build left nothing behind
