"""Airflow DAG `monthly_risk_report`: audit, then publish the month's report and extract.

At 08:00 on the 2nd of each month, for the previous month: the Great
Expectations gate runs first; only when it passes does the risk model run
(forecasts, hotspots, tagging, 红黄蓝 warnings and last month's follow-up),
the 月度风险预警报告 get rendered (the full report and one edition per
department concerned, archived by month and revision) and mailed (leaders the
full report, each department its edition; once per revision and recipient,
through the delivery ledger), and the provincial extract built and delivered.
A failed mail task names every undelivered recipient; `xinfang report resend`
sends again by hand.
"""

from airflow.sdk import dag, task

from xinfang.orchestration import schedules


@dag(
    dag_id="monthly_risk_report",
    schedule=schedules.MONTHLY_REPORT_SCHEDULE,
    start_date=schedules.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=schedules.default_args(),
    tags=["publish", "report", "extract"],
    doc_md=__doc__,
)
def monthly_risk_report():
    # Task bodies import their code when they run, keeping DAG parsing light.
    @task
    def quality_gate(logical_date=None) -> dict:
        from xinfang.orchestration import tasks

        return tasks.quality_gate(logical_date)

    @task
    def risk_model(logical_date=None) -> dict:
        from xinfang.orchestration import tasks

        return tasks.run_risk_model(logical_date)

    @task
    def render_report(logical_date=None) -> list:
        from xinfang.orchestration import tasks

        return tasks.publish_report(logical_date)

    @task
    def mail_report(published: list) -> dict:
        from xinfang.orchestration import tasks

        return tasks.distribute_report(published)

    @task
    def build_extract(logical_date=None) -> dict:
        from xinfang.orchestration import tasks

        return tasks.build_province_extract(logical_date)

    @task
    def deliver_extract(built: dict) -> dict:
        from xinfang.orchestration import tasks

        return tasks.deliver_province_extract(built)

    gate = quality_gate()
    model = risk_model()
    published = render_report()
    built = build_extract()
    gate >> [model, built]
    model >> published
    mail_report(published)
    deliver_extract(built)


monthly_risk_report()
