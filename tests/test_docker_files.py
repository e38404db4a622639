"""Docker cannot run on the development machines: keep docker/ consistent with the code by checks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_has_the_production_topology():
    compose = _compose()
    services = compose["services"]
    for name in ("postgres", "redis", "smtp", "api-server", "scheduler", "dag-processor", "worker"):
        assert name in services, f"compose.yaml lacks the {name} service"
    commands = {n: s.get("command") for n, s in services.items()}
    assert commands["worker"] == ["airflow", "celery", "worker"]
    # Distributed: two Celery workers on the Redis queue (the topology tests/test_distributed_run.py runs).
    assert services["worker"]["deploy"]["replicas"] == 2
    assert compose["x-airflow-common-env"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert commands["api-server"] == ["airflow", "api-server"]


def test_every_airflow_command_in_compose_exists_in_the_locked_airflow():
    airflow = shutil.which("airflow", path=str(Path(ROOT / ".venv" / "bin")))
    assert airflow, "airflow is not installed in .venv"
    for service in _compose()["services"].values():
        command = service.get("command")
        if command and command[0] == "airflow":
            result = subprocess.run(
                [airflow, *command[1:], "--help"], capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, (
                f"`{' '.join(command)}` is not an Airflow command: {result.stderr[-500:]}"
            )


def test_dockerfile_copies_only_paths_that_exist():
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_every_variable_compose_needs_is_in_the_env_example():
    lines = (DOCKER / "compose.yaml").read_text(encoding="utf-8").splitlines()
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))
    # `$${X}` is escaped for the container's shell, not interpolated by compose.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    example = (DOCKER / ".env.example").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert used and used <= defined, f"variables used but not in .env.example: {sorted(used - defined)}"
