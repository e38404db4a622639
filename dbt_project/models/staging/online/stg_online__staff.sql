select
    staff_code,
    staff_kind,
    unit_code,
    grid_code,
    full_time,
    in_post_from,
    in_post_to,
    promoted_on,
    person_key,
    updated_at as source_updated_at,
    batch_id
from {{ source('online', 'online_staff') }}
