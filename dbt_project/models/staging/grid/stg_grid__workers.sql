select
    worker_code,
    worker_key,
    grid_code,
    unit_code,
    full_time,
    hired_on,
    left_on,
    source_updated_at
from {{ source('grid', 'grid_workers') }}
