"""The streaming data check against Frictionless, the reference, on the same broken files.

No database: packages are written here from the published schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from xinfang.extract import schema as published
from xinfang.extract import table_check
from xinfang.extract.package import _csv_records, csv_data_rows
from xinfang.extract.validate import ValidationReport, _check_data

RESOURCES = {r["name"]: r for r in published.load_schema(published.SCHEMA_VERSION)["resources"]}
MATTERS, EVENTS = RESOURCES["ext_province__matters"], RESOURCES["ext_province__matter_events"]


def _fields(resource: dict) -> list[str]:
    return [f["name"] for f in resource["schema"]["fields"]]


def _matter(matter_id: str, **values: str) -> str:
    row = {
        "matter_id": matter_id,
        "city_code": "369900",
        "matter_source": "hotline",
        "received_date": "2025-06-01",
        "is_on_time": "true",
        "working_days_to_close": "3",
        "person_key": "ab" * 32,
    } | values
    return ",".join(row.get(name, "") for name in _fields(MATTERS))


def _event(matter_id: str, number: str, **values: str) -> str:
    row = {
        "matter_id": matter_id,
        "event_number": number,
        "event_type": "transfer",
        "event_at": "2025-06-01T08:00:00",
        "event_date": "2025-06-01",
    } | values
    return ",".join(row.get(name, "") for name in _fields(EVENTS))


def _package(root: Path, files: dict[str, list[str]], *, resources: dict[str, dict] | None = None) -> Path:
    """A folder with a datapackage.json naming each file under its resource (bytes and hash right)."""
    root.mkdir(parents=True, exist_ok=True)
    described = []
    for name, lines in files.items():
        resource = copy.deepcopy((resources or RESOURCES)[name])
        path = root / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        resource |= {
            "path": path.name,
            "format": "csv",
            "encoding": "utf-8",
            "bytes": path.stat().st_size,
            "hash": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        described.append(resource)
    (root / "datapackage.json").write_text(
        json.dumps({"name": "t", "resources": described}), encoding="utf-8"
    )
    return root


def _findings(root: Path, engine: str) -> set[tuple[str, str]]:
    report = ValidationReport(root)
    _check_data(report, engine=engine)
    return {(f.location, f.message.split("：")[0]) for f in report.findings}


BROKEN = {
    "ext_province__matters": [
        ",".join(_fields(MATTERS)),
        _matter("A"),
        _matter("B", working_days_to_close="abc"),  # not an integer
        _matter("C", received_date="2025-13-01"),  # no such month
        _matter("D", is_on_time="yes"),  # not one of Table Schema's boolean words
        _matter(""),  # required, and an empty primary key
        _matter("F", matter_source="phone"),  # not in the enum
        _matter("A"),  # duplicate primary key
        _matter("G") + ",x,y",  # two cells too many
        "H,369900",  # cells missing: also the required ones
        "",  # blank row
        _matter("I", received_date="2025-6-1"),  # strptime's %m takes one digit: valid
        _matter("J", working_days_to_close=" 7"),  # int() strips: valid
    ],
    "ext_province__matter_events": [
        ",".join(_fields(EVENTS)),
        _event("A", "1"),
        _event("A", "01"),  # the same integer key as the row before
        _event("ZZ", "1"),  # no such matter
        _event("B", "2", event_at="2025-06-01 08:00:00"),  # a space, not T
        _event("B", "3", event_at="2025-6-1T8:00:00"),  # strptime takes it
        _event("B", "4", event_at=""),  # required
        _event("C", "5", event_at="2025-02-30T08:00:00"),  # no such day
        _event("", ""),  # no foreign key to check, an empty primary key
    ],
}


@pytest.mark.parametrize("block_rows", [2, table_check.BLOCK_ROWS])
def test_streaming_check_finds_what_frictionless_finds(tmp_path, monkeypatch, block_rows) -> None:
    monkeypatch.setattr(table_check, "BLOCK_ROWS", block_rows)  # 2: keys and errors across blocks
    root = _package(tmp_path / "p", BROKEN)
    stream, reference = _findings(root, "stream"), _findings(root, "frictionless")
    assert stream == reference
    # And the comparison is not of two empty sets: each kind of error is there.
    assert {kind for _, kind in stream} == {
        "type-error",
        "constraint-error",
        "primary-key",
        "foreign-key",
        "extra-cell",
        "missing-cell",
        "blank-row",
    }
    assert ("ext_province__matters.csv 第8行", "primary-key") in stream
    assert ("ext_province__matter_events.csv 第3行", "primary-key") in stream
    assert ("ext_province__matter_events.csv 第4行", "foreign-key") in stream


def test_a_clean_package_passes_both(tmp_path) -> None:
    lines = {
        "ext_province__matters": [",".join(_fields(MATTERS)), *(_matter(f"M{i}") for i in range(50))],
        "ext_province__matter_events": [
            ",".join(_fields(EVENTS)),
            *(_event(f"M{i}", "1") for i in range(50)),
        ],
    }
    root = _package(tmp_path / "p", lines)
    assert _findings(root, "stream") == set() == _findings(root, "frictionless")


@pytest.mark.parametrize(
    "header",
    [
        lambda names: [names[1], names[0], *names[2:]],
        lambda names: names[:-1],
        lambda names: [*names, "extra"],
    ],
    ids=["swapped", "short", "long"],
)
def test_wrong_headers_as_frictionless_reports_them(tmp_path, header) -> None:
    summary = RESOURCES["ext_province__region_summary"]
    names = header(_fields(summary))
    row = ",".join(["2025-06-01", "T1", *["1"] * (len(names) - 2)])
    root = _package(tmp_path / "p", {"ext_province__region_summary": [",".join(names), row]})
    found = _findings(root, "stream")
    assert found and found == _findings(root, "frictionless")


def test_size_and_hash_declared_in_the_descriptor_are_checked(tmp_path) -> None:
    root = _package(tmp_path / "p", {"ext_province__matters": [",".join(_fields(MATTERS)), _matter("A")]})
    (root / "ext_province__matters.csv").write_text(
        ",".join(_fields(MATTERS)) + "\n" + _matter("B") + "\n", encoding="utf-8"
    )
    assert {kind for _, kind in _findings(root, "stream")} == {"hash-count"}
    assert _findings(root, "stream") == _findings(root, "frictionless")


def test_hash_collisions_do_not_make_findings(tmp_path, monkeypatch) -> None:
    """Every key hashed alike: duplicates are still confirmed by value, so only real ones count."""
    root = _package(tmp_path / "p", BROKEN)
    honest = _findings(root, "stream")
    monkeypatch.setattr(table_check, "_key_hash", lambda value: 7)
    colliding = _findings(root, "stream")
    # The one thing a collision can do is hide a dangling foreign key (documented); nothing else moves.
    assert colliding == honest - {("ext_province__matter_events.csv 第4行", "foreign-key")}


def test_the_published_schemas_are_checked_in_full_by_the_stream() -> None:
    for version in published.published_versions():
        assert table_check.unsupported(published.load_schema(version)["resources"]) == [], version


def test_a_schema_beyond_the_stream_goes_to_frictionless(tmp_path) -> None:
    """A constraint the stream does not implement (pattern) is still enforced, by the reference."""
    resources = copy.deepcopy(RESOURCES)
    city = next(f for f in resources["ext_province__matters"]["schema"]["fields"] if f["name"] == "city_code")
    city["constraints"]["pattern"] = "[0-9]{6}"
    assert table_check.unsupported([resources["ext_province__matters"]]) == [
        "ext_province__matters.city_code: constraint pattern"
    ]
    root = _package(
        tmp_path / "p",
        {"ext_province__matters": [",".join(_fields(MATTERS)), _matter("A", city_code="city")]},
        resources=resources,
    )
    assert _findings(root, "stream") == {
        ("ext_province__matters.csv 第2行 字段 city_code", "constraint-error")
    }


@pytest.mark.parametrize(
    "text",
    [
        "a,b\n1,2\n3,4\n",
        "a,b\n1,2\n3,4",  # no final line feed
        "a,b\n\n1,2\n",  # a blank line is a record
        "a,b\n",  # header only
        "\n",
        'a,b\n"1\n2",3\n',  # a line feed inside quotes
        "a,b\r\n1,2\r\n",
        "a,b\r1,2\r",  # carriage returns alone end records too
    ],
)
def test_fast_row_count_agrees_with_the_csv_module(tmp_path, text) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode())
    assert csv_data_rows(path) == _csv_records(path)
