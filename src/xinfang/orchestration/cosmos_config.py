"""Cosmos settings for running the dbt project inside Airflow.

The DAG is rendered from dbt_project/target/manifest.json, compiled at build
time by `xinfang setup`; Cosmos is told never to call `dbt ls` or `dbt deps`
while the DAG file is parsed. dbt connects through dbt_project/profiles.yml,
whose values come from the environment (see xinfang.db.dbt_env).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from xinfang.config import get_settings


def _dbt_executable() -> str:
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else (shutil.which("dbt") or "dbt")


def task_group_kwargs() -> dict:
    settings = get_settings()
    project = settings.dbt_project_dir
    return {
        "project_config": ProjectConfig(
            dbt_project_path=project,
            manifest_path=settings.dbt_target_dir / "manifest.json",
            install_dbt_deps=False,
        ),
        "profile_config": ProfileConfig(
            profile_name="xinfang", target_name="warehouse", profiles_yml_filepath=project / "profiles.yml"
        ),
        "execution_config": ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.DBT_RUNNER,
            dbt_executable_path=_dbt_executable(),
        ),
        "render_config": RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # One `dbt build` task per model (its unit tests, the model, its data tests), so a
            # failing test stops everything downstream; one task instead of a run and a test task
            # halves the per-task overhead (process start, DAG parse, dbt start-up), which under
            # the CeleryExecutor costs more than most of the models themselves.
            test_behavior=TestBehavior.BUILD,
            # Relationship tests need both models built: run them after both, not after either.
            should_detach_multiple_parents_tests=True,
            # Cosmos would name dbt relations as Airflow assets by host; with the
            # embedded server the host is a socket path, which is no valid URI.
            # The DAG emits its own marts asset instead.
            emit_datasets=False,
        ),
        "operator_args": {"install_deps": False},
    }
