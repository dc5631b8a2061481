"""The sequence model's known answers: its sequences, its gradient, a planted order it learns, determinism.

The planted shop: six chain items ``c0 -> c1 -> ... -> c5 -> c0``; each of 60
users views four chain items in chain order, starting at a different item.
Forty other users view and buy ``z``, so popularity puts ``z`` first for
everybody. Two test users touched the same two items in opposite orders:
``c2_then_c0`` (last item ``c0``) and ``c0_then_c2`` (last item ``c2``). A model
of the sets of items (popularity, item-KNN, ALS) gives them the same list; the
sequence model must rank the chain's next item first: ``c1`` after ``c0``,
``c3`` after ``c2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.features.interactions import Interactions
from recsys.models.popularity import PopularityRecommender
from recsys.models.sequence import (
    PARAMETERS,
    SequenceRecommender,
    init_parameters,
    item_sequences,
    loss_and_gradients,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CHAIN = [f"c{index}" for index in range(6)]


def planted_frame() -> pd.DataFrame:
    rows = []
    for number in range(60):  # chain walkers: four consecutive chain items, in chain order
        rows += [
            (f"walker{number:02d}", CHAIN[(number + step) % 6], "view", T0 + number * 600 + step) for step in range(4)
        ]
    for number in range(40):  # the bestseller's buyers
        rows += [
            (f"buyer{number:02d}", "z", "view", T0 + number),
            (f"buyer{number:02d}", "z", "purchase", T0 + number + 1),
        ]
    rows += [("c2_then_c0", "c2", "view", T0 + 1), ("c2_then_c0", "c0", "view", T0 + 2)]
    rows += [("c0_then_c2", "c0", "view", T0 + 1), ("c0_then_c2", "c2", "view", T0 + 2)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_ts"])


@pytest.fixture(scope="module")
def planted() -> Interactions:
    return Interactions.from_frame(planted_frame())


def planted_model() -> SequenceRecommender:
    return SequenceRecommender(factors=16, epochs=40, batch_size=16, learning_rate=0.02, random_state=0)


def index_of(ids: np.ndarray, wanted: list[str]) -> np.ndarray:
    return np.array([int(np.flatnonzero(ids == name)[0]) for name in wanted])


def test_sequences_are_the_last_items_in_time_order_with_repeats_collapsed() -> None:
    """x: view a, cart a, view b, remove c (weighs 0: left out), purchase a, then view b after the cut."""
    frame = pd.DataFrame(
        [
            ("x", "a", "purchase", 5.0),  # rows out of order: the time decides
            ("x", "a", "view", 1.0),
            ("x", "a", "cart", 2.0),
            ("x", "b", "view", 3.0),
            ("x", "c", "remove_from_cart", 4.0),
            ("x", "b", "view", 9.0),
            ("y", "c", "view", 1.0),
        ],
        columns=["user_id", "item_id", "event_type", "event_ts"],
    )
    data = Interactions.from_frame(frame, user_ids=["w", "x", "y"])  # w has no events
    a, b, c = index_of(data.item_ids, ["a", "b", "c"])
    users, sequences = item_sequences(data, until=9.0, length=4)
    assert users.tolist() == [1, 2]
    assert sequences.tolist() == [[-1, a, b, a], [-1, -1, -1, c]]
    _, last_two = item_sequences(data, until=9.0, length=2)
    assert last_two.tolist() == [[b, a], [-1, c]]


@pytest.mark.parametrize("negatives", [[0, 1, 2, 3, 4, 5], [0, 2, 5]], ids=["full_softmax", "sampled"])
def test_the_gradient_matches_finite_differences(negatives: list[int]) -> None:
    """Every partial derivative of a tiny network (3 factors, 6 items, a padded batch) to 1e-6 relative.

    With every item as negatives the loss is the full softmax; with ``[0, 2, 5]`` some steps' targets are
    among the negatives (left out of their own softmax) and some are not.
    """
    rng = np.random.default_rng(0)
    params = init_parameters(6, 3, 0.5, rng, dtype=np.float64)
    params["bias"] += rng.normal(0.0, 0.3, 9)
    params["item_bias"] += rng.normal(0.0, 0.3, 6)
    inputs = np.array([[-1, 0, 1, 2], [3, 4, 5, 0]])
    targets = np.array([[-1, 1, 2, 3], [4, 5, 0, 1]])
    candidates = np.array(negatives)
    _, grads = loss_and_gradients(params, inputs, targets, candidates)
    for name in PARAMETERS:  # six small arrays, entry by entry
        numeric = np.zeros_like(params[name])
        for position in np.ndindex(params[name].shape):
            saved = params[name][position]
            params[name][position] = saved + 1e-6
            above, _ = loss_and_gradients(params, inputs, targets, candidates)
            params[name][position] = saved - 1e-6
            below, _ = loss_and_gradients(params, inputs, targets, candidates)
            params[name][position] = saved
            numeric[position] = (above - below) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.abs(grads["gate_weights"]).max() > 0 and np.abs(grads["candidate_weights"]).max() > 0


def test_a_padded_step_keeps_the_state_and_gets_no_gradient() -> None:
    """Left padding is invisible: ``[-1, -1, 2]`` gives the loss and gradients of ``[2]``."""
    params = init_parameters(4, 3, 0.5, np.random.default_rng(1), dtype=np.float64)
    padded = loss_and_gradients(params, np.array([[-1, -1, 2]]), np.array([[-1, -1, 3]]), np.arange(4))
    short = loss_and_gradients(params, np.array([[2]]), np.array([[3]]), np.arange(4))
    assert padded[0] == pytest.approx(short[0], rel=1e-12)
    for name in PARAMETERS:
        np.testing.assert_allclose(padded[1][name], short[1][name], rtol=1e-12, atol=1e-15)


def test_the_planted_order_is_learned_where_popularity_cannot(planted: Interactions) -> None:
    model = planted_model().fit(planted)
    users = index_of(planted.user_ids, ["c2_then_c0", "c0_then_c2"])
    c1, c3, z = index_of(planted.item_ids, ["c1", "c3", "z"])
    items, scores = model.recommend(users, n=3)
    assert items[:, 0].tolist() == [c1, c3], "the chain's next item after the last one"
    assert np.all(scores[:, 0] > 0.5), "a clear majority of the predicted probability"
    assert model.epoch_loss_[-1] < 0.5 * model.epoch_loss_[0]
    popular, _ = PopularityRecommender(window_days=None).fit(planted).recommend(users, n=3)
    assert popular[:, 0].tolist() == [z, z], "popularity shows both the bestseller, the same list"


def test_two_fits_give_identical_scores(planted: Interactions) -> None:
    users = np.arange(planted.n_users)
    first = planted_model().fit(planted).recommend(users, n=5)
    second = planted_model().fit(planted).recommend(users, n=5)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = planted_model().set_params(random_state=1).fit(planted).recommend(users, n=5)
    assert not np.array_equal(first[1], other[1]), "the seed is used"


def test_bad_parameters_are_refused(planted: Interactions) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SequenceRecommender(factors=0).fit(planted)
    with pytest.raises(ValueError, match="learning_rate"):
        SequenceRecommender(learning_rate=0.0).fit(planted)
