-- The words of each petition and grid dispute, beside the fields the risk
-- model clusters them by (place, category, person, group size). The texts
-- were scrubbed of the petitioner's name, address, phone and ID numbers on
-- ingestion; they still are citizens' own words, so reports print only
-- figures and labels derived from them, never the texts. 12345 work orders
-- are service requests, kept out like in the warning ledger.
select
    cases.case_id,
    cases.matter_source,
    cases.received_date,
    cases.district_code,
    cases.district_name,
    cases.town_code,
    cases.town_name,
    cases.grid_code,
    cases.category_code,
    cases.category_name,
    cases.top_category_code,
    cases.person_key,
    cases.group_size,
    coalesce(petitions.title, '') as title,
    coalesce(petitions.content, events.description, '') as content  -- noqa: RF04
from {{ ref('fct_cases') }} as cases
left join {{ ref('stg_online__petitions') }} as petitions
    on cases.matter_source = 'petition' and cases.petition_no = petitions.petition_no
left join {{ ref('stg_grid__screening_events') }} as events
    on cases.matter_source = 'grid' and cases.grid_event_id = events.event_id
where cases.matter_source in ('petition', 'grid')
