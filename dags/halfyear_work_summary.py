"""Airflow DAG `halfyear_work_summary`: the 半年工作总结, gated, rendered and mailed.

At 10:00 on 2 July and 2 January, for the half-year just ended (after the
monthly report of its last month, at 08:00, whose risk-model run the summary
counts): the Great Expectations gate on the half-year's last month runs
first; only when it passes is the summary rendered (figures from the warehouse, words from
report_templates/prose/<half-year>.yml, archived by revision) and mailed to
the leaders once per revision and recipient through the delivery ledger.
A missing or wrong prose file fails the render with every problem listed.
`xinfang report half-year 2025H1` does the same on demand.
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="halfyear_work_summary",
    schedule=schedules.HALFYEAR_SUMMARY_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["publish", "report"],
    doc_md=__doc__,
)
def halfyear_work_summary():
    # Task bodies import their code when they run, keeping DAG parsing light.
    @task
    def quality_gate(logical_date=None) -> dict:
        from xinfang.orchestration import tasks

        return tasks.halfyear_quality_gate(logical_date)

    @task
    def render_summary(logical_date=None) -> dict:
        from xinfang.orchestration import tasks

        return tasks.publish_halfyear_summary(logical_date)

    @task
    def mail_summary(published: dict) -> dict:
        from xinfang.orchestration import tasks

        return tasks.distribute_halfyear_summary(published)

    published = render_summary()
    quality_gate() >> published
    mail_summary(published)


halfyear_work_summary()
