"""Business rules, the MMR re-rank and grounded reasons on hand-built cases with known answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.evaluation.metrics import category_coverage, per_user_category_coverage, per_user_diversity
from recsys.features.interactions import Interactions
from recsys.models.knn import ItemKNNRecommender
from recsys.serving import reasons, rules

DAY = 86_400.0
END = 1_000 * DAY
#: items 0..5: id, category, brand
ITEMS = pd.DataFrame(
    {
        "item_id": ["mat", "shoe", "coffee", "tea", "lamp", "kettle"],
        "category": ["Sports", "Sports", "Groceries", "Groceries", "Home", "Home"],
        "brand": ["Zenmat", "Stride", "Bean", "Bean", "Lumen", ""],
        "price": 10.0,
    }
)


def shop() -> Interactions:
    """u0 bought the yoga mat and coffee 10 days ago and coffee 40 days ago, and the lamp 400 days ago.

    u1 and u2 rebought tea (two different days); u3 bought the kettle twice on one day (one order, not a rebuy).
    """
    events = [
        ("u0", "mat", "purchase", 10),
        ("u0", "coffee", "purchase", 10),
        ("u0", "coffee", "purchase", 40),
        ("u0", "lamp", "purchase", 400),
        ("u1", "tea", "purchase", 5),
        ("u1", "tea", "purchase", 20),
        ("u2", "tea", "purchase", 3),
        ("u2", "tea", "purchase", 30),
        ("u3", "kettle", "purchase", 2),
        ("u3", "kettle", "purchase", 2),
        ("u3", "shoe", "view", 1),
    ]
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "event_type", "days_ago"])
    frame["event_ts"] = END - frame.pop("days_ago") * DAY
    data = Interactions.from_frame(frame, item_ids=ITEMS["item_id"].to_numpy())
    return data.with_side_data(items=ITEMS)


RULES = rules.BusinessRules(version="test", recent_purchase_days=180, min_repurchase_rate=0.5, min_repurchase_pairs=2)


def test_the_shipped_rules_file_parses_and_unknown_keys_fail(tmp_path, monkeypatch) -> None:
    shipped = rules.load_business_rules()
    assert shipped.version and 0 < shipped.diversity_strength <= 1 and shipped.max_per_brand == 3
    typo = tmp_path / "rules.toml"
    typo.write_text('version = "x"\n[filters]\nmax_per_brnad = 2\n')
    monkeypatch.setenv("RECSYS_BUSINESS_RULES", str(typo))
    with pytest.raises(ValueError, match="unknown key \\[filters\\] max_per_brnad"):
        rules.load_business_rules()
    typo.write_text('version = "x"\n[diversity]\nstrength = 2\n')
    with pytest.raises(ValueError, match="strength must be in"):
        rules.load_business_rules()


def test_repeat_purchase_categories_are_derived_from_rebuys_on_different_days() -> None:
    data = shop()
    # Groceries: pairs (u0, coffee) bought on 2 days, (u1, tea), (u2, tea) too: 3 of 3 >= 0.5, 3 pairs >= 2
    # Home: (u0, lamp) once, (u3, kettle) twice on one day: 0 of 2; Sports: 1 pair, too few
    assert rules.repeat_purchase_categories(data, END, RULES) == ["Groceries"]
    assert rules.repeat_purchase_categories(data, END, replace(RULES, min_repurchase_pairs=4)) == []
    configured = replace(RULES, derive_repeat_purchase=False, repeat_purchase_categories=("Home",))
    assert rules.repeat_purchase_categories(data, END, configured) == ["Home"]


def test_recent_non_repeat_purchases_are_excluded_but_consumables_and_old_purchases_stay() -> None:
    data = shop()
    categories, brands = rules.item_attributes(data)
    repeat_item = np.isin(categories, rules.repeat_purchase_categories(data, END, RULES))
    recent = rules.recent_purchases(data, END, RULES, repeat_item)
    user = list(data.user_ids).index("u0")
    # mat (10 days) is excluded; coffee is a consumable; the lamp was bought 400 > 180 days ago
    candidates = np.array([[0, 2, 4, 1]])  # mat, coffee, lamp, shoe
    positions = rules.filter_positions(candidates, 4, exclude=recent[[user]])
    assert data.item_ids[rules.gather(candidates, positions)[0][:3]].tolist() == ["coffee", "lamp", "shoe"]
    assert positions[0].tolist() == [1, 2, 3, -1]


def test_blocked_items_never_appear() -> None:
    data = shop()
    categories, brands = rules.item_attributes(data)
    in_stock = np.array([True, True, True, True, False, True])  # the lamp is out of stock
    denied = replace(RULES, deny_item_ids=("kettle",), deny_brands=("Stride",), deny_categories=("Groceries",))
    blocked = rules.blocked_items(data.item_ids, categories, brands, in_stock, denied)
    assert data.item_ids[blocked].tolist() == ["shoe", "coffee", "tea", "lamp", "kettle"]
    items = np.array([[5, 4, 3, 2, 1, 0], [0, -1, 4, -1, -1, -1]])
    kept = rules.gather(items, rules.filter_positions(items, 3, blocked))
    assert kept.tolist() == [[0, -1, -1], [0, -1, -1]]
    assert not rules.blocked_items(
        data.item_ids, categories, brands, in_stock, replace(RULES, exclude_out_of_stock=False)
    )[4]


def test_at_most_max_per_brand_keeps_the_best_of_each_brand() -> None:
    brands = np.array(["A", "A", "A", "B", "B", "", "", ""], dtype=object)
    items = np.array([[0, 1, 3, 2, 4, 5, 6, 7], [7, 2, 1, 0, 3, -1, -1, -1]])
    kept = rules.gather(items, rules.filter_positions(items, 8, brands=brands, max_per_brand=2))
    # row 0: the third A (item 2) goes; items without a brand are never capped
    assert kept.tolist() == [[0, 1, 3, 4, 5, 6, 7, -1], [7, 2, 1, 3, -1, -1, -1, -1]]
    counts = pd.Series(brands[kept[kept >= 0]]).value_counts()
    assert counts["A"] == 4 and counts["B"] == 3  # two rows, at most 2 each


def test_mmr_strength_zero_leaves_lists_unchanged_and_more_strength_raises_diversity() -> None:
    categories = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    rng = np.random.default_rng(0)
    items = np.argsort(rng.random((50, 8)), axis=1)
    items[:5, 6:] = -1  # some short rows
    unchanged = rules.gather(items, rules.mmr_positions(items, categories, 0.0, 6))
    np.testing.assert_array_equal(unchanged, items[:, :6])
    diversity = [
        np.nanmean(per_user_diversity(rules.gather(items, rules.mmr_positions(items, categories, s, 6)), categories, 6))
        for s in (0.0, 0.1, 0.5, 1.0)
    ]
    assert diversity[0] < diversity[2] <= diversity[3] and diversity[0] <= diversity[1]
    # hand case: relevance gains 1, 0.63, 0.5, 0.43; strength 0.3 -> a new category is worth 0.3 / 0.7 = 0.43
    # step 2: item 1 (same cat, 0.63 - 0.43 = 0.20) vs item 4 (new, 0.43): item 4 wins
    row = np.array([[0, 1, 4, 6]])
    picked = rules.gather(row, rules.mmr_positions(row, categories, 0.3, 4))
    assert picked.tolist() == [[0, 4, 6, 1]]


def test_monotone_scores_and_apply_layers() -> None:
    assert rules.monotone_scores(np.array([[3.0, 5.0, 1.0, np.nan]])).tolist()[0][:3] == [3.0, 3.0, 1.0]
    categories = np.array(["X", "X", "Y", "Y"], dtype=object)
    brands = np.array(["b", "b", "b", "c"], dtype=object)
    layered = replace(RULES, max_per_brand=2, diversity_strength=0.5)
    items, scores, flags = rules.apply_layers(
        np.array([[0, 1, 2, 3]]),
        np.array([[4.0, 3.0, 2.0, 1.0]]),
        3,
        layered,
        np.zeros(4, dtype=bool),
        brands,
        categories,
        extra=np.array([[True, True, False, False]]),
    )
    # brand b capped at 2 (item 2 goes), then MMR brings category Y (item 3) to position 2
    assert (
        items.tolist() == [[0, 3, 1]]
        and scores.tolist() == [[4.0, 1.0, 1.0]]
        and flags.tolist() == [[True, False, True]]
    )


def test_category_coverage_counts_distinct_categories() -> None:
    categories = np.array([0, 0, 1, -1])
    recommended = np.array([[0, 1, 2, 3], [0, 1, -1, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(per_user_category_coverage(recommended, categories, 4), [3.0, 1.0, np.nan])
    assert category_coverage(recommended, categories, 2) == 1.0


def test_attribution_names_the_history_item_with_the_largest_contribution() -> None:
    history = sp.csr_array(np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    matrix = sp.csr_array(np.array([[0, 0.9, 0, 0.1], [0, 0, 0, 0], [0, 0.3, 0, 0.4], [0, 0, 0, 0]]))
    because, value = reasons.attribute(history, matrix, np.array([[1, 3, -1], [1, 3, 0]]))
    # item 1: 1 * 0.9 (from 0) > 2 * 0.3 (from 2); item 3: 2 * 0.4 (from 2) > 1 * 0.1; user 2 has no history
    assert because.tolist() == [[0, 2, -1], [-1, -1, -1]]
    assert value[0, :2].tolist() == pytest.approx([0.9, 0.8])


def test_also_bought_counts_people_and_drops_small_groups() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "c", "c"],
            "item_id": ["x", "y", "x", "y", "x", "y", "x"],
            "event_type": ["view", "purchase", "view", "purchase", "view", "view", "purchase"],
            "event_ts": 1.0,
        }
    )
    data = Interactions.from_frame(frame)
    counts = reasons.also_bought_matrix(data, 2.0, min_users=2).toarray()
    # x -> y: a and b viewed x and bought y; y -> x: only c (dropped); x -> x is not a statement
    assert counts.tolist() == [[0.0, 2.0], [0.0, 0.0]]


def test_reasons_follow_the_priority_and_name_real_history() -> None:
    data = shop()
    categories, _ = rules.item_attributes(data)
    knn_model = ItemKNNRecommender(k=5)
    knn_model.fit(data, END)
    names = np.array(["Yoga Mat", "Running Shoe", "Coffee", "Tea", "Lamp", "Kettle"], dtype=object)
    category_names = np.array(["Groceries", "Home", "Sports"], dtype=object)
    u0, u3 = list(data.user_ids).index("u0"), list(data.user_ids).index("u3")
    interests = sp.csr_array(([1.0], ([u3], [1])), shape=(data.n_users, 3))  # u3: Home
    purchases = sp.csr_array(data.to_csr({"purchase": 1.0}) > 0, dtype=np.float32)
    grounding = reasons.ReasonData(
        item_names=names,
        item_categories=categories,
        repeat_item=np.isin(categories, ["Groceries"]),
        purchases=purchases,
        strength=data.strongest_events(),
        knn=knn_model,
        min_similarity=2.0,  # no neighbour is that similar: no "Because you ..." here
        viewed=sp.csr_array(data.to_csr({"view": 1.0}) > 0, dtype=np.float32),
        also_bought=sp.csr_array((data.n_items, data.n_items)),
        interests=interests,
        category_code=pd.Index(category_names).get_indexer(categories).astype(np.int64),
        group_of_user=np.where(np.arange(data.n_users) == u3, 0, -1),
        segment_items=sp.csr_array(([1.0], ([0], [1])), shape=(1, data.n_items)),  # the shoe tops segment 0
        segment_texts=reasons.segment_text(np.array(["25-34|female"], dtype=object)),
        popular_text="Popular in the last 30 days",
    )
    items = np.array([[2, 0, 3, -1], [5, 4, 1, 3]])
    from_model = np.array([[True, True, False, False], [True, True, False, False]])
    codes, texts = reasons.reasons(
        grounding, np.array([u0, u3]), items, from_model, "similar_items", np.full(items.shape, "Similar", dtype=object)
    )
    # u0: coffee bought and a consumable -> buy_again; the mat was bought but is not -> model fallback; tea: fill
    # u3: kettle and lamp match Home interest; the shoe is its segment's bestseller; tea is plain popularity
    assert codes.tolist() == [
        ["buy_again", "similar_items", "popular", "popular"],
        ["category_interest", "category_interest", "popular_segment", "popular"],
    ]
    assert texts[0, 0] == "You bought Coffee before" and texts[1, 0] == "Matches your interest in Home"
    assert texts[1, 2] == "Popular with female shoppers aged 25-34"
