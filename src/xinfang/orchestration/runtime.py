"""Process environment for Airflow, dbt and Great Expectations.

Must be applied before Airflow is imported: Airflow reads its configuration
at import time. Everything here keeps the platform off the network and its
state inside the data folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from xinfang import db
from xinfang.config import Settings

# Air-gapped bureau networks: every tool's usage statistics and version pings off.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "DBT_VERSION_CHECK": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "PYTHONDONTWRITEBYTECODE": "",
}


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Shanghai",
        "AIRFLOW__CORE__EXECUTOR": os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        # Two cores: the default of 32 worker processes would only thrash.
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": os.environ.get(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}"
        ),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos_cache"),
    }


def apply(settings: Settings, *, start_database: bool = True) -> str | None:
    """Export the environment for this process and its children; return the warehouse URL."""
    os.environ.update(OFFLINE_ENV)
    # A deployment's own Airflow settings (e.g. in the Docker image) win over the defaults.
    for key, value in airflow_env(settings).items():
        os.environ.setdefault(key, value)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    if not start_database:
        return None
    url = db.database_url()
    # Children (dbt via Cosmos, Airflow task processes) reach the same server.
    os.environ["XINFANG_DATABASE_URL"] = url
    os.environ.update(db.dbt_env(url))
    return url
