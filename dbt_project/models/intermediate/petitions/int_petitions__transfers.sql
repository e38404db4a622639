-- Hand-overs of a petition between units, in order: 交办 (assignment by the
-- receiving office), 转送 (one unit passes it to another) and 退回 (the unit
-- disputes the assignment and hands it back). A bounce is a 退回; a
-- ping-pong is a hand-over to a unit that already held the matter before.
-- An assignment is handed back when its unit later returns the matter (退回):
-- that unit never accepted it, so it is not the first handling unit (首办).
with handovers as (

    select
        petition_no,
        seq,
        event_type as transfer_type,
        event_at as transferred_at,
        from_unit_code,
        unit_code as to_unit_code
    from {{ ref('stg_online__petition_events') }}
    where event_type in ('交办', '转送', '退回')

),

hand_backs as (

    select
        petition_no,
        from_unit_code as unit_code,
        max(seq) as last_hand_back_seq
    from handovers
    where transfer_type = '退回'
    group by petition_no, from_unit_code

),

ordered as (

    select
        *,
        row_number() over by_petition as handover_number,
        lag(transfer_type) over by_petition as previous_transfer_type,
        -- Earlier hand-overs (not hand-backs) of this petition to the same unit.
        count(*) filter (where transfer_type <> '退回') over (
            partition by petition_no, to_unit_code
            order by seq
            rows between unbounded preceding and 1 preceding
        ) as earlier_to_same_unit
    from handovers
    window by_petition as (partition by petition_no order by seq)

)

select
    ordered.petition_no,
    ordered.seq,
    cast(ordered.handover_number as integer) as handover_number,
    ordered.transfer_type,
    ordered.transferred_at,
    ordered.from_unit_code,
    ordered.to_unit_code,
    ordered.transfer_type = '退回' as is_bounce,
    ordered.transfer_type = '交办' and coalesce(ordered.previous_transfer_type = '退回', false)
        as is_reassignment_after_bounce,
    ordered.transfer_type <> '退回' and ordered.earlier_to_same_unit > 0 as is_ping_pong,
    ordered.transfer_type = '交办' and coalesce(hand_backs.last_hand_back_seq > ordered.seq, false)
        as is_handed_back
from ordered
left join hand_backs
    on
        ordered.petition_no = hand_backs.petition_no
        and ordered.to_unit_code = hand_backs.unit_code
