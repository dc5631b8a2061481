-- user_profiles has exactly the users of dim_users (one row each; uniqueness is tested on the model).
with

users as (

    select * from {{ ref('dim_users') }}

),

profiles as (

    select * from {{ ref('user_profiles') }}

)

select
    users.user_id as dim_user_id,
    profiles.user_id as profile_user_id
from users
full outer join profiles
    on users.user_id = profiles.user_id
where users.user_id is null or profiles.user_id is null
