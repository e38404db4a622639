with versions as (

    select
        *,
        row_number() over (
            partition by work_order_no
            order by file_date desc, batch_id desc, source_row desc
        ) as version_rank
    from {{ source('hotline', 'hotline_work_orders') }}

)

select
    work_order_no,
    received_at,
    cast(received_at as date) as received_date,
    closed_at,
    cast(closed_at as date) as closed_date,
    caller_key as person_key,
    matter_type,
    category_name,
    district_name,
    town_name,
    handling_unit,
    status,
    callback_result,
    file_date as last_seen_in_export,
    batch_id
from versions
where version_rank = 1
