"""Check an extract package as the province receives it: checksums, schema, keys, no personal data.

Used on both sides: the city runs it before anything leaves (package.build_package),
the province runs ``xinfang extract validate PATH`` on what arrived. The report
is in Chinese, for the receiving bureau; each finding names the file, row and field.

A received package is untrusted input: file names in it must be plain names
listed in the manifest before Frictionless is allowed to open them, so a
crafted descriptor cannot make the validator read a URL or a file elsewhere.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinfang.extract import schema as published
from xinfang.extract.package import (
    DESCRIPTOR_NAME,
    MANIFEST_NAME,
    ExtractError,
    file_sha256,
    read_manifest,
)

# Resident ID numbers (checked with their GB 11643 check digit), mobile numbers and
# street addresses, each standing alone (not inside a longer code or a hex key).
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86)?1[3-9]\d{9}(?![0-9A-Za-z])")
# (?<!\d): a match starts at the first digit of a run, not at every digit of a long one.
_STREET_ADDRESS = re.compile(r"[路街巷道弄村组]\d+号|(?<!\d)\d+(?:栋|幢|单元|室)")
# The one column allowed to stand for a person: the province-keyed HMAC.
_PSEUDONYM_COLUMNS = {"person_key"}
_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
_PERSONAL_COLUMN = re.compile(
    r"name$|phone|mobile|tel$|address|addr|id_number|id_card|idcard|identity|email|caller|petitioner"
    r"|姓名|电话|手机|身份证|地址|住址",
    re.IGNORECASE,
)
# Names of units, places and categories are not about a person.
_ADMIN_NAMES = {"category_name", "town_name", "district_name", "department_name"}
_MAX_FINDINGS_PER_CHECK = 50

CHECKS = {
    "manifest": "清单与校验和（SHA-256、字节数、行数）",
    "schema": "模式版本与表结构（对照已发布模式）",
    "data": "数据类型、必填、主键、外键（Frictionless）",
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
        kind = {"full": "月度全量", "daily": "每日增量"}.get(m.get("kind"), str(m.get("kind", "未知")))
        data_files = [f for f in m.get("files", []) if isinstance(f, dict) and f.get("rows") is not None]
        rows = sum(int(f.get("rows") or 0) for f in data_files)
        size = sum(int(f.get("bytes") or 0) for f in m.get("files", []) if isinstance(f, dict))
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
    _check_manifest(report)
    return report.findings


def validate_package(path: Path, *, expected_name: str | None = None) -> ValidationReport:
    path = Path(path)
    report = ValidationReport(path)
    _check_manifest(report, expected_name=expected_name)
    report.checks_run.append("manifest")
    if any(f.check == "manifest" for f in report.findings):
        return report  # files that fail their checksum are not opened further
    resources = _check_schema(report)
    report.checks_run.append("schema")
    if any(f.check == "schema" for f in report.findings):
        return report
    _check_data(report)
    report.checks_run.append("data")
    _check_privacy(report, resources)
    report.checks_run.append("privacy")
    return report


# --- the checks ----------------------------------------------------------------------------------


def _check_manifest(report: ValidationReport, *, expected_name: str | None = None) -> None:
    path = report.path
    if not path.is_dir():
        report.add("manifest", str(path), "不是数据包目录")
        return
    try:
        manifest = read_manifest(path)
    except ExtractError as exc:
        report.add("manifest", MANIFEST_NAME, f"无法读取（{exc}）")
        return
    report.manifest = manifest
    for key in ("package", "kind", "period", "schema_version", "city_code", "generated_at", "files"):
        if key not in manifest:
            report.add("manifest", MANIFEST_NAME, f"缺少字段 {key}")
    name = manifest.get("package")
    if expected_name is not None and name != expected_name:
        report.add("manifest", MANIFEST_NAME, f"数据包名称为 {name}，应为 {expected_name}")
    elif expected_name is None and not re.fullmatch(rf"{re.escape(str(name))}(_r[2-9]\d*)?", path.name):
        # A corrected package is delivered as a new revision: <name>_r2, _r3, ...
        report.add("manifest", MANIFEST_NAME, f"数据包名称 {name} 与目录名 {path.name} 不一致")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        report.add("manifest", MANIFEST_NAME, "files 应为非空列表")
        return
    listed: set[str] = set()
    for entry in files:
        file_name = entry.get("name") if isinstance(entry, dict) else None
        if not _plain_name(file_name):
            report.add("manifest", MANIFEST_NAME, f"文件条目无效：{entry!r}")
            continue
        listed.add(file_name)
        file_path = path / file_name
        if not file_path.is_file():
            report.add("manifest", file_name, "清单列出但文件不存在")
            continue
        size = file_path.stat().st_size
        if entry.get("bytes") != size:
            report.add("manifest", file_name, f"字节数为{size}，清单为{entry.get('bytes')}")
        if entry.get("sha256") != file_sha256(file_path):
            report.add("manifest", file_name, "SHA-256校验和与清单不符（文件被改动或传输不完整）")
    for required in (DESCRIPTOR_NAME,):
        if required not in listed:
            report.add("manifest", MANIFEST_NAME, f"清单未列出 {required}")
    unexpected = sorted(p.name for p in path.iterdir() if p.name not in listed | {MANIFEST_NAME})
    if unexpected:
        report.add("manifest", str(path.name), f"存在清单未列出的文件：{', '.join(unexpected)}")


def _check_schema(report: ValidationReport) -> list[dict[str, Any]]:
    """The descriptor must equal the published schema of the declared version, resource by resource."""
    manifest = report.manifest
    try:
        descriptor = json.loads((report.path / DESCRIPTOR_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("schema", DESCRIPTOR_NAME, f"无法读取（{exc}）")
        return []
    version = manifest.get("schema_version")
    if descriptor.get("version") != version:
        report.add("schema", DESCRIPTOR_NAME, f"版本 {descriptor.get('version')} 与清单 {version} 不一致")
    try:
        document = published.load_schema(str(version))
    except published.SchemaError as exc:
        report.add("schema", DESCRIPTOR_NAME, f"未知的模式版本（{exc}）")
        return []
    kind = manifest.get("kind")
    if kind not in ("full", "daily"):
        report.add("schema", MANIFEST_NAME, f"未知的数据包类型 {kind!r}（应为 full 或 daily）")
        return []
    wanted = {r.resource for r in published.resources_for(kind)}
    schemas = {r["name"]: r for r in document["resources"] if r["name"] in wanted}
    resources = descriptor.get("resources") if isinstance(descriptor.get("resources"), list) else []
    data_files = {f["name"] for f in manifest["files"] if f.get("rows") is not None}
    seen = set()
    for resource in resources:
        name = resource.get("name") if isinstance(resource, dict) else None
        if name not in schemas:
            report.add("schema", DESCRIPTOR_NAME, f"资源 {name!r} 不属于 {version} 版{kind}数据包")
            continue
        seen.add(name)
        if not _plain_name(resource.get("path")) or resource.get("path") not in data_files:
            # Never let Frictionless open a URL or a path outside the package.
            report.add(
                "schema", f"{DESCRIPTOR_NAME} {name}", f"path {resource.get('path')!r} 不是清单中的数据文件"
            )
        if resource.get("schema") != schemas[name]["schema"]:
            report.add("schema", f"{DESCRIPTOR_NAME} {name}", f"表结构与已发布的 {version} 版模式不一致")
        for key in ("profile", "dialect", "control"):
            if key in resource:
                report.add("schema", f"{DESCRIPTOR_NAME} {name}", f"不允许的属性 {key}")
    for missing in sorted(set(schemas) - seen):
        report.add("schema", DESCRIPTOR_NAME, f"缺少资源 {missing}")
    return [r for r in resources if isinstance(r, dict) and r.get("name") in schemas]


def _check_data(report: ValidationReport) -> None:
    from frictionless import Package, system

    # Trusted mode off: paths were checked above; this stops Frictionless from
    # following anything else it might find in a descriptor.
    with system.use_context(trusted=False):
        package = Package(str(report.path / DESCRIPTOR_NAME))
        result = package.validate()
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
            report.add("data", location, f"{error.type}：{error.note}")
    for error in result.errors:
        report.add("data", DESCRIPTOR_NAME, f"{error.type}：{error.note}")


def _check_privacy(report: ValidationReport, resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        file_name = resource["path"]
        fields = resource["schema"]["fields"]
        for f in fields:
            if f["name"] in _PSEUDONYM_COLUMNS or f["name"] in _ADMIN_NAMES:
                continue
            if _PERSONAL_COLUMN.search(f["name"]) or _PERSONAL_COLUMN.search(f.get("title", "")):
                report.add("privacy", f"{file_name} 字段 {f['name']}", "字段名表明可能含个人信息")
        path = report.path / file_name
        with open(path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        keys = [i for i, c in enumerate(header) if c in _PSEUDONYM_COLUMNS]
        if keys:
            with open(path, encoding="utf-8", newline="") as fh:
                for row_number, row in enumerate(csv.reader(fh), start=1):
                    for i in keys:
                        value = row[i] if row_number > 1 and i < len(row) else ""
                        if value and not _PSEUDONYM.fullmatch(value):
                            report.add(
                                "privacy",
                                f"{file_name} 第{row_number}行 字段 {header[i]}",
                                "假名编码应为64位十六进制HMAC值（值不显示）",
                            )
        # One regular-expression pass over the whole file finds the candidate rows (almost
        # always none); only those are parsed to name the field.
        text = path.read_text(encoding="utf-8")
        starts = [0, *(m.end() for m in re.finditer("\n", text))]
        # Three passes are faster than one alternation of the three patterns.
        hits = (m.start() for p in (_ID_NUMBER, _MOBILE, _STREET_ADDRESS) for m in p.finditer(text))
        hit_lines = sorted({bisect.bisect_right(starts, position) for position in hits})
        for line_number in hit_lines:
            line = text[starts[line_number - 1] : starts[line_number] if line_number < len(starts) else None]
            row = next(csv.reader([line]), [])
            for column, value in zip(header, row, strict=False):
                what = None if column in _PSEUDONYM_COLUMNS else _personal_pattern(value)
                if what:
                    # The value itself is never printed: it may be the personal data.
                    report.add(
                        "privacy", f"{file_name} 第{line_number}行 字段 {column}", f"疑似{what}（值不显示）"
                    )


def _personal_pattern(value: str) -> str | None:
    from xinfang.pii import id_number_valid

    for match in _ID_NUMBER.finditer(value):
        if id_number_valid(match.group(0).upper()):
            return "身份证号"
    if _MOBILE.search(value):
        return "手机号"
    if _STREET_ADDRESS.search(value):
        return "门牌地址"
    return None


def _plain_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and ":" not in name
    )
