{% test xinfang_unique_combination(model, columns) %}
-- Rows whose combination of `columns` occurs more than once (the table's natural key).
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
