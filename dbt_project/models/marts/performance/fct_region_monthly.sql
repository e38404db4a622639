-- Per town/street and month: petitions (with repeats, group petitions,
-- escalations), hotline work orders and grid screening (events reported,
-- resolved at grid level, escalated to petitions). Districts and the city
-- are sums of their towns (dim_region gives the tree).
with months as (

    select month_start from {{ ref('dim_month') }}

),

towns as (

    select
        region_code as town_code,
        district_code
    from {{ ref('dim_region') }}
    where region_level = 3

),

cases as (

    select
        town_code,
        received_month as month_start,
        count(*) filter (where is_petition) as petitions_received,
        count(*) filter (where is_petition and is_online) as online_petitions_received,
        count(*) filter (where is_repeat) as repeat_petitions,
        count(*) filter (where is_group_petition) as group_petitions,
        count(*) filter (where is_escalated) as escalated_petitions,
        count(*) filter (where matter_source = 'hotline') as work_orders_received,
        count(*) filter (where is_satisfied is not null) as matters_rated,
        count(*) filter (where is_satisfied) as matters_satisfied
    from {{ ref('fct_cases') }}
    group by town_code, received_month

),

screening as (

    select
        town_code,
        cast(date_trunc('month', reported_at) as date) as month_start,
        count(*) as grid_events_reported,
        count(*) filter (where status = '已化解') as grid_events_resolved,
        count(*) filter (where status = '已上报信访') as grid_events_escalated,
        sum(people_involved) as grid_people_involved
    from {{ ref('stg_grid__screening_events') }}
    group by town_code, cast(date_trunc('month', reported_at) as date)

)

select
    towns.town_code,
    towns.district_code,
    months.month_start,
    coalesce(cases.petitions_received, 0) as petitions_received,
    coalesce(cases.online_petitions_received, 0) as online_petitions_received,
    coalesce(cases.repeat_petitions, 0) as repeat_petitions,
    coalesce(cases.group_petitions, 0) as group_petitions,
    coalesce(cases.escalated_petitions, 0) as escalated_petitions,
    coalesce(cases.work_orders_received, 0) as work_orders_received,
    coalesce(screening.grid_events_reported, 0) as grid_events_reported,
    coalesce(screening.grid_events_resolved, 0) as grid_events_resolved,
    coalesce(screening.grid_events_escalated, 0) as grid_events_escalated,
    coalesce(screening.grid_people_involved, 0) as grid_people_involved,
    cast(round(
        cast(cases.matters_satisfied as numeric) / nullif(cases.matters_rated, 0), 4
    ) as numeric(7, 4)) as satisfaction_rate
from towns
cross join months
left join cases
    on towns.town_code = cases.town_code and months.month_start = cases.month_start
left join screening
    on towns.town_code = screening.town_code and months.month_start = screening.month_start
