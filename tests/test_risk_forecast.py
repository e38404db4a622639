"""Monthly forecasts (xinfang.risk.forecast): the model on simulated series, runs on a real database.

The pure tests draw seasonal Poisson series with a known seasonal pattern
from a fixed seed, so their figures are reproducible; the tolerances leave
room for simulation noise and nothing else. The database tests build a tiny
`marts.fct_cases` in a fresh database of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date

import numpy as np
import psycopg
import pytest

from xinfang.risk.forecast import (
    CITY_CODE,
    Domain,
    aggregate_backtest,
    backtest,
    count_quantiles,
    fit_model,
    forecast,
    monthly_counts,
    run_forecasts,
)

SEASON = 12
# A known monthly pattern with one clear peak (July) and trough (February), mean 1.
PROFILE = np.array([1.0, 0.5, 0.8, 0.9, 1.0, 1.2, 2.0, 1.3, 1.0, 0.9, 0.7, 0.7])
PROFILE = PROFILE / PROFILE.mean()


def seasonal_means(level: float, months: int, amplitude: float = 0.5, peak: int = 6) -> np.ndarray:
    """Mean counts with a yearly cosine pattern peaking at month position `peak`."""
    t = np.arange(months)
    return level * (1 + amplitude * np.cos(2 * np.pi * (t - peak) / SEASON))


def assert_sane(forecasts) -> None:
    for f in forecasts:
        values = (f.mean, f.lo80, f.hi80, f.lo95, f.hi95)
        assert all(math.isfinite(v) and v >= 0 for v in values), f
        assert f.lo95 <= f.lo80 <= f.mean <= f.hi80 <= f.hi95, f


# --------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("level", [3.0, 25.0])
def test_intervals_cover_their_nominal_share_of_simulated_points(level: float) -> None:
    rng = np.random.default_rng(7)
    inside = {80: 0, 95: 0}
    oracle = {80: 0, 95: 0}  # intervals from the true Poisson means: what discreteness allows
    total = 0
    for _ in range(200):
        mu = seasonal_means(level, 39)
        y = rng.poisson(mu)
        for h, f in enumerate(forecast(y[:36].tolist(), 3), start=36):
            total += 1
            inside[80] += f.lo80 <= y[h] <= f.hi80
            inside[95] += f.lo95 <= y[h] <= f.hi95
            lo95, lo80, hi80, hi95 = count_quantiles(mu[h], mu[h], (0.025, 0.1, 0.9, 0.975))
            oracle[80] += lo80 <= y[h] <= hi80
            oracle[95] += lo95 <= y[h] <= hi95
    # 600 points: the binomial standard error is under 2 points.
    assert 0.75 <= inside[80] / total <= 0.93
    assert inside[95] / total >= 0.92
    assert abs(inside[80] - oracle[80]) / total < 0.05
    assert abs(inside[95] - oracle[95]) / total < 0.03


def test_forecasts_pick_up_the_seasonal_peak_month() -> None:
    rng = np.random.default_rng(11)
    y = rng.poisson(40 * np.tile(PROFILE, 3))
    means = [f.mean for f in forecast(y.tolist(), 12)]
    assert int(np.argmax(means)) == int(np.argmax(PROFILE))  # the history starts at position 0
    assert int(np.argmin(means)) == int(np.argmin(PROFILE))
    assert max(means) / min(means) > 2.0


@pytest.mark.parametrize(("growth", "ceiling"), [(0.0, 0.97), (0.01, 0.95)])
def test_mase_is_below_one_on_strongly_seasonal_series(growth: float, ceiling: float) -> None:
    rng = np.random.default_rng(5)
    mases, naive = [], []
    for _ in range(30):
        mu = seasonal_means(60, 48, amplitude=0.6) * np.exp(growth * np.arange(48))
        y = rng.poisson(mu).astype(float)
        bt = backtest(y.tolist(), origins=12)
        train = y[:36]
        assert bt.scale_kind == "seasonal_naive"
        assert bt.scale == pytest.approx(np.abs(train[12:] - train[:-12]).mean())
        mases.append(bt.mase)
        naive.append(bt.mae / np.abs(y[36:] - y[35:-1]).mean())
    # On pure noise around a known season the seasonal naive forecast doubles the noise variance, so
    # even the true means score about 0.75; a level that grows also costs the seasonal naive forecast.
    assert np.mean(mases) < ceiling
    assert np.mean(naive) < 0.6  # the lag-1 naive forecast misses the season altogether


def test_noise_is_not_taken_for_seasonality_but_a_real_pattern_is() -> None:
    rng = np.random.default_rng(3)
    shrunk, raw = [], []
    for _ in range(30):
        y = rng.poisson(20, 36).astype(float)
        shrunk.append(max(abs(i - 1) for i in fit_model(y.tolist()).indices))
        by_month = y.reshape(3, 12).mean(axis=0)
        raw.append(np.abs(by_month / by_month.mean() - 1).max())
    assert np.mean(shrunk) < 0.4 * np.mean(raw)
    seasonal = fit_model(rng.poisson(seasonal_means(20, 36, amplitude=0.6)).tolist())
    assert seasonal.seasonal_weight > 0.7
    assert max(seasonal.indices) > 1.4 and min(seasonal.indices) < 0.6


def test_short_history_shrinks_the_seasonal_indices() -> None:
    rng = np.random.default_rng(8)
    y = rng.poisson(seasonal_means(30, 36, amplitude=0.6)).tolist()
    short, long = fit_model(y[:18]), fit_model(y)
    assert short.seasonal_weight < long.seasonal_weight
    assert fit_model(y[:12]).indices == (1.0,) * 12  # under a season plus one month: no seasonality


def test_intervals_widen_with_the_horizon() -> None:
    y = [10, 14, 19, 25, 30, 38, 45, 52, 60, 70]  # a drifting level: the smoothing follows it closely
    fs = forecast(y, 6)
    assert_sane(fs)
    assert fs[-1].hi95 - fs[-1].lo95 > fs[0].hi95 - fs[0].lo95
    assert fs[-1].hi80 - fs[-1].lo80 > fs[0].hi80 - fs[0].lo80


def test_one_surge_does_not_blow_up_the_following_forecasts() -> None:
    width, mean, next_year = [], [], []
    for seed in (21, 22, 23):
        rng = np.random.default_rng(seed)
        y = rng.poisson(seasonal_means(50, 36, amplitude=0.3)).astype(float)
        surged = y.copy()
        surged[34] *= 3
        plain, after = forecast(y.tolist(), 11), forecast(surged.tolist(), 11)
        width.append((after[0].hi95 - after[0].lo95) / (plain[0].hi95 - plain[0].lo95))
        mean.append(after[0].mean / plain[0].mean)
        next_year.append(after[10].mean / plain[10].mean)  # the surge's month a year later
    # Without the robust steps (Huber indices, capped dispersion) the figures are about 1.55-2.1,
    # 1.13-1.22 and 1.56-1.58.
    assert np.mean(width) < 1.45
    assert np.mean(mean) < 1.12
    assert np.mean(next_year) < 1.4


@pytest.mark.parametrize(
    "history",
    [[0], [4], [0, 0, 3], [1, 0, 2, 5, 0], [0] * 36, [1000, 1200, 900]],
)
def test_short_and_sparse_histories_give_sane_forecasts(history: list[int]) -> None:
    fs = forecast(history, 4)
    assert len(fs) == 4
    assert_sane(fs)


def test_all_zero_history() -> None:
    long = forecast([0] * 36, 3)
    assert all(f.mean < 0.02 and f.lo95 == 0 and f.hi80 < 1 for f in long)
    # Three empty months prove little: a count of one stays inside the 95 % interval.
    short = forecast([0, 0, 0], 1)[0]
    assert short.hi95 >= 1
    bt = backtest([0] * 30, origins=12)
    assert bt.mase is None and bt.scale is None and bt.scale_kind == "none"
    assert bt.mae is not None and bt.mae < 0.05
    assert bt.coverage95 == 1.0


def test_empty_and_invalid_histories() -> None:
    with pytest.raises(ValueError):
        forecast([], 3)
    with pytest.raises(ValueError):
        forecast([3, -1, 2], 1)
    with pytest.raises(ValueError):
        forecast([3, float("nan")], 1)
    assert forecast([5, 6], 0) == []
    bt = backtest([], origins=12)
    assert bt.points == () and bt.mase is None and bt.coverage80 is None
    one = backtest([7], origins=12)
    assert one.points == ()


def test_zero_mase_scale_gives_none_not_inf() -> None:
    bt = backtest([5] * 20 + [6, 5, 7, 5], origins=4)
    assert bt.scale is None and bt.scale_kind == "none"
    assert bt.mase is None
    assert bt.mae is not None and bt.mae > 0


def test_short_training_part_scales_by_the_lag_one_naive_forecast() -> None:
    y = [3, 8, 2, 9, 4, 7, 5, 6, 4, 5]
    bt = backtest(y, origins=4)
    assert bt.scale_kind == "naive"
    assert bt.scale == pytest.approx(np.abs(np.diff(y[:6])).mean())
    assert bt.mase == pytest.approx(bt.mae / bt.scale)


def test_backtest_points_and_metrics() -> None:
    rng = np.random.default_rng(2)
    y = rng.poisson(seasonal_means(15, 30)).tolist()
    bt = backtest(y, origins=12)
    assert [p.index for p in bt.points] == list(range(18, 30))
    assert [p.actual for p in bt.points] == y[18:]
    assert bt.mae == pytest.approx(np.mean([abs(p.actual - p.forecast.mean) for p in bt.points]))
    assert bt.coverage80 == pytest.approx(
        np.mean([p.forecast.lo80 <= p.actual <= p.forecast.hi80 for p in bt.points])
    )
    for p in bt.points:
        assert p.forecast == forecast(y[: p.index], 1)[0]
    assert len(backtest(y, origins=40).points) == 29  # at least one training point is kept


def test_backtest_never_peeks_at_the_future() -> None:
    rng = np.random.default_rng(4)
    y = rng.poisson(seasonal_means(20, 36)).tolist()
    base = backtest(y, origins=12)
    origin = 30  # target index of the 7th backtest point
    altered = y[:origin] + [v * 5 + 40 for v in y[origin:]]
    changed = backtest(altered, origins=12)
    before = [p.forecast for p in base.points if p.index <= origin]
    assert before == [p.forecast for p in changed.points if p.index <= origin]
    # The alteration is visible to every later origin, so the comparison above is not vacuous.
    later = [
        (a.forecast, b.forecast) for a, b in zip(base.points, changed.points, strict=True) if a.index > origin
    ]
    assert later and all(a.mean != b.mean for a, b in later)


# --------------------------------------------------------------------------------------------
# The warehouse

AS_OF = date(2025, 6, 1)
WAGE = Domain("wage", "欠薪讨薪", ("60200601",))
LABOUR = Domain("labour", "劳动社保", ("602006",))
LAND = Domain("land", "征地拆迁", ("60201401",))
DOMAINS = (WAGE, LABOUR, LAND)
DISTRICTS = {"369901": "江东区", "369905": "临河县"}


def test_domain_matches_by_prefix() -> None:
    assert LABOUR.matches("60200601") and LABOUR.matches("602006")
    assert not WAGE.matches("602006") and not WAGE.matches(None) and not LAND.matches("60201402")
    assert Domain("x", "单一", "602014").category_prefixes == ("602014",)
    with pytest.raises(ValueError):
        Domain("x", "空", ())


def _month(k: int) -> date:
    return date(2023 + k // 12, k % 12 + 1, 1)


def _cases(rng: np.random.Generator, months: range, *, scale: float = 1.0) -> list[tuple]:
    """Rows of the tiny fact table: (case_id, matter_source, received_month, category_code, district)."""
    rows = []
    mean = {"60200601": 6, "60200699": 3, "60201401": 2}
    for k in months:
        for district in DISTRICTS:
            for category, m in mean.items():
                for source in ("petition", "grid", "hotline"):
                    for _ in range(rng.poisson(m * scale * (1.5 if k % 12 == 0 else 1.0))):
                        rows.append((source, _month(k), category, district))
    # A matter without a district counts for the city only.
    rows.append(("petition", _month(months[0]), "60200601", None))
    return rows


def _insert(conn: psycopg.Connection, rows: list[tuple]) -> None:
    start = conn.execute("select count(*) from marts.fct_cases").fetchone()[0]
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy marts.fct_cases (case_id, matter_source, received_month, received_date, category_code,"
            " district_code, district_name) from stdin"
        ) as copy,
    ):
        for i, (source, month, category, district) in enumerate(rows, start=start):
            copy.write_row((f"C{i:07d}", source, month, month, category, district, DISTRICTS.get(district)))


@pytest.fixture()
def warehouse(module_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        conn.execute("drop schema if exists marts cascade")
        conn.execute("drop schema if exists risk cascade")
        conn.execute("create schema marts")
        conn.execute(
            """
            create table marts.fct_cases (
                case_id text primary key,
                matter_source text not null,
                received_month date not null,
                received_date date not null,
                category_code text,
                top_category_code text generated always as (left(category_code, 6)) stored,
                district_code text,
                district_name text
            )
            """
        )
        rng = np.random.default_rng(12)
        _insert(conn, _cases(rng, range(30)))  # 2023-01 .. 2025-06
        yield conn


def _table(conn: psycopg.Connection, name: str) -> list[tuple]:
    return conn.execute(f"select * from risk.{name} order by 1, 2, 4, 6, 7").fetchall()


def test_monthly_counts_per_district_and_city(warehouse: psycopg.Connection) -> None:
    _insert(warehouse, _cases(np.random.default_rng(1), range(30, 33), scale=50))  # after the as-of month
    data = monthly_counts(warehouse, DOMAINS, start_month=None, as_of_month=AS_OF)
    assert data.months[0] == date(2023, 1, 1) and data.months[-1] == AS_OF and len(data.months) == 30
    assert data.area_names == {CITY_CODE: "全市", **DISTRICTS}
    expected = dict(
        warehouse.execute(
            "select received_month, count(*) from marts.fct_cases where district_code = '369905'"
            " and category_code like '602006%%' and matter_source in ('petition', 'grid')"
            " and received_month <= %s group by 1",
            (AS_OF,),
        ).fetchall()
    )
    assert data.counts[("labour", "369905")] == [expected.get(m, 0) for m in data.months]
    for key in ("wage", "labour", "land"):
        districts = [data.counts[(key, d)] for d in DISTRICTS]
        city = data.counts[(key, CITY_CODE)]
        extra = [1 if (key != "land" and i == 0) else 0 for i in range(30)]  # the district-less matter
        assert city == [sum(v) + e for *v, e in zip(*districts, extra, strict=True)]
    # Wage is a part of labour, and the hotline is left out unless asked for.
    assert all(
        w <= lab
        for w, lab in zip(data.counts[("wage", CITY_CODE)], data.counts[("labour", CITY_CODE)], strict=True)
    )
    with_hotline = monthly_counts(
        warehouse,
        [WAGE],
        start_month="2024-01-01",
        as_of_month=AS_OF,
        sources=("petition", "grid", "hotline"),
    )
    assert len(with_hotline.months) == 18
    assert sum(with_hotline.counts[("wage", CITY_CODE)]) > sum(data.counts[("wage", CITY_CODE)][12:])
    with pytest.raises(ValueError):
        monthly_counts(warehouse, DOMAINS, start_month=None, as_of_month=date(2025, 6, 15))


def test_run_forecasts_writes_backtest_and_forecasts_idempotently(warehouse: psycopg.Connection) -> None:
    first = run_forecasts(warehouse, DOMAINS, as_of_month=AS_OF, horizon=3, origins=12)
    series = len(DOMAINS) * (len(DISTRICTS) + 1)
    assert (first.series, first.skipped_empty, first.months) == (series, 0, 30)
    assert (first.backtest_rows, first.forecast_rows) == (series * 12, series * 3)
    forecasts, metrics = _table(warehouse, "forecasts"), _table(warehouse, "forecast_backtest")
    assert len(forecasts) == series * 15 and len(metrics) == series

    second = run_forecasts(warehouse, DOMAINS, as_of_month=AS_OF, horizon=3, origins=12)
    assert second.series == first.series
    assert _table(warehouse, "forecasts") == forecasts
    assert _table(warehouse, "forecast_backtest") == metrics

    rows = warehouse.execute(
        "select kind, min(target_month), max(target_month), min(horizon), max(horizon), count(actual)"
        " from risk.forecasts group by kind order by kind"
    ).fetchall()
    assert rows == [
        ("backtest", date(2024, 7, 1), AS_OF, 1, 1, series * 12),
        ("forecast", date(2025, 7, 1), date(2025, 9, 1), 1, 3, 0),
    ]
    bad = warehouse.execute(
        "select count(*) from risk.forecasts where not (0 <= lo95 and lo95 <= lo80 and lo80 <= mean"
        " and mean <= hi80 and hi80 <= hi95)"
    ).fetchone()[0]
    assert bad == 0

    # The stored backtest is the pure backtest of the same counts.
    data = monthly_counts(warehouse, DOMAINS, start_month=None, as_of_month=AS_OF)
    bt = backtest(data.counts[("wage", "369905")], origins=12)
    stored = warehouse.execute(
        "select mae, coverage80, coverage95, mase, scale_kind, origins from risk.forecast_backtest"
        " where domain_key = 'wage' and area_code = '369905'"
    ).fetchone()
    assert [float(v) for v in stored[:4]] == pytest.approx(
        [bt.mae, bt.coverage80, bt.coverage95, bt.mase], abs=1e-4
    )
    assert stored[4:] == (bt.scale_kind, 12)

    agg = aggregate_backtest(warehouse, AS_OF)
    assert agg["series"] == series and agg["points"] == series * 12
    inside = warehouse.execute(
        "select avg((actual between lo80 and hi80)::int) from risk.forecasts where kind = 'backtest'"
    ).fetchone()[0]
    assert agg["coverage80"] == pytest.approx(float(inside), abs=1e-4)
    assert agg["by_area_level"]["city"]["series"] == len(DOMAINS)
    assert agg["by_area_level"]["district"]["points"] == len(DOMAINS) * len(DISTRICTS) * 12
    assert 0 < agg["mase_median"] < 3


def test_run_ignores_months_after_as_of_and_keeps_other_runs(warehouse: psycopg.Connection) -> None:
    run_forecasts(warehouse, DOMAINS, as_of_month=AS_OF)
    before = _table(warehouse, "forecasts"), _table(warehouse, "forecast_backtest")
    later = date(2025, 9, 1)
    # Months after the as-of month, many times the usual volume: a run that read them would differ.
    _insert(warehouse, _cases(np.random.default_rng(99), range(30, 33), scale=20))
    run_forecasts(warehouse, DOMAINS, as_of_month=AS_OF)
    assert (_table(warehouse, "forecasts"), _table(warehouse, "forecast_backtest")) == before

    # A later run sees them, and leaves the earlier run's rows alone.
    run = run_forecasts(warehouse, DOMAINS, as_of_month=later)
    assert run.months == 33
    rows = warehouse.execute(
        "select as_of_month, count(*) from risk.forecasts group by 1 order by 1"
    ).fetchall()
    assert rows == [(AS_OF, len(before[0])), (later, len(before[0]))]
    surge = warehouse.execute(
        "select actual, hi95 from risk.forecasts where as_of_month = %s and kind = 'backtest'"
        " and domain_key = 'wage' and area_code = %s and target_month = '2025-08-01'",
        (later, CITY_CODE),
    ).fetchone()
    assert surge[0] > surge[1]  # the twenty-fold month is far above its 95 % bound


def test_series_without_matters_are_skipped(warehouse: psycopg.Connection) -> None:
    nothing = Domain("none", "无", ("999999",))
    run = run_forecasts(warehouse, [WAGE, nothing], as_of_month=AS_OF, horizon=2, origins=6)
    assert (run.series, run.skipped_empty) == (3, 3)
    keys = warehouse.execute("select distinct domain_key from risk.forecasts").fetchall()
    assert keys == [("wage",)]
