{#-
    The rank column runs 1..N without gaps or repeats within each group:
    fails for every group where min <> 1, max <> count or ranks repeat.
-#}
{% test ranks_are_consecutive(model, column_name, group_by_columns) %}

select
    {{ group_by_columns | join(', ') }},
    min({{ column_name }}) as min_rank,
    max({{ column_name }}) as max_rank,
    count(*) as row_count,
    count(distinct {{ column_name }}) as distinct_ranks
from {{ model }}
group by {{ group_by_columns | join(', ') }}
having min({{ column_name }}) <> 1
    or max({{ column_name }}) <> count(*)
    or count(distinct {{ column_name }}) <> count(*)
    or count({{ column_name }}) <> count(*)

{% endtest %}
