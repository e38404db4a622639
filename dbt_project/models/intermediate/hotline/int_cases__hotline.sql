-- 12345 work orders as matters, in the shape of fct_cases. Orders converted
-- to petitions (12345转办) are left out: the petition that points at them is
-- the matter. The caller's phone pseudonym is replaced by the person key of
-- the petitions when the same phone appears there (cross-channel linking).
with work_orders as (

    select * from {{ ref('int_hotline__work_orders') }}

),

petition_people as (

    select
        petitioner_phone_key as phone_key,
        min(petitioner_key) as person_key
    from {{ ref('stg_online__petitions') }}
    where petitioner_phone_key is not null
    group by petitioner_phone_key

),

converted as (

    select hotline_work_order_no as work_order_no
    from {{ ref('stg_online__petitions') }}
    where hotline_work_order_no is not null

),

towns as (

    select
        district_name,
        town_name,
        town_code
    from {{ ref('dim_region') }}
    where region_level = 3

),

calendar as (

    select
        date_day,
        is_workday,
        workday_number
    from {{ ref('dim_date') }}

)

select
    'HL-' || work_orders.work_order_no as case_id,
    'hotline' as matter_source,
    '12345热线' as channel,
    work_orders.work_order_no as source_record_id,
    cast(null as text) as petition_no,
    work_orders.work_order_no,
    cast(null as text) as grid_event_id,
    1 as registration_count,
    coalesce(petition_people.person_key, work_orders.caller_key) as person_key,
    work_orders.matter_type,
    cast(null as text) as purpose_code,
    category.category_code,
    towns.town_code,
    cast(null as text) as grid_code,
    departments.department_code as first_handling_unit_code,
    work_orders.status,
    work_orders.received_at,
    work_orders.received_date as accepted_date,
    due_day.date_day as due_date,
    work_orders.closed_at,
    work_orders.closed_at as settled_at,
    closed_day.workday_number - received_day.workday_number as working_days_to_close,
    sla.day_basis as sla_day_basis,
    sla.limit_days as sla_limit_days,
    cast(null as boolean) as is_first_petition,
    cast(null as boolean) as is_repeat,
    cast(null as boolean) as is_resolved_at_first_handling,
    work_orders.callback_result,
    false as has_review,
    false as has_rereview,
    false as is_escalated,
    false as is_extended,
    1 as group_size,
    0 as transfer_count,
    0 as bounce_count,
    work_orders.batch_id as source_batch_id
from work_orders
left join petition_people
    on work_orders.caller_key = petition_people.phone_key
left join {{ ref('dim_category') }} as category
    on work_orders.category_name = category.category_name
left join towns
    on
        work_orders.district_name = towns.district_name
        and work_orders.town_name = towns.town_name
left join {{ ref('departments') }} as departments
    on work_orders.handling_unit_name = departments.department_name
left join {{ ref('sla_policy') }} as sla
    on
        sla.matter_source = 'hotline'
        and work_orders.matter_type = sla.matter_type
left join calendar as received_day
    on work_orders.received_date = received_day.date_day
left join calendar as closed_day
    on work_orders.closed_date = closed_day.date_day
left join calendar as due_day
    on
        due_day.is_workday
        and due_day.workday_number = received_day.workday_number + sla.limit_days
where work_orders.work_order_no not in (select converted.work_order_no from converted)
