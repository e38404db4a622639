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
from datetime import date, timedelta
from pathlib import Path

import psycopg

from xinfang.config import Settings, get_settings
from xinfang.extract import delivery, person_keys
from xinfang.extract.package import Package, Period, build_package, package_name, read_package
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


def build(conn: psycopg.Connection, period: Period, settings: Settings | None = None) -> Package:
    """Refresh the province's person keys, then build and validate the period's package.

    A package already delivered on the configured route is not built again: the
    province has it, and a re-run of the DAG must change nothing (a correction
    is a new revision, delivered deliberately).
    """
    settings = settings or get_settings()
    city = city_code(conn)
    conn.commit()
    name = package_name(city, period, SCHEMA_VERSION)
    delivered = _delivered_copy(conn, extracts_dir(settings) / name, channel_of(settings))
    if delivered is not None:
        log.info("extract %s already delivered; kept %s as it is", name, delivered.path)
        return delivered
    keys = person_keys.refresh(conn, pii_key=settings.pii_key, province_key=settings.province_key)
    conn.commit()
    return build_package(conn, period, extracts_dir(settings), city_code=city, province_key_id=keys.key_id)


def channel_of(settings: Settings) -> str:
    return SFTP_CHANNEL if settings.province_sftp_conn_id else DROPFOLDER_CHANNEL


def _delivered_copy(conn: psycopg.Connection, path: Path, channel: str) -> Package | None:
    """The local package at ``path`` if that very content was delivered on ``channel``."""
    if verify_checksums(path):
        return None  # absent or damaged: build it (the ledger then says whether it may go)
    package = read_package(path)
    if conn.execute("SELECT to_regclass('ops.delivery_ledger')").fetchone()[0] is None:
        conn.commit()
        return None
    sent = conn.execute(
        "SELECT 1 FROM ops.delivery_ledger WHERE artifact_key = %s AND channel = %s AND status = 'sent' "
        "AND sha256 = %s",
        (delivery.artifact_key(package), channel, package.content_sha256),
    ).fetchone()
    conn.commit()
    return package if sent else None


def build_month(conn: psycopg.Connection, month: date, settings: Settings | None = None) -> Package:
    return build(conn, Period.month(month), settings)


def build_day(conn: psycopg.Connection, day: date, settings: Settings | None = None) -> Package:
    return build(conn, Period.day(day), settings)


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


def deliver(conn: psycopg.Connection, package: Path, settings: Settings | None = None) -> delivery.Delivery:
    """Deliver a built package once per package, revision and channel."""
    settings = settings or get_settings()
    with open_store(settings) as (store, root, channel):
        return delivery.deliver(
            conn,
            package,
            store,
            channel=channel,
            remote_root=root,
            ack_timeout=timedelta(hours=settings.province_ack_timeout_hours),
        )


def follow_up(conn: psycopg.Connection, settings: Settings | None = None) -> list[delivery.AckOutcome]:
    """Record acknowledgements and redeliver overdue packages on the configured route."""
    settings = settings or get_settings()
    with open_store(settings) as (store, _root, channel):
        return delivery.check_acknowledgements(
            conn, store, channel=channel, ack_timeout=timedelta(hours=settings.province_ack_timeout_hours)
        )


def require_day_in_marts(conn: psycopg.Connection, day: date) -> None:
    """Stop (and let Airflow retry) until the day's hotline export is loaded and in the marts.

    The daily extract runs on the clock; the warehouse is rebuilt when the
    day's loads land. Without this a slow night would send an empty increment
    the ledger would then never resend.
    """
    loaded = conn.execute(
        "SELECT count(*) FROM ops.load_batches "
        "WHERE source = 'hotline' AND file_date = %s AND status = 'loaded'",
        (day,),
    ).fetchone()[0]
    in_marts = conn.execute(
        "SELECT count(*) FROM marts.fct_cases WHERE received_date = %s", (day,)
    ).fetchone()[0]
    if not loaded or not in_marts:
        raise RuntimeError(
            f"the loads of {day} have not reached the warehouse yet (hotline batch loaded: {bool(loaded)}, "
            f"matters of that day in marts.fct_cases: {in_marts}); retry after warehouse_transform"
        )
