-- Headline figures of the monthly risk-warning report, one row per month of receipt.
with monthly as (

    select
        received_month as month_start,
        count(*) as cases_received,
        count(*) filter (where status = '已办结') as cases_closed,
        count(*) filter (where is_on_time) as cases_closed_on_time,
        count(*) filter (where is_satisfied is not null) as cases_rated,
        count(*) filter (where is_satisfied) as cases_satisfied
    from {{ ref('fct_cases') }}
    group by received_month

)

select
    current_month.month_start,
    current_month.cases_received,
    current_month.cases_closed,
    cast(
        round(cast(current_month.cases_closed as numeric) / nullif(current_month.cases_received, 0), 4)
        as numeric(7, 4)
    ) as closed_rate,
    cast(
        round(cast(current_month.cases_closed_on_time as numeric) / nullif(current_month.cases_closed, 0), 4)
        as numeric(7, 4)
    ) as on_time_rate,
    cast(
        round(cast(current_month.cases_satisfied as numeric) / nullif(current_month.cases_rated, 0), 4)
        as numeric(7, 4)
    ) as satisfaction_rate,
    previous_month.cases_received as prev_month_received,
    previous_year.cases_received as prev_year_received
from monthly as current_month
left join monthly as previous_month
    on previous_month.month_start = cast(current_month.month_start - interval '1 month' as date)
left join monthly as previous_year
    on previous_year.month_start = cast(current_month.month_start - interval '1 year' as date)
