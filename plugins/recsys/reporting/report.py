"""What a run built, for people: the summary ``make run`` prints and the CSV export the shop serves from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from psycopg2 import sql

from recsys.db.warehouse import connect
from recsys.serving import placements

SUMMARY_TABLES = [
    "raw.users",
    "raw.items",
    "raw.events",
    "raw.orders",
    "quality.rejected_rows",
    "analytics.dim_users",
    "analytics.dim_items",
    "analytics.fct_interactions",
    "analytics.fct_reviews",
    "analytics.user_profiles",
    "analytics.user_interest_tags",
    "recs.user_recommendations",
    "recs.similar_items",
    "recs.cold_start_recommendations",
    "recs.promotion_targets",
    "recs.model_evaluations",
    "recs.model_search",
    "recs.runs",
]


def fetch_frame(conn, statement: str | sql.Composable, params: tuple = ()) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


def print_summary(url: str, example_users: int = 3) -> None:
    """Print rows per table, the latest evaluation and a few users with their profile and top-5 list."""
    with connect(url) as conn:
        count = sql.SQL("select count(*) as n from {}")
        counts = {
            table: fetch_frame(conn, count.format(sql.Identifier(*table.split("."))))["n"].iloc[0]
            for table in SUMMARY_TABLES
        }
        print("\nRows per table")
        print(pd.Series(counts, name="rows").to_string())
        run = fetch_frame(
            conn,
            "select run_id, status, champion_model, champion_reason from recs.runs "
            "order by data_cutoff_at desc limit 1",
        )
        print("\nLatest run\n" + run.to_string(index=False))
        evaluations = fetch_frame(
            conn,
            "select model_name, variant, metric, k, round(metric_value::numeric, 4) as value "
            "from recs.model_evaluations where run_id = %s and segment = 'all' and k = 10 "
            "order by variant, metric, model_name",
            (run["run_id"].iloc[0],),
        )
        print("\nEvaluation @10 (test window after the cutoff)")
        print(evaluations.pivot_table(index=["variant", "model_name"], columns="metric", values="value").to_string())
        users = fetch_frame(
            conn,
            """
            select map.shop_user_id, profile.*
            from analytics.user_profiles as profile
            inner join identity.published_user_id_map as map on map.user_id = profile.user_id
            where profile.frequency > 1
            order by profile.user_id
            limit %s""",
            (example_users,),
        )
        for user in users.to_dict("records"):
            print(
                f"\nUser {user['shop_user_id']}: rfm_segment={user['rfm_segment']}, "
                f"spending_power={user['spending_power']}, lifecycle={user['lifecycle_stage']}, "
                f"top_categories={user['top_categories']}, promo_sensitivity={float(user['promo_sensitivity']):.2f}"
            )
            recs = fetch_frame(
                conn,
                """
                select recs.item_rank, recs.item_id, items.category, round(recs.score::numeric, 4) as score,
                    recs.reason_text
                from recs.user_recommendations as recs
                inner join analytics.dim_items as items on items.item_id = recs.item_id
                where recs.user_id = %s and recs.placement = %s and recs.item_rank <= 5
                order by recs.item_rank""",
                (user["user_id"], placements.FOR_YOU),
            )
            print(recs.to_string(index=False))


def explain_user(url: str, shop_user_id: str, n_tags: int = 5) -> str:
    """A user's profile, top interest tags and published recommendations with their reasons, as text.

    Raises
    ------
    ValueError
        The shop user id is not in ``identity.published_user_id_map`` (unknown, erased, or no run published yet).
    """
    with connect(url) as conn:
        found = fetch_frame(
            conn, "select user_id from identity.published_user_id_map where shop_user_id = %s", (shop_user_id.strip(),)
        )
        if found.empty:
            raise ValueError(f"user {shop_user_id!r} is not in the warehouse (unknown, erased, or no run yet)")
        user_id = found["user_id"].iloc[0]
        users = fetch_frame(
            conn,
            """
            select users.age_band, users.gender, users.region, users.is_personalization_allowed,
                profile.rfm_segment, profile.spending_power, profile.lifecycle_stage, profile.recency_days,
                profile.frequency, profile.monetary, profile.price_sensitivity, profile.promo_sensitivity
            from analytics.dim_users as users
            left join analytics.user_profiles as profile on profile.user_id = users.user_id
            where users.user_id = %s""",
            (user_id,),
        )
        tags = fetch_frame(
            conn,
            "select tag, round(weight::numeric, 3) as weight from analytics.user_interest_tags"
            " where user_id = %s and tag_rank <= %s order by tag_rank",
            (user_id, n_tags),
        )
        recs = fetch_frame(
            conn,
            """
            select recs.placement, recs.item_rank, recs.item_id, items.item_name, items.category,
                round(recs.score::numeric, 4) as score, recs.model_name, recs.reason_code, recs.reason_text
            from recs.user_recommendations as recs
            inner join analytics.dim_items as items on items.item_id = recs.item_id
            where recs.user_id = %s
            order by array_position(%s, recs.placement), recs.item_rank""",
            (user_id, list(placements.PLACEMENTS)),
        )
    profile = users.iloc[0].to_dict() if len(users) else {}
    lines = [f"User {shop_user_id.strip()}"]
    lines += [f"  {name}: {value}" for name, value in profile.items()]
    lines.append("Interest tags" + ("" if len(tags) else ": none (no behaviour, or opted out)"))
    lines += [f"  {row['tag']}: {row['weight']}" for row in tags.to_dict("records")]
    lines.append("Recommendations")
    lines.append(recs.to_string(index=False) if len(recs) else "  none published")
    return "\n".join(lines)


#: a text cell a spreadsheet would run as a formula (OWASP CSV injection) gets a leading apostrophe;
#: ``+`` and ``-`` only when the cell is not a plain number (a shop id like -42 stays as it is)
SPREADSHEET_SAFE = (
    r"case when {0} ~ '^[=@\t\r]' or ({0} ~ '^[+-]' and {0} !~ '^[+-][0-9.]+$') then '''' || {0} else {0} end"
)


def export_recommendations(url: str, out: Path) -> int:
    """Write the published recommendations keyed by the shop's own user ids to a CSV file; return rows written.

    One list per shop account and placement: the accounts identity stitching merged into one person
    (``identity.published_user_id_map``, the map published with the run) each get that person's lists; the
    ``placement`` is the last column (the columns before it are those of the export before placements). Text
    cells a spreadsheet would run as a formula are neutralised with a leading apostrophe. The file is written
    under a temporary name and renamed when complete: a failed export leaves the previous file, no partial one.
    """
    safe = {name: SPREADSHEET_SAFE.format(name) for name in ("user_id", "item_id", "reason_code", "reason_text")}
    statement = f"""
        copy (
            select {safe["user_id"]} as user_id, item_rank, {safe["item_id"]} as item_id, score, model_name,
                {safe["reason_code"]} as reason_code, {safe["reason_text"]} as reason_text, run_id, generated_at,
                placement
            from (
                select map.shop_user_id as user_id, recs.placement, recs.item_rank, recs.item_id, recs.score,
                    recs.model_name, recs.reason_code, recs.reason_text, recs.run_id, recs.generated_at
                from recs.user_recommendations as recs
                inner join identity.published_user_id_map as map on map.user_id = recs.user_id
            ) as published
            order by published.user_id, published.placement, published.item_rank
        ) to stdout with (format csv, header true)"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with connect(url) as conn, conn.cursor() as cur, partial.open("w", newline="") as handle:
            cur.copy_expert(statement, handle)
            rows = cur.rowcount  # from COPY's command tag
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return rows
