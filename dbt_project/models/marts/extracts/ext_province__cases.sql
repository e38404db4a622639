-- Matters as the provincial bureau receives them: no personal data, regions to town level.
select
    case_id,
    channel,
    matter_type,
    category_code,
    category_name,
    district_code,
    town_code,
    town_name,
    received_date,
    closed_date,
    status,
    working_days_to_close,
    is_on_time,
    is_satisfied
from {{ ref('fct_cases') }}
