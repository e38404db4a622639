-- Staff with type-2 history: one row per period in which a person's kind,
-- unit, full-time status, posting (挂职 sent down / 跟岗 brought up) and
-- promotion state held. Dated facts of the platform (in post from/to,
-- posting start/end, promotion) give their own boundaries, so a backfill
-- yields the same history; attributes the platform does not date (unit,
-- full-time, kind) change on the day the snapshot first saw the change.
-- Before the first snapshot version, the earliest version seen applies.
with staff as (

    select * from {{ ref('stg_online__staff') }}

),

postings as (

    select * from {{ ref('stg_online__staff_postings') }}

),

versions as (

    select
        staff_code,
        staff_kind,
        unit_code,
        grid_code,
        full_time,
        cast(dbt_valid_from as date) as seen_from,
        row_number() over (partition by staff_code order by dbt_valid_from) as version_number
    from {{ ref('snap_online_staff') }}

),

boundaries as (

    select
        staff_code,
        in_post_from as boundary
    from staff
    union
    select
        staff_code,
        start_date as boundary
    from postings
    union
    select
        staff_code,
        end_date + 1 as boundary
    from postings
    union
    select
        staff_code,
        promoted_on as boundary
    from staff
    where promoted_on is not null
    union
    select
        staff_code,
        seen_from as boundary
    from versions
    where version_number > 1

),

periods as (

    select
        boundaries.staff_code,
        boundaries.boundary as valid_from,
        lead(boundaries.boundary) over (
            partition by boundaries.staff_code order by boundaries.boundary
        ) - 1 as next_boundary_eve
    from boundaries
    inner join staff
        on boundaries.staff_code = staff.staff_code
    where
        boundaries.boundary >= staff.in_post_from
        and (staff.in_post_to is null or boundaries.boundary <= staff.in_post_to)

),

attributed as (

    -- The version in force on the period's first day: the last one seen by
    -- then, or the first one ever seen for periods before the snapshot began.
    select
        periods.*,
        coalesce(
            (
                select max(seen.version_number)
                from versions as seen
                where seen.staff_code = periods.staff_code and seen.seen_from <= periods.valid_from
            ),
            1
        ) as version_number
    from periods

)

select
    attributed.staff_code || '@' || to_char(attributed.valid_from, 'YYYYMMDD') as staff_version_key,
    attributed.staff_code,
    staff.person_key,
    coalesce(in_force.staff_kind, staff.staff_kind) as staff_kind,
    coalesce(in_force.unit_code, staff.unit_code) as home_unit_code,
    coalesce(posting.posting_unit_code, in_force.unit_code, staff.unit_code) as acting_unit_code,
    coalesce(in_force.grid_code, staff.grid_code) as grid_code,
    coalesce(in_force.full_time, staff.full_time) as is_full_time,
    posting.posting_kind,
    posting.posting_kind is not null as is_on_posting,
    staff.promoted_on is not null and attributed.valid_from >= staff.promoted_on as is_promoted,
    attributed.valid_from,
    coalesce(attributed.next_boundary_eve, staff.in_post_to) as valid_to,
    attributed.next_boundary_eve is null and staff.in_post_to is null as is_current
from attributed
inner join staff
    on attributed.staff_code = staff.staff_code
left join versions as in_force
    on
        attributed.staff_code = in_force.staff_code
        and attributed.version_number = in_force.version_number
left join postings as posting
    on
        attributed.staff_code = posting.staff_code
        and attributed.valid_from between posting.start_date and posting.end_date
