select
    staff_code,
    posting_kind,
    unit_code as posting_unit_code,
    start_date,
    end_date
from {{ source('online', 'online_staff_postings') }}
