{#- Rates of the petition indicators from their counts (int_indicators__petitions),
    as numeric(7,4) shares; `t` is the alias of the counts relation. The
    一次性化解 rate counts only first petitions whose verdict is no longer
    pending (see int_petitions__judged). -#}
{% macro indicator_rates(t) -%}
    cast(round(cast({{ t }}.online_petitions as numeric) / nullif({{ t }}.petitions_received, 0), 4) as numeric(7, 4))
        as online_share,
    cast(round(cast({{ t }}.repeat_petitions as numeric) / nullif({{ t }}.petitions_received, 0), 4) as numeric(7, 4))
        as repeat_share,
    cast(round(
        cast({{ t }}.first_petitions_resolved as numeric) / nullif({{ t }}.first_petitions_judged, 0), 4
    ) as numeric(7, 4)) as first_handling_resolution_rate,
    cast(round(
        cast({{ t }}.petitions_satisfied as numeric) / nullif({{ t }}.petitions_rated, 0), 4
    ) as numeric(7, 4)) as satisfaction_rate,
    cast(round(
        cast({{ t }}.repeats_after_unsatisfied_handling as numeric) / nullif({{ t }}.repeat_petitions, 0), 4
    ) as numeric(7, 4)) as repeats_after_unsatisfied_share
{%- endmacro %}

{#- Change of each indicator against the row aliased `p` (previous month or year):
    relative change for counts, percentage points for rates. -#}
{% macro indicator_changes(c, p, suffix) -%}
    cast(round(cast({{ c }}.petitions_received as numeric) / nullif({{ p }}.petitions_received, 0) - 1, 4)
        as numeric(7, 4)) as petitions_change_{{ suffix }},
    cast(round(({{ c }}.online_share - {{ p }}.online_share) * 100, 2) as numeric(7, 2))
        as online_share_change_pp_{{ suffix }},
    cast(round(({{ c }}.repeat_share - {{ p }}.repeat_share) * 100, 2) as numeric(7, 2))
        as repeat_share_change_pp_{{ suffix }},
    cast(round(({{ c }}.first_handling_resolution_rate - {{ p }}.first_handling_resolution_rate) * 100, 2)
        as numeric(7, 2)) as first_handling_resolution_change_pp_{{ suffix }},
    cast(round(({{ c }}.satisfaction_rate - {{ p }}.satisfaction_rate) * 100, 2) as numeric(7, 2))
        as satisfaction_change_pp_{{ suffix }}
{%- endmacro %}
