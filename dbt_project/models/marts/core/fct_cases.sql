-- One row per matter. Working days count the official calendar's workdays
-- after the day of receipt up to and including the day of closing, so a
-- matter closed the day it arrived took 0 working days.
with work_orders as (

    select * from {{ ref('stg_hotline__work_orders') }}

),

calendar as (

    select
        date_day,
        is_workday
    from {{ ref('dim_date') }}

),

timed as (

    select
        work_orders.work_order_no,
        (
            select count(*)
            from calendar
            where
                calendar.is_workday
                and calendar.date_day > work_orders.received_date
                and calendar.date_day <= work_orders.closed_date
        ) as working_days_to_close
    from work_orders

)

select
    'HL-' || work_orders.work_order_no as case_id,
    'hotline' as channel,
    work_orders.work_order_no as source_record_id,
    false as is_online,
    work_orders.person_key,
    work_orders.matter_type,
    category.category_code,
    category.category_name,
    category.top_category_code,
    category.top_category_name,
    region.district_code,
    region.district_name,
    region.town_code,
    region.town_name,
    work_orders.handling_unit,
    work_orders.status,
    work_orders.received_at,
    work_orders.received_date,
    cast(date_trunc('month', work_orders.received_date) as date) as received_month,
    work_orders.closed_at,
    work_orders.closed_date,
    cast(case when work_orders.closed_date is not null then timed.working_days_to_close end as integer)
        as working_days_to_close,
    sla.limit_working_days as sla_working_days,
    case
        when work_orders.closed_date is null then null
        else timed.working_days_to_close <= sla.limit_working_days
    end as is_on_time,
    work_orders.callback_result,
    case
        when work_orders.callback_result in ('满意', '基本满意') then true
        when work_orders.callback_result = '不满意' then false
    end as is_satisfied
from work_orders
inner join timed
    on work_orders.work_order_no = timed.work_order_no
left join {{ ref('dim_category') }} as category
    on work_orders.category_name = category.category_name
left join {{ ref('dim_region') }} as region
    on
        work_orders.district_name = region.district_name
        and work_orders.town_name = region.town_name
left join {{ ref('sla_policy') }} as sla
    on
        sla.channel = 'hotline'
        and work_orders.matter_type = sla.matter_type
