{#- A policy parameter from the policy_parameters seed, as a scalar subquery, so
    changing the seed (not the SQL) changes the rule. -#}
{% macro policy_value(parameter) -%}
(select pp.value from {{ ref('policy_parameters') }} as pp where pp.parameter = '{{ parameter }}')
{%- endmacro %}
