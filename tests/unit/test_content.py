"""Item text vectors, the content model and the catalogue a time split keeps, on planted small catalogues.

The catalogue: two kettles and two headphones with events, and one new kettle
(``kettle_new``) and one new pair of headphones (``buds_new``) nobody has
touched. ``kettle_fan`` bought and viewed the kettles, ``buds_fan`` bought the
headphones: each must get the new item of their own kind first once their
history is excluded, the other kind's new item only after it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.dev.simulate.catalogue import STYLE_WORDS, TIER_WORDS, item_descriptions, make_catalogue
from recsys.dev.simulate.shop import make_window
from recsys.evaluation import windows
from recsys.evaluation.metrics import item_set_coverage
from recsys.evaluation.windows import time_split
from recsys.features.interactions import SECONDS_PER_DAY, Interactions
from recsys.features.text import item_text_vectors
from recsys.models.content import ContentRecommender, price_bands

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KETTLES, BUDS = "Home > Kitchen > Kettles", "Electronics > Audio > Headphones"

ITEMS = pd.DataFrame(
    {
        "item_id": ["kettle_1", "kettle_2", "buds_1", "buds_2", "kettle_new", "buds_new"],
        "category": ["Home", "Home", "Electronics", "Electronics", "Home", "Electronics"],
        "category_path": [KETTLES, KETTLES, BUDS, BUDS, KETTLES, BUDS],
        "brand": ["Lumen", "Lumen", "Voltix", "Sonora", "Lumen", "Voltix"],
        "price": [20.0, 30.0, 80.0, 90.0, 25.0, 85.0],
        "item_name": [
            "Lumen Kettle A",
            "Lumen Kettle B",
            "Voltix Buds",
            "Sonora Buds",
            "Lumen Kettle C",
            "Voltix Buds 2",
        ],
        "description": [
            "Minimalist matte kettle",
            "Minimalist clean kettle",
            "Bold vibrant headphones",
            "Bold statement headphones",
            "Minimalist matte kettle",
            "Bold vibrant headphones",
        ],
    }
)


def events(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_ts"])


@pytest.fixture
def shop() -> Interactions:
    """Every catalogue item is a column (as at serving); the two new items have no events."""
    history = events(
        [
            ("kettle_fan", "kettle_1", "purchase", T0),
            ("kettle_fan", "kettle_2", "view", T0 + 1),
            ("buds_fan", "buds_1", "purchase", T0),
            ("buds_fan", "buds_2", "purchase", T0 + 5),
            ("browser", "buds_1", "view", T0),
        ]
    )
    return Interactions.from_frame(history, user_ids=["cold"], item_ids=ITEMS["item_id"]).with_side_data(items=ITEMS)


def names(data: Interactions, items: np.ndarray) -> list[list[str]]:
    return np.where(items >= 0, data.item_ids[np.maximum(items, 0)], "").tolist()


def test_text_vectors_hold_words_category_levels_and_brand_as_tokens() -> None:
    vectors, terms = item_text_vectors(ITEMS.iloc[[0, 2]])
    assert {"kettle", "minimalist", "brand_lumen", "category_home", "category_home_kitchen_kettles"} <= set(terms)
    assert "and" not in set(terms)  # English stop words are dropped
    np.testing.assert_allclose(sp.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    kettle = dict(zip(terms, vectors.toarray()[0], strict=True))
    assert kettle["brand_voltix"] == 0 and kettle["brand_lumen"] > 0


def test_an_item_without_any_text_is_an_empty_row() -> None:
    items = pd.DataFrame({"item_name": ["Lamp", None], "description": [None, ""], "category_path": [None, None]})
    vectors, terms = item_text_vectors(items)
    assert terms.tolist() == ["lamp"] and vectors.toarray().tolist() == [[1.0], [0.0]]


def test_price_bands_are_thirds_of_the_category() -> None:
    items = pd.DataFrame({"category": ["a"] * 3 + ["b", "b"], "price": [1.0, 2.0, 3.0, 5.0, np.nan]})
    assert price_bands(items).tolist() == ["a|0", "a|1", "a|2", "b|1", ""]  # a lone price is the middle


def test_the_new_item_of_the_users_kind_comes_first(shop: Interactions) -> None:
    model = ContentRecommender(random_state=0).fit(shop)
    users = np.array([np.flatnonzero(shop.user_ids == name)[0] for name in ("kettle_fan", "buds_fan")])
    items, scores = model.recommend(users, n=3, exclude_seen=True)
    assert names(shop, items)[0][0] == "kettle_new" and names(shop, items)[1][0] == "buds_new"
    assert scores[0, 0] > 0 and scores[1, 0] > 0
    # with the history kept, the new kettle still beats every headphone for the kettle fan
    ranked = names(shop, model.recommend(users[:1], n=6)[0])[0]
    assert ranked.index("kettle_new") < min(ranked.index(name) for name in ("buds_1", "buds_2", "buds_new"))


def test_category_only_scores_are_the_cosine_of_one_hot_profiles(shop: Interactions) -> None:
    """Hand-computed: with only the category block the kettle fan's profile is the kettle one-hot, so
    every kettle scores exactly 1 and no headphone matches (they are popularity fill at score 0)."""
    model = ContentRecommender(
        text_weight=0, category_weight=1, brand_weight=0, price_weight=0, popularity_weight=0
    ).fit(shop)
    fan = np.flatnonzero(shop.user_ids == "kettle_fan")
    items, scores = model.recommend(fan, n=6)
    assert names(shop, items)[0][:3] == ["kettle_1", "kettle_2", "kettle_new"]  # ties by item index
    np.testing.assert_allclose(scores[0], [1, 1, 1, 0, 0, 0])


def test_a_cold_user_gets_popularity_and_no_side_data_still_recommends(shop: Interactions) -> None:
    model = ContentRecommender().fit(shop)
    cold = np.flatnonzero(shop.user_ids == "cold")
    np.testing.assert_array_equal(model.recommend(cold, n=4)[0][0], model.fallback_.ranking_[:4])
    bare = ContentRecommender().fit(Interactions.from_frame(events([("u", "a", "view", T0), ("v", "b", "view", T0)])))
    assert bare.recommend(np.array([0]), n=2)[0].tolist() == [[0, 1]]  # own item first, then popularity


def test_a_time_split_keeps_the_items_listed_before_the_cutoff() -> None:
    """``listed`` was listed before the cutoff and never touched: a train column (empty), as at serving;
    ``late`` was listed after the cutoff and ``unknown`` has no listing time: neither is a candidate."""
    cutoff = T0 + 10 * SECONDS_PER_DAY
    items = pd.DataFrame(
        {
            "item_id": ["seen", "listed", "late", "unknown"],
            "category": "c",
            "brand": "",
            "price": 1.0,
            "listed_ts": [T0, T0, cutoff + 1, np.nan],
        }
    )
    data = Interactions.from_frame(
        events([("u", "seen", "purchase", T0), ("u", "late", "purchase", cutoff + 2)]), item_ids=items["item_id"]
    ).with_side_data(items=items)
    split = time_split(data, cutoff, cutoff + 7 * SECONDS_PER_DAY)
    assert split.train.item_ids.tolist() == ["seen", "listed"]
    assert split.train.to_csr().shape == (1, 2) and split.train.to_csr()[:, [1]].nnz == 0
    assert split.truth_item_ids.tolist() == ["seen", "listed", "late"]


def test_simulated_descriptions_follow_the_planted_style_tier_and_brand() -> None:
    rng = np.random.default_rng(3)
    catalogue, frame = make_catalogue(rng, 300, make_window(pd.Timestamp("2026-01-31").date(), 30))
    brands = np.array([f"Brand{number}" for number in range(300)], dtype=object)
    texts = pd.Series(item_descriptions(np.random.default_rng(4), catalogue, brands)).str.lower()
    assert (
        texts.tolist() == pd.Series(item_descriptions(np.random.default_rng(4), catalogue, brands)).str.lower().tolist()
    )
    words = texts.str.findall(r"[a-z0-9]+").map(set)
    for style, vocabulary in enumerate(STYLE_WORDS):  # four styles: each item names two of its style's words only
        counts = words.map(lambda found, vocabulary=vocabulary: len(found & set(vocabulary))).to_numpy()
        assert (counts[catalogue.style == style] == 2).all() and (counts[catalogue.style != style] == 0).all()
    for tier, vocabulary in enumerate(TIER_WORDS):  # three tiers
        counts = words.map(lambda found, vocabulary=vocabulary: len(found & set(vocabulary))).to_numpy()
        assert (counts[catalogue.tier == tier] == 1).all() and (counts[catalogue.tier != tier] == 0).all()
    assert texts.str.contains(r"brand\d+").all()
    assert (texts.to_numpy() != texts.iloc[0]).any() and len(frame) == 300


def test_the_new_catalogue_truth_is_the_purchases_of_items_first_sold_in_the_window() -> None:
    """Hand-built window: ``old`` sold before the cutoff, ``viewed`` only viewed before it, ``listed`` listed
    before it without events, ``late`` listed inside the window. Truth: ann bought old and viewed (keeps
    viewed), bob bought listed and late (keeps both), cat bought old (keeps nothing). The one new catalogue
    item at the cutoff is ``listed``; a list holding it covers all of them."""
    cutoff, end = T0 + 10 * SECONDS_PER_DAY, T0 + 17 * SECONDS_PER_DAY
    items = pd.DataFrame(
        {
            "item_id": ["old", "viewed", "listed", "late"],
            "category": "c",
            "brand": "",
            "price": 1.0,
            "listed_ts": [T0, T0, T0, cutoff + 1],
        }
    )
    history = events(
        [
            ("zed", "old", "purchase", T0),
            ("zed", "viewed", "view", T0),
            ("ann", "old", "purchase", cutoff + 5),
            ("ann", "viewed", "purchase", cutoff + 6),
            ("bob", "listed", "purchase", cutoff + 7),
            ("bob", "late", "purchase", cutoff + 8),
            ("cat", "old", "purchase", cutoff + 9),
        ]
    )
    data = Interactions.from_frame(history, item_ids=items["item_id"]).with_side_data(items=items)
    split = time_split(data, cutoff, end)
    assert split.truth_item_ids.tolist() == ["old", "viewed", "listed", "late"]
    truth = windows.first_sold_truth(split.train, split.truth)
    by_user = dict(
        zip(split.train.user_ids, (truth[[row]].indices.tolist() for row in range(truth.shape[0])), strict=True)
    )
    assert by_user == {"zed": [], "ann": [1], "bob": [2, 3], "cat": []}
    assert windows.cold_items(split.train).tolist() == [2]
    assert item_set_coverage(np.array([[0, 2], [1, -1]]), windows.cold_items(split.train), k=2) == 1.0
    assert item_set_coverage(np.array([[0, 2], [1, -1]]), windows.cold_items(split.train), k=1) == 0.0
