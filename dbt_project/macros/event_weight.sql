{#-
    The weight of an event type, from the var event_weights of dbt_project.yml: the one definition of
    event weights, which the Python models read too (recsys.features.interactions.EVENT_WEIGHTS).
-#}
{% macro event_weight(column) -%}
    case {{ column }}
    {%- for event_type, weight in var('event_weights').items() %}
        when '{{ event_type }}' then {{ weight }}
    {%- endfor %}
        else 0
    end
{%- endmacro %}
