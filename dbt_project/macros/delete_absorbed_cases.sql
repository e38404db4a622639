{#- Post-hook of the incremental fct_cases: remove matters that stopped being
    matters of their own since they were stored. Petitions and grid events are
    rebuilt in full each run, so any stored one missing from the rebuild is
    gone (e.g. folded into another matter as a duplicate registration); a
    hotline order that a petition now points at belongs to that petition. -#}
{% macro delete_absorbed_cases() %}
{% if is_incremental() %}
delete from {{ this }} as stored
where
    (
        stored.matter_source = 'petition'
        and not exists (
            select from {{ ref('int_cases__petitions') }} as fresh where fresh.case_id = stored.case_id
        )
    )
    or (
        stored.matter_source = 'grid'
        and not exists (
            select from {{ ref('int_cases__grid') }} as fresh where fresh.case_id = stored.case_id
        )
    )
    or (
        stored.matter_source = 'hotline'
        and stored.work_order_no in (
            select petitions.hotline_work_order_no
            from {{ ref('stg_online__petitions') }} as petitions
            where petitions.hotline_work_order_no is not null
        )
    )
{% else %}
select 1
{% endif %}
{% endmacro %}
