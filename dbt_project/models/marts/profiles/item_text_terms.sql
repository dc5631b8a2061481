{#-
    The terms user_text_interests weighs an item's tokens by, as of the run: the listed items' tokens with
    the idf of the last fit (text_term_idf), a table whose primary key (item_id, token) serves the profile's
    lookups by item, user by user (macro text_item_terms).
-#}

with

item_terms as (

    {{ text_item_terms(ref('dim_items'), ref('item_search_tokens'), as_of_timestamp(), ref('text_term_idf')) }}

),

final as (

    select
        item_id,
        token,
        idf
    from item_terms

)

select * from final
