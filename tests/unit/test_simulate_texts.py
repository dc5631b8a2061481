"""The simulated shop's review texts follow the planted ratings and item attributes (``dev.simulate.texts``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.dev.simulate import simulate
from recsys.dev.simulate.texts import LEAF_WORDS, review_texts

SHOP = {"users": 20_000, "items": 1_000, "days": 60, "seed": 3}


def read(directory, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> pd.DataFrame:
    """The shop's reviews with their item's leaf word and brand."""
    directory = tmp_path_factory.mktemp("text_shop")
    simulate(directory, **SHOP, dirty=False)
    items = read(directory, "items")
    items["leaf_word"] = items["category_path"].str.rsplit(" > ", n=1).str[1].str.lower()
    return read(directory, "reviews").merge(items[["item_id", "leaf_word", "brand"]], on="item_id")


def test_texts_are_deterministic_for_a_seed(tmp_path, reviews):
    simulate(tmp_path / "a", **SHOP, dirty=False)
    simulate(tmp_path / "b", **SHOP, dirty=False)
    for name in ("reviews", "events", "orders"):
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()
    assert len(reviews) >= 400


def test_about_seven_in_ten_reviews_have_a_text_naming_the_items_leaf_category(reviews):
    with_text = reviews[reviews["review_text"] != ""]
    assert 0.6 < len(with_text) / len(reviews) < 0.8
    texts = with_text["review_text"]
    assert all(word in text.lower() for word, text in zip(with_text["leaf_word"], texts, strict=True))
    names_brand = [brand in text for brand, text in zip(with_text["brand"], texts, strict=True)]
    assert 0.35 < np.mean(names_brand) < 0.65


def test_words_follow_the_rating(reviews):
    with_text = reviews[reviews["review_text"] != ""].assign(rating=lambda frame: frame["rating"].astype(int))
    positive = with_text["review_text"].str.contains(r"\b(?:Love|Excellent|Perfect|Good(?! value)|Nice|solid)\b")
    negative = with_text["review_text"].str.contains(r"\b(?:Terrible|Awful|useless|Disappointing|Poor|letdown)\b")
    assert positive[with_text["rating"] >= 4].all() and not negative[with_text["rating"] >= 4].any()
    assert negative[with_text["rating"] <= 2].all() and not positive[with_text["rating"] <= 2].any()


def test_price_remarks_follow_the_price_tier_gap():
    """Hand-made rows: an item two tiers above the user is "expensive"/"overpriced", below it "cheap"."""
    rng = np.random.default_rng(0)
    n = 200
    brand = np.full(n, "Voltix", dtype=object)
    leaf = np.zeros(n, dtype=int)
    for gap, words in ((2, ("expensive", "overpriced")), (-2, ("cheap",)), (0, ("fair price", "value"))):
        texts = review_texts(rng, np.full(n, 4), leaf, brand, np.full(n, gap), rng.integers(0, 3, n))
        remarks = [text for text in texts if any(word in text.lower() for word in words)]
        assert 0.45 < len(remarks) / n < 0.75, (gap, texts[:3])
        assert all(LEAF_WORDS[0] in text for text in texts)
