"""The provincial bureau's standardized extract for a period: build, verify, deliver once."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg

from xinfang.config import Settings, get_settings
from xinfang.extract.province import (
    DropDelivery,
    ExtractResult,
    build_extract,
    deliver_extract_to_dropfolder,
    read_extract,
)

RELATION = "marts.ext_province__cases"
MODEL_UNIQUE_ID = "model.xinfang.ext_province__cases"
# Bump on any change of columns or their meaning; the province validates against it.
SCHEMA_VERSION = "1.0.0"


def columns_doc(settings: Settings) -> dict[str, str]:
    """Chinese column descriptions, from the dbt model's YAML via the compiled manifest."""
    manifest_path = settings.dbt_target_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    columns = manifest["nodes"][MODEL_UNIQUE_ID]["columns"]
    return {name: col["description"] for name, col in columns.items()}


def build(conn: psycopg.Connection, month: date, settings: Settings | None = None) -> ExtractResult:
    settings = settings or get_settings()
    return build_extract(
        conn,
        relation=RELATION,
        period=f"{month:%Y-%m}",
        out_root=settings.output_dir / "extracts" / "province",
        schema_version=SCHEMA_VERSION,
        columns_doc=columns_doc(settings),
    )


def deliver(conn: psycopg.Connection, package: Path, settings: Settings | None = None) -> DropDelivery:
    """Deliver a built package to the province's drop folder (exactly once per period and version)."""
    settings = settings or get_settings()
    return deliver_extract_to_dropfolder(
        conn, read_extract(package), settings.output_dir / "dropfolder" / "province"
    )
