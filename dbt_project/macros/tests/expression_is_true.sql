{#- Fails for every row where the SQL boolean expression is not true (null counts as a failure).
    A copy of dbt_utils.expression_is_true (dbt packages cannot be fetched offline); same arguments. -#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not coalesce(
    {% if column_name is not none %}{{ column_name }} {% endif %}{{ expression }},
    false
)

{% endtest %}
