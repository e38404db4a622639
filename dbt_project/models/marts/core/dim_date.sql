-- The official Chinese calendar: weekends are rest days except the make-up
-- workdays (调休), and public holidays are rest days whatever the weekday.
with days as (

    select cast(d as date) as date_day
    from generate_series(
        cast('2022-01-01' as date), cast('2027-12-31' as date), interval '1 day'
    ) as d

)

select
    days.date_day,
    cast(extract(isodow from days.date_day) as integer) as iso_weekday,
    cast(date_trunc('month', days.date_day) as date) as month_start,
    holidays.day_kind,
    holidays.holiday_name,
    coalesce(
        holidays.day_kind = 'workday',
        holidays.day_kind is null and extract(isodow from days.date_day) < 6
    ) as is_workday
from days
left join {{ ref('cn_holidays') }} as holidays
    on days.date_day = holidays.calendar_date
