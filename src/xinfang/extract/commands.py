"""`xinfang extract ...`: the province's validator, and the city's build, delivery and schema tools.

``validate`` is what the receiving bureau runs on a package it received: it
needs neither the warehouse nor Airflow, only this package installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from xinfang.extract.package import MANIFEST_NAME, file_sha256
from xinfang.extract.validate import ValidationReport, validate_package


def add_arguments(extract: argparse._SubParsersAction, month_type, day_type) -> None:
    p = extract.add_parser(
        "validate",
        help="check a received extract package (schema, keys, checksums, no personal data)",
        description=(
            "校验省信访局收到的标准化抽取数据包：清单与SHA-256校验和、模式版本与表结构、"
            "数据类型、取值范围与主外键（Table Schema）、个人信息扫描。"
            "PATH 为数据包目录，或存放多个数据包的收件目录。"
        ),
    )
    p.add_argument("path", type=Path, help="a package folder, or an inbox folder holding packages")
    p.add_argument(
        "--ack",
        action="store_true",
        help="write <package>.ack.json beside each package (accepted/rejected), as the receiver does",
    )
    p.add_argument("--json", type=Path, help="also write the findings as JSON to this file")
    p.add_argument(
        "--engine",
        choices=("stream", "frictionless"),
        default="stream",
        help="data check: stream (bounded memory, for full packages) or frictionless (the reference)",
    )
    p.set_defaults(func=cmd_validate)

    p = extract.add_parser("schema", help="generate the published schema from the dbt models")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write schemas/<version>.json")
    group.add_argument("--check", action="store_true", help="fail if the committed schema differs")
    p.set_defaults(func=cmd_schema)

    p = extract.add_parser("build", help="build (and deliver) one extract package from the warehouse")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", type=month_type, help="monthly full extract up to this month's end")
    when.add_argument("--day", type=day_type, help="daily incremental extract of this day")
    p.add_argument("--deliver", action="store_true", help="deliver it on the configured route")
    p.add_argument(
        "--revision",
        type=int,
        default=1,
        help="a corrected package after a rejection (2, 3, ...); revision 1 is what the DAGs build",
    )
    p.set_defaults(func=cmd_build)

    p = extract.add_parser(
        "follow-up", help="record the province's acknowledgements; redeliver packages overdue"
    )
    p.set_defaults(func=cmd_follow_up)


def packages_under(path: Path) -> list[Path]:
    """``path`` itself if it is a package, else the packages directly in it.

    Hidden names are uploads in progress and skipped. A folder holding files but
    no folders counts as one package even without a manifest, so a broken
    delivery is reported (and rejected), not mistaken for an empty inbox.
    """
    path = path.resolve()
    if not path.is_dir():
        return []
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if (path / MANIFEST_NAME).exists() or (not folders and any(path.iterdir())):
        return [path]
    return folders


def cmd_validate(args: argparse.Namespace) -> int:
    packages = packages_under(args.path)
    if not packages:
        print(
            f"{args.path}：未找到数据包（应为含 {MANIFEST_NAME} 的目录，或存放数据包的目录）", file=sys.stderr
        )
        return 2
    reports = [validate_package(p, engine=args.engine) for p in packages]
    for report in reports:
        print(report.text())
        print()
        if args.ack:
            acknowledge(report)
    if args.json:
        args.json.write_text(
            json.dumps([_as_json(r) for r in reports], ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    failed = sum(not r.ok for r in reports)
    print(f"共校验{len(reports)}个数据包：通过{len(reports) - failed}个，不通过{failed}个")
    return 1 if failed else 0


def acknowledge(report: ValidationReport) -> None:
    """Write the receiver's acknowledgement beside the package (what the city's follow-up reads)."""
    from xinfang.config import BUREAU_TZ
    from xinfang.extract.transfer import Ack, LocalStore, write_ack

    manifest = report.path / MANIFEST_NAME
    readable = bool(report.manifest) and manifest.is_file() and not manifest.is_symlink()
    ack = Ack(
        package=report.path.name,
        status="accepted" if report.ok else "rejected",
        checked_at=datetime.now(BUREAU_TZ).replace(microsecond=0),
        # Without a readable manifest there is no checksum to name (the ack can only reject).
        manifest_sha256=file_sha256(manifest) if readable else "",
        problems=tuple(f"{f.location}：{f.message}" if f.location else f.message for f in report.findings),
    )
    store = LocalStore()
    try:
        write_ack(store, str(report.path.parent), report.path.name, ack)
    finally:
        store.close()


def _as_json(report: ValidationReport) -> dict:
    return {
        "package": report.path.name,
        "ok": report.ok,
        "checks_run": report.checks_run,
        "findings": [
            {"check": f.check, "location": f.location, "message": f.message} for f in report.findings
        ],
    }


def cmd_schema(args: argparse.Namespace) -> int:
    from xinfang.config import get_settings
    from xinfang.extract import schema

    settings = get_settings()
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_text(encoding="utf-8"))
    document = schema.schema_from_dbt_manifest(manifest)
    path = schema.schema_path(schema.SCHEMA_VERSION)
    if args.write:
        schema.write_schema(document, path)
        print(f"wrote {path}")
        return 0
    if args.check:
        committed = schema.load_schema(schema.SCHEMA_VERSION)
        if committed != document:
            print(
                f"the dbt models differ from the published schema {schema.SCHEMA_VERSION} ({path}): "
                "publish a new version (bump SCHEMA_VERSION, add a CHANGELOG entry, --write)",
                file=sys.stderr,
            )
            return 1
        print(f"published schema {schema.SCHEMA_VERSION} matches the dbt models")
        return 0
    print(json.dumps(document, ensure_ascii=False, indent=2))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from xinfang.config import get_settings
    from xinfang.orchestration import runtime

    settings = get_settings()
    runtime.apply(settings)  # before Airflow (the SFTP hook) is imported
    from xinfang import db
    from xinfang.publish import province_extract

    with db.connect() as conn:
        if args.month:
            package = province_extract.build_month(conn, args.month, settings, revision=args.revision)
        else:
            package = province_extract.build_day(conn, args.day, settings, revision=args.revision)
    print(f"extract: {package.path} ({package.rows:,} rows, {package.bytes:,} bytes)")
    if args.deliver:
        with db.connect(autocommit=True) as conn:
            outcome = province_extract.deliver(conn, package.path, settings, revision=args.revision)
        print(f"delivery: {outcome.status} -> {outcome.remote_path}")
    return 0


def cmd_follow_up(args: argparse.Namespace) -> int:
    from xinfang.config import get_settings
    from xinfang.orchestration import runtime

    settings = get_settings()
    runtime.apply(settings)
    from xinfang import db
    from xinfang.publish import province_extract

    with db.connect(autocommit=True) as conn:
        outcomes = province_extract.follow_up(conn, settings)
    for outcome in outcomes:
        print(f"{outcome.artifact_key} r{outcome.revision}: {outcome.status} {outcome.detail}".rstrip())
    return 0
