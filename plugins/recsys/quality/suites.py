"""The expectation suites of the quality gates: what each gate checks, and how severe each failure is.

:func:`raw_suites` (the batch just loaded), :func:`marts_and_recs_suites` (the marts and the candidate run)
and :func:`identity_suites` (identity stitching) declare Great Expectations expectations with their
``severity``; :mod:`recsys.quality.gates` runs them and enforces the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from recsys.ingest import landing

if TYPE_CHECKING:
    from recsys.serving.rules import BusinessRules

TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"
#: how SQLAlchemy names the Postgres types the loader creates (``recsys.ingest.raw_tables.PG_TYPES``)
GX_TYPES = {"text": "TEXT", "timestamp": TIMESTAMPTZ, "numeric": "NUMERIC", "integer": "BIGINT", "boolean": "BOOLEAN"}
META_COLUMNS = {
    "_batch_id": "TEXT",
    "_source_file": "TEXT",
    "_row_number": "BIGINT",
    "_loaded_at": TIMESTAMPTZ,
    "_load_seq": "BIGINT",
}
#: share of a batch's rows a critical row-level rule tolerates: 4x the largest planted dirt rate of the
#: simulator (unknown ids 0.5%, bad amounts 0.3%, future timestamps 0.2%), well below a broken feed
MOSTLY = 0.98
#: optional-but-useful columns: warn when more than 10% are empty (the simulator leaves 3% empty)
MOSTLY_OPTIONAL = 0.9
#: the oldest plausible timestamp (the DAG's start_date) and how far past the interval end a timestamp may be
OLDEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
#: a batch whose newest event is older than this before its data interval's end is stale (warning, critical)
STALE_WARNING = timedelta(hours=26)
STALE_CRITICAL = timedelta(hours=50)
#: share of a file's rows the loader may reject (critical) / before a warning
MAX_REJECTED_SHARE = 0.05
WARN_REJECTED_SHARE = 0.01
#: the largest plausible quantity of one line: wholesale invoices order thousands of one item (a web shop's
#: 1000 failed an invoice export), a broken feed's quantity is an id or an amount in cents of a large order
MAX_QUANTITY = 1_000_000
#: list length of recommendations and similar items
MAX_ITEMS_PER_LIST = 20
#: identity stitching: the share of accounts merged with another account that is plausible (warning outside);
#: near 0 the keys stopped arriving, far above the usual share a key links people it should not
IDENTITY_MERGE_RATE = (0.0, 0.5)
#: the most accounts one person may have before the stitching is suspect (critical: a key joins strangers)
IDENTITY_MAX_PERSON_ACCOUNTS = 20
#: data docs kept: those of the newest runs (``RECSYS_GX_DOCS_KEEP_RUNS``)


@dataclass(frozen=True)
class Suite:
    """One expectation suite and the batch it validates.

    Parameters
    ----------
    name : str
        Suite name, e.g. ``raw_events``.
    table : str
        The table validated (``schema.name``).
    expectations : list
        Great Expectations expectation objects, each with its ``severity``.
    query : str, optional
        The batch as a SQL query (e.g. the rows of one batch id); None = the whole table.
    """

    name: str
    table: str
    expectations: list
    query: str | None = None


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def unique_rows(columns: list[str], critical_share: float = 0.0, warning_share: float | None = None):
    """Rows of the batch sharing ``columns`` with another row, checked in one ``GROUP BY`` (linear in rows).

    One expectation per check, whatever its thresholds: the query returns
    one row per duplicated row (every copy of a key that occurs more than
    once) when their share of the batch is above ``warning_share`` (default
    ``critical_share``; with both 0 any duplicate fails). :func:`validate`
    grades a failure ``critical`` when the share is above ``critical_share``,
    else ``warning``, and records the share as the observed value. (Great
    Expectations' ``ExpectCompoundColumnsToBeUnique`` took minutes on a few
    hundred thousand rows of a query batch: it is not linear there.)
    """
    from recsys.quality.expectations import UnexpectedRowCountExpectation

    warning_share = critical_share if warning_share is None else warning_share
    keys = ", ".join(columns)
    query = (
        "select copies from (select copies, sum(copies) over () as batch_rows,"
        " coalesce(sum(copies) filter (where copies > 1) over (), 0) as duplicated_rows"
        f" from (select count(*) as copies from {{batch}} group by {keys}) as copies_per_key) as counted"
        " cross join lateral generate_series(1, copies) as copy"
        f" where copies > 1 and duplicated_rows > {warning_share} * batch_rows"
    )
    return UnexpectedRowCountExpectation(
        unexpected_rows_query=query,
        description=f"rows unique on ({keys}): duplicated share at most {warning_share}"
        + (f" (critical above {critical_share})" if critical_share > warning_share else ""),
        severity="critical" if critical_share <= warning_share else "warning",
        meta={"columns": columns, "critical_share": critical_share},
    )


def fresh(column: str, data_interval_end: datetime) -> list:
    """Freshness on event time: the batch's newest ``column`` against the end of its data interval.

    A re-delivered old file or a feed that stopped fails, where load time would say "fresh" for both:
    a warning after :data:`STALE_WARNING`, critical after :data:`STALE_CRITICAL`.
    """
    import great_expectations as gx

    e = gx.expectations
    return [
        e.ExpectColumnMaxToBeBetween(column=column, min_value=data_interval_end - STALE_WARNING, severity="warning"),
        e.ExpectColumnMaxToBeBetween(column=column, min_value=data_interval_end - STALE_CRITICAL),
    ]


def raw_suites(batch_id: str, data_interval_end: datetime, tables: list[str]) -> list[Suite]:
    """The suites of the ``raw`` gate for the rows of ``batch_id`` in ``tables``.

    Per table a ``raw_<table>_schema`` suite (the whole table: expected columns and their types) and a
    ``raw_<table>`` suite on the batch's rows; plus ``load_audit`` (the reject share of each file).
    Row-level rules that staging enforces (and sets rows aside for) are critical with ``mostly=MOSTLY``:
    the simulator's documented dirt passes, a broken feed does not.
    """
    import great_expectations as gx

    e = gx.expectations
    rules = _raw_rules(e, data_interval_end)
    derived = {
        "events": ", lower(btrim(event_type)) as event_type_normalized",
        "orders": ", lower(btrim(coalesce(status, 'completed'))) as status_normalized",
        "social_edges": ", lower(btrim(kind)) as kind_normalized",
    }
    suites = []
    for name in tables:
        spec = landing.FILES[name]
        types = {column.name: GX_TYPES[column.type] for column in spec.columns} | META_COLUMNS
        schema = [e.ExpectTableColumnsToMatchSet(column_set=list(types), exact_match=True)]
        schema += [e.ExpectColumnValuesToBeOfType(column=column, type_=type_) for column, type_ in types.items()]
        required = [e.ExpectColumnValuesToNotBeNull(column=column.name) for column in spec.columns if column.required]
        suites += [
            Suite(f"raw_{name}_schema", f"raw.{name}", schema),
            Suite(
                f"raw_{name}",
                f"raw.{name}",
                # an optional file may be empty: a daily delivery without reviews or redemptions is a quiet day; a
                # snapshot's batch may hold no row (all unchanged): load_audit checks that its file had rows
                [
                    *(
                        [e.ExpectTableRowCountToBeBetween(min_value=1)]
                        if spec.required and not spec.snapshot_key
                        else []
                    ),
                    *required,
                    *rules[name],
                ],
                f"select *{derived.get(name, '')} from raw.{name} where _batch_id = {_literal(batch_id)}",
            ),
        ]
    required_files = ", ".join(_literal(spec.name) for spec in landing.FILES.values() if spec.required)
    audit = (
        "select table_name, rows_read, rows_rejected, rows_rejected::float / nullif(rows_read, 0) as rejected_share,"
        f" case when table_name in ({required_files}) then rows_read end as required_rows_read"
        f" from quality.load_audit where batch_id = {_literal(batch_id)}"
    )
    suites.append(
        Suite(
            "load_audit",
            "quality.load_audit",
            [
                e.ExpectColumnValuesToBeBetween(column="required_rows_read", min_value=1),
                e.ExpectColumnValuesToBeBetween(column="rejected_share", max_value=MAX_REJECTED_SHARE),
                e.ExpectColumnValuesToBeBetween(
                    column="rejected_share", max_value=WARN_REJECTED_SHARE, severity="warning"
                ),
            ],
            audit,
        )
    )
    return suites


def _unique_id(column: str):
    """At most 4 % of a batch's rows share an id with another (2 % of ids repeated once); unlike a proportion of
    unique values, an empty batch passes (a snapshot with no change, a day without orders)."""
    return unique_rows([column], critical_share=2 * (1 - MOSTLY))


def _raw_rules(e: Any, data_interval_end: datetime) -> dict[str, list]:
    """The row-level expectations of each raw table's batch (``e``: ``great_expectations.expectations``)."""
    latest = data_interval_end + FUTURE_TOLERANCE

    def when(column: str, severity: str = "critical"):
        return e.ExpectColumnValuesToBeBetween(
            column=column, min_value=OLDEST, max_value=latest, mostly=MOSTLY, severity=severity
        )

    def id_format(column: str):
        # shop ids are free text; staging trims them, so padded or very long ids are worth a look only
        return e.ExpectColumnValuesToMatchRegex(column=column, regex=r"^\S{1,128}$", mostly=MOSTLY, severity="warning")

    def optional(column: str):
        return e.ExpectColumnValuesToNotBeNull(column=column, mostly=MOSTLY_OPTIONAL, severity="warning")

    return {
        "users": [
            id_format("user_id"),
            _unique_id("user_id"),
            when("signup_at"),
            e.ExpectColumnValuesToBeBetween(
                column="birth_year", min_value=1900, max_value=data_interval_end.year, mostly=MOSTLY, severity="warning"
            ),
            optional("gender"),
            optional("region"),
        ],
        "items": [
            id_format("item_id"),
            _unique_id("item_id"),
            e.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True, mostly=MOSTLY),
            optional("price"),
            optional("category_path"),
            optional("name"),
            optional("brand"),
            when("created_at", "warning"),
        ],
        "events": [
            id_format("user_id"),
            id_format("item_id"),
            e.ExpectColumnValuesToBeInSet(
                column="event_type_normalized", value_set=list(landing.EVENT_TYPES), mostly=MOSTLY
            ),
            when("event_at"),
            *fresh("event_at", data_interval_end),
            e.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True, mostly=MOSTLY),
            e.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=MAX_QUANTITY, mostly=MOSTLY),
            # exact re-deliveries: both copies count, so the simulator's 2% duplicates show as ~4% (a warning).
            # Quantity and price are part of the key: two lines of one item on one invoice are not a re-delivery.
            unique_rows(
                ["user_id", "item_id", "event_type", "event_at", "quantity", "price"],
                critical_share=0.1,
                warning_share=0.01,
            ),
            optional("session_id"),
            optional("platform"),
        ],
        "orders": [
            _unique_id("order_id"),
            when("ordered_at"),
            e.ExpectColumnValuesToBeInSet(
                column="status_normalized", value_set=["completed", "cancelled", "returned"], mostly=MOSTLY
            ),
        ],
        "order_lines": [
            e.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=MAX_QUANTITY, mostly=MOSTLY),
            e.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0, mostly=MOSTLY),
        ],
        "reviews": [
            e.ExpectColumnValuesToBeBetween(column="rating", min_value=1, max_value=5, mostly=MOSTLY),
            when("reviewed_at"),
        ],
        "promotions": [
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="ends_at", column_B="starts_at", or_equal=True, mostly=MOSTLY, severity="warning"
            )
        ],
        "redemptions": [when("redeemed_at")],
        "social_edges": _social_edge_rules(e, id_format, when),
    }


def _social_edge_rules(e: Any, id_format: Any, when: Any) -> list:
    """The raw ``social_edges`` rules: id formats, known kinds (``kind_normalized``), plausible times."""
    kinds = list(landing.SOCIAL_EDGE_KINDS)
    in_set = e.ExpectColumnValuesToBeInSet(column="kind_normalized", value_set=kinds, mostly=MOSTLY)
    return [id_format("from_user_id"), id_format("to_user_id"), in_set, when("created_at")]


def min_diversity_query(min_diversity: float, k: int, placement: str = "for_you") -> str:
    """Rows (one) when the mean intra-list diversity of the batch's ``placement`` top ``k`` is below ``min_diversity``.

    Per user, diversity is the share of item pairs of the top ``k`` in
    different ``dim_items.category`` (unknown is one category), as in
    :func:`recsys.evaluation.metrics.per_user_diversity`; users with fewer than two items
    do not count. A catalogue with fewer than two categories in stock (an
    invoice export has none) cannot be diverse by category: the check passes.
    """
    return f"""
        with top as (
            select batch.user_id, coalesce(items.category, '') as category
            from {{batch}} as batch
            left join analytics.dim_items as items on items.item_id = batch.item_id
            where batch.item_rank <= {int(k)} and batch.placement = {_literal(placement)}
        ), per_category as (
            select user_id, count(*) as n from top group by user_id, category
        ), per_user as (
            select user_id, 1 - sum(n * (n - 1) / 2.0) / (sum(n) * (sum(n) - 1) / 2.0) as diversity
            from per_category group by user_id having sum(n) >= 2
        )
        select avg(diversity) as mean_intra_list_diversity from per_user
        having avg(diversity) < {float(min_diversity)!r}
            and (select count(distinct coalesce(category, '')) from analytics.dim_items where is_in_stock) >= 2"""


def marts_and_recs_suites(run_id: str, rules: BusinessRules | None = None) -> list[Suite]:
    """The suites of the ``marts_and_recs`` gate: profiles, interest tags, and the candidate run ``run_id``.

    ``rules`` (default :func:`recsys.serving.rules.load_business_rules`) sets the
    minimum mean intra-list diversity of the run's lists (critical).
    """
    import great_expectations as gx

    from recsys.serving.rules import load_business_rules

    e = gx.expectations
    rules = load_business_rules() if rules is None else rules
    rows, in_stock, scores_follow_ranks = (partial(check, e) for check in (_rows, _in_stock, _scores_follow_ranks))
    run = _literal(run_id)
    return [
        *_analytics_suites(e),
        _recommendations_suite(e, run, rules),
        Suite(
            "ml_similar_items",
            "ml.similar_items",
            [
                unique_rows(["item_id", "similar_item_id"]),
                e.ExpectColumnValuesToBeBetween(column="item_rank", min_value=1, max_value=MAX_ITEMS_PER_LIST),
                rows("no item is similar to itself", "select * from {batch} where item_id = similar_item_id"),
                in_stock("similar_item_id"),
                scores_follow_ranks("item_id"),
            ],
            f"select * from ml.similar_items where run_id = {run}",
        ),
        Suite(
            "ml_cold_start_recommendations",
            "ml.cold_start_recommendations",
            [
                e.ExpectTableRowCountToBeBetween(min_value=1),
                unique_rows(["segment_key", "item_id"]),
                in_stock("item_id"),
                scores_follow_ranks("segment_key"),
            ],
            f"select * from ml.cold_start_recommendations where run_id = {run}",
        ),
        _promotion_targets_suite(e, run),
    ]


def identity_suites() -> list[Suite]:
    """The identity stitching checks of the ``marts_and_recs`` gate, on ``quality.identity_stitching_summary``.

    ``identity_merge_rate`` (warning): the merge rate within :data:`IDENTITY_MERGE_RATE`;
    ``identity_accounts_reconcile`` (critical): the summary's accounts and persons equal the accounts and the
    distinct persons of ``identity.user_id_map`` (the sum of accounts over persons);
    ``identity_person_size`` (critical): no person has more than :data:`IDENTITY_MAX_PERSON_ACCOUNTS` accounts.
    """
    import great_expectations as gx

    from recsys.quality.expectations import UnexpectedRowCountExpectation

    e = gx.expectations
    table = "quality.identity_stitching_summary"
    low, high = IDENTITY_MERGE_RATE
    return [
        Suite(
            "identity_merge_rate",
            table,
            [e.ExpectColumnValuesToBeBetween(column="merge_rate", min_value=low, max_value=high, severity="warning")],
        ),
        Suite(
            "identity_accounts_reconcile",
            table,
            [
                UnexpectedRowCountExpectation(
                    description="accounts = rows of identity.user_id_map, persons = its distinct user ids",
                    unexpected_rows_query=(
                        "select * from {batch} where accounts <>"
                        " (select count(*) from identity.user_id_map) or persons <>"
                        " (select count(distinct user_id) from identity.user_id_map)"
                    ),
                    severity="critical",
                )
            ],
            f"select * from {table}",
        ),
        Suite(
            "identity_person_size",
            table,
            [
                e.ExpectColumnValuesToBeBetween(
                    column="largest_person_accounts", max_value=IDENTITY_MAX_PERSON_ACCOUNTS, severity="critical"
                )
            ],
        ),
    ]


def _rows(e: Any, description: str, query: str, severity: str = "critical"):
    from recsys.quality.expectations import UnexpectedRowCountExpectation

    return UnexpectedRowCountExpectation(unexpected_rows_query=query, description=description, severity=severity)


def _in_stock(e: Any, column: str):
    return _rows(
        e,
        f"every {column} exists in analytics.dim_items and is in stock",
        f"select batch.* from {{batch}} as batch left join analytics.dim_items as items"
        f" on items.item_id = batch.{column} where items.is_in_stock is not true",
    )


def _scores_follow_ranks(e: Any, key: str):
    return _rows(
        e,
        "scores do not increase with item_rank",
        f"select * from (select {key}, item_rank, score, lag(score) over (partition by {key} order by item_rank)"
        " as previous_score from {batch}) as ranked where score > previous_score",
    )


def _analytics_suites(e: Any) -> list[Suite]:
    """The profile marts every published list is built from: not empty.

    Their keys (one row per user, per user and tag) and the interest weights in (0, 1] are checked once, where
    they are written: the primary keys and ``not null`` of the dbt contracts are the warehouse's constraints, the
    weights a dbt test of the marts layer.
    """
    return [
        Suite("analytics_user_profiles", "analytics.user_profiles", [e.ExpectTableRowCountToBeBetween(min_value=1)]),
    ]


def _recommendations_suite(e: Any, run: str, rules: BusinessRules) -> Suite:
    """The checks of the candidate run's lists in ``ml.recommendations`` (see :func:`marts_and_recs_suites`)."""
    from recsys.serving import placements

    rows, in_stock, scores_follow_ranks = (partial(check, e) for check in (_rows, _in_stock, _scores_follow_ranks))
    return Suite(
        "ml_recommendations",
        "ml.recommendations",
        [
            # the batch's rows, which the shares of the checks below divide by (recsys.quality.gates); not a
            # check: an incremental run that touched nobody generates no rows, so "has lists" reads the run
            e.ExpectTableRowCountToBeBetween(min_value=0),
            rows(
                "the run has lists",
                f"select 1 where not exists (select from ml.run_recommendations where run_id = {run})",
            ),
            unique_rows(["user_id", "placement", "item_id"]),
            # row queries, not column expectations: on a query batch Great Expectations reads the column
            # types by fetching the whole batch (millions of rows here); reason_code is `not null` in the table
            rows(
                f"item_rank between 1 and {MAX_ITEMS_PER_LIST}",
                f"select * from {{batch}} where item_rank not between 1 and {MAX_ITEMS_PER_LIST}",
            ),
            rows(
                f"placement is one of {', '.join(placements.PLACEMENTS)}",
                "select * from {batch} where placement not in ("
                + ", ".join(_literal(name) for name in placements.PLACEMENTS)
                + ")",
            ),
            rows(
                f"at most {MAX_ITEMS_PER_LIST} items per user and placement",
                "select user_id, placement, count(*) from {batch} group by user_id, placement"
                f" having count(*) > {MAX_ITEMS_PER_LIST}",
            ),
            in_stock("item_id"),
            scores_follow_ranks("user_id, placement"),
            rows("every row has a reason text", "select * from {batch} where reason_text is null"),
            rows(
                f"mean intra-list diversity of the top {rules.diversity_k} is at least"
                f" {rules.min_intra_list_diversity} (business rules {rules.version})",
                min_diversity_query(rules.min_intra_list_diversity, rules.diversity_k, placements.FOR_YOU),
            ),
            rows(
                "every user of analytics.dim_users has a for_you list",
                # generated by the run, or carried from a run that still holds its lists: a carried list passed its
                # own run's gate, this check included. Read through the keys, not through ml.run_recommendations,
                # which joins every list row of the carried runs (the whole full run's: 4.0M rows at M)
                "select users.user_id from analytics.dim_users as users where not exists (select from"
                f" ml.recommendations as lists where lists.run_id = {run}"
                f" and lists.user_id = users.user_id and lists.placement = '{placements.FOR_YOU}')"
                " and not exists (select from ml.carried_lists as carried"
                f" where carried.run_id = {run} and carried.user_id = users.user_id and carried.list_run_id in"
                f" (select list_run_id from (select distinct list_run_id from ml.carried_lists where run_id = {run})"
                " as runs where exists (select from ml.recommendations as kept where kept.run_id = runs.list_run_id)))",
                "warning",
            ),
        ],
        # the rows the run generated: an incremental run's carried lists (ml.carried_lists, generated by an
        # earlier run for users it did not touch) passed that run's gate (recsys.orchestration.schedule)
        f"select * from ml.recommendations where run_id = {run}",
    )


def _promotion_targets_suite(e: Any, run: str) -> Suite:
    rows = partial(_rows, e)
    return Suite(
        "ml_promotion_targets",
        "ml.promotion_targets",
        [
            unique_rows(["promotion_id", "user_id"]),
            e.ExpectColumnValuesToBeBetween(column="propensity", min_value=0, max_value=1),
            rows(
                "propensity does not increase with target_rank",
                "select * from (select promotion_id, target_rank, propensity, lag(propensity) over"
                " (partition by promotion_id order by target_rank) as previous from {batch}) as ranked"
                " where propensity > previous",
            ),
            rows(
                "every target is a user of analytics.dim_users who allows personalization",
                "select batch.* from {batch} as batch left join analytics.dim_users as users"
                " on users.user_id = batch.user_id where users.is_personalization_allowed is not true",
            ),
        ],
        f"select * from ml.promotion_targets where run_id = {run}",
    )
