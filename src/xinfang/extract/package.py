"""Build one extract package: a Frictionless Data Package with a checksum manifest.

Layout of ``out_root/<name>/`` (name: ``<city>_<kind>_<period>_v<schema version>``)::

    ext_province__*.csv   UTF-8, comma separated, header row, RFC 4180 quoting
    datapackage.json      Frictionless descriptor: Chinese titles, types, primary
                          and foreign keys, bytes and sha256 of every CSV
    CHANGELOG.md          the schema's version history, for the receiver
    manifest.json         package facts and rows/bytes/sha256 of every other file

The package is validated (xinfang.extract.validate: Frictionless, checksums,
personal-data scan) in a hidden sibling folder before it is renamed into place,
so nothing half-written or invalid is ever visible under the final name. A
rebuild with the same content keeps the existing folder untouched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from xinfang.config import BUREAU_TZ
from xinfang.extract import schema as published
from xinfang.extract.schema import Kind
from xinfang.extract.transfer import fsync_dir

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
DESCRIPTOR_NAME = "datapackage.json"
CHANGELOG_NAME = "CHANGELOG.md"
_CHUNK = 1 << 20


class ExtractError(RuntimeError):
    """The extract could not be built, validated or delivered."""


@dataclass(frozen=True)
class Period:
    kind: Kind
    start: date
    end: date

    @classmethod
    def month(cls, month: date) -> Period:
        first = month.replace(day=1)
        return cls(
            "full", first, (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        )

    @classmethod
    def day(cls, day: date) -> Period:
        return cls("daily", day, day)

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}" if self.kind == "full" else f"{self.start:%Y-%m-%d}"


@dataclass(frozen=True)
class PackageFile:
    name: str
    rows: int | None  # data rows of a CSV; None for the other files
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Package:
    path: Path
    name: str
    kind: Kind
    period: str
    schema_version: str
    files: tuple[PackageFile, ...]
    content_sha256: str

    @property
    def rows(self) -> int:
        return sum(f.rows or 0 for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files) + (self.path / MANIFEST_NAME).stat().st_size


def package_name(city_code: str, period: Period, version: str) -> str:
    return f"{city_code}_{period.kind}_{period.label}_v{version}"


def build_package(
    conn: psycopg.Connection,
    period: Period,
    out_root: Path,
    *,
    city_code: str,
    province_key_id: str,
    version: str = published.SCHEMA_VERSION,
    folder_name: str | None = None,
) -> Package:
    """Export the period's rows of every resource, describe, validate and publish the package.

    The package goes to ``out_root/<folder_name>`` (default: its name; a corrected
    revision lives in ``<name>_r<N>``).
    """
    from xinfang.extract.validate import validate_package

    document = published.load_schema(version)
    name = package_name(city_code, period, version)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / (folder_name or name)
    tmp = out_root / f".{final.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        files, resources = _export_all(conn, period, document, tmp)
        descriptor = {
            "name": published.PACKAGE_NAME,
            "title": _title(period, city_code),
            "version": version,
            "licenses": [{"name": "restricted", "title": "仅限省信访局内部使用，不得公开"}],
            "x_xinfang": {
                "kind": period.kind,
                "period": period.label,
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat(),
                "city_code": city_code,
                "province_key_id": province_key_id,
            },
            "resources": resources,
        }
        _write_json(tmp / DESCRIPTOR_NAME, descriptor)
        shutil.copyfile(published.schemas_dir() / CHANGELOG_NAME, tmp / CHANGELOG_NAME)
        files += [_describe(tmp / extra, rows=None) for extra in (DESCRIPTOR_NAME, CHANGELOG_NAME)]

        manifest = {
            "package": name,
            "kind": period.kind,
            "period": period.label,
            "schema_version": version,
            "city_code": city_code,
            "province_key_id": province_key_id,
            "generated_at": datetime.now(BUREAU_TZ).replace(microsecond=0).isoformat(),
            "files": [{"name": f.name, "rows": f.rows, "bytes": f.bytes, "sha256": f.sha256} for f in files],
        }
        _write_json(tmp / MANIFEST_NAME, manifest)
        fsync_dir(tmp)

        report = validate_package(tmp, expected_name=name)
        if not report.ok:
            raise ExtractError(f"package {name} failed validation, nothing published:\n{report.text()}")
        content = package_checksum(manifest)
        if _same_content(final, content):
            # Same data as the package already there: keep it, so a re-run changes no file.
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("extract %s unchanged; kept %s", name, final)
        else:
            _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    package = read_package(final)
    log.info("extract %s: %d rows, %d bytes -> %s", name, package.rows, package.bytes, final)
    return package


def read_package(path: Path) -> Package:
    manifest = read_manifest(path)
    return Package(
        path=Path(path),
        name=manifest["package"],
        kind=manifest["kind"],
        period=manifest["period"],
        schema_version=manifest["schema_version"],
        files=tuple(
            PackageFile(f["name"], f.get("rows"), f["bytes"], f["sha256"]) for f in manifest["files"]
        ),
        content_sha256=package_checksum(manifest),
    )


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = Path(path) / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExtractError(f"{manifest_path}: manifest missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExtractError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ExtractError(f"{manifest_path}: manifest is not a JSON object")
    return manifest


def package_checksum(manifest: Mapping[str, Any]) -> str:
    """Checksum of a package's content: its manifest without ``generated_at``.

    The manifest carries every file's sha256, so two builds of identical data
    compare equal although built at different times.
    """
    content = {k: v for k, v in manifest.items() if k != "generated_at"}
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- internals -----------------------------------------------------------------------------------


def _export_all(
    conn: psycopg.Connection, period: Period, document: dict[str, Any], folder: Path
) -> tuple[list[PackageFile], list[dict[str, Any]]]:
    """Every resource of the period's kind as CSV in ``folder``, with its descriptor entry."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ExtractError("building a package needs a connection outside any transaction")
    schemas = {r["name"]: r for r in document["resources"]}
    params = {"period_start": period.start, "period_end": period.end}
    files: list[PackageFile] = []
    resources: list[dict[str, Any]] = []
    # One snapshot for every file: a warehouse rebuild committing between two COPYs would
    # otherwise give handling steps whose matters are not in the package.
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for spec in published.resources_for(period.kind):
            resource = schemas[spec.resource]
            where = spec.full if period.kind == "full" else spec.daily
            assert where is not None
            csv_file = _export_csv(conn, spec.relation, resource["schema"], where, params, folder)
            files.append(csv_file)
            resources.append(
                {
                    "name": spec.resource,
                    "path": csv_file.name,
                    "title": resource["title"],
                    "description": resource["description"],
                    "format": "csv",
                    "mediatype": "text/csv",
                    "encoding": "utf-8",
                    "bytes": csv_file.bytes,
                    "hash": f"sha256:{csv_file.sha256}",
                    "schema": resource["schema"],
                }
            )
    return files, resources


def _title(period: Period, city_code: str) -> str:
    when = (
        f"{period.start.year}年{period.start.month}月全量"
        if period.kind == "full"
        else f"{period.start.year}年{period.start.month}月{period.start.day}日增量"
    )
    return f"信访数据标准化抽取（地市代码{city_code}，{when}）"


def _select_list(fields: list[dict[str, Any]]) -> sql.Composable:
    """Columns in the schema's order, written the way the Frictionless types read them."""
    parts = []
    for field in fields:
        ident = sql.Identifier(field["name"])
        if field["type"] == "datetime":
            parts.append(sql.SQL("""to_char({0}, 'YYYY-MM-DD"T"HH24:MI:SS') AS {0}""").format(ident))
        elif field["type"] == "boolean":
            parts.append(sql.SQL("{0}::text AS {0}").format(ident))  # 'true' / 'false'
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


def _export_csv(
    conn: psycopg.Connection,
    relation: str,
    table_schema: dict[str, Any],
    where: str,
    params: Mapping[str, Any],
    folder: Path,
) -> PackageFile:
    schema_name, table = relation.split(".")
    fields = table_schema["fields"]
    path = folder / f"{table}.csv"
    with conn.transaction(), conn.cursor() as cur:
        # COPY emits bytes in the client encoding and dates in DateStyle: pin both.
        cur.execute("SET LOCAL client_encoding TO 'UTF8'")
        cur.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
        _check_columns(cur, relation, fields)
        order = sql.SQL(", ").join(sql.Identifier(c) for c in table_schema["primaryKey"])
        query = sql.SQL("SELECT {cols} FROM {rel} WHERE {where} ORDER BY {order}").format(
            cols=_select_list(fields),
            rel=sql.Identifier(schema_name, table),
            where=sql.SQL(where),  # trusted: a constant of xinfang.extract.schema
            order=order,
        )
        # COPY cannot take bind parameters: render the query with them client-side.
        rendered = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            sql.SQL(psycopg.ClientCursor(conn).mogrify(query, params))
        )
        digest, size = hashlib.sha256(), 0
        with open(path, "wb") as fh, cur.copy(rendered) as copy:
            for chunk in copy:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        rows = cur.rowcount  # rows COPY wrote; the validator recounts them from the file
    if path.stat().st_size != size:
        raise ExtractError(f"{path}: file on disk differs from the bytes streamed by COPY")
    return PackageFile(path.name, rows, size, digest.hexdigest())


def _check_columns(cur: psycopg.Cursor, relation: str, fields: list[dict[str, Any]]) -> None:
    """The relation's columns must be exactly the published ones: drift needs a new schema version."""
    actual = [
        r[0]
        for r in cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (relation,),
        ).fetchall()
    ]
    expected = [f["name"] for f in fields]
    if sorted(actual) != sorted(expected):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        raise ExtractError(
            f"{relation}: columns differ from the published schema {published.SCHEMA_VERSION} "
            f"(missing: {missing or 'none'}; not in the schema: {extra or 'none'}); publish a new "
            "schema version (xinfang extract schema --write) with a CHANGELOG entry"
        )


def csv_data_rows(path: Path) -> int:
    """Records of a CSV file after its header row.

    A record spans lines only inside quotes, so in a file with no quote character
    and no carriage return (what COPY writes for the published columns) the line
    feeds count the records, at the speed of reading the file; any other file is
    counted by the csv module, which parses every field.
    """
    with open(path, "rb") as fh:
        line_feeds, last = 0, b""
        while chunk := fh.read(1 << 24):
            if b'"' in chunk or b"\r" in chunk:
                return _csv_records(path)
            line_feeds += chunk.count(b"\n")
            last = chunk[-1:]
    if not last:
        raise ExtractError(f"{path.name}: empty file, no header row")
    return line_feeds + (last != b"\n") - 1


def _csv_records(path: Path) -> int:
    # newline="" lets the csv module handle line breaks inside quoted fields.
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        if next(reader, None) is None:
            raise ExtractError(f"{path.name}: empty file, no header row")
        return sum(1 for _ in reader)


def _describe(path: Path, *, rows: int | None) -> PackageFile:
    return PackageFile(path.name, rows, path.stat().st_size, file_sha256(path))


def _same_content(path: Path, content_sha: str) -> bool:
    if not (path / MANIFEST_NAME).is_file():
        return False
    from xinfang.extract.validate import verify_checksums

    try:
        return not verify_checksums(path) and package_checksum(read_manifest(path)) == content_sha
    except ExtractError:
        return False


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, then removed.

    A directory cannot be replaced in one rename, so for a moment ``final`` may be
    absent, but it is never a mixture of two builds.
    """
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
