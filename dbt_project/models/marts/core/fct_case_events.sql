-- The timeline of each matter: every handling event of its petitions
-- (duplicate registrations included, flagged) and every status its grid
-- event went through, in time order. Hotline matters have no event feed (the
-- export carries states, not events): their timeline is received_at and
-- closed_at in fct_cases.
with petition_events as (

    select
        map.case_id,
        'petition' as event_source,
        events.petition_no as source_record_id,
        events.seq as source_seq,
        events.event_type,
        events.event_at,
        events.unit_code,
        events.from_unit_code,
        events.rating,
        events.handler_code,
        map.is_duplicate_registration as is_from_duplicate_registration
    from {{ ref('stg_online__petition_events') }} as events
    inner join {{ ref('int_matters__petition_map') }} as map
        on
            map.record_source = 'petition'
            and events.petition_no = map.source_record_id

),

grid_events as (

    select
        map.case_id,
        'grid' as event_source,
        history.event_id as source_record_id,
        cast(row_number() over (
            partition by history.event_id order by history.source_updated_at, history.status
        ) as integer) as source_seq,
        '网格:' || history.status as event_type,
        history.source_updated_at as event_at,
        'XZ' || left(events.grid_code, 9) as unit_code,
        cast(null as text) as from_unit_code,
        cast(null as text) as rating,
        cast(null as text) as handler_code,
        false as is_from_duplicate_registration
    from {{ ref('stg_grid__event_status_history') }} as history
    inner join {{ ref('stg_grid__screening_events') }} as events
        on history.event_id = events.event_id
    inner join {{ ref('int_matters__petition_map') }} as map
        on
            map.record_source = 'grid'
            and history.event_id = map.source_record_id

),

timeline as (

    select * from petition_events
    union all
    select * from grid_events

)

select
    case_id,
    cast(row_number() over by_case as integer) as event_number,
    event_source,
    source_record_id,
    source_seq,
    event_type,
    event_at,
    cast(event_at as date) as event_date,
    cast(date_trunc('month', event_at) as date) as event_month,
    unit_code,
    from_unit_code,
    rating,
    handler_code,
    is_from_duplicate_registration,
    lag(event_at) over by_case as previous_event_at
from timeline
window by_case as (partition by case_id order by event_at, event_source, source_record_id, source_seq)
