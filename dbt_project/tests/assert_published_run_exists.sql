{{ config(tags=['publish']) }}

-- The run being published (var run_id) is in ml.runs: exactly one row of recs.runs is published.
select count(*) as published_runs
from {{ ref('runs') }}
where is_published
having count(*) <> 1
