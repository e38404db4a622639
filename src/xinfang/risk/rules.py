"""The risk model's configurable rules (config/risk_rules.yml, or XINFANG_RISK_RULES_FILE).

Validation is strict and names the file, the entry and the field: a typo in a
threshold otherwise shows up as a warning that never fires. See the file's
header for its structure.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xinfang.config import get_settings

LEVELS: dict[str, int] = {"红": 3, "黄": 2, "蓝": 1}
SUPPORTED_VERSIONS = (1,)
PLACEHOLDERS = frozenset({"subject", "district", "towns", "domain", "department", "co_department"})
# Each rule kind and the conditions its levels may set.
RULE_CONDITIONS: dict[str, frozenset[str]] = {
    "hotspot": frozenset({"min_cases", "min_persons", "min_people", "min_group"}),
    "surge": frozenset({"min_ratio", "above", "min_excess"}),
    "outlook": frozenset({"min_ratio"}),
}
RULE_SETTINGS: dict[str, frozenset[str]] = {
    "hotspot": frozenset(),
    "surge": frozenset({"min_cases", "domains"}),
    "outlook": frozenset({"min_cases", "domains"}),
}
INTERVAL_BOUNDS = ("hi80", "hi95")


class RulesError(ValueError):
    """The rules file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class DomainRule:
    key: str
    name: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class LevelRule:
    level: str
    conditions: dict[str, Any]

    @property
    def rank(self) -> int:
        return LEVELS[self.level]


@dataclass(frozen=True)
class WarningRule:
    kind: str
    levels: tuple[LevelRule, ...]  # highest rank first
    actions: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)

    def action(self, level: str, **values: str) -> str:
        return self.actions[level].format_map(values)


@dataclass(frozen=True)
class Rules:
    source: str
    domains: tuple[DomainRule, ...]
    key_domains: tuple[str, ...]
    default_department: str
    department_by_category: dict[str, str]
    rules: dict[str, WarningRule]

    def department_for(self, category_code: str | None) -> str:
        """The city department in charge of a category: the longest configured prefix wins."""
        code = category_code or ""
        for length in range(len(code), 0, -1):
            found = self.department_by_category.get(code[:length])
            if found:
                return found
        return self.default_department


def rules_file() -> Path:
    configured = os.environ.get("XINFANG_RISK_RULES_FILE")
    return Path(configured) if configured else get_settings().project_root / "config" / "risk_rules.yml"


def load_rules(path: Path | None = None) -> Rules:
    path = Path(path) if path is not None else rules_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: risk rules file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read risk rules: {exc}") from exc
    return parse_rules(document, source=str(path))


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise RulesError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _unknown(mapping: dict, allowed: set[str] | frozenset[str], where: str) -> None:
    extra = set(map(str, mapping)) - set(allowed)
    if extra:
        raise RulesError(f"{where}: unknown keys {sorted(extra)} (allowed: {sorted(allowed)})")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RulesError(f"{where}: expected a non-negative number, got {value!r}")
    return value


def parse_rules(document: Any, *, source: str = "<rules>") -> Rules:
    doc = _mapping(document, source)
    _unknown(doc, {"version", "domains", "key_domains", "departments", "rules"}, source)
    if doc.get("version") not in SUPPORTED_VERSIONS:
        raise RulesError(
            f"{source}: unsupported version {doc.get('version')!r} (supported: {SUPPORTED_VERSIONS})"
        )

    domains: list[DomainRule] = []
    for i, entry in enumerate(doc.get("domains") or [], start=1):
        where = f"{source}: domains entry {i}"
        entry = _mapping(entry, where)
        _unknown(entry, {"key", "name", "categories"}, where)
        key, name, cats = entry.get("key"), entry.get("name"), entry.get("categories")
        if not isinstance(key, str) or not key.isidentifier():
            raise RulesError(f"{where}: 'key' must be a short identifier, got {key!r}")
        if not isinstance(name, str) or not name.strip():
            raise RulesError(f"{where} ({key}): 'name' must be a non-empty string")
        if (
            not isinstance(cats, list)
            or not cats
            or not all(isinstance(c, str) and c.isdigit() for c in cats)
        ):
            raise RulesError(f"{where} ({key}): 'categories' must be a non-empty list of digit strings")
        if any(d.key == key for d in domains):
            raise RulesError(f"{where}: duplicate domain key {key!r}")
        domains.append(DomainRule(key, name.strip(), tuple(cats)))

    key_domains = doc.get("key_domains") or []
    known = {d.key for d in domains}
    for key in key_domains:
        if key not in known:
            raise RulesError(f"{source}: key_domains names {key!r}, not a domain (known: {sorted(known)})")

    departments = _mapping(doc.get("departments"), f"{source}: departments")
    _unknown(departments, {"default", "by_category"}, f"{source}: departments")
    default = departments.get("default")
    if not isinstance(default, str) or not default:
        raise RulesError(f"{source}: departments.default must be a department code")
    by_category = _mapping(departments.get("by_category") or {}, f"{source}: departments.by_category")
    for prefix, code in by_category.items():
        if not isinstance(prefix, str) or not prefix.isdigit():
            raise RulesError(
                f"{source}: departments.by_category key {prefix!r} must be a quoted digit string"
            )
        if not isinstance(code, str) or not code:
            raise RulesError(f"{source}: departments.by_category[{prefix}] must be a department code")

    rules: dict[str, WarningRule] = {}
    for kind, entry in _mapping(doc.get("rules"), f"{source}: rules").items():
        where = f"{source}: rules.{kind}"
        if kind not in RULE_CONDITIONS:
            raise RulesError(f"{where}: unknown rule (known: {sorted(RULE_CONDITIONS)})")
        entry = _mapping(entry, where)
        _unknown(entry, {"levels", "actions"} | RULE_SETTINGS[kind], where)
        settings: dict[str, Any] = {
            k: _number(entry[k], f"{where}.{k}") for k in RULE_SETTINGS[kind] - {"domains"} if k in entry
        }
        if "domains" in entry:
            keys = entry["domains"]
            if not isinstance(keys, list) or not keys or any(k not in known for k in keys):
                raise RulesError(
                    f"{where}.domains: must be a non-empty list of configured domain keys {sorted(known)}, "
                    f"got {keys!r}"
                )
            settings["domains"] = tuple(keys)
        levels: list[LevelRule] = []
        for level, conditions in _mapping(entry.get("levels"), f"{where}.levels").items():
            lw = f"{where}.levels.{level}"
            if level not in LEVELS:
                raise RulesError(f"{lw}: level must be one of {list(LEVELS)}")
            conditions = _mapping(conditions, lw)
            _unknown(conditions, RULE_CONDITIONS[kind], lw)
            if not conditions:
                raise RulesError(f"{lw}: give at least one condition")
            checked = {}
            for name, value in conditions.items():
                if name == "above":
                    if value not in INTERVAL_BOUNDS:
                        raise RulesError(f"{lw}.above: must be one of {list(INTERVAL_BOUNDS)}, got {value!r}")
                    checked[name] = value
                else:
                    checked[name] = _number(value, f"{lw}.{name}")
            levels.append(LevelRule(level, checked))
        if not levels:
            raise RulesError(f"{where}.levels: give at least one level")
        actions = _mapping(entry.get("actions"), f"{where}.actions")
        for lr in levels:
            text = actions.get(lr.level)
            if not isinstance(text, str) or not text.strip():
                raise RulesError(
                    f"{where}.actions.{lr.level}: missing recommended action for level {lr.level}"
                )
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            unknown = names - PLACEHOLDERS
            if unknown:
                raise RulesError(
                    f"{where}.actions.{lr.level}: unknown placeholder(s) {sorted(unknown)} "
                    f"(allowed: {sorted(PLACEHOLDERS)})"
                )
        levels.sort(key=lambda lr: -lr.rank)
        rules[kind] = WarningRule(
            kind, tuple(levels), {k: str(v).strip() for k, v in actions.items()}, settings
        )

    return Rules(
        source=source,
        domains=tuple(domains),
        key_domains=tuple(key_domains),
        default_department=default,
        department_by_category={str(k): str(v) for k, v in by_category.items()},
        rules=rules,
    )
