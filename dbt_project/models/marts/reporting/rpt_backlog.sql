-- The backlog (积案) at the end of every month: petitions still unresolved
-- (unanswered, or a 复查/复核 pending) `backlog_min_age_days` or more after
-- acceptance, oldest first, with the unit responsible and their warning
-- level (the "百日清零" clearance list).
select
    month_start,
    month_end,
    case_id,
    channel,
    category_name,
    top_category_name,
    district_name,
    town_name,
    first_handling_unit_code,
    first_handling_unit_name,
    received_date,
    age_days,
    group_size,
    repeats_in_window,
    escalated_by_month_end,
    warning_level,
    warning_reasons,
    row_number() over (partition by month_start order by age_days desc, case_id asc) as backlog_rank
from {{ ref('rpt_warning_ledger') }}
where
    matter_source = 'petition'
    and age_days >= {{ policy_value('backlog_min_age_days') }}
