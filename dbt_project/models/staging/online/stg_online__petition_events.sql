select
    petition_no,
    seq,
    event_type,
    event_at,
    cast(event_at as date) as event_date,
    unit_code,
    from_unit_code,
    rating,
    handler_code,
    batch_id,
    loaded_at
from {{ source('online', 'online_petition_events') }}
