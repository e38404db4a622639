-- Which matter (fct_cases.case_id) each petition and each escalated grid
-- event belongs to, so their events and hand-overs land on one matter.
select
    registrations.petition_no as source_record_id,
    'petition' as record_source,
    'XF-' || registrations.matter_petition_no as case_id,
    registrations.is_duplicate_registration
from {{ ref('int_petitions__registrations') }} as registrations

union all

select
    events.event_id as source_record_id,
    'grid' as record_source,
    coalesce(
        'XF-' || registrations.matter_petition_no,
        'WG-' || events.event_id
    ) as case_id,
    false as is_duplicate_registration
from {{ ref('stg_grid__screening_events') }} as events
left join {{ ref('stg_online__petitions') }} as petitions
    on events.event_id = petitions.grid_event_id
left join {{ ref('int_petitions__registrations') }} as registrations
    on petitions.petition_no = registrations.petition_no
