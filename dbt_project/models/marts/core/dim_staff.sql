-- Staff with type-2 history: one row per period in which a person's unit,
-- posting (挂职 sent down / 跟岗 brought up) and promotion state held. The
-- platform dates every change (in post from/to, posting start/end,
-- promotion), so the periods come from those dates rather than from
-- snapshots of when the warehouse happened to look.
with staff as (

    select * from {{ ref('stg_online__staff') }}

),

postings as (

    select * from {{ ref('stg_online__staff_postings') }}

),

boundaries as (

    select
        staff_code,
        in_post_from as boundary
    from staff
    union
    select
        staff_code,
        start_date
    from postings
    union
    select
        staff_code,
        end_date + 1 as boundary
    from postings
    union
    select
        staff_code,
        promoted_on
    from staff
    where promoted_on is not null

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

)

select
    periods.staff_code || '@' || to_char(periods.valid_from, 'YYYYMMDD') as staff_version_key,
    periods.staff_code,
    staff.person_key,
    staff.staff_kind,
    staff.unit_code as home_unit_code,
    coalesce(posting.posting_unit_code, staff.unit_code) as acting_unit_code,
    staff.grid_code,
    staff.full_time as is_full_time,
    posting.posting_kind,
    posting.posting_kind is not null as is_on_posting,
    staff.promoted_on is not null and periods.valid_from >= staff.promoted_on as is_promoted,
    periods.valid_from,
    coalesce(periods.next_boundary_eve, staff.in_post_to) as valid_to,
    periods.next_boundary_eve is null and staff.in_post_to is null as is_current
from periods
inner join staff
    on periods.staff_code = staff.staff_code
left join postings as posting
    on
        periods.staff_code = posting.staff_code
        and periods.valid_from between posting.start_date and posting.end_date
