{{ config(materialized='table') }}

-- Matters first raised as petitions, one row each (duplicate registrations
-- folded into their matter), in the shape of fct_cases. A petition converted
-- from a 12345 work order or escalated from a grid event carries that
-- record's number: the matter is this row, not a second one.
with registrations as (

    select
        matter_petition_no,
        count(*) as registration_count
    from {{ ref('int_petitions__registrations') }}
    group by matter_petition_no

),

sla as (

    select * from {{ ref('sla_policy') }}
    where matter_source = 'petition' and matter_type = '信访事项'

),

calendar as (

    select
        date_day,
        workday_number
    from {{ ref('dim_date') }}

),

petitions as (

    select
        petitions.*,
        handling.accepted_at,
        handling.not_accepted_at,
        handling.first_handling_unit_code,
        handling.first_reply_at,
        handling.last_rating,
        handling.review_requested_at,
        handling.review_answered_at,
        handling.rereview_requested_at,
        handling.rereview_answered_at,
        handling.settled_at,
        handling.is_escalated,
        handling.is_extended,
        handling.transfer_count,
        handling.bounce_count,
        judged.is_repeat,
        judged.is_first_petition,
        judged.is_resolved_at_first_handling,
        registrations.registration_count,
        -- Closed means answered (答复); a petition not accepted is closed by that decision.
        coalesce(handling.first_reply_at, handling.not_accepted_at) as closed_at
    from {{ ref('stg_online__petitions') }} as petitions
    inner join registrations
        on petitions.petition_no = registrations.matter_petition_no
    inner join {{ ref('int_petitions__judged') }} as judged
        on petitions.petition_no = judged.petition_no
    left join {{ ref('int_petitions__handling') }} as handling
        on petitions.petition_no = handling.petition_no

)

select
    'XF-' || petitions.petition_no as case_id,
    'petition' as matter_source,
    petitions.channel,
    petitions.petition_no as source_record_id,
    petitions.petition_no,
    petitions.hotline_work_order_no as work_order_no,
    petitions.grid_event_id,
    cast(petitions.registration_count as integer) as registration_count,
    petitions.petitioner_key as person_key,
    purposes.purpose_name as matter_type,
    petitions.purpose_code,
    petitions.category_code,
    petitions.town_code,
    petitions.grid_code,
    petitions.first_handling_unit_code,
    case
        when petitions.not_accepted_at is not null then '不予受理'
        when petitions.rereview_requested_at is not null and petitions.rereview_answered_at is null then '复核中'
        when petitions.review_requested_at is not null and petitions.review_answered_at is null then '复查中'
        when petitions.first_reply_at is not null then '已办结'
        else '办理中'
    end as status,
    petitions.registered_at as received_at,
    cast(petitions.accepted_at as date) as accepted_date,
    case
        when petitions.accepted_at is not null then
            cast(petitions.accepted_at as date)
            + sla.limit_days
            + case when petitions.is_extended then sla.extension_days else 0 end
    end as due_date,
    petitions.closed_at,
    petitions.settled_at,
    closed_day.workday_number - received_day.workday_number as working_days_to_close,
    sla.day_basis as sla_day_basis,
    sla.limit_days as sla_limit_days,
    petitions.is_first_petition,
    petitions.is_repeat,
    petitions.is_resolved_at_first_handling,
    petitions.last_rating as callback_result,
    petitions.review_requested_at is not null as has_review,
    petitions.rereview_requested_at is not null as has_rereview,
    petitions.is_escalated,
    petitions.is_extended,
    petitions.group_size,
    cast(petitions.transfer_count as integer) as transfer_count,
    cast(petitions.bounce_count as integer) as bounce_count,
    petitions.batch_id as source_batch_id
from petitions
cross join sla
left join {{ ref('purposes') }} as purposes
    on petitions.purpose_code = purposes.purpose_code
left join calendar as received_day
    on petitions.registered_date = received_day.date_day
left join calendar as closed_day
    on cast(petitions.closed_at as date) = closed_day.date_day
