-- Handling units: city bureaus, district/county governments and town/street
-- offices, with the region they answer for.
select
    departments.department_code,
    departments.department_name,
    departments.kind as department_kind,
    departments.region_code,
    region.region_name,
    region.district_code,
    region.district_name,
    departments.department_code = 'SZ00' as is_petition_bureau
from {{ ref('departments') }} as departments
left join {{ ref('dim_region') }} as region
    on departments.region_code = region.region_code
