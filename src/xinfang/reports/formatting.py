"""Number formatting for Chinese reports.

Rounding is half-up on the decimal value (as readers and Excel expect), not
Python's round-half-even on the binary float. A missing value prints as an em
dash, never as "None".
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MISSING = "—"


def _decimal(value: float) -> Decimal:
    # repr() gives the shortest string that round-trips, so 0.0125 stays 0.0125, not 0.01249999...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _round(value: Decimal, digits: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def fmt_int(value: float | None) -> str:
    """A count with thousands separators: 12300 -> "12,300"."""
    if value is None:
        return MISSING
    return f"{_round(_decimal(value), 0):,.0f}"


def fmt_number(value: float | None, digits: int = 1) -> str:
    """A count, or a measure with ``digits`` decimals when it is not integral."""
    if value is None:
        return MISSING
    number = _decimal(value)
    if number == number.to_integral_value():
        return fmt_int(value)
    return f"{_round(number, digits):,.{digits}f}"


def fmt_pct(ratio: float | None, digits: int = 1) -> str:
    """A ratio as a percentage: 0.915 -> "91.5%"."""
    if ratio is None:
        return MISSING
    return f"{_round(_decimal(ratio) * 100, digits):.{digits}f}%"


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
    pct = _round(_decimal(ratio) * 100, digits)
    if pct == 0:
        return "持平"
    word = "上升" if pct > 0 else "下降"
    return f"{word}{abs(pct):.{digits}f}%"
