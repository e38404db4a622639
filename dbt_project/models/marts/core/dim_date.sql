-- The official Chinese calendar: weekends are rest days except the make-up
-- workdays (调休), and public holidays are rest days whatever the weekday.
-- workday_number counts workdays from the start of the calendar, so the
-- working days between two dates are a subtraction, not a scan.
with days as (

    select cast(d as date) as date_day
    from generate_series(
        cast('{{ var("calendar_start", "2022-01-01") }}' as date),
        cast('{{ var("calendar_end", "2027-12-31") }}' as date),
        interval '1 day'
    ) as d

),

flagged as (

    select
        days.date_day,
        holidays.day_kind,
        holidays.holiday_name,
        coalesce(
            holidays.day_kind = 'workday',
            holidays.day_kind is null and extract(isodow from days.date_day) < 6
        ) as is_workday
    from days
    left join {{ ref('cn_holidays') }} as holidays
        on days.date_day = holidays.calendar_date

)

select
    date_day,
    cast(extract(isodow from date_day) as integer) as iso_weekday,
    cast(date_trunc('month', date_day) as date) as month_start,
    cast(extract(year from date_day) as integer) as year_number,
    cast(extract(year from date_day) as text)
    || case when extract(month from date_day) <= 6 then 'H1' else 'H2' end as half_year,
    day_kind,
    holiday_name,
    is_workday,
    cast(count(*) filter (where is_workday) over (order by date_day) as integer) as workday_number
from flagged
