{# Layers get their own schema names (staging, marts, ...) rather than dbt's
   "<target>_<custom>" default: reporting roles are granted per schema. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
