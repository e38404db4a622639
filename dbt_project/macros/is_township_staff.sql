{#- Whether a dim_staff row (alias `s`) is township petition staff, full- or part-time: the
    base of the 专职人员配备率. One definition for the half-year indicators and the H2 targets. -#}
{% macro is_township_staff(s) -%}
    {{ s }}.staff_kind in ('乡镇专职', '乡镇兼职')
{%- endmacro %}
