-- Working days across the 2025 National Day holiday on the official calendar
-- (cn_holidays seed): from Friday 09-26 to Thursday 10-09 the workdays are
-- 09-28 (Sunday, 调休), 09-29, 09-30 and 10-09 = 4; from 09-30 to 10-08, 0;
-- from Friday 10-10 to Monday 10-13, 2 (Saturday 10-11 is a make-up workday).
with spans as (

    select date '2025-09-26' as from_day, date '2025-10-09' as to_day, 4 as expected
    union all
    select date '2025-09-30', date '2025-10-08', 0
    union all
    select date '2025-10-10', date '2025-10-13', 2

)

select spans.*, to_day_row.workday_number - from_day_row.workday_number as counted
from spans
inner join {{ ref('dim_date') }} as from_day_row on spans.from_day = from_day_row.date_day
inner join {{ ref('dim_date') }} as to_day_row on spans.to_day = to_day_row.date_day
where to_day_row.workday_number - from_day_row.workday_number <> spans.expected
