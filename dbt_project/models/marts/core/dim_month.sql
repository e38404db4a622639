-- The months the warehouse reports on, from the first month of receipt of
-- any matter to the month of the data's as-of date (the newest day any
-- loaded batch covers), with that as-of date. Monthly facts and month-end
-- snapshots use this spine, so a closing or transfer after the last month of
-- receipt is not dropped, and nothing is judged overdue or unresolved at a
-- moment later than the data.
with bounds as (

    select
        (select min(cases.received_month) from {{ ref('fct_cases') }} as cases) as first_month,
        (
            select max(batches.file_date)
            from {{ source('ops', 'load_batches') }} as batches
            where batches.status = 'loaded'
        ) as as_of_date

)

select distinct
    calendar.month_start,
    cast(calendar.month_start + interval '1 month' - interval '1 day' as date) as month_end,
    bounds.as_of_date,
    cast(calendar.month_start + interval '1 month' - interval '1 day' as date) <= bounds.as_of_date
        as is_complete
from {{ ref('dim_date') }} as calendar
cross join bounds
where calendar.month_start between bounds.first_month and bounds.as_of_date
