-- The seed summary's petition indicators for every month and every half-year
-- (DOMAIN.md definitions; rules and parameters live in the upstream models
-- and the policy seeds). Periods are by day of registration.
with cases as (

    select
        cases.*,
        calendar.half_year,
        {{ half_year_start('cases.received_date') }} as half_year_start,
        previous.callback_result as repeat_of_callback_result
    from {{ ref('fct_cases') }} as cases
    inner join {{ ref('dim_date') }} as calendar
        on cases.received_date = calendar.date_day
    left join {{ ref('int_petitions__judged') }} as judged
        on cases.petition_no = judged.petition_no
    left join {{ ref('fct_cases') }} as previous
        on previous.case_id = 'XF-' || judged.repeat_of_petition_no
    where cases.is_petition

),

periods as (

    select
        'month' as period_kind,
        cases.received_month as period_start,
        cases.*
    from cases
    union all
    select
        'half_year' as period_kind,
        cases.half_year_start as period_start,
        cases.*
    from cases

)

select
    period_kind,
    period_start,
    count(*) as petitions_received,
    count(*) filter (where is_online) as online_petitions,
    count(*) filter (where is_repeat) as repeat_petitions,
    count(*) filter (where is_repeat and repeat_of_callback_result = '不满意')
        as repeats_after_unsatisfied_handling,
    count(*) filter (where is_first_petition) as first_petitions,
    count(*) filter (where is_resolved_at_first_handling is not null) as first_petitions_judged,
    count(*) filter (where is_resolved_at_first_handling) as first_petitions_resolved,
    count(*) filter (where is_satisfied is not null) as petitions_rated,
    count(*) filter (where is_satisfied) as petitions_satisfied,
    count(*) filter (where is_group_petition) as group_petitions,
    count(*) filter (where is_escalated) as escalated_petitions,
    count(*) filter (where status = '不予受理') as petitions_not_accepted,
    count(*) filter (where closed_at is not null and status <> '不予受理') as petitions_answered,
    avg(working_days_to_close) filter (where status <> '不予受理') as mean_working_days_to_answer,
    avg(cast(closed_at as date) - accepted_date) filter (where status <> '不予受理') as mean_days_to_answer,
    count(*) filter (where is_on_time) as petitions_answered_on_time
from periods
group by period_kind, period_start
