"""The recipient list (config/recipients.yml, or XINFANG_RECIPIENTS_FILE).

Validation is strict and names the file and the entry: a typo in this file
otherwise shows up weeks later as a leader who never got the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from xinfang.config import Settings, get_settings

Role = Literal["leader", "department"]
Edition = Literal["full", "department"]

ROLES: tuple[str, ...] = ("leader", "department")
EDITIONS: tuple[str, ...] = ("full", "department")
SUPPORTED_VERSIONS = (1,)

_ALLOWED_KEYS = {"name", "email", "role", "edition", "department"}
# Deliberately simple: it catches typos (missing @, spaces, trailing dots), not every RFC 5322 corner.
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class RecipientsFileError(ValueError):
    """The recipients file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Recipient:
    name: str
    email: str
    role: Role = "leader"
    edition: Edition = "full"
    department: str | None = None

    @property
    def address(self) -> str:
        """Normalised address: the ledger key and the SMTP envelope recipient."""
        return self.email.strip().lower()


def load_recipients(path: Path | None = None, *, settings: Settings | None = None) -> list[Recipient]:
    """Read and validate the recipient list; raises RecipientsFileError naming file and entry."""
    path = Path(path) if path is not None else (settings or get_settings()).recipients_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipientsFileError(f"{path}: recipients file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipientsFileError(f"{path}: cannot read recipients file: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipientsFileError(f"{path}: not valid YAML: {exc}") from exc
    return parse_recipients(document, source=str(path))


def parse_recipients(document: Any, *, source: str = "<recipients>") -> list[Recipient]:
    if not isinstance(document, dict):
        raise RecipientsFileError(f"{source}: expected a mapping with keys 'version' and 'recipients'")
    unknown = set(document) - {"version", "recipients"}
    if unknown:
        raise RecipientsFileError(f"{source}: unknown top-level keys {sorted(map(str, unknown))}")
    version = document.get("version", 1)
    if version not in SUPPORTED_VERSIONS:
        raise RecipientsFileError(
            f"{source}: unsupported version {version!r} (supported: {SUPPORTED_VERSIONS})"
        )
    entries = document.get("recipients")
    if not isinstance(entries, list) or not entries:
        raise RecipientsFileError(f"{source}: 'recipients' must be a non-empty list")

    recipients: list[Recipient] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        recipient = _parse_entry(entry, where=f"{source}: entry {index}")
        if recipient.address in seen:
            raise RecipientsFileError(
                f"{source}: entry {index} ({recipient.name}): email {recipient.email!r} "
                f"duplicates entry {seen[recipient.address]}"
            )
        seen[recipient.address] = index
        recipients.append(recipient)
    return recipients


def _parse_entry(entry: Any, *, where: str) -> Recipient:
    if not isinstance(entry, dict):
        raise RecipientsFileError(f"{where}: expected a mapping, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name.strip()})"
    unknown = set(entry) - _ALLOWED_KEYS
    if unknown:
        raise RecipientsFileError(
            f"{where}: unknown keys {sorted(map(str, unknown))} (allowed: {sorted(_ALLOWED_KEYS)})"
        )

    def text(key: str, *, required: bool) -> str | None:
        value = entry.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise RecipientsFileError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
        return value.strip()

    name = text("name", required=True)
    email = text("email", required=True)
    if not _EMAIL_RE.fullmatch(email):
        raise RecipientsFileError(f"{where}: email {email!r} is not a valid address")
    role = text("role", required=True)
    if role not in ROLES:
        raise RecipientsFileError(f"{where}: role {role!r} must be one of {list(ROLES)}")
    edition = text("edition", required=False) or "full"
    if edition not in EDITIONS:
        raise RecipientsFileError(f"{where}: edition {edition!r} must be one of {list(EDITIONS)}")
    department = text("department", required=False)
    if department is None and (role == "department" or edition == "department"):
        raise RecipientsFileError(f"{where}: 'department' is required for role/edition 'department'")
    return Recipient(name=name, email=email, role=role, edition=edition, department=department)
