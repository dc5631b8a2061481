"""Text signals against real Postgres and dbt: review sentiment scored incrementally, the text profiles recover the
planted truth of a simulated shop.

Planted (``recsys.dev.simulate``): ratings are higher in the categories a user likes, and review words follow
the rating; a user views and buys mostly in a few leaf categories (``top_leaf`` in the truth).
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.db import frames
from recsys.db.warehouse import connect
from recsys.dev.local import BIN, environment
from recsys.dev.simulate import simulate
from recsys.features import sentiment
from recsys.ingest import load
from recsys.quality import erasure

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
TEXT_SHOP = {"users": 20_000, "items": 1_000, "days": 60, "seed": 11}
#: dbt's default text_interest_terms and interest_half_life_days (dbt_project.yml)
TERMS, HALF_LIFE = 20, 30


def dbt(env: dict, target: Path, as_of: datetime, *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "dbt"), *args, "--project-dir", str(DBT_PROJECT), "--target-path", str(target)],
        env=env | {"RECSYS_AS_OF": as_of.isoformat()},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.fixture(scope="module")
def text_warehouse(fresh_database, tmp_path_factory):
    """The shop loaded, dbt run without sentiment, reviews scored, then the marts built again (as the DAG does)."""
    out = tmp_path_factory.mktemp("text_shop")
    simulate(out, **TEXT_SHOP)
    end = datetime.fromisoformat(json.loads((out / "manifest.json").read_text())["end_date"]).replace(
        tzinfo=UTC
    ) + timedelta(days=1)
    url = fresh_database()
    with connect(url) as conn:
        load.load_landing(conn, out, "batch_1")
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    target = tmp_path_factory.mktemp("dbt_target")
    dbt(env, target, end, "run", "--exclude", "tag:publish")  # dbt's data tests: test_pipeline_e2e.py
    with connect(url) as conn:
        scored = sentiment.score_new_reviews(conn)
    dbt(env, target, end, "run", "--select", "stg_features__review_sentiment+", "--exclude", "tag:publish")
    return url, out, end, scored


def read(url: str, query: str) -> pd.DataFrame:
    with connect(url) as conn:
        return frames.read_frame(conn, query, dtype={"user_id": str, "shop_user_id": str})


def truth_by_user(url: str, shop: Path) -> pd.DataFrame:
    """The planted truth keyed by the warehouse's pseudonymous user_id."""
    truth = pd.read_csv(shop / "truth" / "user_truth.csv", dtype=str)
    ids = read(url, "select shop_user_id, user_id from identity.user_id_map")
    return truth.merge(ids, left_on="user_id", right_on="shop_user_id", suffixes=("_shop", ""))


def test_every_staged_text_is_scored_once_and_only_new_or_changed_texts_again(text_warehouse):
    url, _, _, scored = text_warehouse
    staged = read(url, "select count(*) as n from staging.stg_shop__reviews where review_text <> ''")["n"][0]
    assert scored["reviews_scored"] == int(staged) > 300
    assert scored["distinct_texts"] < scored["reviews_scored"]
    first = "(select min(review_id) from ml.review_sentiment)"
    before = read(url, f"select compound from ml.review_sentiment where review_id = {first}")["compound"][0]
    with connect(url) as conn:
        assert sentiment.score_new_reviews(conn)["reviews_scored"] == 0
        with conn.cursor() as cursor:  # as if the review's text had changed since it was scored
            cursor.execute(f"update ml.review_sentiment set text_md5 = 'stale', compound = 0 where review_id = {first}")
        conn.commit()
        assert sentiment.score_new_reviews(conn)["reviews_scored"] == 1
    after = read(url, f"select compound from ml.review_sentiment where review_id = {first}")["compound"][0]
    assert after == before
    columns = read(url, "select column_name from information_schema.columns where table_name = 'review_sentiment'")
    assert not {"user_id", "review_text"} & set(columns["column_name"])


def test_sentiment_rises_with_the_planted_rating(text_warehouse):
    url = text_warehouse[0]
    # scored after fct_reviews was first built: its post-hook caught the sentiment up
    rows = read(url, "select rating, sentiment from analytics.fct_reviews where sentiment is not null").astype(float)
    assert len(rows) == text_warehouse[3]["reviews_scored"]
    by_rating = rows.groupby("rating")["sentiment"].mean()
    assert list(by_rating.index) == [1, 2, 3, 4, 5]
    assert by_rating.is_monotonic_increasing, by_rating
    assert by_rating[1] < -0.3 and by_rating[5] > 0.5
    assert np.corrcoef(rows["rating"], rows["sentiment"])[0, 1] > 0.7


def test_category_sentiment_is_highest_in_the_planted_top_category(text_warehouse):
    url, shop, _, _ = text_warehouse
    profile = read(url, "select user_id, category, reviews, average_sentiment from analytics.user_category_sentiment")
    profile = profile.merge(truth_by_user(url, shop)[["user_id", "top_category"]], on="user_id")
    liked = profile["category"] == profile["top_category"]
    sentiment_of = profile["average_sentiment"].astype(float)
    assert liked.sum() >= 100 and (~liked).sum() >= 100
    # planted: ratings (and so words) are higher where the item's category fits the user
    assert sentiment_of[liked].mean() > sentiment_of[~liked].mean() + 0.1


def test_text_interests_recover_the_planted_top_leaf(text_warehouse):
    """For users with 20+ events, a word of the planted top leaf ("Audio > Headphones": audio, headphone) is among
    the top 3 terms for about half (measured 0.55 on a 6,000-user shop), of a random leaf for about 3%."""
    url, shop, _, _ = text_warehouse
    top_terms = read(url, "select user_id, term from analytics.user_text_interests where term_rank <= 3")
    # the leaves' words by the one tokenizer (analytics.search_tokens), below the top-level category
    leaf_words = read(
        url,
        "select distinct category_path as leaf, analytics.search_tokens("
        "split_part(category_path, ' > ', 2) || ' ' || split_part(category_path, ' > ', 3)) as term "
        "from analytics.dim_items",
    )
    active = read(url, "select user_id from analytics.fct_interactions group by user_id having count(*) >= 20")
    users = truth_by_user(url, shop).merge(active, on="user_id")
    users["random_leaf"] = np.random.default_rng(0).choice(leaf_words["leaf"].unique(), len(users))

    def recovered(leaf_column: str) -> float:
        hits = users.merge(top_terms, on="user_id").merge(
            leaf_words, left_on=[leaf_column, "term"], right_on=["leaf", "term"]
        )
        return hits["user_id"].nunique() / len(users)

    assert len(users) >= 1000
    planted, chance = recovered("top_leaf"), recovered("random_leaf")
    assert planted > 0.45 and planted > 10 * chance, (planted, chance)


def test_point_in_time_text_interests_at_the_run_end_equal_the_mart(text_warehouse):
    url, _, end, _ = text_warehouse
    with connect(url) as conn, conn.cursor() as cursor:
        statement = cursor.mogrify(
            "select user_id, term, weight from analytics.user_text_interests_as_of(%s, %s, %s)",
            (end + timedelta(microseconds=1), HALF_LIFE, TERMS),
        ).decode()
        recomputed = frames.read_frame(conn, statement)
        mart = frames.read_frame(conn, "select user_id, term, weight from analytics.user_text_interests")
    joined = mart.merge(recomputed, on=["user_id", "term"], how="outer", suffixes=("_mart", "_pit"))
    assert len(joined) == len(mart) > 1000
    np.testing.assert_allclose(joined["weight_pit"].astype(float), joined["weight_mart"].astype(float), rtol=1e-9)


def test_erasing_a_reviewer_deletes_the_scores_of_their_reviews(text_warehouse):
    """Last: it changes the warehouse. The scores are keyed by review id, which the erasure collects as record keys."""
    url = text_warehouse[0]
    reviewer = read(
        url,
        "select map.shop_user_id, reviews.account_user_id as user_id from ml.review_sentiment as scores "
        "inner join staging.stg_shop__reviews as reviews on scores.review_id = reviews.review_id "
        "inner join identity.user_id_map as map on reviews.account_user_id = map.account_user_id "
        "order by reviews.review_id limit 1",
    ).iloc[0]
    review_ids = read(url, f"select review_id from staging.base_shop__reviews where user_id = '{reviewer['user_id']}'")[
        "review_id"
    ]
    scored = f"select count(*) as n from ml.review_sentiment where review_id in ({', '.join(map(repr, review_ids))})"
    before = int(read(url, scored)["n"][0])
    with connect(url) as conn:
        result = erasure.erase_user(conn, reviewer["shop_user_id"])
    assert result["rows_deleted"]["ml.review_sentiment"] == before >= 1
    assert int(read(url, scored)["n"][0]) == 0
