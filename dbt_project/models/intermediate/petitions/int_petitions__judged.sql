{{ config(materialized='table') }}

-- Each matter first raised as a petition (duplicate registrations removed),
-- judged by the rules of DOMAIN.md with the parameters of policy_parameters:
--   repeat (重复信访): the same person's previous petition of the same
--     top-level category was registered at most `repeat_window_days` before;
--   resolved at first handling (一次性化解): a first petition that was
--     answered, whose last call-back rating is 满意 or 基本满意, with no
--     复查/复核 request and no repeat registered within
--     `first_handling_followup_days` after the first reply. The verdict is
--     pending (null) until that window has passed by the data's as-of date
--     (the newest handling event), and for an unanswered petition until the
--     same number of days after registration, so a published rate never
--     counts a matter whose outcome is still open.
with matters as (

    select
        petitions.*,
        handling.first_reply_at,
        handling.not_accepted_at,
        handling.last_rating,
        handling.review_requested_at,
        handling.rereview_requested_at
    from {{ ref('stg_online__petitions') }} as petitions
    inner join {{ ref('int_petitions__registrations') }} as registrations
        on petitions.petition_no = registrations.petition_no
    left join {{ ref('int_petitions__handling') }} as handling
        on petitions.petition_no = handling.petition_no
    where not registrations.is_duplicate_registration

),

neighbours as (

    select
        *,
        lag(registered_at) over same_person_matter as previous_registered_at,
        lag(petition_no) over same_person_matter as previous_petition_no,
        lead(registered_at) over same_person_matter as next_registered_at,
        count(*) over same_person_matter_so_far as registrations_so_far
    from matters
    window
        same_person_matter as (
            partition by petitioner_key, left(category_code, 6) order by registered_at, petition_no
        ),
        same_person_matter_so_far as (
            partition by petitioner_key, left(category_code, 6) order by registered_at, petition_no
            rows between unbounded preceding and current row
        )

),

judged as (

    select
        *,
        coalesce(
            registered_date - cast(previous_registered_at as date)
            <= {{ policy_value('repeat_window_days') }},
            false
        ) as is_repeat,
        interval '1 day' * {{ policy_value('first_handling_followup_days') }} as followup,
        coalesce(
            (select max(handled.last_event_at) from {{ ref('int_petitions__handling') }} as handled),
            cast('infinity' as timestamp)
        ) as as_of
    from neighbours

)

select
    petition_no,
    is_repeat,
    case when is_repeat then previous_petition_no end as repeat_of_petition_no,
    not is_repeat as is_first_petition,
    registrations_so_far as person_matter_sequence,
    case
        when is_repeat then null
        when first_reply_at is not null and first_reply_at + followup > as_of then null
        when first_reply_at is null and not_accepted_at is null and registered_at + followup > as_of then null
        else
            first_reply_at is not null
            and coalesce(last_rating in ('满意', '基本满意'), false)
            and not coalesce(review_requested_at <= first_reply_at + followup, false)
            and not coalesce(rereview_requested_at <= first_reply_at + followup, false)
            and not coalesce(next_registered_at <= first_reply_at + followup, false)
    end as is_resolved_at_first_handling,
    coalesce(next_registered_at <= first_reply_at + followup, false) as is_repeated_within_followup
from judged
