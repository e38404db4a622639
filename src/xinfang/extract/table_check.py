"""Check a package's CSV files against their Table Schema, column-wise, in bounded memory.

Frictionless, the reference implementation, checks row by row in Python and
keeps every key value for its key checks: a full package of about 10 million
matters and 20 million events took it far longer than the rest of the monthly
run, and gigabytes of memory. This module checks the part of Table Schema the
published schemas use (types string, integer, number, boolean, date and
datetime; the constraints required and enum; primary and foreign keys;
missing values; the resource's bytes and hash) with Frictionless's rules for
each type, and nothing else: ``unsupported`` names what a schema uses beyond
that, and the validator then hands the package to Frictionless.

How it stays fast and small:
- rows are read in blocks and checked column by column: a value is parsed once
  per block, not once per row (most columns repeat a few codes and dates);
- primary and foreign keys are kept as 64-bit hashes in numpy arrays. Equal
  keys always have equal hashes, so no duplicate or dangling key can be
  missed; a duplicate hash is confirmed against the real values (a second
  read of the file) before it is reported, so a hash collision cannot make a
  false finding. A dangling foreign key could only hide behind a collision
  with one of the referenced keys: about 10^-12 per dangling key at 10
  million keys.

Errors carry Frictionless's error types and row numbers (the header is row 1),
so a report reads the same whichever engine made it; tests run both on the
same broken packages. Notes never quote a cell: it may be the personal data
the privacy check looks for.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

BLOCK_ROWS = 20_000
# Per column, values already found valid are remembered up to this many (codes, dates); a
# column of mostly distinct values (timestamps) is re-parsed block by block instead.
_KNOWN_LIMIT = 100_000
_TRUE_VALUES = ["true", "True", "TRUE", "1"]
_FALSE_VALUES = ["false", "False", "FALSE", "0"]
_DATE_PATTERN = "%Y-%m-%d"  # Frictionless's "default" date format
_ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"
_ISO_SECONDS_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_CONSTRAINTS = {"required", "enum"}
_FIELD_KEYS = {"name", "type", "format", "title", "description", "constraints", "trueValues", "falseValues"}
_SCHEMA_KEYS = {"fields", "primaryKey", "foreignKeys", "missingValues"}
_HASHES = {"md5", "sha1", "sha256", "sha512"}
# Python's own hash: SipHash, 64 bits, keyed per process (so not predictable from outside);
# every key of one check is hashed in one process. A name of its own so a test can force collisions.
_key_hash: Callable[[Any], int] = hash
# A cell a short row lacks: missing, like an empty one, but never equal to any text.
_ABSENT: Any = object()
_TYPE_NAMES = {
    "string": "文本",
    "integer": "整数",
    "number": "数值",
    "boolean": "布尔值",
    "date": "日期",
    "datetime": "日期时间",
}


@dataclass(frozen=True)
class DataError:
    file: str
    row: int | None  # as Frictionless counts: the header is row 1
    field: str | None
    type: str  # Frictionless's error type: type-error, constraint-error, primary-key, ...
    note: str


def unsupported(resources: list[dict[str, Any]]) -> list[str]:
    """What these resources use that this module does not check; empty if it checks them fully."""
    found: list[str] = []
    for resource in resources:
        name = resource.get("name")
        schema = resource.get("schema") or {}
        found += [f"{name}: schema.{k}" for k in sorted(set(schema) - _SCHEMA_KEYS)]
        for f in schema.get("fields", []):
            where = f"{name}.{f.get('name')}"
            found += [f"{where}: {k}" for k in sorted(set(f) - _FIELD_KEYS)]
            found += [
                f"{where}: constraint {k}" for k in sorted(set(f.get("constraints") or {}) - _CONSTRAINTS)
            ]
            kind, fmt = f.get("type", "string"), f.get("format", "default")
            if kind not in _TYPE_NAMES:
                found.append(f"{where}: type {kind}")
            elif kind in ("string", "integer", "number", "boolean", "date") and fmt != "default":
                # date: only "%Y-%m-%d" (default) is implemented; string formats (uri, email) are not
                found.append(f"{where}: format {fmt}")
            elif kind == "datetime" and "%" not in str(fmt):
                found.append(f"{where}: format {fmt}")  # "default"/"any" use dateutil
        for fk in schema.get("foreignKeys", []):
            if not isinstance(fk.get("fields"), list) or not isinstance(
                fk.get("reference", {}).get("fields"), list
            ):
                found.append(f"{name}: foreignKeys in the short (string) form")
        if not isinstance(schema.get("primaryKey", []), list):
            found.append(f"{name}: primaryKey in the short (string) form")
    return found


def check(root: Path, resources: list[dict[str, Any]]) -> Iterator[DataError]:
    """Every error of the package's data files, file by file, each file's keys after its rows.

    ``resources`` come from a descriptor the caller has vetted: plain file names inside
    ``root`` and schemas ``unsupported`` has nothing to say about.
    """
    # Which field lists of which resource other resources point at: their hashes are kept.
    lookups: dict[str, set[tuple[str, ...]]] = {}
    for resource in resources:
        for fk in resource["schema"].get("foreignKeys", []):
            target = fk["reference"].get("resource") or resource["name"]
            lookups.setdefault(target, set()).add(tuple(fk["reference"]["fields"]))
    tables: dict[str, _Table] = {}
    for resource in resources:
        table = _Table(root, resource, lookups.get(resource["name"], set()))
        yield from table.read()
        yield from table.duplicate_keys()
        tables[resource["name"]] = table
    for resource in resources:
        yield from tables[resource["name"]].dangling_keys(tables)


# --- one file --------------------------------------------------------------------------------------


@dataclass
class _Keys:
    """Hashes of one field list, with the row number of each (rows whose fields are all empty left out)."""

    hashes: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        self.hashes.append(hashes)
        self.rows.append(rows)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.hashes:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(self.hashes), np.concatenate(self.rows)


class _Table:
    def __init__(self, root: Path, resource: dict[str, Any], lookups: set[tuple[str, ...]]) -> None:
        self.path = root / resource["path"]
        self.file = resource["path"]
        self.resource = resource
        schema = resource["schema"]
        self.fields = schema["fields"]
        self.names = [f["name"] for f in self.fields]
        self.missing = set(schema.get("missingValues", [""])) | {_ABSENT}
        self.primary = tuple(schema.get("primaryKey", []))
        self.foreign = [
            (
                tuple(fk["fields"]),
                fk["reference"].get("resource") or resource["name"],
                tuple(fk["reference"]["fields"]),
            )
            for fk in schema.get("foreignKeys", [])
        ]
        # Every field list whose hashes are needed: the primary key, the foreign keys, the lookups.
        wanted = {self.primary} | {fields for fields, _, _ in self.foreign} | lookups
        self.keys = {fields: _Keys() for fields in wanted if fields}
        self.readable = False  # the header matched: the rows were checked and the keys collected

    # -- rows --

    def read(self) -> Iterator[DataError]:
        yield from self._file_checks()
        with open(self.path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                yield DataError(self.file, None, None, "blank-header", "文件为空，没有表头")
                return
            if header != self.names:
                yield from self._label_errors(header)
                return  # the columns would be read under the wrong names
            self.readable = True
            checks = [_Column(f, self.missing) for f in self.fields]
            width = len(self.names)
            position = {name: i for i, name in enumerate(self.names)}
            last = 1
            while block := list(itertools.islice(reader, BLOCK_ROWS)):
                numbers = np.arange(last + 1, last + 1 + len(block), dtype=np.int64)
                last += len(block)
                if any(len(row) != width or not any(row) for row in block):
                    block, numbers = yield from self._reshape(block, numbers, width)
                if not block:
                    continue
                columns = list(zip(*block, strict=True))
                for i, column in enumerate(checks):
                    for j, kind, note in column.errors(columns[i]):
                        yield DataError(self.file, int(numbers[j]), self.names[i], kind, note)
                for fields, keys in self.keys.items():
                    parts = [checks[position[f]].key_values(columns[position[f]]) for f in fields]
                    values = parts[0] if len(parts) == 1 else list(zip(*parts, strict=True))
                    null = _null_key(len(parts))
                    rows = numbers
                    if null in values:  # a key whose cells are all empty or invalid
                        present = [j for j, v in enumerate(values) if v != null]
                        if fields == self.primary:
                            for j in sorted(set(range(len(values))) - set(present)):
                                yield DataError(self.file, int(numbers[j]), None, "primary-key", "主键为空")
                        values, rows = [values[j] for j in present], numbers[present]
                    keys.add(np.fromiter(map(_key_hash, values), np.int64, count=len(values)), rows)

    def _file_checks(self) -> Iterator[DataError]:
        size = self.path.stat().st_size
        declared = self.resource.get("bytes")
        if declared is not None and declared != size:
            yield DataError(
                self.file, None, None, "byte-count", f"文件为{size}字节，描述文件为{declared}字节"
            )
        declared_hash = self.resource.get("hash")
        if declared_hash:
            algorithm, _, digest = str(declared_hash).rpartition(":")
            algorithm = algorithm or "md5"  # Frictionless's default when no algorithm is named
            if algorithm not in _HASHES:
                yield DataError(self.file, None, None, "hash-count", f"不支持的散列算法 {algorithm[:20]}")
            elif _file_digest(self.path, algorithm) != digest:
                yield DataError(self.file, None, None, "hash-count", f"{algorithm}散列值与描述文件不符")

    def _label_errors(self, header: list[str]) -> Iterator[DataError]:
        for number, (got, want) in enumerate(itertools.zip_longest(header, self.names), start=1):
            if want is None:
                yield DataError(self.file, None, None, "extra-label", f"第{number}列表头多余")
            elif got is None:
                yield DataError(self.file, None, want, "missing-label", f"缺少第{number}列表头")
            elif got != want:
                yield DataError(self.file, None, want, "incorrect-label", f"第{number}列表头应为 {want}")

    def _reshape(
        self, block: list[list[str]], numbers: np.ndarray, width: int
    ) -> Generator[DataError, None, tuple[list[list[str]], np.ndarray]]:
        """Report rows of the wrong width and blank rows; return the rows to check, as Frictionless
        checks them: a short row padded with absent cells, a long one cut to the schema's width,
        a blank row left out (it can only fail its primary key)."""
        rows, keep = [], []
        for i, row in enumerate(block):
            number = int(numbers[i])
            if not any(row):
                yield DataError(self.file, number, None, "blank-row", "空行")
                if self.primary:
                    yield DataError(self.file, number, None, "primary-key", "主键为空")
                continue
            if len(row) > width:
                for _ in range(len(row) - width):
                    yield DataError(self.file, number, None, "extra-cell", f"有{len(row)}列，应为{width}列")
            for name in self.names[len(row) :]:
                yield DataError(self.file, number, name, "missing-cell", f"有{len(row)}列，应为{width}列")
            rows.append(row[:width] + [_ABSENT] * (width - len(row)))
            keep.append(i)
        return rows, numbers[keep]

    # -- keys --

    def duplicate_keys(self) -> Iterator[DataError]:
        if not self.readable or not self.primary:
            return
        hashes, rows = self.keys[self.primary].arrays()
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        if not len(repeated):
            return
        # Candidates by hash; confirmed by value (a collision is not a duplicate).
        candidates = set(rows[np.isin(hashes, repeated)].tolist())
        first_seen: dict[Any, int] = {}
        for number, value in self._key_values_at(self.primary, candidates):
            if value in first_seen:
                yield DataError(
                    self.file,
                    number,
                    None,
                    "primary-key",
                    f"主键 {', '.join(self.primary)} 与第{first_seen[value]}行重复",
                )
            else:
                first_seen[value] = number

    def dangling_keys(self, tables: dict[str, _Table]) -> Iterator[DataError]:
        if not self.readable:
            return
        for fields, target, target_fields in self.foreign:
            lookup = tables.get(target)
            if lookup is None or not lookup.readable:
                continue  # its own errors say why it could not be read
            hashes, rows = self.keys[fields].arrays()
            known, _ = lookup.keys[target_fields].arrays()
            for number in np.sort(rows[~np.isin(hashes, known)]).tolist():
                yield DataError(
                    self.file,
                    number,
                    None,
                    "foreign-key",
                    f"{', '.join(fields)} 在 {target} 的 {', '.join(target_fields)} 中不存在",
                )

    def _key_values_at(self, fields: tuple[str, ...], numbers: set[int]) -> Iterator[tuple[int, Any]]:
        """The typed key values of the given rows, read again from the file, in row order."""
        checks = {f["name"]: _Column(f, self.missing) for f in self.fields}
        index = [self.names.index(f) for f in fields]
        width = len(self.names)
        with open(self.path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            next(reader)
            for number, row in enumerate(reader, start=2):
                if number in numbers:
                    row = row + [_ABSENT] * (width - len(row))
                    parts = tuple(
                        checks[f].key_values([row[i]])[0] for f, i in zip(fields, index, strict=True)
                    )
                    yield number, parts


def _null_key(width: int) -> Any:
    """How a key whose fields are all empty looks after key_values (skipped, as Frictionless does)."""
    return None if width == 1 else (None,) * width


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- one column ------------------------------------------------------------------------------------


class _Column:
    """One field's rules, applied to a block's column at once."""

    def __init__(self, spec: dict[str, Any], missing: set[str]) -> None:
        self.type = spec.get("type", "string")
        constraints = spec.get("constraints") or {}
        self.required = bool(constraints.get("required"))
        self.missing = missing
        self.parse: Callable[[str], Any] = _parser(spec)
        enum = constraints.get("enum")
        # Frictionless compares the typed value with the typed enum members.
        self.enum = None if enum is None else {self.parse(str(v)) if isinstance(v, str) else v for v in enum}
        self.known: set[str] = set()  # values found valid
        self.trivial = self.type == "string" and self.enum is None  # any text is a valid string
        self._cache: dict[str, Any] = {}

    def errors(self, column: tuple[str, ...]) -> Iterator[tuple[int, str, str]]:
        """(index in the block, error type, note) of each invalid cell, in row order."""
        distinct = set(column)
        empty = distinct & self.missing
        bad: dict[str, tuple[str, str]] = {}
        if empty and self.required:
            bad |= {v: ("constraint-error", "必填字段为空") for v in empty}
        if not self.trivial:
            for value in distinct - self.missing - self.known:
                typed = self.parse(value)
                if typed is None:
                    bad[value] = ("type-error", f"应为{_TYPE_NAMES[self.type]}（{self._format()}）")
                elif self.enum is not None and typed not in self.enum:
                    bad[value] = ("constraint-error", "不在允许的取值范围（enum）内")
                elif len(self.known) < _KNOWN_LIMIT:
                    self.known.add(value)
        if bad:
            for j, value in enumerate(column):
                if value in bad:
                    yield j, *bad[value]

    def key_values(self, column: tuple[str, ...] | list[str]) -> list[Any]:
        """Values as keys compare them: typed (1 and 01 are the same integer key), empty as None."""
        if self.type == "string":
            return [None if v in self.missing else v for v in column]
        cache = self._cache
        if len(cache) > _KNOWN_LIMIT:
            cache.clear()
        out = []
        for v in column:
            if v not in cache:
                cache[v] = None if v in self.missing else self.parse(v)
            out.append(cache[v])
        return out

    def _format(self) -> str:
        return {"date": "YYYY-MM-DD", "datetime": "YYYY-MM-DDTHH:MM:SS"}.get(self.type, self.type)


def _parser(spec: dict[str, Any]) -> Callable[[str], Any]:
    """The typed value of a cell by Frictionless's rules for the field, or None if it is not one."""
    kind, fmt = spec.get("type", "string"), spec.get("format", "default")
    if kind == "string":
        return lambda v: v
    if kind == "integer":
        return _guard(lambda v: int(v.strip()))
    if kind == "number":
        return _guard(lambda v: Decimal(v.strip()))
    if kind == "boolean":
        mapping = dict.fromkeys(spec.get("trueValues", _TRUE_VALUES), True)
        mapping |= dict.fromkeys(spec.get("falseValues", _FALSE_VALUES), False)
        return mapping.get
    if kind == "date":
        return _guard(lambda v: datetime.strptime(v, _DATE_PATTERN).date())
    if kind == "datetime" and fmt == _ISO_SECONDS:
        # The published format. strptime costs microseconds and event times are nearly all
        # distinct: a value of exactly this shape is read by fromisoformat, which agrees with
        # strptime on it; any other shape (strptime also takes 2025-6-1T8:05:09) goes to strptime.
        def iso_or_strptime(v: str) -> datetime | None:
            try:
                return (
                    datetime.fromisoformat(v)
                    if _ISO_SECONDS_SHAPE.fullmatch(v)
                    else datetime.strptime(v, fmt)
                )
            except ValueError:
                return None

        return iso_or_strptime
    if kind == "datetime":
        return _guard(lambda v: datetime.strptime(v, fmt))
    raise ValueError(f"field {spec.get('name')}: type {kind} is not supported (see unsupported())")


def _guard(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def guarded(value: str) -> Any:
        try:
            return parse(value)
        except (ValueError, ArithmeticError, OverflowError):
            return None

    return guarded
