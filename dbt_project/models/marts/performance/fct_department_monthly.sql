-- Per handling unit and month: matters received as first handling unit,
-- hand-overs out and bounces, overdue matters (due in the month and not
-- closed by then; and the stock still open past due at month end), mean working days and
-- satisfaction of matters closed, and the 12345 三率 (响应率, 解决率, 满意率
-- and the weighted composite from hotline_kpi_weights) for work orders
-- dispatched to the unit.
with months as (

    select
        month_start,
        month_end,
        as_of_date,
        -- Judgements "as at month end" never look past the data's own as-of date.
        least(month_end, as_of_date) as judged_on
    from {{ ref('dim_month') }}

),

grid as (

    select
        departments.department_code,
        months.month_start,
        months.month_end,
        months.judged_on
    from {{ ref('dim_department') }} as departments
    cross join months

),

-- Not materialized: five parts read it, each a few columns, and a
-- materialized copy of all columns of every matter cost more than five scans.
cases as not materialized (

    select * from {{ ref('fct_cases') }}

),

received as (

    select
        first_handling_unit_code as department_code,
        received_month as month_start,
        count(*) as matters_received,
        count(*) filter (where is_petition) as petitions_received
    from cases
    where first_handling_unit_code is not null
    group by first_handling_unit_code, received_month

),

closed as (

    select
        first_handling_unit_code as department_code,
        cast(date_trunc('month', closed_at) as date) as month_start,
        count(*) as matters_closed,
        count(*) filter (where is_on_time) as matters_closed_on_time,
        count(*) filter (where not is_on_time) as matters_closed_late,
        avg(working_days_to_close) as mean_working_days_to_close,
        count(*) filter (where is_satisfied is not null) as matters_rated,
        count(*) filter (where is_satisfied) as matters_satisfied
    from cases
    where first_handling_unit_code is not null and closed_at is not null
    group by first_handling_unit_code, cast(date_trunc('month', closed_at) as date)

),

fell_due as (

    -- Matters whose due date fell in the month, has passed by the data's
    -- as-of date, and that were not closed by it.
    select
        first_handling_unit_code as department_code,
        cast(date_trunc('month', due_date) as date) as month_start,
        count(*) filter (
            where closed_at is null or cast(closed_at as date) > due_date
        ) as overdue
    from cases
    where
        first_handling_unit_code is not null
        and due_date < (select max(spine.as_of_date) from months as spine)
    group by first_handling_unit_code, cast(date_trunc('month', due_date) as date)

),

handovers as (

    select
        from_unit_code as department_code,
        transferred_month as month_start,
        count(*) filter (where transfer_type = '转送') as transferred_out,
        count(*) filter (where is_bounce) as bounced
    from {{ ref('fct_case_transfers') }}
    where from_unit_code is not null
    group by from_unit_code, transferred_month

),

open_overdue as (

    -- Matters still open at the end of the month whose due date had passed:
    -- the matters closed after their due date or not closed, against the
    -- months (not the departments times the months, which paired every
    -- department's months with every matter: 20 s of sorting at 10 million
    -- work orders).
    select
        cases.first_handling_unit_code as department_code,
        months.month_start,
        count(*) as open_overdue_at_month_end
    from cases
    inner join months
        on
            cases.received_date <= months.judged_on
            and cases.due_date < months.judged_on
            and (cases.closed_at is null or cast(cases.closed_at as date) > months.judged_on)
    where
        cases.first_handling_unit_code is not null
        and (cases.closed_at is null or cast(cases.closed_at as date) > cases.due_date)
    group by cases.first_handling_unit_code, months.month_start

),

hotline as (

    -- 三率 of the work orders received in the month. Response: the order did
    -- not run past its limit (closed in time, or still within it at month end,
    -- or at the data's as-of date for the current month).
    -- Against the 32 months, not the departments times the months (that
    -- join sorted every work order: 16 s at 10 million); the final join
    -- keeps the departments of dim_department.
    select
        cases.first_handling_unit_code as department_code,
        months.month_start,
        count(*) as work_orders,
        count(*) filter (
            where
            cases.is_on_time
            or (cases.closed_at is null and cases.due_date >= months.judged_on)
        ) as work_orders_responded,
        count(*) filter (where cases.status = '已办结') as work_orders_resolved,
        count(*) filter (where cases.callback_result in ('满意', '基本满意', '不满意')) as work_orders_rated,
        count(*) filter (where cases.callback_result = '满意') as work_orders_satisfied,
        count(*) filter (where cases.callback_result = '基本满意') as work_orders_basically_satisfied
    from cases
    inner join months on cases.received_month = months.month_start
    where cases.matter_source = 'hotline' and cases.first_handling_unit_code is not null
    group by cases.first_handling_unit_code, months.month_start

),

weights as (

    select
        max(weight) filter (where kpi = 'response') as response_weight,
        max(weight) filter (where kpi = 'resolution') as resolution_weight,
        max(weight) filter (where kpi = 'satisfaction') as satisfaction_weight
    from {{ ref('hotline_kpi_weights') }}

),

rates as (

    select
        hotline.*,
        cast(hotline.work_orders_responded as numeric) / nullif(hotline.work_orders, 0) as response_rate,
        cast(hotline.work_orders_resolved as numeric) / nullif(hotline.work_orders, 0) as resolution_rate,
        (
            hotline.work_orders_satisfied
            + {{ policy_value('hotline_basic_satisfied_credit') }} * hotline.work_orders_basically_satisfied
        ) / nullif(hotline.work_orders_rated, 0) as hotline_satisfaction_rate
    from hotline

)

select
    grid.department_code,
    grid.month_start,
    coalesce(received.matters_received, 0) as matters_received,
    coalesce(received.petitions_received, 0) as petitions_received,
    coalesce(handovers.transferred_out, 0) as transferred_out,
    coalesce(handovers.bounced, 0) as bounced,
    coalesce(closed.matters_closed, 0) as matters_closed,
    coalesce(closed.matters_closed_on_time, 0) as matters_closed_on_time,
    coalesce(closed.matters_closed_late, 0) as matters_closed_late,
    coalesce(open_overdue.open_overdue_at_month_end, 0) as open_overdue_at_month_end,
    coalesce(fell_due.overdue, 0) as overdue,
    cast(round(closed.mean_working_days_to_close, 2) as numeric(8, 2)) as mean_working_days_to_close,
    cast(round(
        cast(closed.matters_satisfied as numeric) / nullif(closed.matters_rated, 0), 4
    ) as numeric(7, 4)) as satisfaction_rate,
    coalesce(rates.work_orders, 0) as work_orders_received,
    cast(round(rates.response_rate, 4) as numeric(7, 4)) as hotline_response_rate,
    cast(round(rates.resolution_rate, 4) as numeric(7, 4)) as hotline_resolution_rate,
    cast(round(rates.hotline_satisfaction_rate, 4) as numeric(7, 4)) as hotline_satisfaction_rate,
    cast(round(
        weights.response_weight * rates.response_rate
        + weights.resolution_weight * rates.resolution_rate
        + weights.satisfaction_weight * rates.hotline_satisfaction_rate,
        4
    ) as numeric(7, 4)) as hotline_composite_score
from grid
cross join weights
left join received
    on grid.department_code = received.department_code and grid.month_start = received.month_start
left join closed
    on grid.department_code = closed.department_code and grid.month_start = closed.month_start
left join handovers
    on grid.department_code = handovers.department_code and grid.month_start = handovers.month_start
left join fell_due
    on grid.department_code = fell_due.department_code and grid.month_start = fell_due.month_start
left join open_overdue
    on grid.department_code = open_overdue.department_code and grid.month_start = open_overdue.month_start
left join rates
    on grid.department_code = rates.department_code and grid.month_start = rates.month_start
