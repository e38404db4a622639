"""The simulated city reproduces the bureau's 2025 H1 headline figures, measured by SQL over ingested data.

Three years of petitions are served by the online platform simulator and
loaded by the real loader (HTTP, pagination, validation, pseudonymisation,
COPY); the figures are then computed in SQL over raw.online_petitions and
raw.online_petition_events with the definitions of DOMAIN.md (as written
down in xinfang.sim.world), and compared with the seed document's figures
(DOMAIN.md table), not with the simulator's own report.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from xinfang.ingest import online
from xinfang.sim import web_api
from xinfang.sim.world import WorldConfig

pytestmark = pytest.mark.e2e

# The bureau's 2025 H1 summary (shared/seeds, DOMAIN.md).
SEED = {
    "total": 12_300,
    "total_yoy": -0.117,
    "first_resolution": 0.923,
    "first_resolution_yoy_pp": 5.6,
    "repeat_share": 0.158,
    "repeat_share_yoy_pp": -3.9,
    "satisfaction": 0.915,
    "online_share": 0.85,
    "online_share_yoy_pp": 18.0,
}
HALF_YEARS = {
    "2023H1": ("2023-01-01", "2023-07-01"),
    "2023H2": ("2023-07-01", "2024-01-01"),
    "2024H1": ("2024-01-01", "2024-07-01"),
    "2024H2": ("2024-07-01", "2025-01-01"),
    "2025H1": ("2025-01-01", "2025-07-01"),
}

# Each petition judged once (window functions over person and top-level category), then
# aggregated per half-year. Repeats: the person's previous petition of the same category lies
# at most 365 days back; 一次性化解: a first petition answered, rated satisfied, with no
# review request and no repeat within 90 days of the reply.
JUDGED_SQL = """
create temporary table judged as
with petitions as (
    select
        petition_no,
        registered_at,
        channel,
        lag(registered_at) over same_matter as previous_at,
        lead(registered_at) over same_matter as next_at
    from raw.online_petitions
    window same_matter as (
        partition by petitioner_key, left(category_code, 6) order by registered_at, petition_no
    )
),

replies as (
    select petition_no, min(event_at) as first_reply_at
    from raw.online_petition_events
    where event_type = '答复'
    group by petition_no
),

outcomes as (
    select
        e.petition_no,
        r.first_reply_at,
        (array_agg(e.rating order by e.seq desc)
            filter (where e.event_type = '回访' and e.rating is not null))[1] as last_rating,
        coalesce(bool_or(
            e.event_type in ('复查申请', '复核申请')
            and e.event_at > r.first_reply_at
            and e.event_at <= r.first_reply_at + interval '90 days'
        ), false) as reviewed_soon
    from raw.online_petition_events as e
    left join replies as r on e.petition_no = r.petition_no
    group by e.petition_no, r.first_reply_at
)

select
    p.petition_no,
    p.registered_at,
    p.channel,
    o.last_rating,
    coalesce(cast(p.registered_at as date) - cast(p.previous_at as date) <= 365, false) as is_repeat,
    o.first_reply_at is not null
    and o.last_rating in ('满意', '基本满意')
    and not o.reviewed_soon
    and not coalesce(p.next_at <= o.first_reply_at + interval '90 days', false) as resolved_if_first
from petitions as p
left join outcomes as o on p.petition_no = o.petition_no
"""

FIGURES_SQL = """
select
    count(*) as total,
    avg(case when channel in ('网上信访', '12345转办') then 1.0 else 0.0 end) as online_share,
    avg(case when is_repeat then 1.0 else 0.0 end) as repeat_share,
    avg(case when resolved_if_first then 1.0 else 0.0 end) filter (where not is_repeat) as first_resolution,
    avg(case when last_rating in ('满意', '基本满意') then 1.0 else 0.0 end)
        filter (where last_rating is not null) as satisfaction
from judged
where registered_at >= %s and registered_at < %s
"""


@pytest.fixture(scope="module")
def loaded(module_database_url):
    """Every petition of the default world, loaded through the platform's API."""
    config = WorldConfig()
    provider = web_api.world_provider(seed=config.seed, as_of=datetime(2026, 6, 30, 23, 59))
    server = web_api.PetitionAPIServer(("127.0.0.1", 0), token="calibration-token", records_provider=provider)
    web_api.start_in_thread(server)
    try:
        with psycopg.connect(module_database_url, autocommit=True) as conn:
            online.ensure_schema(conn)
            result = online.load_window(
                conn,
                base_url=server.url,
                token="calibration-token",
                since=datetime(2022, 12, 1),
                until=datetime(2026, 7, 1),
                pii_key=b"calibration-test-key",
                page_size=web_api.MAX_PAGE_SIZE,
            )
    finally:
        server.shutdown()
        server.server_close()
    assert result.quarantined_rows == 0
    assert result.source_rows == result.loaded_rows > 70_000
    return module_database_url


def _figures(url: str) -> dict[str, dict[str, float]]:
    with psycopg.connect(url) as conn:
        conn.execute(JUDGED_SQL)
        out = {}
        for half, (start, end) in HALF_YEARS.items():
            row = conn.execute(FIGURES_SQL, (start, end)).fetchone()
            out[half] = dict(
                zip(
                    ("total", "online_share", "repeat_share", "first_resolution", "satisfaction"),
                    map(float, row),
                    strict=True,
                )
            )
        return out


def test_2025h1_headline_figures_match_the_bureau_summary(loaded):
    figures = _figures(loaded)
    now, last_year = figures["2025H1"], figures["2024H1"]
    assert abs(now["total"] - SEED["total"]) <= 0.01 * SEED["total"]
    assert now["total"] / last_year["total"] - 1 == pytest.approx(SEED["total_yoy"], abs=0.005)
    for rate in ("first_resolution", "repeat_share", "satisfaction", "online_share"):
        assert now[rate] == pytest.approx(SEED[rate], abs=0.005), rate
    assert (now["first_resolution"] - last_year["first_resolution"]) * 100 == pytest.approx(
        SEED["first_resolution_yoy_pp"], abs=0.5
    )
    assert (now["repeat_share"] - last_year["repeat_share"]) * 100 == pytest.approx(
        SEED["repeat_share_yoy_pp"], abs=0.5
    )
    assert (now["online_share"] - last_year["online_share"]) * 100 == pytest.approx(
        SEED["online_share_yoy_pp"], abs=0.5
    )


def test_2025h1_satisfaction_is_the_highest_of_the_last_three_years(loaded):
    figures = _figures(loaded)
    print({h: {k: round(v, 4) for k, v in f.items()} for h, f in figures.items()})  # shown with -s
    best = max(figures, key=lambda half: figures[half]["satisfaction"])
    assert best == "2025H1", {h: round(f["satisfaction"], 4) for h, f in figures.items()}
