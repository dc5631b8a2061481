{#-
    A copy of dbt_utils.accepted_range (dbt packages cannot be fetched offline); same arguments.
    Fails for every non-null value outside [min_value, max_value]
    (bounds exclusive when inclusive=false; either bound may be omitted).
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
    and (
        false
        {% if min_value is not none %}
            or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
        {% endif %}
        {% if max_value is not none %}
            or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
        {% endif %}
    )

{% endtest %}
