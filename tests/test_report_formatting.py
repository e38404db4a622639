from __future__ import annotations

import pytest

from xinfang.reports.formatting import MISSING, change_ratio, fmt_change, fmt_int, fmt_number, fmt_pct


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (7, "7"),
        (1234, "1,234"),
        (12300, "12,300"),
        (1234567, "1,234,567"),
        (999.5, "1,000"),
        (None, MISSING),
    ],
)
def test_fmt_int(value: float | None, expected: str) -> None:
    assert fmt_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, "12"), (12.0, "12"), (12.25, "12.3"), (1234.56, "1,234.6"), (None, MISSING)],
)
def test_fmt_number(value: float | None, expected: str) -> None:
    assert fmt_number(value) == expected


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (0.81, "81.0%"),
        (0.915, "91.5%"),
        (0.923, "92.3%"),
        (1, "100.0%"),
        (0, "0.0%"),
        # Half-up on the decimal value, where f"{1.25:.1f}" (half-even) would give "1.2".
        (0.0125, "1.3%"),
        (0.00135, "0.1%"),
        (0.00155, "0.2%"),
        (0.0005, "0.1%"),
        (None, MISSING),
    ],
)
def test_fmt_pct(ratio: float | None, expected: str) -> None:
    assert fmt_pct(ratio) == expected


def test_fmt_pct_digits() -> None:
    assert fmt_pct(0.12345, digits=2) == "12.35%"
    assert fmt_pct(0.5, digits=0) == "50%"


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [
        (1234, 1100, "上升12.2%"),
        (1100, 1234, "下降10.9%"),
        (1000, 1000, "持平"),
        # Rounds to 0.0 %: "持平", never "上升0.0%".
        (100001, 100000, "持平"),
        (0, 50, "下降100.0%"),
        (5, None, None),
        (5, 0, None),
    ],
)
def test_fmt_change(current: int, previous: int | None, expected: str | None) -> None:
    assert fmt_change(current, previous) == expected


def test_change_ratio() -> None:
    assert change_ratio(110, 100) == pytest.approx(0.1)
    assert change_ratio(90, 100) == pytest.approx(-0.1)
    assert change_ratio(1, None) is None
    assert change_ratio(1, 0) is None
