-- Staffing and training figures of the seed summary per half-year: the
-- township full-time petition staff ratio (专职人员配备率) on the last day,
-- training classes and person-times, cadres sent down (挂职) and brought up
-- (跟岗), and promotions.
with half_years as (

    select distinct {{ half_year_start('date_day') }} as period_start
    from {{ ref('dim_date') }}

),

bounds as (

    select
        period_start,
        cast(period_start + interval '6 months' - interval '1 day' as date) as period_end
    from half_years

),

township as (

    select
        bounds.period_start,
        count(*) filter (where staff.is_full_time) as township_full_time_staff,
        count(*) as township_staff
    from bounds
    inner join {{ ref('dim_staff') }} as staff
        on
            {{ is_township_staff('staff') }}
            and bounds.period_end between staff.valid_from and coalesce(staff.valid_to, '9999-12-31')
    group by bounds.period_start

),

trainings as (

    select
        bounds.period_start,
        count(distinct trainings.class_code) as training_classes,
        count(*) as training_person_times
    from bounds
    inner join {{ ref('stg_online__staff_trainings') }} as trainings
        on trainings.start_date between bounds.period_start and bounds.period_end
    group by bounds.period_start

),

postings as (

    select
        bounds.period_start,
        count(*) filter (where postings.posting_kind = '挂职') as cadres_sent_down,
        count(*) filter (where postings.posting_kind = '跟岗') as cadres_brought_up
    from bounds
    inner join {{ ref('stg_online__staff_postings') }} as postings
        on postings.start_date between bounds.period_start and bounds.period_end
    group by bounds.period_start

),

promotions as (

    select
        bounds.period_start,
        count(*) as cadres_promoted
    from bounds
    inner join {{ ref('stg_online__staff') }} as staff
        on staff.promoted_on between bounds.period_start and bounds.period_end
    group by bounds.period_start

)

select
    bounds.period_start,
    coalesce(township.township_full_time_staff, 0) as township_full_time_staff,
    coalesce(township.township_staff, 0) as township_staff,
    coalesce(trainings.training_classes, 0) as training_classes,
    coalesce(trainings.training_person_times, 0) as training_person_times,
    coalesce(postings.cadres_sent_down, 0) as cadres_sent_down,
    coalesce(postings.cadres_brought_up, 0) as cadres_brought_up,
    coalesce(promotions.cadres_promoted, 0) as cadres_promoted
from bounds
left join township on bounds.period_start = township.period_start
left join trainings on bounds.period_start = trainings.period_start
left join postings on bounds.period_start = postings.period_start
left join promotions on bounds.period_start = promotions.period_start
