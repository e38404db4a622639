"""Runtime settings, read once from the environment.

Every path the platform writes to hangs off two folders: the data folder
(embedded PostgreSQL, landing files, Airflow metadata, secrets) and the output
folder (PDFs, extracts, outbox, quality summaries). Both default to folders in
the project checkout so a fresh clone works without configuration.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

BUREAU_TZ = ZoneInfo("Asia/Shanghai")


def _find_project_root() -> Path:
    if env := os.environ.get("XINFANG_HOME"):
        return Path(env).resolve()
    # Editable install: src/xinfang/config.py -> project root is two levels up from src.
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "dbt_project").is_dir():
        return candidate
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Settings:
    project_root: Path
    data_dir: Path
    output_dir: Path
    database_url_override: str | None
    smtp_host: str | None
    smtp_port: int
    smtp_sender: str
    bureau_name: str
    # Set: deliver the provincial extract over SFTP with this Airflow connection
    # into province_sftp_root; unset: into the drop folder (demo, development).
    province_sftp_conn_id: str | None = None
    province_sftp_root: str = "inbox"
    province_ack_timeout_hours: float = 24.0

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def hotline_landing_dir(self) -> Path:
        return self.landing_dir / "hotline"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pg" / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.data_dir / "airflow"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_root / "dbt_project"

    @property
    def dbt_target_dir(self) -> Path:
        return self.dbt_project_dir / "target"

    @property
    def templates_dir(self) -> Path:
        return self.project_root / "report_templates"

    @property
    def expectations_dir(self) -> Path:
        return self.project_root / "expectations"

    @property
    def dags_dir(self) -> Path:
        return self.project_root / "dags"

    @property
    def province_dropfolder(self) -> Path:
        return self.output_dir / "dropfolder" / "province"

    @property
    def outbox_dir(self) -> Path:
        return self.output_dir / "outbox"

    @property
    def recipients_file(self) -> Path:
        return Path(
            os.environ.get("XINFANG_RECIPIENTS_FILE", self.project_root / "config" / "recipients.yml")
        )

    @cached_property
    def pii_key(self) -> bytes:
        """Key of the keyed hash (HMAC-SHA256) that pseudonymises people.

        Production passes it in XINFANG_PII_KEY (from a secrets backend). A
        development machine gets a random key kept in the data folder, never in
        the repository, so pseudonyms are stable across runs on that machine.
        """
        if env := os.environ.get("XINFANG_PII_KEY"):
            return env.encode()
        return _development_key(self.data_dir / "secrets" / "pii.key")

    @cached_property
    def province_key(self) -> bytes:
        """Key the provincial bureau issues for the person key of its extract.

        Every city hashes identities with the same province key, so the province
        can link one petitioner across cities without ever seeing an identity.
        Production passes it in XINFANG_PROVINCE_KEY; development and the demo get
        a random local key (which the province could not link, by design).
        """
        if env := os.environ.get("XINFANG_PROVINCE_KEY"):
            # A guessable key would let anyone with a list of ID numbers or phones re-identify
            # the extract's person keys: refuse placeholders and short keys.
            if env.startswith("CHANGE-ME") or len(env) < 32:
                raise ValueError("XINFANG_PROVINCE_KEY must be the key the province issued (32+ characters)")
            return env.encode()
        if self.province_sftp_conn_id:
            # A delivery to the real province with a local random key would look fine and
            # link nobody: refuse rather than send unlinkable person keys.
            raise ValueError("XINFANG_PROVINCE_SFTP_CONN is set but XINFANG_PROVINCE_KEY is not")
        return _development_key(self.data_dir / "secrets" / "province.key")


def _development_key(key_file: Path) -> bytes:
    """A random key kept in the data folder (never the repository), created on first use."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.parent.chmod(0o700)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip().encode()


def get_settings() -> Settings:
    root = _find_project_root()
    return Settings(
        project_root=root,
        data_dir=Path(os.environ.get("XINFANG_DATA_DIR", root / "data")).resolve(),
        output_dir=Path(os.environ.get("XINFANG_OUTPUT_DIR", root / "output")).resolve(),
        database_url_override=os.environ.get("XINFANG_DATABASE_URL") or None,
        smtp_host=os.environ.get("XINFANG_SMTP_HOST") or None,
        smtp_port=int(os.environ.get("XINFANG_SMTP_PORT", "25")),
        smtp_sender=os.environ.get("XINFANG_SMTP_SENDER", "xinfang-dw@xfj.example.gov.cn"),
        bureau_name=os.environ.get("XINFANG_BUREAU_NAME", "市信访局"),
        province_sftp_conn_id=os.environ.get("XINFANG_PROVINCE_SFTP_CONN") or None,
        province_sftp_root=os.environ.get("XINFANG_PROVINCE_SFTP_ROOT", "inbox"),
        province_ack_timeout_hours=float(os.environ.get("XINFANG_PROVINCE_ACK_HOURS", "24")),
    )
