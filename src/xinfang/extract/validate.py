"""Check an extract package as the province receives it: checksums, schema, keys, no personal data.

Used on both sides: the city runs it before anything leaves (package.build_package),
the province runs ``xinfang extract validate PATH`` on what arrived. The report
is in Chinese, for the receiving bureau; each finding names the file, row and field,
never a value (it may be the personal data looked for).

A received package is untrusted input:
- only regular files with plain names, all listed in the manifest, and nothing
  else (no symlinks, no folders) may be in it;
- the descriptor may name only those files, with an allow-listed set of
  properties, before Frictionless is allowed to open anything, so a crafted
  descriptor cannot make the validator read a URL or a file elsewhere;
- a check that cannot read something reports it as a finding; it never stops
  the validation of the other packages in an inbox.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinfang.extract import schema as published
from xinfang.extract import table_check
from xinfang.extract.package import (
    CHANGELOG_NAME,
    DESCRIPTOR_NAME,
    MANIFEST_NAME,
    ExtractError,
    csv_data_rows,
    file_sha256,
    read_manifest,
)

# Resident ID numbers (18 characters with their GB 11643 check digit, or the old 15-digit
# form; in ASCII or full-width digits, as Chinese input methods write them), mobile numbers
# as people write them (13812345678, 138-1234-5678, +86 138 1234 5678) and street
# addresses; each standing alone, not inside a longer code or a hex key.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:[0-9０-９]{17}[0-9０-９Xx]|[0-9０-９]{15})(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z+])(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![0-9A-Za-z])")
# (?<!\d): a match starts at the first digit of a run, not at every digit of a long one.
_STREET_ADDRESS = re.compile(r"[路街巷道弄村组]\d+号|(?<!\d)\d+(?:栋|幢|单元|室)")
# The one column allowed to stand for a person: the province-keyed HMAC.
_PSEUDONYM_COLUMNS = {"person_key"}
_SCAN_BLOCK_CHARS = 1 << 24  # whole lines, about 16 M characters a block
# Each pattern's "core": a fast search (it starts with a literal or a character class, so the
# regular-expression engine skips ahead instead of trying the pattern at every character)
# that matches within every match of the pattern. Only lines near a core's match are searched
# with the pattern itself: a third of the time on a full package (measured on one block).
_SCANS = (
    # The lookaheads hold for every match too (an ID's 16th character is a digit or ends it; a
    # mobile number ends its match) and skip the digit runs of pseudonyms' hex, by far the most
    # frequent false start.
    (_ID_NUMBER, (re.compile(r"[0-9０-９]{15}(?![A-Za-z])"),)),
    (_MOBILE, (re.compile(r"1[3-9]\d(?:[\s-]?\d{4}){2}(?![0-9A-Za-z])"),)),
    (
        _STREET_ADDRESS,
        (re.compile(r"[路街巷道弄村组]\d+号"), re.compile(r"[栋幢室](?<=\d.)"), re.compile(r"单元(?<=\d..)")),
    ),
)
_CORE_REACH = 24  # a match starts at most this far before its core (the mobile's +86 prefix)
_MATCH_REACH = 64  # and ends at most this far past the end of the line it starts on
_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
_PERSONAL_COLUMN = re.compile(
    r"name$|phone|mobile|tel$|address|addr|id_number|id_card|idcard|identity|email|caller|petitioner"
    r"|姓名|电话|手机|身份证|地址|住址",
    re.IGNORECASE,
)
# Names of units, places and categories are not about a person.
_ADMIN_NAMES = {"category_name", "town_name", "district_name", "department_name"}
# What a resource and the package descriptor may say; anything else (dialect, control,
# compression, extrapaths, profile, ...) could change how or what Frictionless reads.
_RESOURCE_KEYS = {
    "name",
    "path",
    "title",
    "description",
    "format",
    "mediatype",
    "encoding",
    "bytes",
    "hash",
    "schema",
}
_DESCRIPTOR_KEYS = {"name", "title", "version", "licenses", "x_xinfang", "resources"}
# A corrected package is delivered as a new revision: <name>_r2, _r3, ..., _r10, ...
_REVISION_SUFFIX = r"(?:_r(?:[2-9]|[1-9]\d+))?"
_MAX_FINDINGS_PER_CHECK = 50

CHECKS = {
    "manifest": "清单与校验和（SHA-256、字节数、行数）",
    "schema": "模式版本与表结构（对照已发布模式）",
    "data": "数据类型、必填、取值范围、主键、外键（表结构规范 Table Schema）",
    "privacy": "个人信息扫描（身份证号、手机号、门牌地址、敏感字段名）",
}


@dataclass(frozen=True)
class Finding:
    check: str
    location: str  # file, row and field as far as known
    message: str

    def line(self) -> str:
        return f"  - {self.location}：{self.message}" if self.location else f"  - {self.message}"


@dataclass
class ValidationReport:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    checks_run: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and len(self.checks_run) == len(CHECKS)

    def add(self, check: str, location: str, message: str) -> None:
        if sum(1 for f in self.findings if f.check == check) < _MAX_FINDINGS_PER_CHECK:
            self.findings.append(Finding(check, location, message))

    def text(self) -> str:
        m = self.manifest
        kind = {"full": "月度全量", "daily": "每日增量"}.get(str(m.get("kind")), str(m.get("kind", "未知")))
        files = (
            [f for f in m.get("files", []) if isinstance(f, dict)] if isinstance(m.get("files"), list) else []
        )
        data_files = [f for f in files if f.get("rows") is not None]
        rows = sum(_as_int(f.get("rows")) for f in data_files)
        size = sum(_as_int(f.get("bytes")) for f in files)
        lines = [
            "省信访局标准化抽取数据包校验报告",
            f"数据包：{m.get('package', self.path.name)}",
            f"类型：{kind}　期间：{m.get('period', '未知')}　模式版本：{m.get('schema_version', '未知')}"
            f"　地市代码：{m.get('city_code', '未知')}",
            f"文件：{len(data_files)}个数据文件，共{rows:,}行，{size / 1e6:.1f} MB",
        ]
        for check, title in CHECKS.items():
            problems = [f for f in self.findings if f.check == check]
            if check not in self.checks_run:
                lines.append(f"[未执行] {title}（前序检查未通过）")
                continue
            lines.append(f"[{'通过' if not problems else '不通过'}] {title}")
            lines.extend(f.line() for f in problems)
            if len(problems) >= _MAX_FINDINGS_PER_CHECK:
                lines.append(f"  （仅列出前{_MAX_FINDINGS_PER_CHECK}项）")
        lines.append(f"结论：{'通过' if self.ok else '不通过'}")
        return "\n".join(lines)


def verify_checksums(path: Path) -> list[Finding]:
    """Manifest against the files on disk: every file listed, present, same bytes and sha256, no others."""
    report = ValidationReport(Path(path))
    _run(report, "manifest", _check_manifest)
    return report.findings


def validate_package(
    path: Path, *, expected_name: str | None = None, engine: str = "stream"
) -> ValidationReport:
    """Run the four checks in order; a check runs only if the ones before it passed.

    The order matters: files failing their checksum are not opened further, and
    Frictionless reads only what the schema check has vetted. ``engine`` picks the data
    check's implementation (see _check_data); both report the same errors.
    """
    report = ValidationReport(Path(path))
    steps: list[tuple[str, Callable[[ValidationReport], None]]] = [
        ("manifest", lambda r: _check_manifest(r, expected_name=expected_name)),
        ("schema", _check_schema),
        ("data", lambda r: _check_data(r, engine=engine)),
        ("privacy", _check_privacy),
    ]
    for check, step in steps:
        _run(report, check, step)
        if any(f.check == check for f in report.findings):
            break
    return report


def _run(report: ValidationReport, check: str, step: Callable[[ValidationReport], None]) -> None:
    report.checks_run.append(check)
    try:
        step(report)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, csv.Error, ExtractError) as exc:
        # Malformed input must give a finding, not a crash that hides the other packages' results.
        report.add(check, "", f"无法完成检查（{type(exc).__name__}：{_short(exc)}）")
    except Exception as exc:  # Frictionless raises its own exception types
        if type(exc).__module__.split(".")[0] != "frictionless":
            raise
        report.add(check, "", f"无法完成检查（{type(exc).__name__}：{_short(exc)}）")


# --- the checks ----------------------------------------------------------------------------------


def _check_manifest(report: ValidationReport, *, expected_name: str | None = None) -> None:
    path = report.path
    if path.is_symlink() or not path.is_dir():
        report.add("manifest", str(path.name), "不是数据包目录（或为符号链接）")
        return
    try:
        manifest = read_manifest(path)
    except ExtractError as exc:
        report.add("manifest", MANIFEST_NAME, f"无法读取（{_short(exc)}）")
        return
    report.manifest = manifest
    for key in ("package", "kind", "period", "schema_version", "city_code", "generated_at", "files"):
        if key not in manifest:
            report.add("manifest", MANIFEST_NAME, f"缺少字段 {key}")
    name = manifest.get("package")
    if expected_name is not None and name != expected_name:
        report.add("manifest", MANIFEST_NAME, f"数据包名称为 {name}，应为 {expected_name}")
    elif expected_name is None and not (
        isinstance(name, str) and re.fullmatch(re.escape(name) + _REVISION_SUFFIX, path.name)
    ):
        report.add("manifest", MANIFEST_NAME, f"数据包名称 {name} 与目录名 {path.name} 不一致")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        report.add("manifest", MANIFEST_NAME, "files 应为非空列表")
        return
    listed: set[str] = set()
    for entry in files:
        file_name = entry.get("name") if isinstance(entry, dict) else None
        if not _plain_name(file_name):
            report.add("manifest", MANIFEST_NAME, f"文件条目无效：{str(entry)[:120]}")
            continue
        listed.add(file_name)
        file_path = path / file_name
        info = file_path.lstat() if file_path.exists() or file_path.is_symlink() else None
        if info is None:
            report.add("manifest", file_name, "清单列出但文件不存在")
            continue
        if not stat.S_ISREG(info.st_mode):
            report.add("manifest", file_name, "不是普通文件（符号链接、目录或特殊文件）")
            continue
        if entry.get("bytes") != info.st_size:
            report.add("manifest", file_name, f"字节数为{info.st_size}，清单为{entry.get('bytes')}")
        if entry.get("sha256") != file_sha256(file_path):
            report.add("manifest", file_name, "SHA-256校验和与清单不符（文件被改动或传输不完整）")
            continue
        rows = entry.get("rows")
        if rows is not None or file_name.endswith(".csv"):
            actual = csv_data_rows(file_path)
            if rows != actual:
                report.add("manifest", file_name, f"数据行数为{actual}，清单为{rows}")
    for required in (DESCRIPTOR_NAME, CHANGELOG_NAME):
        if required not in listed:
            report.add("manifest", MANIFEST_NAME, f"清单未列出 {required}")
    unexpected = sorted(p.name for p in path.iterdir() if p.name not in listed | {MANIFEST_NAME})
    if unexpected:
        report.add("manifest", path.name, f"存在清单未列出的文件：{', '.join(unexpected)}")


def _check_schema(report: ValidationReport) -> None:
    """The descriptor must equal the published schema of the declared version, resource by resource."""
    manifest = report.manifest
    descriptor = json.loads((report.path / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    if not isinstance(descriptor, dict):
        report.add("schema", DESCRIPTOR_NAME, "不是JSON对象")
        return
    for key in sorted(set(descriptor) - _DESCRIPTOR_KEYS):
        report.add("schema", DESCRIPTOR_NAME, f"不允许的属性 {key}")
    version = manifest.get("schema_version")
    if descriptor.get("version") != version:
        report.add("schema", DESCRIPTOR_NAME, f"版本 {descriptor.get('version')} 与清单 {version} 不一致")
    try:
        document = published.load_schema(str(version))
    except published.SchemaError as exc:
        report.add("schema", DESCRIPTOR_NAME, f"未知的模式版本（{exc}）")
        return
    kind = manifest.get("kind")
    if kind not in ("full", "daily"):
        report.add("schema", MANIFEST_NAME, f"未知的数据包类型 {kind!r}（应为 full 或 daily）")
        return
    wanted = {r.resource for r in published.resources_for(kind)}
    schemas = {r["name"]: r for r in document["resources"] if r["name"] in wanted}
    resources = descriptor.get("resources") if isinstance(descriptor.get("resources"), list) else []
    data_files = {f["name"] for f in manifest["files"] if isinstance(f, dict) and f.get("rows") is not None}
    paths: set[str] = set()
    for resource in resources:
        name = resource.get("name") if isinstance(resource, dict) else None
        if name not in schemas:
            report.add("schema", DESCRIPTOR_NAME, f"资源 {str(name)[:60]} 不属于 {version} 版{kind}数据包")
            continue
        where = f"{DESCRIPTOR_NAME} {name}"
        if name in {r.get("name") for r in resources[: resources.index(resource)] if isinstance(r, dict)}:
            report.add("schema", where, "资源重复")
        if not _plain_name(resource.get("path")) or resource.get("path") not in data_files:
            # Never let Frictionless open a URL or a path outside the package.
            report.add("schema", where, f"path {str(resource.get('path'))[:120]!r} 不是清单中的数据文件")
        paths.add(str(resource.get("path")))
        for key in sorted(set(resource) - _RESOURCE_KEYS):
            report.add("schema", where, f"不允许的属性 {key}")
        if resource.get("format") != "csv" or resource.get("encoding") != "utf-8":
            report.add("schema", where, "format 应为 csv，encoding 应为 utf-8")
        if resource.get("schema") != schemas[name]["schema"]:
            report.add("schema", where, f"表结构与已发布的 {version} 版模式不一致")
    for missing in sorted(set(schemas) - {r.get("name") for r in resources if isinstance(r, dict)}):
        report.add("schema", DESCRIPTOR_NAME, f"缺少资源 {missing}")
    # Every data file is a resource: a file the descriptor does not name would escape the checks.
    for stray in sorted(data_files - paths):
        report.add("schema", MANIFEST_NAME, f"数据文件 {stray} 不是描述文件中的资源")


def _check_data(report: ValidationReport, *, engine: str = "stream") -> None:
    """Types, constraints and keys of every data file.

    ``stream`` (xinfang.extract.table_check) checks the published schemas in bounded
    memory; Frictionless, the reference, takes a schema that uses more than it
    implements, or when asked for (``engine="frictionless"``).
    """
    descriptor = json.loads((report.path / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    resources = descriptor["resources"]
    if engine == "frictionless" or table_check.unsupported(resources):
        _check_data_frictionless(report)
        return
    for error in table_check.check(report.path, resources):
        location = error.file
        if error.row:
            location += f" 第{error.row}行"
        if error.field:
            location += f" 字段 {error.field}"
        report.add("data", location, f"{error.type}：{error.note}")


def _check_data_frictionless(report: ValidationReport) -> None:
    from frictionless import Package, system

    # Not trusted: Frictionless itself also refuses absolute and parent paths.
    with system.use_context(trusted=False):
        result = Package(str(report.path / DESCRIPTOR_NAME)).validate()
    for task in result.tasks:
        resource_file = Path(task.place).name if task.place else task.name
        for error in task.errors:
            row = getattr(error, "row_number", None)
            field_name = getattr(error, "field_name", None)
            location = resource_file
            if row:
                location += f" 第{row}行"
            if field_name:
                location += f" 字段 {field_name}"
            # The note names the expected type, or for key errors the key values (matter ids,
            # codes): never a cell of a free-text or personal column.
            report.add("data", location, f"{error.type}：{error.note}")
    for error in result.errors:
        report.add("data", DESCRIPTOR_NAME, f"{error.type}：{error.note}")


def _check_privacy(report: ValidationReport) -> None:
    descriptor = json.loads((report.path / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    for resource in descriptor["resources"]:
        file_name = resource["path"]
        for f in resource["schema"]["fields"]:
            if f["name"] in _PSEUDONYM_COLUMNS or f["name"] in _ADMIN_NAMES:
                continue
            if _PERSONAL_COLUMN.search(f["name"]) or _PERSONAL_COLUMN.search(f.get("title", "")):
                report.add("privacy", f"{file_name} 字段 {f['name']}", "字段名表明可能含个人信息")
        _scan_csv(report, file_name)
    # The other text files are read too: nothing in a package is exempt.
    for name in (DESCRIPTOR_NAME, CHANGELOG_NAME, MANIFEST_NAME):
        text = (report.path / name).read_text(encoding="utf-8")
        for line_number in _hit_lines(text):
            report.add("privacy", f"{name} 第{line_number}行", "疑似个人信息（值不显示）")


def _scan_csv(report: ValidationReport, file_name: str) -> None:
    path = report.path / file_name
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    keys = [i for i, c in enumerate(header) if c in _PSEUDONYM_COLUMNS]
    # One regular-expression pass per pattern over a block of lines finds the candidate lines
    # (almost always none); only those are parsed to name the field. A line is a CSV row
    # here: the published schema has no free-text column that could hold a line break.
    # Blocks, not the whole file: a full package's CSV holds millions of rows, and a str of
    # Chinese text takes two to four bytes a character.
    with open(path, encoding="utf-8", newline="") as fh:
        before = 0  # lines of the earlier blocks
        while lines := fh.readlines(_SCAN_BLOCK_CHARS):
            text = "".join(lines)
            for i in keys:
                _check_pseudonyms(report, file_name, header[i], _column(lines, text, i, len(header)), before)
            starts = list(itertools.accumulate((len(line) for line in lines[:-1]), initial=0))
            for number in _hit_lines(text, starts):
                _name_hit(report, file_name, header, lines[number - 1], before + number)
            before += len(lines)


def _column(lines: list[str], text: str, i: int, width: int) -> list[str]:
    """Column i of a block of lines; the csv module only where a quote makes it necessary."""
    if '"' in text:
        return [row[i] if i < len(row) else "" for row in csv.reader(lines)]
    if i < width // 2:
        return [(line.split(",", i + 1) + [""] * (i + 1))[i].rstrip("\r\n") for line in lines]
    # From the right: the pseudonym is the last column of the published files.
    k = width - i
    return [p[-k] if len(p) >= k else "" for p in (line.rstrip("\r\n").rsplit(",", k) for line in lines)]


def _check_pseudonyms(
    report: ValidationReport, file_name: str, column: str, values: list[str], before: int
) -> None:
    """Each cell of a pseudonym column is a province-keyed HMAC (64 hex digits) or empty."""
    if before == 0:
        values[0] = ""  # the header
    bad = {v for v in set(values) if v and not _PSEUDONYM.fullmatch(v)}
    if not bad:
        return
    for number, value in enumerate(values, start=before + 1):
        if value in bad:
            report.add(
                "privacy",
                f"{file_name} 第{number}行 字段 {column}",
                "假名编码应为64位十六进制HMAC值（值不显示）",
            )


def _name_hit(
    report: ValidationReport, file_name: str, header: list[str], line: str, line_number: int
) -> None:
    """Report a candidate line by the fields that hold the pattern (never the value)."""
    row = next(csv.reader([line]), [])
    named = False
    for column, value in zip(header, row, strict=False):
        what = None if column in _PSEUDONYM_COLUMNS else _personal_pattern(value)
        if what:
            named = True
            report.add("privacy", f"{file_name} 第{line_number}行 字段 {column}", f"疑似{what}（值不显示）")
    if not named:
        report.add("privacy", f"{file_name} 第{line_number}行", "疑似个人信息（值不显示）")


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def _hit_lines(text: str, starts: list[int] | None = None) -> list[int]:
    """Numbers (from 1) of the lines on which a match of a personal pattern starts."""
    starts = starts if starts is not None else _line_starts(text)
    hits: set[int] = set()
    for pattern, cores in _SCANS:
        candidates: set[int] = set()
        for core in cores:
            for m in core.finditer(text):
                first = bisect.bisect_right(starts, max(0, m.start() - _CORE_REACH))
                candidates.update(range(first, bisect.bisect_right(starts, m.end()) + 1))
        for line in sorted(candidates - hits):
            begin = starts[line - 1]
            end = starts[line] if line < len(starts) else len(text)
            for m in pattern.finditer(text, begin, min(len(text), end + _MATCH_REACH)):
                if m.start() >= end:
                    break
                if _is_personal(m):
                    hits.add(line)
                    break
    return sorted(hits)


def _is_personal(match: re.Match[str]) -> bool:
    value = match.group(0)
    if match.re is _ID_NUMBER and len(value) == 18:
        return _personal_pattern(value) == "身份证号"
    return True


def _personal_pattern(value: str) -> str | None:
    from xinfang.pii import id_number_valid

    for match in _ID_NUMBER.finditer(value):
        found = match.group(0).upper()
        # An 18-character number counts with a valid check digit; the old 15-digit form has none.
        if len(found) == 15 or id_number_valid(found):
            return "身份证号"
    if _MOBILE.search(value):
        return "手机号"
    if _STREET_ADDRESS.search(value):
        return "门牌地址"
    return None


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""


def _plain_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and ":" not in name
    )
