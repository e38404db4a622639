{{
    config(
        materialized='incremental',
        unique_key='work_order_no',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['work_order_no'], 'unique': true},
            {'columns': ['batch_id']},
            {'columns': ['caller_key']},
        ],
    )
}}
-- The latest version of each work order. Incremental: a run reads only the
-- rows of batches loaded since the previous run, plus the stored version of
-- the orders they touch, so its cost follows the new data, not the history.
-- A late-loaded older file cannot overwrite a newer version: the versions are
-- ranked by export date first, then load order.
with new_versions as (

    select * from {{ ref('stg_hotline__work_orders') }}
    {% if is_incremental() %}
        where batch_id > (
            select coalesce(max(previous.loaded_through_batch_id), 0) from {{ this }} as previous
        )
    {% endif %}

),

candidates as (

    select
        work_order_no,
        received_at,
        received_date,
        closed_at,
        closed_date,
        caller_key,
        matter_type,
        category_name,
        district_name,
        town_name,
        handling_unit_name,
        status,
        callback_result,
        file_date,
        batch_id,
        source_row
    from new_versions
    {% if is_incremental() %}
        union all
        select
            held.work_order_no,
            held.received_at,
            held.received_date,
            held.closed_at,
            held.closed_date,
            held.caller_key,
            held.matter_type,
            held.category_name,
            held.district_name,
            held.town_name,
            held.handling_unit_name,
            held.status,
            held.callback_result,
            held.file_date,
            held.batch_id,
            held.source_row
        from {{ this }} as held
        where held.work_order_no in (select new_versions.work_order_no from new_versions)
    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by work_order_no
            order by file_date desc, batch_id desc, source_row desc
        ) as version_rank
    from candidates

)

select
    ranked.work_order_no,
    ranked.received_at,
    ranked.received_date,
    ranked.closed_at,
    ranked.closed_date,
    ranked.caller_key,
    ranked.matter_type,
    ranked.category_name,
    ranked.district_name,
    ranked.town_name,
    ranked.handling_unit_name,
    ranked.status,
    ranked.callback_result,
    ranked.file_date,
    ranked.batch_id,
    ranked.source_row,
    (select max(new_versions.batch_id) from new_versions) as loaded_through_batch_id
from ranked
where ranked.version_rank = 1
