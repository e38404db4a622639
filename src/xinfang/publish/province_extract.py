"""The provincial bureau's standardized extract: build a period's package, deliver it, follow it up.

The monthly full extract goes out with the monthly report (behind its quality
gate); the daily incremental with the province_extract_daily DAG. Delivery is
over SFTP when XINFANG_PROVINCE_SFTP_CONN names an Airflow connection, else
into the drop folder (output/dropfolder/province) for the demo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg

from xinfang.config import Settings, get_settings
from xinfang.extract import delivery, person_keys
from xinfang.extract.package import ExtractError, Package, Period, build_package, package_name, read_package
from xinfang.extract.schema import SCHEMA_VERSION
from xinfang.extract.transfer import LocalStore, SftpStore, Store
from xinfang.extract.validate import verify_checksums

log = logging.getLogger(__name__)

DROPFOLDER_CHANNEL = "dropfolder"
SFTP_CHANNEL = "sftp"


def city_code(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT region_code FROM marts.dim_region WHERE region_level = 1").fetchall()
    if len(row) != 1:
        raise RuntimeError(f"marts.dim_region must hold exactly one city (level 1), found {len(row)}")
    return row[0][0]


def extracts_dir(settings: Settings) -> Path:
    return settings.output_dir / "extracts" / "province"


def build(
    conn: psycopg.Connection, period: Period, settings: Settings | None = None, *, revision: int = 1
) -> Package:
    """Refresh the province's person keys, then build and validate the period's package.

    Once the delivery ledger holds a package (sent, sending or failed), it is
    frozen: a re-run returns the recorded local copy instead of building again,
    so a re-run changes nothing and a retried delivery sends what was claimed.
    Corrected data goes out as a new ``revision`` (folder ``<name>_r<N>``).
    """
    settings = settings or get_settings()
    if revision < 1:
        raise ValueError(f"revision must be 1 or more, got {revision}")
    city = city_code(conn)
    conn.commit()
    name = package_name(city, period, SCHEMA_VERSION)
    folder = delivery.remote_name_for(name, revision)
    frozen = _recorded_copy(conn, extracts_dir(settings) / folder, name, revision)
    if frozen is not None:
        log.info("extract %s is in the delivery ledger; kept %s as it is", folder, frozen.path)
        return frozen
    keys = person_keys.refresh(conn, pii_key=settings.pii_key, province_key=settings.province_key)
    conn.commit()
    return build_package(
        conn,
        period,
        extracts_dir(settings),
        city_code=city,
        province_key_id=keys.key_id,
        folder_name=folder,
    )


def build_month(
    conn: psycopg.Connection, month: date, settings: Settings | None = None, *, revision: int = 1
) -> Package:
    return build(conn, Period.month(month), settings, revision=revision)


def build_day(
    conn: psycopg.Connection, day: date, settings: Settings | None = None, *, revision: int = 1
) -> Package:
    return build(conn, Period.day(day), settings, revision=revision)


def channel_of(settings: Settings) -> str:
    return SFTP_CHANNEL if settings.province_sftp_conn_id else DROPFOLDER_CHANNEL


def _recorded_copy(conn: psycopg.Connection, path: Path, name: str, revision: int) -> Package | None:
    """The local copy of a package the ledger already holds; None if the ledger has none.

    Raises when the ledger holds it but the local copy is gone or differs: what
    was claimed or sent cannot be rebuilt from newer data under the same revision.
    """
    if conn.execute("SELECT to_regclass('ops.delivery_ledger')").fetchone()[0] is None:
        conn.commit()
        return None
    # Any channel: one package content per revision, whichever route it goes (or went) by.
    row = conn.execute(
        "SELECT status || ' via ' || channel, sha256 FROM ops.delivery_ledger "
        "WHERE artifact_key = %s AND revision = %s ORDER BY created_at LIMIT 1",
        (delivery.artifact_key_for(name), revision),
    ).fetchone()
    conn.commit()
    if row is None:
        return None
    status, sha256 = row
    package = None if verify_checksums(path) else read_package(path)
    if package is None or package.content_sha256 != sha256:
        raise ExtractError(
            f"{path.name} is in the delivery ledger ({status}) but the local copy "
            f"{'is missing or damaged' if package is None else 'has other content'}; what was recorded "
            f"cannot change. To send corrected data build revision {revision + 1}: "
            f"xinfang extract build ... --revision {revision + 1} --deliver"
        )
    return package


@contextmanager
def open_store(settings: Settings) -> Iterator[tuple[Store, str, str]]:
    """(store, remote root, channel) of the configured delivery route."""
    channel = channel_of(settings)
    if settings.province_sftp_conn_id:
        store: Store = SftpStore.from_airflow(settings.province_sftp_conn_id)
        root = settings.province_sftp_root
    else:
        settings.province_dropfolder.mkdir(parents=True, exist_ok=True)
        store, root = LocalStore(), str(settings.province_dropfolder)
    try:
        yield store, root, channel
    finally:
        store.close()


def deliver(
    conn: psycopg.Connection, package: Path, settings: Settings | None = None, *, revision: int = 1
) -> delivery.Delivery:
    """Deliver a built package once per package, revision and channel."""
    settings = settings or get_settings()
    with open_store(settings) as (store, root, channel):
        return delivery.deliver(
            conn,
            package,
            store,
            channel=channel,
            remote_root=root,
            revision=revision,
            ack_timeout=timedelta(hours=settings.province_ack_timeout_hours),
        )


def follow_up(conn: psycopg.Connection, settings: Settings | None = None) -> list[delivery.AckOutcome]:
    """Record acknowledgements and redeliver overdue packages on the configured route."""
    settings = settings or get_settings()
    with open_store(settings) as (store, _root, channel):
        return delivery.check_acknowledgements(
            conn, store, channel=channel, ack_timeout=timedelta(hours=settings.province_ack_timeout_hours)
        )


# The three sources' daily loads; the staff roster comes with the online platform's.
DAILY_SOURCES = ("hotline", "online_petitions", "grid_events")


class DayNotReady(RuntimeError):
    """The day's loads, or a warehouse rebuild that passed its tests after them, are missing."""


def require_day_ready(conn: psycopg.Connection, day: date, marts_ready_at: datetime | None) -> None:
    """The daily extract's quality gate; raises DayNotReady (Airflow retries) until it holds.

    - every source's load of ``day`` is in, reconciled (ops.load_batches allows a
      'loaded' row only when source rows = loaded + quarantined);
    - the warehouse was rebuilt after the last of those loads, with every dbt
      model, contract and test passing: warehouse_transform emits the marts
      asset only then, and ``marts_ready_at`` is that event's time.

    The monthly extract has the month's Great Expectations gate in front of it.
    """
    rows = conn.execute(
        "SELECT source, max(finished_at) FROM ops.load_batches "
        "WHERE file_date = %s AND status = 'loaded' AND source = ANY(%s) GROUP BY source",
        (day, list(DAILY_SOURCES)),
    ).fetchall()
    conn.commit()
    loaded = dict(rows)
    missing = [s for s in DAILY_SOURCES if s not in loaded]
    if missing:
        raise DayNotReady(f"the loads of {day} are not all in: no loaded batch of {', '.join(missing)}")
    last_load = max(loaded.values())
    if marts_ready_at is None or marts_ready_at < last_load:
        raise DayNotReady(
            f"the warehouse has not been rebuilt with all dbt tests passing since the loads of {day} "
            f"(last load {last_load.isoformat()}, last good rebuild "
            f"{marts_ready_at.isoformat() if marts_ready_at else 'never'}); retry after warehouse_transform"
        )
