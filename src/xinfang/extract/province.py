"""The monthly extract for the provincial bureau: CSV + manifest.json, built atomically.

Package layout (``out_root/<period>/``)::

    ext_province__cases.csv   UTF-8, comma separated, header row, RFC 4180 quoting
    manifest.json             period, schema_version, generated_at, files[...]

Nothing half-written is ever visible: the package is built in a hidden sibling
folder (``out_root/.<period>.tmp-<uuid>``) and renamed into place. Hidden
(dot) names in ``out_root`` and in the drop folder are work in progress and
must be ignored by readers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from xinfang.config import BUREAU_TZ
from xinfang.delivery import ledger

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
DROPFOLDER_CHANNEL = "dropfolder"
PROVINCE_RECIPIENT = "province"
EXTRACT_KIND = "province_extract"

_RELATION_RE = re.compile(r"^([a-z0-9_]+)\.([a-z0-9_]+)$")
# Period and schema version end up in folder names and ledger keys.
_TOKEN_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
_COPY_CHUNK = 1 << 20


class ExtractError(RuntimeError):
    """The extract could not be built, verified or delivered."""


@dataclass(frozen=True)
class ExtractFile:
    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ExtractResult:
    period: str
    schema_version: str
    relation: str
    path: Path  # the package folder, out_root/<period>
    generated_at: datetime
    files: tuple[ExtractFile, ...]
    content_sha256: str  # see package_checksum

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME


@dataclass(frozen=True)
class DropDelivery:
    status: Literal["delivered", "skipped"]
    target: Path
    artifact_key: str
    revision: int
    content_sha256: str


def build_extract(
    conn: psycopg.Connection,
    *,
    relation: str,
    period: str,
    out_root: Path,
    schema_version: str,
    columns_doc: Mapping[str, str],
) -> ExtractResult:
    """Export ``relation`` as CSV with a manifest into ``out_root/<period>/``.

    Every column must be described in ``columns_doc`` and every description must
    name an existing column: the manifest is the contract with the province, so
    an undocumented or vanished column means ``schema_version`` needs a bump.
    An existing package for the period is replaced (old one moved aside first),
    so a rebuild never shows a mixture of old and new files.
    """
    schema, table = _parse_relation(relation)
    _check_token("period", period)
    _check_token("schema_version", schema_version)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / period
    tmp = out_root / f".{period}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        csv_name = f"{table}.csv"
        csv_path = tmp / csv_name
        streamed_sha, streamed_bytes, types = _copy_to_csv(conn, schema, table, csv_path)
        # Rows, header and checksum come from the file on disk, i.e. from what was written.
        scan = _scan_csv(csv_path)
        if (scan.sha256, scan.bytes) != (streamed_sha, streamed_bytes):
            raise ExtractError(f"{csv_path}: file on disk differs from the bytes streamed by COPY")
        _check_documented(relation, scan.header, columns_doc)

        generated_at = datetime.now(BUREAU_TZ).replace(microsecond=0)
        manifest = {
            "period": period,
            "schema_version": schema_version,
            "generated_at": generated_at.isoformat(),
            "source_relation": relation,
            "files": [
                {
                    "name": csv_name,
                    "format": "csv",
                    "encoding": "utf-8",
                    "header": True,
                    "rows": scan.rows,
                    "bytes": scan.bytes,
                    "sha256": scan.sha256,
                    "columns": [
                        {"name": col, "type": types.get(col), "description": columns_doc[col]}
                        for col in scan.header
                    ],
                }
            ],
        }
        _write_json(tmp / MANIFEST_NAME, manifest)
        _fsync_dir(tmp)
        existing = _identical_package(final, package_checksum(manifest))
        if existing is not None:
            # Same data as the package already there: keep it, so a re-run changes no file.
            shutil.rmtree(tmp, ignore_errors=True)
            manifest = existing
            generated_at = datetime.fromisoformat(existing["generated_at"])
            log.info("extract %s for %s unchanged; kept %s", relation, period, final)
        else:
            _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    result = ExtractResult(
        period=period,
        schema_version=schema_version,
        relation=relation,
        path=final,
        generated_at=generated_at,
        files=(ExtractFile(csv_name, scan.rows, scan.bytes, scan.sha256),),
        content_sha256=package_checksum(manifest),
    )
    log.info("extract %s for %s: %d rows, %d bytes -> %s", relation, period, scan.rows, scan.bytes, final)
    return result


def read_extract(path: Path) -> ExtractResult:
    """The ExtractResult of a package already on disk (e.g. built by an earlier task)."""
    manifest = _read_manifest(Path(path))
    return ExtractResult(
        period=manifest["period"],
        schema_version=manifest["schema_version"],
        relation=manifest["source_relation"],
        path=Path(path),
        generated_at=datetime.fromisoformat(manifest["generated_at"]),
        files=tuple(ExtractFile(f["name"], f["rows"], f["bytes"], f["sha256"]) for f in manifest["files"]),
        content_sha256=package_checksum(manifest),
    )


def verify_extract(path: Path) -> list[str]:
    """Re-check a package against its manifest; returns the problems found (empty = OK)."""
    path = Path(path)
    try:
        manifest = _read_manifest(path)
    except ExtractError as exc:
        return [str(exc)]
    problems: list[str] = []
    for field in ("period", "schema_version", "generated_at", "files"):
        if field not in manifest:
            problems.append(f"{path / MANIFEST_NAME}: missing field {field!r}")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        return [*problems, f"{path / MANIFEST_NAME}: 'files' must be a non-empty list"]

    listed: set[str] = set()
    for entry in files:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"{path / MANIFEST_NAME}: invalid file entry {entry!r}")
            continue
        listed.add(name)
        file_path = path / name
        if not file_path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        try:
            scan = _scan_csv(file_path)
        except (UnicodeDecodeError, csv.Error) as exc:
            problems.append(f"{name}: not a readable UTF-8 CSV file ({exc})")
            continue
        for field, actual in (("bytes", scan.bytes), ("sha256", scan.sha256), ("rows", scan.rows)):
            if entry.get(field) != actual:
                problems.append(f"{name}: {field} is {actual}, manifest says {entry.get(field)}")
        columns = [c.get("name") for c in entry.get("columns", []) if isinstance(c, dict)]
        if columns and columns != scan.header:
            problems.append(f"{name}: header {scan.header} differs from manifest columns {columns}")

    unexpected = sorted(p.name for p in path.iterdir() if p.name not in listed | {MANIFEST_NAME})
    if unexpected:
        problems.append(f"{path}: files not listed in the manifest: {unexpected}")
    return problems


def package_checksum(manifest: Mapping[str, Any]) -> str:
    """Checksum of a package's content: the manifest without its ``generated_at``.

    The manifest carries every data file's sha256 plus the column contract, so
    two builds of identical data compare equal although built at different times.
    """
    content = {k: v for k, v in manifest.items() if k != "generated_at"}
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def extract_artifact_key(period: str, schema_version: str) -> str:
    return f"{EXTRACT_KIND}_{period}_v{schema_version}"


def deliver_extract_to_dropfolder(
    conn: psycopg.Connection,
    result: ExtractResult,
    drop_dir: Path,
    *,
    revision: int = 1,
    stale_after: timedelta = ledger.DEFAULT_STALE_AFTER,
) -> DropDelivery:
    """Copy a verified package to ``drop_dir/<period>_v<schema_version>_r<revision>``.

    Recorded in the ledger (channel 'dropfolder', recipient 'province'), so a
    re-run of an already delivered period/schema version/revision is skipped.
    If that revision was delivered with different content, ArtifactChangedError
    is raised: the province may already have loaded it, so a correction must be
    delivered as a new ``revision``, never by overwriting.
    ``conn`` must not be inside an open transaction: each ledger step commits.
    """
    problems = verify_extract(result.path)
    if problems:
        raise ExtractError(f"refusing to deliver {result.path}: " + "; ".join(problems))
    # Checksum of what is on disk now, which is what gets copied.
    manifest = _read_manifest(result.path)
    content_sha = package_checksum(manifest)
    period, schema_version = manifest["period"], manifest["schema_version"]
    _check_token("period", period)
    _check_token("schema_version", schema_version)
    artifact_key = extract_artifact_key(period, schema_version)
    drop_dir = Path(drop_dir)
    target = drop_dir / f"{period}_v{schema_version}_r{revision}"
    key = ledger.DeliveryKey(artifact_key, revision, DROPFOLDER_CHANNEL, PROVINCE_RECIPIENT)

    ledger.require_idle(conn)
    ledger.ensure_ledger(conn)
    ledger.assert_same_artifact(conn, artifact_key, revision, content_sha)
    claim = ledger.claim(
        conn,
        key,
        kind=EXTRACT_KIND,
        artifact_path=str(result.path),
        sha256=content_sha,
        size_bytes=sum(p.stat().st_size for p in result.path.iterdir() if p.is_file()),
        message_id=target.name,
        stale_after=stale_after,
    )
    if claim.outcome is ledger.ClaimOutcome.ALREADY_SENT:
        log.info("delivery %s: already delivered, skipped", key)
        return DropDelivery("skipped", target, artifact_key, revision, content_sha)
    if claim.outcome is ledger.ClaimOutcome.IN_PROGRESS:
        raise ledger.DeliveryInProgressError(
            f"delivery {key}: another worker claimed it at {claim.entry.updated_at.isoformat()}; retry later"
        )

    try:
        _place_package(result.path, target, content_sha)
    except Exception as exc:
        ledger.mark_failed(conn, key, f"{type(exc).__name__}: {exc}")
        log.error("delivery %s: failed (%s)", key, exc)
        raise
    ledger.mark_sent(conn, key)
    log.info("delivery %s: delivered to %s", key, target)
    return DropDelivery("delivered", target, artifact_key, revision, content_sha)


# --- internals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvScan:
    header: list[str]
    rows: int
    bytes: int
    sha256: str


def _parse_relation(relation: str) -> tuple[str, str]:
    match = _RELATION_RE.fullmatch(relation)
    if not match:
        raise ValueError(f"invalid relation {relation!r}: expected schema.name using only [a-z0-9_]")
    return match.group(1), match.group(2)


def _check_token(what: str, value: str) -> None:
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


def _copy_to_csv(
    conn: psycopg.Connection, schema: str, table: str, csv_path: Path
) -> tuple[str, int, dict[str, str]]:
    """COPY the relation into ``csv_path``; returns (sha256, bytes, column types) of the stream."""
    ident = sql.Identifier(schema, table)
    digest, size = hashlib.sha256(), 0
    with conn.transaction(), conn.cursor() as cur:
        # COPY emits bytes in the client encoding; pin it so the file is UTF-8 whatever the server says.
        cur.execute("SET LOCAL client_encoding TO 'UTF8'")
        types = dict(
            cur.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (f"{schema}.{table}",),
            ).fetchall()
        )
        query = sql.SQL("COPY (SELECT * FROM {} ORDER BY 1) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            ident
        )
        with open(csv_path, "wb") as fh, cur.copy(query) as copy:
            for chunk in copy:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    return digest.hexdigest(), size, types


def _scan_csv(path: Path) -> _CsvScan:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_COPY_CHUNK), b""):
            digest.update(block)
    # newline="" lets the csv module handle line breaks inside quoted fields.
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        header = next(reader, None)
        rows = sum(1 for _ in reader)
    if header is None:
        raise csv.Error("empty file, no header row")
    return _CsvScan(header=header, rows=rows, bytes=path.stat().st_size, sha256=digest.hexdigest())


def _check_documented(relation: str, header: list[str], columns_doc: Mapping[str, str]) -> None:
    undocumented = [c for c in header if not str(columns_doc.get(c) or "").strip()]
    unknown = sorted(set(columns_doc) - set(header))
    if undocumented or unknown:
        raise ExtractError(
            f"{relation}: columns_doc does not match the relation "
            f"(undocumented columns: {undocumented or 'none'}; documented but absent: {unknown or 'none'})"
        )


def _identical_package(path: Path, content_sha: str) -> dict[str, Any] | None:
    """The manifest of a valid package at ``path`` with this content checksum, else None."""
    if not path.is_dir() or verify_extract(path):
        return None
    manifest = _read_manifest(path)
    return manifest if package_checksum(manifest) == content_sha else None


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExtractError(f"{manifest_path}: manifest missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExtractError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ExtractError(f"{manifest_path}: manifest is not a JSON object")
    return manifest


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, then removed.

    A directory cannot be replaced in one rename, so for a moment ``final`` may be
    absent — but it is never a mixture of two builds.
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
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _place_package(source: Path, target: Path, content_sha: str) -> None:
    """Copy ``source`` into ``target`` via a hidden temp folder next to it, verified before the rename."""
    if target.exists():
        # A crashed earlier attempt may have renamed it into place before the ledger said 'sent'.
        problems = verify_extract(target)
        if not problems and package_checksum(_read_manifest(target)) == content_sha:
            log.warning("%s already present with identical content; recording it as delivered", target)
            return
        raise ExtractError(
            f"{target} already exists in the drop folder with different or broken content "
            f"({'; '.join(problems) or 'checksum differs'}); deliver a new revision instead"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target, hence the same file system, hence an atomic rename.
    tmp = target.with_name(f".{target.name}.part-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        for item in sorted(source.iterdir()):
            shutil.copy2(item, tmp / item.name)
            with open(tmp / item.name, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        problems = verify_extract(tmp)
        if problems:
            raise ExtractError(f"copy in {tmp} failed verification: " + "; ".join(problems))
        if package_checksum(_read_manifest(tmp)) != content_sha:
            raise ExtractError(f"{source} changed while it was being copied; re-run the delivery")
        os.rename(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
