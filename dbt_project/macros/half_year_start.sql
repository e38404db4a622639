{#- First day of the half-year that contains the date expression `d`: 1 January or 1 July. -#}
{% macro half_year_start(d) -%}
    cast(
        date_trunc('year', {{ d }})
        + case when extract(month from {{ d }}) > 6 then interval '6 months' else interval '0 months' end
        as date
    )
{%- endmacro %}
