{{ config(materialized='table') }}

-- Screening events that stayed with the grid (not escalated to a petition):
-- matters of their own, in the shape of fct_cases. An escalated event is
-- part of the petition that points at it, once that petition is loaded: until
-- then (the platform delivers it a day later, or it predates the history
-- loaded) the event stays a grid matter, as int_matters__petition_map has it.
with escalated as (

    select grid_event_id from {{ ref('stg_online__petitions') }}
    where grid_event_id is not null

),

sla as (

    select * from {{ ref('sla_policy') }}
    where matter_source = 'grid' and matter_type = '矛盾纠纷'

),

calendar as (

    select
        date_day,
        workday_number
    from {{ ref('dim_date') }}

)

select
    'WG-' || events.event_id as case_id,
    'grid' as matter_source,
    '网格排查' as channel,
    events.event_id as source_record_id,
    cast(null as text) as petition_no,
    cast(null as text) as work_order_no,
    events.event_id as grid_event_id,
    1 as registration_count,
    cast(null as text) as person_key,
    '矛盾纠纷' as matter_type,
    cast(null as text) as purpose_code,
    events.category_code,
    events.town_code,
    events.grid_code,
    'XZ' || events.town_code as first_handling_unit_code,
    case events.status
        when '已化解' then '已办结'
        else '办理中'
    end as status,
    events.reported_at as received_at,
    events.reported_date as accepted_date,
    events.reported_date + sla.limit_days as due_date,
    events.resolved_at as closed_at,
    events.resolved_at as settled_at,
    resolved_day.workday_number - reported_day.workday_number as working_days_to_close,
    sla.day_basis as sla_day_basis,
    sla.limit_days as sla_limit_days,
    cast(null as boolean) as is_first_petition,
    cast(null as boolean) as is_repeat,
    cast(null as boolean) as is_resolved_at_first_handling,
    cast(null as text) as callback_result,
    false as has_review,
    false as has_rereview,
    false as is_escalated,
    false as is_extended,
    events.people_involved as group_size,
    0 as transfer_count,
    0 as bounce_count,
    events.batch_id as source_batch_id
from {{ ref('stg_grid__screening_events') }} as events
cross join sla
left join calendar as reported_day
    on events.reported_date = reported_day.date_day
left join calendar as resolved_day
    on events.resolved_date = resolved_day.date_day
where events.event_id not in (select escalated.grid_event_id from escalated)
