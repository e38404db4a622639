-- Hand-overs of matters between units (交办, 转送, 退回), with bounce and
-- ping-pong flags, keyed to the matter.
select
    map.case_id,
    transfers.petition_no,
    transfers.seq,
    transfers.handover_number,
    transfers.transfer_type,
    transfers.transferred_at,
    cast(transfers.transferred_at as date) as transferred_date,
    cast(date_trunc('month', transfers.transferred_at) as date) as transferred_month,
    transfers.from_unit_code,
    transfers.to_unit_code,
    transfers.is_bounce,
    transfers.is_reassignment_after_bounce,
    transfers.is_ping_pong
from {{ ref('int_petitions__transfers') }} as transfers
inner join {{ ref('int_matters__petition_map') }} as map
    on
        map.record_source = 'petition'
        and transfers.petition_no = map.source_record_id
