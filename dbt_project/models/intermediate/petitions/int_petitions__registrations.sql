{{ config(materialized='table') }}

-- Each petition with the matter it belongs to. A petition is a duplicate
-- registration of the same matter when the same person registers the same
-- category again within `duplicate_registration_window_minutes` of the
-- previous registration, before that one was answered (e.g. a letter and an
-- online submission of one grievance). Duplicates join the matter of the
-- first registration instead of counting as matters of their own.
with petitions as (

    select
        petitions.*,
        handling.first_reply_at
    from {{ ref('stg_online__petitions') }} as petitions
    left join {{ ref('int_petitions__handling') }} as handling
        on petitions.petition_no = handling.petition_no

),

flagged as (

    select
        *,
        coalesce(
            registered_at - lag(registered_at) over same_matter
            <= interval '1 minute' * {{ policy_value('duplicate_registration_window_minutes') }}
            and (
                lag(first_reply_at) over same_matter is null
                or lag(first_reply_at) over same_matter > registered_at
            ),
            false
        ) as is_duplicate_registration
    from petitions
    window same_matter as (
        partition by petitioner_key, category_code order by registered_at, petition_no
    )

),

grouped as (

    -- A run of duplicates belongs to the last registration that was not one.
    select
        *,
        sum(case when is_duplicate_registration then 0 else 1 end) over (
            partition by petitioner_key, category_code
            order by registered_at, petition_no
            rows between unbounded preceding and current row
        ) as matter_group
    from flagged

)

select
    petition_no,
    first_value(petition_no) over (
        partition by petitioner_key, category_code, matter_group
        order by registered_at, petition_no
    ) as matter_petition_no,
    is_duplicate_registration
from grouped
