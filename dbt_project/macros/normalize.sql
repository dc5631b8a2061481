{#- Trimmed text with empty strings as null. -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#-
    Map free text to a canonical value: the text is lower-cased and stripped
    of everything but letters (so ' Add-To-Cart ' and 'add_to_cart' match
    'addtocart'), then looked up in `synonyms` (canonical -> spellings) with a
    simple CASE, which evaluates the expression once per row.
    Values not listed give `otherwise` (a SQL expression).
-#}
{% macro map_synonyms(column, synonyms, otherwise) -%}
    case regexp_replace(lower({{ column }}), '[^a-z]', '', 'g')
    {%- for canonical, spellings in synonyms.items() %}
        {%- for spelling in spellings %}
        when '{{ spelling }}' then '{{ canonical }}'
        {%- endfor %}
    {%- endfor %}
        else {{ otherwise }}
    end
{%- endmacro %}

{#- Free-text gender to female / male / other / unknown. -#}
{% macro normalize_gender(column) -%}
    {{ map_synonyms(column, {
        'female': ['f', 'female', 'woman', 'w', 'girl'],
        'male': ['m', 'male', 'man', 'boy'],
        'other': ['o', 'other', 'x', 'diverse', 'nonbinary', 'nb'],
    }, "'unknown'") }}
{%- endmacro %}

{#- Platform synonyms to web / app / mini_program / unknown ('h' is H5 without its digit). -#}
{% macro normalize_platform(column) -%}
    {{ map_synonyms(column, {
        'web': ['web', 'www', 'pc', 'desktop', 'h', 'hfive', 'mobileweb', 'browser', 'site', 'website'],
        'app': ['app', 'ios', 'android', 'mobileapp', 'iphone', 'ipad', 'nativeapp'],
        'mini_program': ['miniprogram', 'miniapp', 'wechat', 'weixin', 'wechatminiprogram', 'alipay'],
    }, "'unknown'") }}
{%- endmacro %}

{#-
    Event type synonyms to view / cart / remove_from_cart / purchase / search;
    other values are returned lower-cased and trimmed (and then excluded).
-#}
{% macro normalize_event_type(column) -%}
    {{ map_synonyms(column, {
        'view': ['view', 'pageview', 'itemview', 'productview', 'detailview', 'click', 'pv'],
        'cart': ['cart', 'addtocart', 'addcart', 'addtobasket', 'basket', 'cartadd'],
        'remove_from_cart': ['removefromcart', 'removecart', 'cartremove', 'removefrombasket', 'uncart'],
        'purchase': ['purchase', 'buy', 'order', 'checkout', 'transaction', 'bought'],
        'search': ['search', 'query', 'searchquery'],
    }, 'lower(trim(' ~ column ~ '))') }}
{%- endmacro %}

{#-
    Order status to completed / cancelled / returned (missing means completed);
    other values are returned lower-cased and trimmed (and then excluded).
-#}
{% macro normalize_order_status(column) -%}
    {{ map_synonyms('coalesce(' ~ column ~ ", 'completed')", {
        'completed': ['completed', 'complete', 'paid', 'delivered', 'shipped', 'done', ''],
        'cancelled': ['cancelled', 'canceled', 'cancel', 'void'],
        'returned': ['returned', 'refunded', 'return', 'refund'],
    }, 'lower(trim(' ~ column ~ '))') }}
{%- endmacro %}
