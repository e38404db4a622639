select
    grid_code,
    grid_name,
    community_code,
    community_name,
    town_code,
    worker_code
from {{ source('grid', 'grid_grids') }}
