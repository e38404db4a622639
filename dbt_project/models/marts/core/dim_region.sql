-- Every node of the city's region tree (city, district/county, town/street,
-- community/village, grid) with its ancestors, so facts keyed at town or grid
-- level roll up to any level with one join.
with regions as (

    select * from {{ ref('regions') }}

),

walked as (

    select
        node.region_code,
        node.region_name,
        node.level as region_level,
        node.parent_code,
        p1.region_code as p1_code,
        p1.level as p1_level,
        p2.region_code as p2_code,
        p2.level as p2_level,
        p3.region_code as p3_code,
        p3.level as p3_level,
        p4.region_code as p4_code,
        p4.level as p4_level
    from regions as node
    left join regions as p1 on node.parent_code = p1.region_code
    left join regions as p2 on p1.parent_code = p2.region_code
    left join regions as p3 on p2.parent_code = p3.region_code
    left join regions as p4 on p3.parent_code = p4.region_code

),

ancestry as (

    -- For each node, the code of its ancestor (or itself) at each level.
    select
        region_code,
        region_name,
        region_level,
        parent_code,
        case
            when region_level = 1 then region_code
            when p1_level = 1 then p1_code
            when p2_level = 1 then p2_code
            when p3_level = 1 then p3_code
            when p4_level = 1 then p4_code
        end as level1_code,
        case
            when region_level = 2 then region_code
            when p1_level = 2 then p1_code
            when p2_level = 2 then p2_code
            when p3_level = 2 then p3_code
            when p4_level = 2 then p4_code
        end as level2_code,
        case
            when region_level = 3 then region_code
            when p1_level = 3 then p1_code
            when p2_level = 3 then p2_code
            when p3_level = 3 then p3_code
            when p4_level = 3 then p4_code
        end as level3_code,
        case
            when region_level = 4 then region_code
            when p1_level = 4 then p1_code
            when p2_level = 4 then p2_code
            when p3_level = 4 then p3_code
            when p4_level = 4 then p4_code
        end as level4_code,
        case
            when region_level = 5 then region_code
            when p1_level = 5 then p1_code
            when p2_level = 5 then p2_code
            when p3_level = 5 then p3_code
            when p4_level = 5 then p4_code
        end as level5_code
    from walked

)

select
    ancestry.region_code,
    ancestry.region_name,
    ancestry.region_level,
    case ancestry.region_level
        when 1 then '市'
        when 2 then '区县'
        when 3 then '乡镇街道'
        when 4 then '社区村'
        when 5 then '网格'
    end as level_name,
    ancestry.parent_code,
    ancestry.level1_code as city_code,
    city.region_name as city_name,
    ancestry.level2_code as district_code,
    district.region_name as district_name,
    ancestry.level3_code as town_code,
    town.region_name as town_name,
    ancestry.level4_code as community_code,
    community.region_name as community_name,
    ancestry.level5_code as grid_code,
    grid.region_name as grid_name
from ancestry
left join regions as city on ancestry.level1_code = city.region_code
left join regions as district on ancestry.level2_code = district.region_code
left join regions as town on ancestry.level3_code = town.region_code
left join regions as community on ancestry.level4_code = community.region_code
left join regions as grid on ancestry.level5_code = grid.region_code
