-- Status versions of screening events. The loader appends one row per loaded
-- row version (a source correction with the same status and updated_at is a
-- row of its own); the latest load of each version is the one in force.
with versions as (

    select
        *,
        row_number() over (
            partition by event_id, status, source_updated_at
            order by batch_id desc, source_row desc
        ) as load_rank
    from {{ source('grid', 'grid_event_status_history') }}

)

select
    event_id,
    status,
    source_updated_at,
    resolved_at,
    escalated_petition_no,
    batch_id
from versions
where load_rank = 1
