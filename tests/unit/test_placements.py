"""``recsys.serving.placements``: the names, the alias, and a placement's candidates from any model's list."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.serving import placements

#: two users, five items; user 0 bought items 1 and 3, user 1 bought nothing
BOUGHT = sp.csr_array((np.ones(2), ([0, 0], [1, 3])), shape=(2, 5))
ITEMS = np.array([[3, 0, 1, 4, -1], [2, 1, 0, -1, -1]])
SCORES = np.array([[0.9, 0.8, 0.7, 0.6, np.nan], [0.5, 0.4, 0.3, np.nan, np.nan]])


def cells(matrix: sp.csr_array) -> list[tuple[int, int]]:
    """The stored (row, column) pairs of a sparse matrix."""
    rows, cols = sp.csr_array(matrix).nonzero()
    return sorted(zip(rows.tolist(), cols.tolist(), strict=True))


def test_names_and_the_home_alias():
    assert placements.PLACEMENTS == ("for_you", "discover", "buy_again")
    assert placements.resolve(None) == placements.resolve("home") == "for_you"
    assert placements.resolve("buy_again") == "buy_again"
    with pytest.raises(ValueError, match=r"unknown placement 'cart'; valid placements: for_you, discover, buy_again"):
        placements.resolve("cart")


def test_discover_keeps_only_items_never_bought_and_buy_again_only_bought_ones_in_the_models_order():
    items, scores, _ = placements.restrict(ITEMS, SCORES, BOUGHT, "discover")
    assert items.tolist() == [[0, 4, -1, -1, -1], [2, 1, 0, -1, -1]]
    np.testing.assert_array_equal(scores[0, :2], [0.8, 0.6])
    assert np.isnan(scores[0, 2:]).all()
    items, scores, _ = placements.restrict(ITEMS, SCORES, BOUGHT, "buy_again")
    assert items.tolist() == [[3, 1, -1, -1, -1], [-1] * 5]  # user 1 bought nothing: an empty list
    np.testing.assert_array_equal(scores[0, :2], [0.9, 0.7])
    same_items, same_scores, _ = placements.restrict(ITEMS, SCORES, BOUGHT, "for_you")
    assert same_items is ITEMS and same_scores is SCORES


def test_repurchases_are_the_truth_items_bought_before():
    truth = sp.csr_array((np.ones(3), ([0, 0, 1], [1, 6, 2])), shape=(2, 7))  # item 6: first seen in the window
    assert cells(placements.repurchases(truth, BOUGHT)) == [(0, 1)]


def test_each_placements_truth_exclusions_and_rules():
    from recsys.serving.rules import BusinessRules

    truth = sp.csr_array((np.ones(3), ([0, 0, 1], [1, 2, 2])), shape=(2, 5))
    split = placements.truths(truth, BOUGHT)
    assert split["for_you"] is truth
    assert cells(split["discover"]) == [(0, 2), (1, 2)]
    assert cells(split["buy_again"]) == [(0, 1)]
    recent = sp.csr_array((np.ones(1), ([1], [4])), shape=(2, 5))
    assert placements.excluded("for_you", recent, BOUGHT) is recent
    assert placements.excluded("buy_again", recent, BOUGHT) is None
    assert cells(placements.excluded("discover", recent, BOUGHT)) == [(0, 1), (0, 3), (1, 4)]
    rules = BusinessRules(version="t", max_per_brand=2, diversity_strength=0.5)
    assert placements.shelf_rules("discover", rules) is rules
    shelf = placements.shelf_rules("buy_again", rules)
    assert (shelf.max_per_brand, shelf.diversity_strength) == (0, 0.0)
    assert [placements.is_filled(name) for name in placements.PLACEMENTS] == [True, True, False]
