-- Towns with their district: the finest level reports and extracts show.
select
    town.region_code as town_code,
    town.region_name as town_name,
    district.region_code as district_code,
    district.region_name as district_name
from {{ ref('regions') }} as town
inner join {{ ref('regions') }} as district
    on town.parent_code = district.region_code
where town.level = 3
