-- The petition indicators of every month with month-on-month and
-- year-on-year changes (figures of the monthly report and the half-year
-- summary's monthly trend).
with counts as (

    select * from {{ ref('int_indicators__petitions') }}
    where period_kind = 'month'

),

rated as (

    select
        counts.*,
        {{ indicator_rates('counts') }}
    from counts

)

select
    current_month.period_start as month_start,
    current_month.petitions_received,
    current_month.online_petitions,
    current_month.repeat_petitions,
    current_month.first_petitions,
    current_month.first_petitions_judged,
    current_month.first_petitions_resolved,
    current_month.petitions_rated,
    current_month.petitions_satisfied,
    current_month.group_petitions,
    current_month.escalated_petitions,
    current_month.petitions_not_accepted,
    current_month.online_share,
    current_month.repeat_share,
    current_month.first_handling_resolution_rate,
    current_month.satisfaction_rate,
    cast(round(current_month.mean_working_days_to_answer, 1) as numeric(6, 1)) as mean_working_days_to_answer,
    previous_month.petitions_received as petitions_received_prev_month,
    previous_year.petitions_received as petitions_received_prev_year,
    {{ indicator_changes('current_month', 'previous_month', 'mom') }},
    {{ indicator_changes('current_month', 'previous_year', 'yoy') }}
from rated as current_month
left join rated as previous_month
    on previous_month.period_start = cast(current_month.period_start - interval '1 month' as date)
left join rated as previous_year
    on previous_year.period_start = cast(current_month.period_start - interval '1 year' as date)
