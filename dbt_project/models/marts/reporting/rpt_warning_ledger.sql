-- The 红黄蓝 three-level ledger: at the end of every month (or the data's
-- as-of date for the month in progress), each petition or grid dispute still
-- unresolved, with the level it warrants under the warning_levels seed. A
-- petition is resolved once answered and any 复查/复核 asked for is answered
-- too; age counts from acceptance. A matter takes the highest level any of
-- whose conditions it meets: people involved, repeats of the same person and
-- matter within the level's window, age, or (red) a 越级 petition. 12345
-- work orders are service requests, not disputes, and are not in the ledger.
with month_ends as (

    -- Each month end, or the data's as-of date for the month in progress.
    select
        month_start,
        least(month_end, as_of_date) as month_end
    from {{ ref('dim_month') }}

),

matters as (

    select *
    from {{ ref('fct_cases') }}
    where matter_source in ('petition', 'grid') and status <> '不予受理'

),

open_at_month_end as (

    select
        month_ends.month_start,
        month_ends.month_end,
        matters.*,
        month_ends.month_end - coalesce(matters.accepted_date, matters.received_date) as age_days
    from month_ends
    inner join matters
        on
            month_ends.month_end >= matters.received_date
            and (matters.settled_at is null or cast(matters.settled_at as date) > month_ends.month_end)

),

escalations as (

    select
        case_id,
        min(event_date) as first_escalated_on
    from {{ ref('fct_case_events') }}
    where event_type = '越级'
    group by case_id

),

levels as (

    select * from {{ ref('warning_levels') }}

),

repeats as (

    select
        person_key,
        top_category_code,
        received_date
    from matters
    where is_repeat and person_key is not null

),

measured as (

    select
        open_matters.month_start,
        open_matters.case_id,
        levels.warning_level,
        count(repeats.received_date) as repeats_in_window
    from open_at_month_end as open_matters
    cross join levels
    left join repeats
        on
            open_matters.person_key = repeats.person_key
            and open_matters.top_category_code = repeats.top_category_code
            and repeats.received_date > open_matters.month_end - levels.repeat_window_days
            and open_matters.month_end >= repeats.received_date
    group by open_matters.month_start, open_matters.case_id, levels.warning_level

),

qualified as (

    select
        open_matters.*,
        coalesce(escalations.first_escalated_on <= open_matters.month_end, false) as escalated_by_month_end,
        levels.warning_level,
        levels.level_rank,
        levels.responsible,
        measured.repeats_in_window,
        array_remove(array[
            case when levels.min_people > 0 and open_matters.group_size >= levels.min_people then '涉及人数' end,
            case
                when levels.min_repeats > 0 and measured.repeats_in_window >= levels.min_repeats
                    then '重复信访'
            end,
            case
                when levels.min_age_days > 0 and open_matters.age_days >= levels.min_age_days then '积案时长'
            end,
            case
                when levels.escalation_triggers and escalations.first_escalated_on <= open_matters.month_end
                    then '越级'
            end,
            -- A level with no threshold at all (blue) takes every other unresolved matter.
            case
                when
                    levels.min_people = 0 and levels.min_repeats = 0 and levels.min_age_days = 0
                    and not levels.escalation_triggers
                    then '未化解'
            end
        ], null) as reasons
    from open_at_month_end as open_matters
    cross join levels
    inner join measured
        on
            open_matters.month_start = measured.month_start
            and open_matters.case_id = measured.case_id
            and levels.warning_level = measured.warning_level
    left join escalations
        on open_matters.case_id = escalations.case_id

),

ranked as (

    select
        *,
        row_number() over (partition by month_start, case_id order by level_rank desc) as level_choice
    from qualified
    where cardinality(reasons) > 0

)

select
    month_start,
    month_end,
    case_id,
    matter_source,
    channel,
    category_code,
    category_name,
    top_category_name,
    district_code,
    district_name,
    town_code,
    town_name,
    grid_code,
    first_handling_unit_code,
    first_handling_unit_name,
    received_date,
    cast(age_days as integer) as age_days,
    group_size,
    cast(repeats_in_window as integer) as repeats_in_window,
    escalated_by_month_end,
    warning_level,
    level_rank,
    responsible,
    array_to_string(reasons, '、') as warning_reasons
from ranked
where level_choice = 1
