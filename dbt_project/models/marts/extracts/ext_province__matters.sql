-- Matters as the provincial bureau receives them: no names, ID numbers, phones
-- or addresses; regions to town level; the person under the province's key.
-- A view, so the extract always reads the province keys refreshed just before it.
with cases as (

    select * from {{ ref('fct_cases') }}

),

city as (

    select region_code as city_code
    from {{ ref('dim_region') }}
    where region_level = 1

),

province_keys as (

    select * from {{ ref('stg_pseudonyms__province_person_keys') }}

)

select
    cases.case_id as matter_id,
    city.city_code,
    cases.matter_source,
    cases.channel,
    cases.matter_type,
    cases.category_code,
    cases.category_name,
    cases.district_code,
    cases.town_code,
    cases.town_name,
    cases.first_handling_unit_code as department_code,
    cases.received_date,
    cases.due_date,
    cases.closed_date,
    cases.status,
    cases.working_days_to_close,
    cases.sla_limit_days,
    cases.is_on_time,
    cases.is_first_petition,
    cases.is_repeat,
    cases.is_resolved_at_first_handling,
    cases.is_satisfied,
    cases.has_review,
    cases.is_escalated,
    cases.is_group_petition,
    cases.group_size,
    cases.transfer_count,
    cases.bounce_count,
    province_keys.province_person_key as person_key
from cases
cross join city
left join province_keys on cases.person_key = province_keys.person_key
