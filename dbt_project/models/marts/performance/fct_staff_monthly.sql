-- Per staff member and month: matters handled (any handling step signed by
-- them), matters answered (答复) by them with the outcome of those matters
-- (on time, satisfaction, 一次性化解 of first petitions), and training.
-- The unit is the one the person acted for that month (a 挂职 cadre acts for
-- the town).
with handled as (

    select
        events.handler_code as staff_code,
        events.event_month as month_start,
        events.case_id,
        events.event_type
    from {{ ref('fct_case_events') }} as events
    where events.handler_code is not null

),

per_staff as (

    select
        handled.staff_code,
        handled.month_start,
        count(*) as events_handled,
        count(distinct handled.case_id) as matters_handled,
        count(distinct handled.case_id) filter (where handled.event_type = '答复') as matters_answered,
        count(distinct handled.case_id) filter (
            where handled.event_type = '答复' and cases.is_on_time
        ) as matters_answered_on_time,
        count(distinct handled.case_id) filter (
            where handled.event_type = '答复' and cases.is_satisfied is not null
        ) as matters_answered_rated,
        count(distinct handled.case_id) filter (
            where handled.event_type = '答复' and cases.is_satisfied
        ) as matters_answered_satisfied,
        count(distinct handled.case_id) filter (
            where handled.event_type = '答复' and cases.is_resolved_at_first_handling is not null
        ) as first_petitions_answered,
        count(distinct handled.case_id) filter (
            where handled.event_type = '答复' and cases.is_resolved_at_first_handling
        ) as first_petitions_resolved
    from handled
    inner join {{ ref('fct_cases') }} as cases
        on handled.case_id = cases.case_id
    group by handled.staff_code, handled.month_start

),

trainings as (

    select
        staff_code,
        cast(date_trunc('month', start_date) as date) as month_start,
        count(*) as trainings_attended
    from {{ ref('stg_online__staff_trainings') }}
    group by staff_code, cast(date_trunc('month', start_date) as date)

),

staff_months as (

    select
        staff_code,
        month_start
    from per_staff
    union
    select
        staff_code,
        month_start
    from trainings

)

select
    staff_months.staff_code,
    staff_months.month_start,
    staff.staff_version_key,
    staff.staff_kind,
    staff.acting_unit_code as unit_code,
    staff.is_full_time,
    staff.posting_kind,
    coalesce(per_staff.events_handled, 0) as events_handled,
    coalesce(per_staff.matters_handled, 0) as matters_handled,
    coalesce(per_staff.matters_answered, 0) as matters_answered,
    coalesce(per_staff.matters_answered_on_time, 0) as matters_answered_on_time,
    coalesce(per_staff.matters_answered_rated, 0) as matters_answered_rated,
    coalesce(per_staff.matters_answered_satisfied, 0) as matters_answered_satisfied,
    coalesce(per_staff.first_petitions_answered, 0) as first_petitions_answered,
    coalesce(per_staff.first_petitions_resolved, 0) as first_petitions_resolved,
    cast(round(
        cast(per_staff.matters_answered_on_time as numeric) / nullif(per_staff.matters_answered, 0), 4
    ) as numeric(7, 4)) as on_time_rate,
    cast(round(
        cast(per_staff.matters_answered_satisfied as numeric) / nullif(per_staff.matters_answered_rated, 0), 4
    ) as numeric(7, 4)) as satisfaction_rate,
    cast(round(
        cast(per_staff.first_petitions_resolved as numeric) / nullif(per_staff.first_petitions_answered, 0), 4
    ) as numeric(7, 4)) as first_handling_resolution_rate,
    coalesce(trainings.trainings_attended, 0) as trainings_attended
from staff_months
left join per_staff
    on
        staff_months.staff_code = per_staff.staff_code
        and staff_months.month_start = per_staff.month_start
left join trainings
    on
        staff_months.staff_code = trainings.staff_code
        and staff_months.month_start = trainings.month_start
left join lateral (
    -- The version in force at the end of the month (or the last one within it, if the person left).
    select versions.*
    from {{ ref('dim_staff') }} as versions
    where
        versions.staff_code = staff_months.staff_code
        and versions.valid_from
        <= cast(staff_months.month_start + interval '1 month' - interval '1 day' as date)
        and coalesce(versions.valid_to, cast('9999-12-31' as date)) >= staff_months.month_start
    order by versions.valid_from desc
    limit 1
) as staff on true
