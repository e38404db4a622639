{# Reconciliation between layers: an aggregate of this model must equal an
   aggregate of another relation (e.g. report totals = fact rows). #}
{% test xinfang_sums_match(model, column, other, other_expression, this_expression=none) %}
with this_side as (
    select {{ this_expression or ('sum(' ~ column ~ ')') }} as total from {{ model }}
),

other_side as (
    select {{ other_expression }} as total from {{ other }}
)

select this_side.total as this_total, other_side.total as other_total
from this_side
cross join other_side
where this_side.total is distinct from other_side.total
{% endtest %}
