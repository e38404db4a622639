"""Pseudonymisation of personal data at the point of ingestion.

A keyed hash (HMAC-SHA256) links the same person across records and channels
without storing the identifier; masked forms (张*明, 138****5678) are what
staff see. Raw values go only to the `restricted` schema.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# Mobile numbers as people type them: 13812345678, +86 138-1234-5678, 0086 138 1234 5678.
_PHONE_IN_TEXT = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)")
# Resident ID numbers: 18 characters, or the old 15-digit form still found on some records.
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")


def normalise_phone(phone: str) -> str:
    digits = phone if phone.isdigit() and phone.isascii() else re.sub(r"\D", "", phone)
    for country_code in ("0086", "86"):
        if len(digits) == 11 + len(country_code) and digits.startswith(country_code):
            return digits[len(country_code) :]
    return digits


_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")
# GB 11643 check digit of resident ID numbers.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def id_number_valid(id_number: str) -> bool:
    return bool(_ID_NUMBER.match(id_number)) and id_check_digit(id_number[:17]) == id_number[17]


def mask_id_number(id_number: str) -> str:
    """110105199001010021 -> 110105********0021: region kept, birth date and sequence hidden."""
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def person_key(identifier: str, key: bytes) -> str:
    """Stable pseudonym of a person from a normalised phone or ID number."""
    return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()


def mask_name(name: str) -> str:
    name = name.strip()
    if len(name) <= 1:
        return "*" * len(name)
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """138****5678; a short (landline) number keeps at most its last 2 to 4 digits, never the rest."""
    digits = normalise_phone(phone)
    if len(digits) >= 11:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if len(digits) < 6:
        return "*" * len(digits)
    shown = 2 if len(digits) < 9 else 4
    return "*" * (len(digits) - shown) + digits[-shown:]


def mask_address(address: str, keep_prefix: str) -> str:
    """Keep the administrative prefix (district and town), hide the rest."""
    if keep_prefix and address.startswith(keep_prefix):
        return keep_prefix + "***"
    return "***"


def scrub_text(text: str, *, name: str | None = None, address: str | None = None) -> str:
    """Hide phone and ID numbers typed into free text, and the record's own person's name and address.

    Other people's names cannot be found reliably in Chinese text; the record's own
    petitioner or caller is known, and is the one most often written out in full.
    """
    if address and len(address) >= 4:
        text = text.replace(address, "***")
    if name and len(name) >= 2:
        text = text.replace(name, mask_name(name))
    text = _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)), text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)
