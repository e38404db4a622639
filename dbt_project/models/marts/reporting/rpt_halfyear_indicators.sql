-- The half-year work summary's figures (半年工作总结), one row per half-year,
-- with year-on-year changes and whether satisfaction is the best of the last
-- three years (six half-years, this one included).
with counts as (

    select * from {{ ref('int_indicators__petitions') }}
    where period_kind = 'half_year'

),

rated as (

    select
        counts.*,
        {{ indicator_rates('counts') }}
    from counts

),

limits as (

    select limit_days as legal_limit_days
    from {{ ref('sla_policy') }}
    where matter_source = 'petition' and matter_type = '信访事项'

)

select
    current_half.period_start,
    cast(extract(year from current_half.period_start) as text)
    || case when extract(month from current_half.period_start) = 1 then 'H1' else 'H2' end as half_year,
    current_half.petitions_received,
    current_half.online_petitions,
    current_half.repeat_petitions,
    current_half.first_petitions,
    current_half.first_petitions_judged,
    current_half.first_petitions_resolved,
    current_half.petitions_rated,
    current_half.petitions_satisfied,
    current_half.group_petitions,
    current_half.escalated_petitions,
    current_half.online_share,
    current_half.repeat_share,
    current_half.first_handling_resolution_rate,
    current_half.satisfaction_rate,
    current_half.repeats_after_unsatisfied_share,
    cast(round(current_half.mean_working_days_to_answer, 1) as numeric(6, 1)) as mean_working_days_to_answer,
    cast(round(current_half.mean_days_to_answer, 1) as numeric(6, 1)) as mean_days_to_answer,
    limits.legal_limit_days,
    cast(round(1 - current_half.mean_days_to_answer / limits.legal_limit_days, 4) as numeric(7, 4))
        as share_under_legal_limit,
    previous_year.petitions_received as petitions_received_prev_year,
    {{ indicator_changes('current_half', 'previous_year', 'yoy') }},
    current_half.satisfaction_rate >= all(
        select earlier.satisfaction_rate
        from rated as earlier
        where
            earlier.period_start > current_half.period_start - interval '3 years'
            and earlier.period_start <= current_half.period_start
            and earlier.satisfaction_rate is not null
    ) as satisfaction_best_in_3_years,
    staffing.township_full_time_staff,
    staffing.township_staff,
    cast(round(
        cast(staffing.township_full_time_staff as numeric) / nullif(staffing.township_staff, 0), 4
    ) as numeric(7, 4)) as township_full_time_ratio,
    staffing.training_classes,
    staffing.training_person_times,
    staffing.cadres_sent_down,
    staffing.cadres_brought_up,
    staffing.cadres_promoted
from rated as current_half
cross join limits
left join rated as previous_year
    on previous_year.period_start = cast(current_half.period_start - interval '1 year' as date)
left join {{ ref('int_indicators__staffing') }} as staffing
    on current_half.period_start = staffing.period_start
