{{
    config(
        materialized='incremental',
        unique_key='case_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['matter_source', 'source_batch_id']},
            {'columns': ['work_order_no']},
            {'columns': ['received_month']},
        ],
        post_hook=[
            "{{ delete_absorbed_cases() }}",
        ],
    )
}}
-- depends_on: {{ ref('stg_online__petitions') }}
-- depends_on: {{ ref('int_hotline__work_orders') }}
-- One row per matter, whatever system it came through: petitions of every
-- channel (duplicate registrations folded in, linked hotline orders and grid
-- events absorbed), 12345 work orders that stayed with the hotline, and grid
-- screening events that stayed with the grid.
--
-- Incremental: hotline work orders, by far the largest source, are processed
-- only when a newer version arrived since the last run. Petitions and grid
-- events are rebuilt every run (tens of thousands of rows a year), because a
-- new petition can change the judgement of an older one (repeat, first-
-- handling resolution). The post-hook deletes matters that no longer exist
-- as such (a work order that became a petition, a petition that turned out
-- to be a duplicate registration).
with cases as (

    select * from {{ ref('int_cases__petitions') }}
    union all
    select * from {{ ref('int_cases__grid') }}
    union all
    select * from {{ ref('int_cases__hotline') }}
    {% if is_incremental() %}
        -- New versions of work orders, and orders whose caller has since
        -- petitioned with the same phone (their person key changes).
        where
            source_batch_id > (
                select coalesce(max(held.source_batch_id), 0)
                from {{ this }} as held
                where held.matter_source = 'hotline'
            )
            or work_order_no in (
                select orders.work_order_no
                from {{ ref('int_hotline__work_orders') }} as orders
                inner join {{ ref('stg_online__petitions') }} as petitions
                    on orders.caller_key = petitions.petitioner_phone_key
                where petitions.batch_id > (
                    select coalesce(max(held.source_batch_id), 0)
                    from {{ this }} as held
                    where held.matter_source = 'petition'
                )
            )
    {% endif %}

)

select
    cases.case_id,
    cases.matter_source,
    cases.channel,
    channels.is_online,
    channels.is_petition,
    cases.source_record_id,
    cases.petition_no,
    cases.work_order_no,
    cases.grid_event_id,
    cases.registration_count,
    cases.person_key,
    cases.matter_type,
    cases.purpose_code,
    cases.category_code,
    category.category_name,
    category.top_category_code,
    category.top_category_name,
    category.category_path,
    region.district_code,
    region.district_name,
    cases.town_code,
    region.town_name,
    cases.grid_code,
    cases.first_handling_unit_code,
    department.department_name as first_handling_unit_name,
    cases.status,
    cases.received_at,
    cast(cases.received_at as date) as received_date,
    cast(date_trunc('month', cases.received_at) as date) as received_month,
    cases.accepted_date,
    cases.due_date,
    cases.closed_at,
    cast(cases.closed_at as date) as closed_date,
    cases.settled_at,
    cast(cases.working_days_to_close as integer) as working_days_to_close,
    cases.sla_day_basis,
    cast(cases.sla_limit_days as integer) as sla_limit_days,
    case
        when cases.closed_at is null or cases.due_date is null then null
        else cast(cases.closed_at as date) <= cases.due_date
    end as is_on_time,
    cases.is_first_petition,
    cases.is_repeat,
    cases.is_resolved_at_first_handling,
    cases.callback_result,
    case
        when cases.callback_result in ('满意', '基本满意') then true
        when cases.callback_result = '不满意' then false
    end as is_satisfied,
    cases.has_review,
    cases.has_rereview,
    cases.is_escalated,
    cases.is_extended,
    cast(cases.group_size as integer) as group_size,
    channels.is_petition and cases.group_size >= {{ policy_value('group_petition_min_people') }}
        as is_group_petition,
    cases.transfer_count,
    cases.bounce_count,
    cases.source_batch_id
from cases
left join {{ ref('channels') }} as channels
    on cases.channel = channels.channel
left join {{ ref('dim_category') }} as category
    on cases.category_code = category.category_code
left join {{ ref('dim_region') }} as region
    on cases.town_code = region.region_code
left join {{ ref('dim_department') }} as department
    on cases.first_handling_unit_code = department.department_code
