"""The one-off import of the sources' history, before the daily DAGs take over.

A bureau going live has years of petitions, work orders and grid events that
no daily run will ever fetch again. The risk model needs them (seasonality,
year-on-year comparison, hotspot baselines), so the first deployment imports
them once with the same loaders the DAGs call: the same pseudonymisation,
quarantine, batch ledger and watermarks, in bulk instead of day by day. Every
step is idempotent like the daily loads, so importing again changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from xinfang import db
from xinfang.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryImport:
    first_day: date
    last_day: date
    hotline_files: int
    online_petitions: int
    grid_events: int
    seconds: float


def import_history(settings: Settings, first_day: date, last_day: date) -> HistoryImport:
    """Load every source's records of [first_day, last_day] (the online platform must be configured)."""
    from xinfang.ingest import batches, grid, hotline, online, staff
    from xinfang.sim import grid_system
    from xinfang.sim.hotline import SimConfig, write_exports

    started = time.perf_counter()
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time())
    write_exports(first_day, last_day, settings.hotline_landing_dir, SimConfig())
    platform = online.platform_settings()
    # One batch per month for the API and the grid system, so each month's load statistics
    # (ops.load_batches by file_date) cover that month's records, as the daily runs' do.
    windows = _month_windows(first_day, end)
    files = petitions = events = 0
    with db.connect(autocommit=True) as conn:
        batches.ensure_schema(conn)
        day = first_day
        while day <= last_day:
            hotline.load_day(conn, settings.hotline_landing_dir, day, pii_key=settings.pii_key)
            files += 1
            day += timedelta(days=1)
        online.ensure_schema(conn)
        for since, until in windows:
            petitions += online.load_window(
                conn,
                base_url=platform.base_url,
                token=platform.token,
                # The first window reaches back a month for updates of petitions registered before.
                since=since if since > windows[0][0] else since - timedelta(days=31),
                until=until,
                pii_key=settings.pii_key,
                page_size=platform.page_size,
            ).loaded_rows
        staff.ensure_schema(conn)
        staff.load_window(
            conn,
            base_url=platform.base_url,
            token=platform.token,
            since=staff.ROSTER_EPOCH,
            until=end,
            pii_key=settings.pii_key,
            page_size=platform.page_size,
        )
    for _, until in windows:
        cutoff = until - timedelta(seconds=1)
        if grid_system.clock(grid_system.source_url()) < cutoff:
            grid_system.advance_to(cutoff)
        with db.connect() as conn:
            events += grid.load_changes(
                conn, grid.source_url(), pii_key=settings.pii_key, until=cutoff
            ).loaded_rows
    result = HistoryImport(
        first_day, last_day, files, petitions, events, round(time.perf_counter() - started, 1)
    )
    log.info("history import %s..%s: %s", first_day, last_day, result)
    return result


def _month_windows(first_day: date, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) windows: from first_day to the next month's first day, month by month, to end."""
    windows = []
    since = datetime.combine(first_day, datetime.min.time())
    while since < end:
        nxt = datetime(since.year + (since.month == 12), since.month % 12 + 1, 1)
        windows.append((since, min(nxt, end)))
        since = nxt
    return windows
