select
    event_id,
    grid_code,
    left(grid_code, 9) as town_code,
    worker_code,
    reported_at,
    cast(reported_at as date) as reported_date,
    category_code,
    people_involved,
    description,
    status,
    resolved_at,
    cast(resolved_at as date) as resolved_date,
    escalated_petition_no,
    source_updated_at,
    batch_id,
    loaded_at
from {{ source('grid', 'grid_screening_events') }}
