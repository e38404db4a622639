"""DAG policy: every DAG imports, is owned, tagged, retried, and cheap to parse."""

from __future__ import annotations

import json
import subprocess

import pytest

from xinfang.config import get_settings
from xinfang.orchestration import schedules

EXPECTED_DAGS = {
    "hotline_ingest",
    "warehouse_transform",
    "monthly_risk_report",
    "grid_ingest",
    "online_petition_ingest",
    "halfyear_work_summary",
    "province_extract_daily",
}
ALLOWED_TAGS = {"ingest", "hotline", "grid", "online", "transform", "dbt", "publish", "report", "extract"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(get_settings().dags_dir))


def test_dagbag_imports_every_dag_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_has_owner_tags_docs_and_retries(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert set(dag.tags) <= ALLOWED_TAGS, f"{dag_id} uses tags outside the allowed set: {dag.tags}"
    assert dag.doc_md, f"{dag_id} has no documentation"
    assert dag.max_active_runs == 1
    assert dag.tasks, f"{dag_id} has no tasks"
    for task in dag.tasks:
        assert task.owner == schedules.OWNER, f"{dag_id}.{task.task_id} owner is {task.owner!r}"
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_transform_dag_is_scheduled_by_the_ingestion_assets_not_the_clock(dagbag):
    from airflow.sdk.definitions.asset import AssetAny

    dag = dagbag.dags["warehouse_transform"]
    condition = dag.timetable.asset_condition
    # Any source's delivery triggers a rebuild; each asset is an outlet of its ingestion DAG.
    assert isinstance(condition, AssetAny)
    raw = {schedules.HOTLINE_RAW.uri, schedules.ONLINE_RAW.uri, schedules.GRID_RAW.uri}
    assert {a.uri for a in condition.objects} == raw
    for dag_id, asset in (
        ("hotline_ingest", schedules.HOTLINE_RAW),
        ("online_petition_ingest", schedules.ONLINE_RAW),
        ("grid_ingest", schedules.GRID_RAW),
    ):
        outlets = [o.uri for t in dagbag.dags[dag_id].tasks for o in getattr(t, "outlets", [])]
        assert asset.uri in outlets, dag_id


def test_transform_dag_has_a_task_for_every_model_in_the_manifest(dagbag):
    manifest = json.loads((get_settings().dbt_target_dir / "manifest.json").read_text(encoding="utf-8"))
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    task_ids = set(dagbag.dags["warehouse_transform"].task_ids)
    # One `dbt build` task per model (TestBehavior.BUILD): the model and its tests together.
    missing = {m for m in models if f"dbt.{m}_model_build" not in task_ids}
    assert models and not missing, f"models without a Cosmos task: {missing}"


def test_parsing_the_dags_never_runs_dbt(monkeypatch):
    """Cosmos must render from the precompiled manifest: no `dbt ls`/`dbt deps` at parse time."""
    from airflow.dag_processing.dagbag import DagBag

    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("args"))
        raise AssertionError("dbt or a subprocess was started while parsing DAGs")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    from dbt.cli.main import dbtRunner

    monkeypatch.setattr(dbtRunner, "invoke", refuse)
    # Nor a database connection (the warehouse, the grid system): parsing happens every few seconds.
    import psycopg

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    bag = DagBag(dag_folder=str(get_settings().dags_dir))
    assert bag.import_errors == {}
    assert set(bag.dags) == EXPECTED_DAGS
    assert calls == []


def test_monthly_dag_gates_the_model_and_the_model_feeds_the_report(dagbag):
    dag = dagbag.dags["monthly_risk_report"]
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert downstream["quality_gate"] == {"risk_model", "build_extract"}
    assert downstream["risk_model"] == {"render_report"}
    assert downstream["render_report"] == {"mail_report"}
    assert downstream["build_extract"] == {"deliver_extract"}


def test_halfyear_dag_runs_on_1_january_and_1_july_behind_its_gate(dagbag):
    dag = dagbag.dags["halfyear_work_summary"]
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert downstream == {
        "quality_gate": {"render_summary"},
        "render_summary": {"mail_summary"},
        "mail_summary": set(),
    }
    assert all(t.trigger_rule == "all_success" for t in dag.tasks)
    assert dag.timetable.summary == "0 10 2 1,7 *"
    assert str(dag.timetable._timezone.name) == "Asia/Shanghai"


def test_daily_extract_dag_delivers_only_what_it_built_and_always_follows_up(dagbag):
    dag = dagbag.dags["province_extract_daily"]
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    # The follow-up of earlier packages does not wait for today's build (its gate may hold it
    # back), and no all_done leaf can turn a failed build into a successful run.
    assert downstream == {
        "build_extract": {"deliver_extract"},
        "deliver_extract": set(),
        "follow_up_acknowledgements": set(),
    }
    assert all(t.trigger_rule == "all_success" for t in dag.tasks)
    assert dag.timetable.summary == "0 6 * * *"
