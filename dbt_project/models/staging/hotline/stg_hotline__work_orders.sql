-- Every version of every work order as exported (the export is a change log:
-- an order reappears when its status changes). Picking the latest version is
-- left to the incremental intermediate model, so this view stays a rename.
select
    work_order_no,
    received_at,
    cast(received_at as date) as received_date,
    closed_at,
    cast(closed_at as date) as closed_date,
    caller_key,
    matter_type,
    category_name,
    district_name,
    town_name,
    handling_unit as handling_unit_name,
    status,
    callback_result,
    file_date,
    batch_id,
    source_row
from {{ source('hotline', 'hotline_work_orders') }}
