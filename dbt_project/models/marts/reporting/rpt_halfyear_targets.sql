-- Progress on the targets a half-year summary's work plan set for the next
-- half-year (halfyear_targets seed), one row per target and month: the
-- baseline (the last month of the half-year that set them) and every month
-- of the half-year they apply to, as far as the data reaches. The next
-- summary reports the last row of each target as its result.
with targets as (

    select
        *,
        make_date(
            cast(left(applies_to, 4) as integer),
            case when right(applies_to, 1) = '1' then 1 else 7 end,
            1
        ) as applies_from
    from {{ ref('halfyear_targets') }}

),

tracked as (

    select
        targets.*,
        months.month_start,
        months.month_end,
        months.is_complete,
        months.month_start < targets.applies_from as is_baseline
    from targets
    inner join {{ ref('dim_month') }} as months
        on
            months.month_start >= cast(targets.applies_from - interval '1 month' as date)
            and months.month_start < cast(targets.applies_from + interval '6 months' as date)

),

-- First-handling resolution is measured from the start of the month's
-- half-year to the month (June: the whole first half, the summary's own
-- figure; July to December: the second half so far), over judged matters.
monthly_resolution as (

    select
        period_start as month_start,
        first_petitions,
        first_petitions_judged,
        first_petitions_resolved
    from {{ ref('int_indicators__petitions') }}
    where period_kind = 'month'

),

resolution as (

    select
        months.month_start,
        sum(so_far.first_petitions) as first_petitions,
        sum(so_far.first_petitions_judged) as first_petitions_judged,
        cast(sum(so_far.first_petitions_resolved) as numeric)
        / nullif(sum(so_far.first_petitions_judged), 0) as rate
    from {{ ref('dim_month') }} as months
    inner join monthly_resolution as so_far
        on
            months.month_start >= so_far.month_start
            and so_far.month_start >= {{ half_year_start('months.month_start') }}
    group by months.month_start

),

township as (

    select
        months.month_start,
        cast(count(*) filter (where staff.is_full_time) as numeric) / nullif(count(*), 0) as ratio
    from {{ ref('dim_month') }} as months
    inner join {{ ref('dim_staff') }} as staff
        on
            {{ is_township_staff('staff') }}
            and months.month_end between staff.valid_from and coalesce(staff.valid_to, '9999-12-31')
    group by months.month_start

),

backlog as (

    select
        month_start,
        count(*) as open_matters
    from {{ ref('rpt_backlog') }}
    group by month_start

),

measured as (

    select
        tracked.*,
        case tracked.target_code
            when 'first_handling_resolution_rate' then resolution.rate
            when 'township_full_time_ratio' then township.ratio
            when 'backlog_open' then coalesce(backlog.open_matters, 0)
        end as actual_value,
        -- A first-handling rate is final once (nearly) all its first petitions
        -- are judged, i.e. their 90-day follow-up has passed.
        case tracked.target_code
            when 'first_handling_resolution_rate'
                then
                    coalesce(
                        cast(resolution.first_petitions_judged as numeric)
                        / nullif(resolution.first_petitions, 0) >= 0.95,
                        false
                    )
            else tracked.is_complete
        end as is_final
    from tracked
    left join resolution on tracked.month_start = resolution.month_start
    left join township on tracked.month_start = township.month_start
    left join backlog on tracked.month_start = backlog.month_start

)

select
    applies_to,
    set_in,
    target_code,
    target_name,
    comparison,
    cast(target_value as numeric(12, 4)) as target_value,
    unit,
    month_start,
    is_baseline,
    cast(round(actual_value, 4) as numeric(12, 4)) as actual_value,
    is_final,
    case
        when actual_value is null then null
        when comparison = '>=' then round(actual_value, 4) >= target_value
        else round(actual_value, 4) <= target_value
    end as is_met
from measured
