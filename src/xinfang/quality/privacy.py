"""Which values a quality result may show: codes, dates and counts, never personal data.

Samples of failing rows go into the warehouse table, the JSON summary and the
HTML report that bureau staff open, so they pass through here first. A value is
kept only when its column is not personal by name and the value itself is a
number, date or boolean, or a text in a column known to hold codes or keys.
Anything else (names, phones, ID numbers, addresses, free text, pseudonyms) is
dropped; when in doubt the value is left out, not shown.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

# Administrative names that contain a denied word but are not about a person.
_ALLOWED_NAMES = frozenset(
    {
        "category_name",
        "top_category_name",
        "district_name",
        "town_name",
        "grid_name",
        "community_name",
        "unit_name",
        "handling_unit",
        "first_handling_unit_name",
        "file_name",
        "suite",
        "source",
    }
)
# Column names that may hold personal data or free text, whatever their type.
_DENIED = re.compile(
    r"name|phone|mobile|tel|address|addr|id_number|id_card|idcard|identity|content|note|description"
    r"|title|text|remark|comment|caller|petitioner|person|worker_key|masked|email|^record$",
    re.IGNORECASE,
)
# Text columns that hold codes, keys or enumerations.
_CODE_LIKE = re.compile(
    r"(_no|_id|_code|_date|_month|_type|_status|_result|_at|_kind|_level)$"
    r"|^(status|channel|rating|source|seq|matter_type|event_type|value|period|layer)$",
    re.IGNORECASE,
)


def column_may_hold_personal_data(column: str) -> bool:
    if column in _ALLOWED_NAMES:
        return False
    return bool(_DENIED.search(column))


def is_text_column_showable(column: str) -> bool:
    """May text values of `column` be shown (a code, key or enumeration column)?"""
    if column in _ALLOWED_NAMES:
        return True
    return not _DENIED.search(column) and bool(_CODE_LIKE.search(column))


def showable(column: str, value: Any) -> bool:
    """May `value` of `column` appear in a quality result?"""
    if column_may_hold_personal_data(column):
        return False
    if value is None or isinstance(value, (bool, int, float, Decimal, date, datetime, time)):
        return True
    if isinstance(value, str):
        return is_text_column_showable(column)
    return False


def plain(value: Any) -> Any:
    """A JSON-able rendering of a value GX or psycopg returned (dates as ISO text)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Decimal):
        return plain(float(value))
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return str(value)


def safe_row(row: dict[str, Any]) -> dict[str, Any]:
    """The showable fields of one sample row, plain."""
    return {k: plain(v) for k, v in row.items() if showable(k, v)}
