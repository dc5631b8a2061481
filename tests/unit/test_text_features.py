"""The rankers' opt-in text features (``recsys.models.text_features``): hand-computed values, then a planted shop
where only the items' words tell the categories apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from test_ranker import N_CATEGORIES, N_ITEMS, T0, WEEK, WEEKS, planted_shop

from recsys.evaluation.metrics import evaluate
from recsys.evaluation.windows import time_split
from recsys.models import text_features
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.popularity import PopularityRecommender

#: the tokens of the dbt unit test of user_text_interests (i4, listed later, left out)
TOKENS = pd.Series(["100 home kettle kettleby", "home lamp lumen", "hearthly home kettle"])


def test_item_terms_weigh_presence_by_idf_and_drop_digits_and_shared_tokens():
    terms = text_features.item_terms(TOKENS, 3).toarray()
    # columns in sorted order: 100, hearthly, home, kettle, kettleby, lamp, lumen
    ln3, ln15 = np.log(3), np.log(1.5)
    np.testing.assert_allclose(terms[0], [0, 0, 0, ln15, ln3, 0, 0])
    np.testing.assert_allclose(terms[1], [0, 0, 0, 0, 0, ln3, ln3])
    np.testing.assert_allclose(terms[2], [0, ln3, 0, ln15, 0, 0, 0])
    assert text_features.item_terms(None, 3).nnz == 0


def test_user_terms_are_the_dbt_profile_as_a_unit_vector_and_text_match_a_cosine():
    """u1 of the dbt unit test: bought i1 now (5), viewed i2 30 days ago (0.5): kettleby 5 ln 3, kettle 5 ln 1.5,
    lamp and lumen 0.5 ln 3, in proportion."""
    terms = text_features.item_terms(TOKENS, 3)
    users = text_features.user_terms(sp.csr_array(np.array([[5.0, 0.5, 0.0]])), terms)
    raw = np.array([0, 0, 0, 5 * np.log(1.5), 5 * np.log(3), 0.5 * np.log(3), 0.5 * np.log(3)])
    np.testing.assert_allclose(users.toarray()[0], raw / np.linalg.norm(raw))
    match = text_features.text_match(users, terms, np.zeros(3, dtype=int), np.arange(3))
    expected = [raw @ row / np.linalg.norm(raw) / np.linalg.norm(row) for row in terms.toarray()]
    np.testing.assert_allclose(match, expected)
    assert match[0] > match[2] > 0 and match[1] > 0


def test_category_sentiment_averages_reviews_before_the_reference():
    ratings = pd.DataFrame(
        {
            "user_index": [0, 0, 1, 0, 1],
            "item_index": [0, 1, 2, 2, 0],
            "rated_ts": [1.0, 1.0, 1.0, 5.0, 1.0],  # the 4th is after the reference
            "sentiment": [0.75, -0.25, 0.8, 0.9, np.nan],  # the 5th has no text
        }
    )
    average = text_features.category_sentiment(ratings, np.array([0, 0, 1]), 3, reference=2.0).toarray()
    np.testing.assert_allclose(average, [[0.25, 0.0], [0.0, 0.8], [0.0, 0.0]])


def test_text_match_finds_the_favourite_category_when_only_the_words_name_it():
    """The ranker shop of test_ranker with every item in one category and brand: only the tokens ("c0 red",
    "green shirt", ...) tell the three categories apart. With popularity (flat) as the only candidate model,
    the profile features cannot find the favourite category and text_match can."""
    data, _ = planted_shop()
    colours = np.array(["red", "green", "blue"])[np.arange(N_ITEMS) % N_CATEGORIES]
    words = pd.DataFrame(
        {"item_id": [f"i{index}" for index in range(N_ITEMS)], "category": "all", "brand": "b", "price": 10.0}
    ).assign(tokens=colours + " shirt")
    split = time_split(data.with_side_data(items=words), T0 + (WEEKS - 1) * WEEK, T0 + WEEKS * WEEK)

    def ndcg(text: bool) -> float:
        model = LightGBMRanker(
            candidate_models=[PopularityRecommender()],  # flat popularity: the candidates carry no category
            candidates_per_model=60,
            label_windows=3,
            n_estimators=50,
            text_features=text,
            random_state=0,
        ).fit(split.train, split.cutoff)
        ranked, _ = model.recommend(split.test_users, n=10)
        return evaluate(ranked, split.truth[split.test_users], (10,))[("ndcg", 10)]

    without, with_text = ndcg(False), ndcg(True)
    assert with_text > without + 0.04, (without, with_text)  # measured: 0.158 without, 0.221 with
