-- Monthly handling figures per first handling unit (matters received that month).
-- Matters not yet assigned to a unit get their own row, so the rows of a month
-- add up to the month's matters.
select
    cases.received_month as stat_month,
    coalesce(cases.first_handling_unit_code, 'UNASSIGNED') as department_code,
    coalesce(max(departments.department_name), '未分派') as department_name,
    count(*)::integer as received_count,
    count(*) filter (where cases.closed_date is not null)::integer as closed_count,
    count(*) filter (where cases.is_on_time)::integer as on_time_count,
    count(*) filter (where cases.is_satisfied is not null)::integer as callback_count,
    count(*) filter (where cases.is_satisfied)::integer as satisfied_count,
    coalesce(sum(cases.bounce_count), 0)::integer as bounce_count
from {{ ref('fct_cases') }} as cases
left join {{ ref('dim_department') }} as departments
    on cases.first_handling_unit_code = departments.department_code
group by cases.received_month, coalesce(cases.first_handling_unit_code, 'UNASSIGNED')
