"""The published schema of the provincial extract: versions, tables, which rows each package holds.

The province validates every city's package against the schema of the version
the package declares, so a schema, once published, never changes:

- ``schemas/<version>.json`` is the Frictionless table schema of each resource,
  generated from the dbt models' YAML (Chinese titles and descriptions) by
  ``xinfang extract schema --write`` and committed;
- ``schemas/CHANGELOG.md`` says what each version changed, newest first;
- semantic versioning: a removed, renamed or retyped column, or a changed
  meaning, is a major version; an added column or table a minor one; wording
  of titles and descriptions a patch.

A test regenerates the schema from dbt and compares it with the committed file
of SCHEMA_VERSION, so a model change without a new version cannot land.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = "2.0.0"
PACKAGE_NAME = "xinfang-province-extract"
DBT_PACKAGE = "xinfang"
Kind = Literal["full", "daily"]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_CHANGELOG_HEADING = re.compile(r"^## (\S+)", re.MULTILINE)

# PostgreSQL type (as dbt's contract names it) -> Frictionless field type.
_FIELD_TYPES = {
    "text": "string",
    "integer": "integer",
    "bigint": "integer",
    "numeric": "number",
    "date": "date",
    "timestamp": "datetime",
    "boolean": "boolean",
}


@dataclass(frozen=True)
class ResourceRows:
    """Which rows of a relation a package holds: a WHERE clause per kind (None = not in that kind).

    Parameters: %(period_start)s and %(period_end)s, the first and last day the package covers.
    """

    resource: str
    relation: str
    full: str
    daily: str | None


# The monthly full extract holds everything received up to the month's end, in its state at
# extraction; the daily incremental holds the matters received, closed or handled that day.
# Events are limited to matters in the same package, so the foreign key always holds.
_MATTERS_OF_DAY = (
    "received_date = %(period_start)s OR closed_date = %(period_start)s OR matter_id IN "
    "(SELECT matter_id FROM marts.ext_province__matter_events WHERE event_date = %(period_start)s)"
)
RESOURCE_ROWS: tuple[ResourceRows, ...] = (
    ResourceRows(
        "ext_province__matters",
        "marts.ext_province__matters",
        full="received_date <= %(period_end)s",
        daily=_MATTERS_OF_DAY,
    ),
    ResourceRows(
        "ext_province__matter_events",
        "marts.ext_province__matter_events",
        full="event_date <= %(period_end)s AND matter_id IN "
        "(SELECT matter_id FROM marts.ext_province__matters WHERE received_date <= %(period_end)s)",
        daily="event_date = %(period_start)s AND matter_id IN "
        "(SELECT matter_id FROM marts.ext_province__matters WHERE " + _MATTERS_OF_DAY + ")",
    ),
    ResourceRows(
        "ext_province__department_summary",
        "marts.ext_province__department_summary",
        full="stat_month <= %(period_start)s",
        daily=None,
    ),
    ResourceRows(
        "ext_province__region_summary",
        "marts.ext_province__region_summary",
        full="stat_month <= %(period_start)s",
        daily=None,
    ),
)


class SchemaError(RuntimeError):
    """The published schema is missing, malformed or disagrees with the models."""


def schemas_dir() -> Path:
    return Path(str(resources.files("xinfang.extract").joinpath("schemas")))


def schema_path(version: str) -> Path:
    if not _SEMVER.fullmatch(version):
        raise SchemaError(f"schema version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    return schemas_dir() / f"{version}.json"


def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The published schema of ``version``: {"version", "resources": [{name, title, description, schema}]}."""
    path = schema_path(version)
    if not path.is_file():
        known = ", ".join(published_versions()) or "none"
        raise SchemaError(f"no published schema for version {version} (known versions: {known})")
    return json.loads(path.read_text(encoding="utf-8"))


def published_versions() -> list[str]:
    found = [p.stem for p in schemas_dir().glob("*.json") if _SEMVER.fullmatch(p.stem)]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def changelog_versions() -> list[str]:
    """Versions in CHANGELOG.md, in the order written (newest first)."""
    text = (schemas_dir() / "CHANGELOG.md").read_text(encoding="utf-8")
    return _CHANGELOG_HEADING.findall(text)


def resources_for(kind: Kind) -> list[ResourceRows]:
    return [r for r in RESOURCE_ROWS if (r.full if kind == "full" else r.daily) is not None]


def schema_from_dbt_manifest(manifest: dict[str, Any], version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """Build the published schema from dbt's compiled manifest (the models' YAML)."""
    problems: list[str] = []
    out = []
    for spec in RESOURCE_ROWS:
        node = manifest["nodes"].get(f"model.{DBT_PACKAGE}.{spec.resource}")
        if node is None:
            problems.append(f"{spec.resource}: no such dbt model")
            continue
        meta = node.get("config", {}).get("meta") or node.get("meta") or {}
        fields = []
        for name, column in node["columns"].items():
            col_meta = column.get("meta") or {}
            data_type = (column.get("data_type") or "").lower()
            if data_type not in _FIELD_TYPES:
                problems.append(f"{spec.resource}.{name}: data_type {data_type!r} has no Frictionless type")
                continue
            if not col_meta.get("title") or not column.get("description"):
                problems.append(f"{spec.resource}.{name}: needs meta.title and a description (in Chinese)")
            field: dict[str, Any] = {
                "name": name,
                "type": _FIELD_TYPES[data_type],
                "title": col_meta.get("title", ""),
                "description": column.get("description", ""),
            }
            if data_type == "timestamp":
                field["format"] = "%Y-%m-%dT%H:%M:%S"
            constraints: dict[str, Any] = {}
            if any(c.get("type") == "not_null" for c in column.get("constraints", [])):
                constraints["required"] = True
            if col_meta.get("enum"):
                constraints["enum"] = list(col_meta["enum"])
            if constraints:
                field["constraints"] = constraints
            fields.append(field)
        table_schema: dict[str, Any] = {"fields": fields, "missingValues": [""]}
        if meta.get("primary_key"):
            table_schema["primaryKey"] = list(meta["primary_key"])
        else:
            problems.append(f"{spec.resource}: needs meta.primary_key")
        if meta.get("foreign_keys"):
            table_schema["foreignKeys"] = meta["foreign_keys"]
        if not meta.get("title") or not meta.get("description"):
            problems.append(f"{spec.resource}: needs meta.title and meta.description (in Chinese)")
        out.append(
            {
                "name": spec.resource,
                "title": meta.get("title", ""),
                "description": meta.get("description", ""),
                "schema": table_schema,
            }
        )
    if problems:
        raise SchemaError("the extract models do not make a publishable schema:\n  " + "\n  ".join(problems))
    return {"version": version, "resources": out}


def write_schema(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
