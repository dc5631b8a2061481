{#-
    The idf user_text_interests weighs a token by, refitted like the models: on a full-run day (macro
    is_full_run_day, RECSYS_FULL_RUN_DAYS), on a full build, and when the stored fit is later than as_of (a
    re-run of an earlier interval). Any other run inserts nothing and the last fit stands, as a vectorizer
    fitted weekly keeps its vocabulary: a token first listed since weighs nothing until the next fit.
    Every listed item moves every idf a little (ln of the items listed), so an idf refitted daily would
    make every user's text interests change daily; kept fixed between fits, only the touched users' do.

    A refit inserts every token (delete+insert on token) and the post-hook deletes the tokens of the
    earlier fit.
-#}
{{
    config(
        materialized='incremental',
        unique_key='token',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["delete from {{ this }} where fitted_at < (select max(fitted_at) from {{ this }})"]
    )
}}

with

vocabulary as (

    {{ text_vocabulary(ref('dim_items'), ref('item_search_tokens'), as_of_timestamp()) }}

),

final as (

    select
        token,
        cast(items as integer) as items,
        cast(idf as double precision) as idf,
        {{ as_of_timestamp() }} as fitted_as_of,
        {{ refreshed_at() }} as fitted_at
    from vocabulary
    {% if is_incremental() %}
        where
            {{ is_full_run_day() }}
            or exists (
                select from {{ this }} as fits
                where fits.fitted_as_of > {{ as_of_timestamp() }}
            )
    {% endif %}

)

select * from final
