-- Monthly volumes per town (matters received that month), by source and kind.
select
    received_month as stat_month,
    town_code,
    max(district_code) as district_code,
    max(town_name) as town_name,
    count(*)::integer as received_count,
    count(*) filter (where matter_source = 'petition')::integer as petition_count,
    count(*) filter (where matter_source = 'hotline')::integer as hotline_count,
    count(*) filter (where matter_source = 'grid')::integer as grid_count,
    count(*) filter (where is_repeat)::integer as repeat_count,
    count(*) filter (where is_group_petition)::integer as group_petition_count,
    count(*) filter (where is_escalated)::integer as escalated_count,
    count(*) filter (where closed_date is not null)::integer as closed_count,
    count(*) filter (where is_on_time)::integer as on_time_count
from {{ ref('fct_cases') }}
-- Every matter has a town (fct_cases tests town_code not null), so the towns add up to the month.
group by received_month, town_code
