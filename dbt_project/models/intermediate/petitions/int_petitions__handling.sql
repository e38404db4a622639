{{ config(materialized='table') }}

-- What happened to each petition, read from its handling history: acceptance,
-- the first handling unit (首办单位: the first unit assigned that did not hand
-- it back), reply, call-back rating, reviews, escalation, extension,
-- transfers, bounces, and when the matter was settled: answered, and any
-- 复查/复核 asked for answered too.
with events as (

    select * from {{ ref('stg_online__petition_events') }}

),

first_units as (

    select
        petition_no,
        coalesce(
            (
                array_agg(to_unit_code order by seq) filter (
                    where transfer_type = '交办' and not is_handed_back
                )
            )[1],
            (array_agg(to_unit_code order by seq) filter (where transfer_type = '交办'))[1]
        ) as first_handling_unit_code
    from {{ ref('int_petitions__transfers') }}
    group by petition_no

),

handling as (

    select
        petition_no,
        min(event_at) filter (where event_type = '受理') as accepted_at,
        min(event_at) filter (where event_type = '不予受理') as not_accepted_at,
        (array_agg(unit_code order by seq desc) filter (where event_type in ('交办', '转送')))[1]
            as last_handling_unit_code,
        min(event_at) filter (where event_type = '答复') as first_reply_at,
        (array_agg(rating order by seq desc) filter (where event_type = '回访' and rating is not null))[1]
            as last_rating,
        min(event_at) filter (where event_type = '回访') as first_callback_at,
        min(event_at) filter (where event_type = '复查申请') as review_requested_at,
        min(event_at) filter (where event_type = '复查答复') as review_answered_at,
        min(event_at) filter (where event_type = '复核申请') as rereview_requested_at,
        min(event_at) filter (where event_type = '复核答复') as rereview_answered_at,
        coalesce(bool_or(event_type = '越级'), false) as is_escalated,
        coalesce(bool_or(event_type = '延期'), false) as is_extended,
        count(*) filter (where event_type = '转送') as transfer_count,
        count(*) filter (where event_type = '退回') as bounce_count,
        max(event_at) as last_event_at,
        count(*) as event_count
    from events
    group by petition_no

)

select
    handling.*,
    first_units.first_handling_unit_code,
    case
        when handling.not_accepted_at is not null then handling.not_accepted_at
        when handling.rereview_requested_at is not null then handling.rereview_answered_at
        when handling.review_requested_at is not null then handling.review_answered_at
        else handling.first_reply_at
    end as settled_at
from handling
left join first_units
    on handling.petition_no = first_units.petition_no
