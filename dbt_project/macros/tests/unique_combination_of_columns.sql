{#- Fails for every combination of the given columns that occurs more than once.
    A copy of dbt_utils.unique_combination_of_columns (dbt packages cannot be fetched offline); same arguments. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
