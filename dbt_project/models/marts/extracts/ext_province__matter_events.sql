-- Handling steps of each matter for the province: which unit did what, when.
-- Staff accounts and ratings' free text stay at the city.
select
    case_id as matter_id,
    event_number,
    event_type,
    event_at,
    event_date,
    unit_code as department_code,
    from_unit_code as from_department_code
from {{ ref('fct_case_events') }}
where not is_from_duplicate_registration
