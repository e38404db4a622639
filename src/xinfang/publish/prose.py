"""The half-year summary's prose: staff write the words, the warehouse fills the numbers.

One YAML file per half-year (``report_templates/prose/2025H1.yml``) holds
every paragraph of the summary, following the seed document's outline:
the preamble, 一、achievements (an overview and at least three parts with points),
二、problems, 三、the next half-year's plan, and the closing. A paragraph
names figures as ``{placeholder}``; `fill` replaces each with the formatted
figure from the warehouse.

Validation collects every error before raising (a missing paragraph, an
unknown placeholder, a figure with no value, a stray brace), each naming the
file and the paragraph's path, so the editor fixes the file in one go and
the PDF never goes out with a blank or a literal ``{...}``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_VERSIONS = (1,)
# How many parts and points the seed's outline has; fewer means a paragraph is missing.
MIN_ACHIEVEMENT_PARTS = 3
MIN_POINTS = 1
# Parts and points are numbered （一）…（十） and 一是…十是.
MAX_ITEMS = 10

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# A space with a non-ASCII character (hanzi, full-width punctuation) on either side.
_SPACE_NEXT_TO_CJK = re.compile(r"(?<=[^\x00-\x7f]) | (?=[^\x00-\x7f])")


class ProseError(ValueError):
    """The prose file is missing, malformed, or does not fit the figures; lists every problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(
            f"{source}: {len(errors)} problem(s) in the summary's prose:\n"
            + "\n".join(f"  - {e}" for e in errors)
        )


@dataclass(frozen=True)
class Point:
    """一是…: a run-in title and its paragraph."""

    title: str
    text: str


@dataclass(frozen=True)
class Part:
    """（一）…: a heading, a lead paragraph and its points."""

    heading: str
    lead: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Prose:
    half_year: str
    title_lines: tuple[str, ...]  # the title as the editor broke it (GB/T 9704: by sense, not by width)
    preamble: str
    achievements_overview: str
    achievements: tuple[Part, ...]
    problems_lead: str
    problems: tuple[Point, ...]
    plan_lead: str
    plan: tuple[Part, ...]
    closing: str

    @property
    def title(self) -> str:
        return "".join(self.title_lines)


def prose_path(prose_dir: Path, half_year: str) -> Path:
    return prose_dir / f"{half_year}.yml"


def load_prose(path: Path, half_year: str, figures: Mapping[str, str | None]) -> Prose:
    """Read ``path`` and fill every placeholder from ``figures``; raises ProseError listing all problems."""
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProseError(
            source,
            [f"no prose file for {half_year}: copy the previous half-year's file to {path.name} and edit it"],
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProseError(source, [f"cannot read the file: {exc}"]) from exc
    return parse_prose(document, half_year, figures, source=source)


def parse_prose(
    document: Any, half_year: str, figures: Mapping[str, str | None], *, source: str = "<prose>"
) -> Prose:
    errors: list[str] = []
    reader = _Reader(figures, errors)
    if not isinstance(document, dict):
        raise ProseError(source, ["expected a mapping with the keys of the outline (see 2025H1.yml)"])
    allowed = {
        "version", "half_year", "title", "preamble", "achievements", "problems", "plan", "closing"
    }  # fmt: skip
    unknown = sorted(map(str, set(document) - allowed))
    if unknown:
        errors.append(f"unknown top-level key(s) {unknown} (allowed: {sorted(allowed)})")
    if document.get("version", 1) not in SUPPORTED_VERSIONS:
        errors.append(f"version: unsupported {document.get('version')!r} (supported: {SUPPORTED_VERSIONS})")
    if document.get("half_year") != half_year:
        errors.append(f"half_year: says {document.get('half_year')!r}, but this is the file for {half_year}")

    achievements = _mapping(document, "achievements", errors)
    problems = _mapping(document, "problems", errors)
    plan = _mapping(document, "plan", errors)
    prose = Prose(
        half_year=half_year,
        title_lines=reader.lines(document, "title"),
        preamble=reader.text(document, "preamble"),
        achievements_overview=reader.text(achievements, "overview", "achievements."),
        achievements=reader.parts(achievements, "achievements.", minimum=MIN_ACHIEVEMENT_PARTS),
        problems_lead=reader.text(problems, "lead", "problems."),
        problems=reader.points(problems, "problems."),
        plan_lead=reader.text(plan, "lead", "plan."),
        plan=reader.parts(plan, "plan.", minimum=1),
        closing=reader.text(document, "closing"),
    )
    if errors:
        raise ProseError(source, errors)
    return prose


def join_lines(text: str) -> str:
    """Undo the file's line wrapping: Chinese joins without a space, Latin words keep one."""
    collapsed = " ".join(text.split())
    return _SPACE_NEXT_TO_CJK.sub("", collapsed)


def _mapping(document: dict, key: str, errors: list[str]) -> dict:
    value = document.get(key)
    if isinstance(value, dict):
        return value
    errors.append(f"{key}: missing section (expected a mapping)")
    return {}


class _Reader:
    def __init__(self, figures: Mapping[str, str | None], errors: list[str]) -> None:
        self.figures = figures
        self.errors = errors

    def text(self, mapping: dict, key: str, prefix: str = "") -> str:
        where = f"{prefix}{key}"
        value = mapping.get(key)
        if not isinstance(value, str) or not value.strip():
            self.errors.append(f"{where}: paragraph missing or empty")
            return ""
        return self.fill(join_lines(value), where)

    def lines(self, mapping: dict, key: str) -> tuple[str, ...]:
        """A string, or a list of strings for a title broken over lines."""
        value = mapping.get(key)
        if isinstance(value, list):
            if not value:
                self.errors.append(f"{key}: empty list (write the title as a string or a list of lines)")
            return tuple(
                self.text({f"{key}[{n}]": line}, f"{key}[{n}]") for n, line in enumerate(value, start=1)
            )
        return (self.text(mapping, key),)

    def fill(self, text: str, where: str) -> str:
        if not self._balanced(text, where):
            return text
        out = []
        for literal, name, spec, conversion in string.Formatter().parse(text):
            out.append(literal)
            if name is None:
                continue
            if spec or conversion or not _NAME.match(name):
                self.errors.append(
                    f"{where}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} is not a plain name such as {{petitions_received}}"
                )
            elif name not in self.figures:
                self.errors.append(f"{where}: unknown placeholder {{{name}}}{_suggest(name, self.figures)}")
            elif self.figures[name] is None:
                self.errors.append(
                    f"{where}: placeholder {{{name}}} has no value in the warehouse for this period"
                )
            else:
                out.append(str(self.figures[name]))
        return "".join(out)

    def _balanced(self, text: str, where: str) -> bool:
        stripped = _PLACEHOLDER.sub("", text)
        if "{" in stripped or "}" in stripped:
            self.errors.append(f"{where}: unbalanced brace (write a figure as {{name}})")
            return False
        return True

    def points(self, mapping: dict, prefix: str) -> tuple[Point, ...]:
        items = mapping.get("points")
        if not isinstance(items, list) or len(items) < MIN_POINTS:
            self.errors.append(f"{prefix}points: missing (expected a list of {{title, text}})")
            return ()
        if len(items) > MAX_ITEMS:
            self.errors.append(f"{prefix}points: {len(items)} points; at most {MAX_ITEMS} (一是…十是)")
        out = []
        for n, item in enumerate(items, start=1):
            where = f"{prefix}points[{n}]."
            item = item if isinstance(item, dict) else {}
            out.append(Point(self.text(item, "title", where), self.text(item, "text", where)))
        return tuple(out)

    def parts(self, mapping: dict, prefix: str, *, minimum: int) -> tuple[Part, ...]:
        items = mapping.get("parts")
        if not isinstance(items, list) or len(items) < minimum:
            self.errors.append(f"{prefix}parts: missing (expected at least {minimum} parts)")
            return ()
        if len(items) > MAX_ITEMS:
            self.errors.append(f"{prefix}parts: {len(items)} parts; at most {MAX_ITEMS} (（一）…（十）)")
        out = []
        for n, item in enumerate(items, start=1):
            where = f"{prefix}parts[{n}]."
            item = item if isinstance(item, dict) else {}
            out.append(
                Part(
                    heading=self.text(item, "heading", where),
                    lead=self.text(item, "lead", where),
                    points=self.points(item, where),
                )
            )
        return tuple(out)


def _suggest(name: str, figures: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(figures), n=1)
    return f" (did you mean {{{close[0]}}}?)" if close else ""


def placeholders(path: Path) -> set[str]:
    """Every placeholder name a prose file uses (for docs and tests)."""
    return set(re.findall(r"\{([a-z][a-z0-9_]*)\}", path.read_text(encoding="utf-8")))
