"""Number formatting for Chinese reports.

Rounding is half-up on the decimal value (as readers and Excel expect), not
Python's round-half-even on the binary float. A missing value prints as an em
dash, never as "None".
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

MISSING = "—"


def as_decimal(value: float) -> Decimal:
    # repr() gives the shortest string that round-trips, so 0.0125 stays 0.0125, not 0.01249999...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def round_half_up(value: Decimal, digits: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def fmt_int(value: float | None) -> str:
    """A count with thousands separators: 12300 -> "12,300"."""
    if value is None:
        return MISSING
    return f"{round_half_up(as_decimal(value), 0):,.0f}"


def fmt_number(value: float | None, digits: int = 1) -> str:
    """A count, or a measure with ``digits`` decimals when it is not integral."""
    if value is None:
        return MISSING
    number = as_decimal(value)
    if number == number.to_integral_value():
        return fmt_int(value)
    return f"{round_half_up(number, digits):,.{digits}f}"


def fmt_pct(ratio: float | None, digits: int = 1) -> str:
    """A ratio as a percentage: 0.915 -> "91.5%"."""
    if ratio is None:
        return MISSING
    return f"{round_half_up(as_decimal(ratio) * 100, digits):.{digits}f}%"


def change_ratio(current: float, previous: float | None) -> float | None:
    """Relative change from ``previous``; None when there is nothing to compare with."""
    if previous is None or previous == 0:
        return None
    return (current - previous) / previous


def fmt_change(current: float, previous: float | None, digits: int = 1) -> str | None:
    """A month-on-month change in words: "上升12.2%", "下降3.0%" or "持平".

    None when there is no previous value (or it is zero), so the caller can
    choose a sentence that does not claim a change. "持平" means the change
    rounds to zero at the printed precision, so the words never contradict the figure.
    """
    ratio = change_ratio(current, previous)
    if ratio is None:
        return None
    points = round_half_up(as_decimal(ratio) * 100, digits)
    if points == 0:
        return "持平"
    word = "上升" if points > 0 else "下降"
    return f"{word}{abs(points):.{digits}f}%"


# --- the half-year summary's style: short percentages, 万, changes in words ---


def pct(ratio: Any) -> str:
    """0.85 → "85%", 0.923 → "92.3%" (one decimal, half-up, trailing .0 dropped)."""
    if ratio is None:
        return MISSING
    value = round_half_up(as_decimal(ratio) * 100, 1)
    return f"{value.normalize():f}%" if value == value.to_integral_value() else f"{value:.1f}%"


def pct_whole(ratio: Any) -> str:
    """0.8493 → "85%" (whole percent, half-up)."""
    if ratio is None:
        return MISSING
    return f"{round_half_up(as_decimal(ratio) * 100, 0):f}%"


def number(value: Any) -> str:
    """12.0 → "12", 11.46 → "11.5"."""
    if value is None:
        return MISSING
    rounded = round_half_up(as_decimal(value), 1)
    return f"{rounded.to_integral_value():f}" if rounded == rounded.to_integral_value() else f"{rounded:.1f}"


def wan(count: Any) -> str:
    """12300 → "1.23" (万, two decimals)."""
    if count is None:
        return MISSING
    return f"{round_half_up(as_decimal(count) / Decimal(10000), 2):.2f}"


def change_words(ratio: Any) -> str | None:
    """Relative change: -0.117 → "下降11.7%"; "持平" when it rounds to zero."""
    if ratio is None:
        return None
    value = round_half_up(as_decimal(ratio) * 100, 1)
    if value == 0:
        return "持平"
    return ("上升" if value > 0 else "下降") + pct(abs(value) / 100)


def pp_words(points: Any, *, up: str = "提升", down: str = "下降") -> str | None:
    """Change in percentage points: 5.6 → "提升5.6个百分点"; "持平" when it rounds to zero."""
    if points is None:
        return None
    value = round_half_up(as_decimal(points), 1)
    if value == 0:
        return "持平"
    return (up if value > 0 else down) + number(abs(value)) + "个百分点"
