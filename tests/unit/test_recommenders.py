"""One contract for every recommender, plus each model's known answers.

The fixture has two disjoint item clusters. Cluster B is bought far more
often (popularity prefers it, ``b0`` most of all); the ``target`` user bought
``a0`` and viewed ``a1``, so item-KNN must rank the rest of cluster A first.
Buyers review some of their purchases (the ratings only the SVD model reads):
the A users and ``target`` love cluster A, the B users who review like B.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from recsys.features.interactions import SECONDS_PER_DAY, Interactions
from recsys.models.base import Recommender, ScoreBatch, fill_from_ranking, first_unexcluded, top_n_per_row
from recsys.models.content import ContentRecommender
from recsys.models.demographic import DemographicRecommender, SegmentPopularityRecommender
from recsys.models.factorization import ALSRecommender, ItemFactors, SVDRecommender
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import CandidateRanker
from recsys.models.sequence import SequenceRecommender
from recsys.models.social import FriendsBoughtRecommender

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLUSTER_A = [f"a{i}" for i in range(5)]
CLUSTER_B = [f"b{i}" for i in range(5)]


def fixture_frame() -> pd.DataFrame:
    rows = []
    for user in range(6):  # A users: each touches 4 of the 5 A items (a view, then a purchase on some)
        for item in range(5):
            if item != user % 5:
                kind = "purchase" if (user + item) % 2 else "view"
                rows.append((f"ua{user}", f"a{item}", kind, T0 + user * 3600 + item))
    for user in range(10):  # B users buy B items; b0 is bought by all of them, b1 by 8, ...
        for item in range(5):
            if user < 10 - 2 * item:
                rows.append((f"ub{user}", f"b{item}", "purchase", T0 + user * 3600 + item))
    rows += [("target", "a0", "purchase", T0 + 10), ("target", "a1", "view", T0 + 11)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_ts"])


def fixture_ratings() -> pd.DataFrame:
    """A review a minute after every purchase of the A users, ``ub0``-``ub5`` and ``target`` (4 or 5 stars)."""
    purchases = fixture_frame().query("event_type == 'purchase' and user_id not in ['ub6', 'ub7', 'ub8', 'ub9']")
    stars = np.where(purchases["item_id"].str[1].astype(int) % 2 == 0, 5.0, 4.0)
    return pd.DataFrame(
        {
            "user_id": purchases["user_id"],
            "item_id": purchases["item_id"],
            "rating": stars,
            "rated_ts": purchases["event_ts"] + 60,
        }
    )


#: who follows whom (only the friends_bought model reads them): target follows an A and a B user; cold follows
#: nobody (a referred new user gets the referrer's purchases: tests/unit/test_social.py)
FOLLOWS = pd.DataFrame(
    [("target", "ua2", T0), ("target", "ub0", T0), ("ua0", "ub1", T0)],
    columns=["user_id", "followed_user_id", "followed_ts"],
)


def with_ratings(events: pd.DataFrame) -> Interactions:
    """The fixture's encoding ("cold" has no events) with the reviews (only SVD reads them) and follows attached."""
    return Interactions.from_frame(events, user_ids=["cold"]).with_side_data(ratings=fixture_ratings(), follows=FOLLOWS)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return with_ratings(fixture_frame())


def item(data: Interactions, item_id: str) -> int:
    return int(np.flatnonzero(data.item_ids == item_id)[0])


def user(data: Interactions, user_id: str) -> int:
    return int(np.flatnonzero(data.user_ids == user_id)[0])


MODELS: dict[str, Callable[[], Recommender]] = {
    "popularity": lambda: PopularityRecommender(window_days=None, random_state=0),
    "popularity_windowed_decayed": lambda: PopularityRecommender(window_days=1, half_life_days=0.5, random_state=0),
    "item_knn": lambda: ItemKNNRecommender(k=20, random_state=0),
    "item_knn_no_shrinkage": lambda: ItemKNNRecommender(k=3, shrinkage=0.0, random_state=0),
    "item_knn_pearson": lambda: ItemKNNRecommender(k=20, similarity="pearson", random_state=0),
    "repeat_purchase": lambda: RepeatPurchaseRecommender(random_state=0),
    "user_knn": lambda: UserKNNRecommender(k=5, random_state=0),
    "user_knn_pearson_small_batches": lambda: UserKNNRecommender(
        k=3, similarity="pearson", batch_size=4, random_state=0
    ),
    "user_knn_two_step": lambda: UserKNNRecommender(k=3, max_item_users=3, random_state=0),
    "als": lambda: ALSRecommender(factors=4, iterations=10, dense_limit=50, random_state=0),
    "svd": lambda: SVDRecommender(factors=4, epochs=50, batch_size=8, dense_limit=30, random_state=0),
    # the cold-start models: the fixture has no demographics, so everyone is in the segment unknown|unknown
    "segment_popularity": lambda: SegmentPopularityRecommender(window_days=None, min_segment_users=5, random_state=0),
    "segment_popularity_too_small": lambda: SegmentPopularityRecommender(min_segment_users=50, random_state=0),
    "cold_start_demographic": lambda: DemographicRecommender(window_days=None, min_segment_users=5, random_state=0),
    # no purchases in its label window here: it orders the candidates by their summed reciprocal ranks
    "neural_ranker": lambda: NeuralRanker(
        candidate_models=[PopularityRecommender(window_days=None), ItemKNNRecommender(k=20)],
        label_days=0.5,
        label_windows=1,
        batch_size=4,
        random_state=0,
    ),
    "lgbm_ranker": lambda: LightGBMRanker(
        candidate_models=[PopularityRecommender(window_days=None), ItemKNNRecommender(k=20)],
        label_days=0.5,
        label_windows=1,
        batch_size=4,
        random_state=0,
    ),
    # labels here: the last 19 hours before the reference hold purchases of ua5 and ub5-ub9 (trained LambdaMART)
    "lgbm_ranker_trained": lambda: LightGBMRanker(
        candidate_models=[PopularityRecommender(window_days=None), ItemKNNRecommender(k=20)],
        label_days=19 / 24,
        label_windows=1,
        min_child_samples=1,
        n_estimators=20,
        batch_size=4,
        random_state=0,
    ),
    "sequence": lambda: SequenceRecommender(
        factors=4, max_length=4, epochs=20, batch_size=4, negatives=3, dense_limit=30, random_state=0
    ),
    "sequence_full_softmax": lambda: SequenceRecommender(factors=4, epochs=3, random_state=0),
    # no item attributes in the fixture: every item is its own content feature (its known answers: test_content.py)
    "content": lambda: ContentRecommender(random_state=0),
    "friends_bought": lambda: FriendsBoughtRecommender(random_state=0),
}


@pytest.fixture(params=list(MODELS), scope="module")
def fitted(request, data: Interactions) -> Recommender:
    return MODELS[request.param]().fit(data, T0 + SECONDS_PER_DAY)


# ----------------------------------------------------------------------------- the shared contract


@pytest.mark.parametrize("n", [1, 3, 5])  # every user has at least 5 unseen items
def test_shape_dtype_and_order(fitted: Recommender, data: Interactions, n: int) -> None:
    users = np.arange(data.n_users)
    items, scores = fitted.recommend(users, n=n)
    assert items.shape == scores.shape == (data.n_users, n)
    assert items.dtype == np.int64 and scores.dtype == np.float64
    assert np.all((items >= 0) & (items < data.n_items)), "the catalogue has room for n items for every user"
    assert np.all(np.diff(scores, axis=1) <= 0), "scores are best first"


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_no_duplicates_and_every_user_gets_n(fitted: Recommender, data: Interactions, exclude_seen: bool) -> None:
    n = 5  # every user has seen at most 5 of the 10 items
    items, _ = fitted.recommend(np.arange(data.n_users), n=n, exclude_seen=exclude_seen)
    assert np.all(items >= 0)
    assert all(len(set(row)) == n for row in items.tolist())


def test_exclude_seen_removes_history(fitted: Recommender, data: Interactions) -> None:
    users = np.arange(data.n_users)
    items, _ = fitted.recommend(users, n=5, exclude_seen=True)
    history = data.to_csr().toarray() > 0
    assert not history[users[:, None], items].any()


def test_filter_items_are_never_recommended(fitted: Recommender, data: Interactions) -> None:
    blocked = np.array([item(data, "a2"), item(data, "b0")])
    items, _ = fitted.recommend(np.arange(data.n_users), n=8, filter_items=blocked)
    assert not np.isin(items, blocked).any()


def test_more_than_the_catalogue_pads_with_minus_one(fitted: Recommender, data: Interactions) -> None:
    target = np.array([user(data, "target")])
    items, scores = fitted.recommend(target, n=data.n_items + 3, exclude_seen=True)
    valid = items[0] >= 0
    assert valid.sum() == data.n_items - 2  # everything but the two history items
    assert np.all(items[0, valid.sum() :] == -1) and np.all(np.isnan(scores[0, ~valid]))
    assert len(set(items[0, valid].tolist())) == valid.sum()


def test_explicit_history_rows_match_the_fitted_history(fitted: Recommender, data: Interactions) -> None:
    users = np.array([user(data, "target"), user(data, "cold"), user(data, "ub3")])
    implicit_rows = fitted.recommend(users, n=4, exclude_seen=True)
    explicit_rows = fitted.recommend(users, fitted.user_items_[users], n=4, exclude_seen=True)
    np.testing.assert_array_equal(implicit_rows[0], explicit_rows[0])
    with pytest.raises(ValueError):
        fitted.recommend(users, fitted.user_items_[users[:2]], n=4)


def test_deterministic_and_independent_of_row_order(fitted: Recommender, data: Interactions) -> None:
    shuffled = with_ratings(fixture_frame().sample(frac=1.0, random_state=7))
    shuffled.ratings = shuffled.ratings.sample(frac=1.0, random_state=7)
    refit = clone(fitted).fit(shuffled, T0 + SECONDS_PER_DAY)
    users = np.arange(data.n_users)
    first, second = fitted.recommend(users, n=6), refit.recommend(users, n=6)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_allclose(first[1], second[1])


def test_estimator_conventions(fitted: Recommender, data: Interactions) -> None:
    fresh = clone(fitted)
    assert repr(fresh.get_params()) == repr(fitted.get_params())  # estimator parameters compare by repr
    assert not hasattr(fresh, "user_items_")
    assert fresh.fit(data) is fresh
    assert fresh.n_users_ == data.n_users and fresh.n_items_ == data.n_items


def test_cold_user_gets_the_popularity_ranking(fitted: Recommender, data: Interactions) -> None:
    cold = np.array([user(data, "cold")])
    items, _ = fitted.recommend(cold, n=4)
    popularity = fitted if isinstance(fitted, PopularityRecommender) else fitted.fallback_
    if isinstance(fitted, CandidateRanker) and fitted.model_ is not None:
        # a trained ranker re-orders the cold user's only candidates (popularity's list) by its learned score
        _, candidates, scores = fitted.score_candidates(cold)
        assert set(candidates) == set(popularity.ranking_[: fitted.candidates_per_model])
        np.testing.assert_array_equal(items[0], candidates[np.lexsort((candidates, -scores))][:4])
        return
    np.testing.assert_array_equal(items[0], popularity.ranking_[:4])


class PlantedScores(Recommender):
    """Fixed scores through the ``recommend`` template: 1-3 with ties, 0 = no candidate (dense ``-inf``)."""

    name = "planted"

    def __init__(self, sparse: bool = False, block: int | None = None) -> None:
        self.sparse = sparse
        self.block = block

    def fit(self, interactions: Interactions, reference_time: float | None = None) -> PlantedScores:
        self.scores_ = np.random.default_rng(5).integers(0, 4, (interactions.n_users, interactions.n_items))
        self.user_items_ = interactions.to_csr()
        self.fallback_ = PopularityRecommender(window_days=None).fit(interactions, reference_time)
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        return self

    def _rows_per_batch(self, n_columns: int) -> int | None:
        return self.block

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray | sp.csr_array:
        scores = self.scores_[batch.users].astype(np.float64)
        return sp.csr_array(scores) if self.sparse else np.where(scores > 0, scores, -np.inf)


@pytest.mark.parametrize(("sparse", "block"), [(False, None), (False, 4), (True, None), (True, 3)])
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_the_template_ranks_by_score_then_item_and_fills_from_popularity(
    data: Interactions, sparse: bool, block: int | None, exclude_seen: bool
) -> None:
    """Per user: the candidates by score, ties by item index, then the popularity ranking; never a filtered
    (or with ``exclude_seen`` a seen) item; dense or sparse scores and any block size give the same lists."""
    model = PlantedScores(sparse, block).fit(data, T0 + SECONDS_PER_DAY)
    blocked = [item(data, "a2"), item(data, "b0")]
    n = data.n_items + 2  # the whole catalogue: top_n_dense breaks ties by item only among the items it selected
    items, scores = model.recommend(np.arange(data.n_users), n=n, exclude_seen=exclude_seen, filter_items=blocked)
    seen = data.to_csr().toarray() > 0
    ranking = [j for j in model.fallback_.ranking_.tolist() if j not in blocked]
    for u in range(data.n_users):
        dropped = set(blocked) | (set(np.flatnonzero(seen[u]).tolist()) if exclude_seen else set())
        own = sorted(
            (j for j in range(data.n_items) if model.scores_[u, j] > 0 and j not in dropped),
            key=lambda j: (-model.scores_[u, j], j),
        )[:n]
        fill = [j for j in ranking if j not in own and j not in dropped][: n - len(own)]
        expected = own + fill + [-1] * (n - len(own) - len(fill))
        assert items[u].tolist() == expected
        np.testing.assert_array_equal(scores[u, : len(own)], model.scores_[u, own])
        assert np.all(scores[u, len(own) : len(own) + len(fill)] == 0.0)
        assert np.all(np.isnan(scores[u, len(own) + len(fill) :]))


# ----------------------------------------------------------------------------- known answers


def test_popularity_ranks_the_most_bought_item_first(data: Interactions) -> None:
    model = PopularityRecommender(window_days=None).fit(data)
    items, scores = model.recommend(np.array([user(data, "target")]), n=5)
    # b0: 10 purchases x 5 = 50, b1: 8 x 5 = 40, b2: 30, b3: 20 ...; all of cluster A is lighter
    assert list(data.item_ids[items[0]]) == ["b0", "b1", "b2", "b3", "a1"]
    np.testing.assert_allclose(scores[0, :4], [50, 40, 30, 20])


def test_popularity_window_and_decay() -> None:
    data = Interactions.from_frame(
        pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u3", "u4"],
                "item_id": ["old", "old", "new", "newer"],
                "event_type": ["purchase"] * 4,
                "event_ts": [T0, T0, T0 + 9 * SECONDS_PER_DAY, T0 + 10 * SECONDS_PER_DAY],
            }
        )
    )
    reference = T0 + 10 * SECONDS_PER_DAY
    windowed = PopularityRecommender(window_days=5).fit(data, reference)
    # "old" is outside the 5-day window (score 0) but its all-time weight 10 breaks the tie for the last place
    np.testing.assert_allclose(windowed.item_scores_[[0, 1, 2]], [5, 5, 0])  # items sorted: new, newer, old
    assert list(data.item_ids[windowed.ranking_]) == ["new", "newer", "old"]
    decayed = PopularityRecommender(window_days=None, half_life_days=1).fit(data, reference)
    # new: 5 * 2^-1 = 2.5, newer: 5, old: 2 * 5 * 2^-10
    np.testing.assert_allclose(decayed.item_scores_, [2.5, 5.0, 10 * 2.0**-10])
    assert list(data.item_ids[decayed.ranking_]) == ["newer", "new", "old"]
    future = PopularityRecommender(window_days=None).fit(data, T0 + SECONDS_PER_DAY)
    assert list(data.item_ids[future.ranking_])[0] == "old", "events after the reference time never count"


def test_item_knn_recommends_the_users_cluster_first(data: Interactions) -> None:
    model = ItemKNNRecommender(k=20).fit(data)
    items, scores = model.recommend(np.array([user(data, "target")]), n=5, exclude_seen=True)
    top = list(data.item_ids[items[0]])
    assert set(top[:3]) == {"a2", "a3", "a4"}, "the unseen cluster-A items first"
    assert np.all(scores[0, :3] > 0) and np.all(scores[0, 3:] == 0), "then popularity fill with score 0"
    assert top[3:] == ["b0", "b1"], "the fill follows the popularity ranking"


def test_item_knn_similar_items_stay_in_the_cluster(data: Interactions) -> None:
    model = ItemKNNRecommender(k=20).fit(data)
    neighbours, scores = model.similar_items(4)
    for source in ("a0", "b3"):
        row = neighbours[item(data, source)]
        assert {name[0] for name in data.item_ids[row]} == {source[0]}, "neighbours come from the same cluster"
        assert item(data, source) not in row, "an item is not its own neighbour"
    blocked = np.array([item(data, "a1")])
    filtered, _ = model.similar_items(4, filter_items=blocked)
    assert not np.isin(filtered, blocked).any()
    assert neighbours.shape == scores.shape == (data.n_items, 4)


def test_item_knn_similarity_is_shrunk_cosine(data: Interactions) -> None:
    shrinkage = 10.0
    model = ItemKNNRecommender(k=20, shrinkage=shrinkage).fit(data)
    dense = data.to_csr(dtype=np.float64).toarray()
    norms = np.linalg.norm(dense, axis=0)
    expected = dense.T @ dense / (np.outer(norms, norms) + shrinkage)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)


def test_item_knn_explain_matches_a_brute_force_argmax(data: Interactions) -> None:
    model = ItemKNNRecommender(k=20).fit(data)
    users = np.arange(data.n_users)
    items, _ = model.recommend(users, n=6, exclude_seen=True)
    because, contribution = model.explain(users, items)
    history = model.user_items_.toarray().astype(np.float64)
    similarity = model.similarity_.toarray()
    contributions = history[:, None, :] * similarity.T[np.maximum(items, 0)]  # (user, rank, history item)
    expected = np.where(contributions.max(axis=2) > 0, contributions.argmax(axis=2), -1)
    np.testing.assert_array_equal(because, expected)
    np.testing.assert_allclose(contribution[because >= 0], contributions.max(axis=2)[because >= 0])
    target = user(data, "target")
    # target bought a0 (weight 5) and viewed a1 (weight 1); the top item a2 gets 5 * sim(a0, a2) = 5 * 0.586
    # from the purchase and 1 * sim(a1, a2) = 0.229 from the view, so the purchase explains it
    assert data.item_ids[items[target, 0]] in {"a2", "a4"} and data.item_ids[because[target, 0]] == "a0"
    assert np.all(because[target, 3:] == -1), "popularity fill has no history reason"
    assert np.all(because[user(data, "cold")] == -1)


def test_item_knn_scores_match_implicit(data: Interactions) -> None:
    """Our batched scipy scoring equals implicit's own recommend, user by user (shrinkage off)."""
    from implicit.nearest_neighbours import CosineRecommender

    rng = np.random.default_rng(0)
    matrix = sp.random_array((300, 60), density=0.08, rng=rng, format="csr", dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 5)
    rows, cols = matrix.nonzero()
    frame = pd.DataFrame(
        {
            "user_id": [f"u{row:03d}" for row in rows],
            "item_id": [f"i{col:03d}" for col in cols],
            "event_type": "view",
            "event_ts": T0,
        }
    ).loc[lambda f: f.index.repeat(matrix.data.astype(int))]
    events = Interactions.from_frame(frame)
    ours = ItemKNNRecommender(k=10, shrinkage=0.0).fit(events)
    reference = CosineRecommender(K=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(sp.csr_matrix(ours.user_items_), show_progress=False)
    users = np.arange(events.n_users)
    items, scores = ours.recommend(users, n=5, exclude_seen=True)
    their_items, their_scores = reference.recommend(users, sp.csr_matrix(ours.user_items_), N=5)
    positive = their_scores > 0  # implicit pads short lists with seen items at score 0; we fill from popularity
    np.testing.assert_allclose(scores[positive], their_scores[positive], rtol=1e-5)
    np.testing.assert_array_equal(items[positive], their_items[positive])


def test_item_knn_on_no_data_falls_back_to_popularity() -> None:
    empty = Interactions.from_frame(
        pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": ["remove_from_cart"], "event_ts": [T0]})
    )
    model = ItemKNNRecommender().fit(empty)
    items, scores = model.recommend(np.array([0]), n=1)
    assert items.tolist() == [[0]] and scores.tolist() == [[0.0]]


def _repeat_frame() -> pd.DataFrame:
    """``buyer`` bought x three times and y once (same day), z long ago; others make w the bestseller."""
    rows = [("buyer", "x", "purchase", T0 + 60 * index) for index in range(3)]
    rows += [("buyer", "y", "purchase", T0 + 200), ("buyer", "v", "view", T0 + 300)]
    rows += [("buyer", "z", "purchase", T0 - 90 * SECONDS_PER_DAY)]
    rows += [(f"other{index}", "w", "purchase", T0 + index) for index in range(5)]
    rows += [("other0", "v", "purchase", T0)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_ts"])


def test_repeat_purchase_ranks_own_purchases_by_decayed_count() -> None:
    data = Interactions.from_frame(_repeat_frame())
    model = RepeatPurchaseRecommender(half_life_days=30).fit(data, T0 + SECONDS_PER_DAY)
    items, scores = model.recommend(np.array([user(data, "buyer")]), n=5)
    # x: 3 purchases ~1 day old, y: 1, z: 1 purchase 91 days old (2^-91/30 = 0.12), then popularity: w, v
    assert list(data.item_ids[items[0]]) == ["x", "y", "z", "w", "v"]
    np.testing.assert_allclose(scores[0, :3], [3 * 2 ** (-1 / 30), 2 ** (-1 / 30), 2 ** (-91 / 30)], rtol=1e-3)
    assert np.all(scores[0, 3:] == 0.0), "the popularity fill scores below every own item"
    unseen, _ = model.recommend(np.array([user(data, "buyer")]), n=2, exclude_seen=True)
    assert unseen[0, 0] == item(data, "w") and unseen[0, 1] == -1, "w is the only item buyer never touched"


def test_repeat_purchase_prefers_a_recent_purchase_over_old_repeats() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u"] * 3,
            "item_id": ["old", "old", "new"],
            "event_type": ["purchase"] * 3,
            "event_ts": [T0 - 90 * SECONDS_PER_DAY, T0 - 90 * SECONDS_PER_DAY, T0],
        }
    )
    data = Interactions.from_frame(frame)
    items, scores = RepeatPurchaseRecommender(half_life_days=30).fit(data, T0).recommend(np.array([0]), n=2)
    # new: 2^0 = 1 beats old: 2 * 2^-3 = 0.25
    assert list(data.item_ids[items[0]]) == ["new", "old"]
    np.testing.assert_allclose(scores[0], [1.0, 0.25])


def test_user_knn_recommends_what_the_users_cluster_bought(data: Interactions) -> None:
    model = UserKNNRecommender(k=5).fit(data)
    target = user(data, "target")
    neighbours = model.neighbours(np.array([target]))
    assert {name[:2] for name in data.user_ids[neighbours.indices]} == {"ua"}, "the neighbours are the A users"
    items, scores = model.recommend(np.array([target]), n=5, exclude_seen=True)
    top = list(data.item_ids[items[0]])
    assert set(top[:3]) == {"a2", "a3", "a4"}, "the unseen cluster-A items first"
    assert np.all(scores[0, :3] > 0) and top[3:] == ["b0", "b1"] and np.all(scores[0, 3:] == 0)
    # the B users' nearest neighbours are B users; b0 (bought by all of them) tops their lists
    b_items, _ = model.recommend(np.array([user(data, f"ub{index}") for index in range(10)]), n=1)
    assert set(data.item_ids[b_items[:, 0]]) == {"b0"}


def test_user_knn_batches_bounded_by_block_entries_give_the_same_lists(data: Interactions) -> None:
    """Many fitted users make a batch smaller (fewer entries in its similarity block), never other lists."""
    users = np.arange(data.n_users)
    whole = UserKNNRecommender(k=5).fit(data)
    bounded = UserKNNRecommender(k=5, max_block_entries=3 * data.n_users).fit(data)
    assert (whole._rows_per_batch(data.n_items), bounded._rows_per_batch(data.n_items)) == (1000, 3)
    items, scores = whole.recommend(users, n=5)
    bounded_items, bounded_scores = bounded.recommend(users, n=5)
    np.testing.assert_array_equal(bounded_items, items)
    np.testing.assert_allclose(bounded_scores, scores, rtol=0, atol=1e-12)


def test_user_knn_neighbours_tied_at_k_do_not_depend_on_the_batch() -> None:
    """Eight users tie as the target's neighbours (each bought one of its items), k=5: the five lowest user indices
    are kept, whether the target is scored alone or with everyone (a partition of a dense block, which a small
    batch used, picked an arbitrary five: which users shared the block changed the list)."""
    rows = [("target", "i0"), ("target", "i1")] + [(f"v{index}", f"i{index % 2}") for index in range(8)]
    rows += [(f"v{index}", f"j{index}") for index in range(8)]  # what each neighbour adds to the target's list
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(event_type="purchase", event_ts=T0)
    data = Interactions.from_frame(frame)
    target = user(data, "target")
    expected = sorted(user(data, f"v{index}") for index in range(8))[:5]
    model = UserKNNRecommender(k=5).fit(data)
    alone = model.neighbours(np.array([target]))
    with_everyone = model.neighbours(np.arange(data.n_users))[[target]]
    assert sorted(alone.indices) == sorted(with_everyone.indices) == expected
    items, scores = model.recommend(np.array([target]), n=5, exclude_seen=True)
    assert set(data.item_ids[items[0]]) == {"j" + data.user_ids[index][1:] for index in expected}
    assert np.all(scores[0] > 0), "the kept neighbours' items, nobody else's"


def test_user_knn_two_step_search_keeps_exact_similarities(data: Interactions) -> None:
    """Items with more users than max_item_users: candidates through each item's strongest users, scored exactly."""
    two_step = UserKNNRecommender(k=3, max_item_users=3).fit(data)
    exact = UserKNNRecommender(k=3, max_item_users=10).fit(data)  # b0, the largest item, has 10 users
    assert exact.exact_ and not two_step.exact_
    index, normalized = two_step.index_, sp.csr_array(two_step.normalized_.T)
    for item_index in range(data.n_items):  # each item keeps its 3 largest entries (all of them if it has fewer)
        kept, every = index[[item_index]].data, normalized[[item_index]].data
        np.testing.assert_array_equal(np.sort(kept)[::-1], np.sort(every)[::-1][:3])
    users = np.arange(data.n_users)
    found = two_step.neighbours(users)
    cosine = (two_step.normalized_ @ two_step.normalized_.T).toarray()
    rows = np.repeat(users, np.diff(found.indptr))
    np.testing.assert_allclose(found.data, cosine[rows, found.indices], rtol=0, atol=1e-12)
    assert np.all(found.data > 0) and not np.any(found.indices == rows), "positive, and never the user itself"
    target = user(data, "target")
    assert {name[:2] for name in data.user_ids[two_step.neighbours(np.array([target])).indices]} == {"ua"}
    with pytest.raises(ValueError, match="max_item_users"):
        UserKNNRecommender(max_item_users=0).fit(data)


def test_user_knn_scores_are_the_weighted_average_of_the_neighbours() -> None:
    # u0 = (1, 1, 0), u1 = (1, 1, 1), u2 = (0, 0, 1): cos(u0, u1) = 2 / sqrt(6), cos(u0, u2) = 0
    frame = pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u1", "u1", "u1", "u2"],
            "item_id": ["i0", "i1", "i0", "i1", "i2", "i2"],
            "event_type": ["view"] * 6,
            "event_ts": [T0] * 6,
        }
    )
    data = Interactions.from_frame(frame)
    model = UserKNNRecommender(k=2).fit(data)
    similarity = model.neighbours(np.arange(3)).toarray()
    expected = np.array([[0, 2 / 6**0.5, 0], [2 / 6**0.5, 0, 1 / 3**0.5], [0, 1 / 3**0.5, 0]])
    np.testing.assert_allclose(similarity, expected)
    items, scores = model.recommend(np.array([2]), n=3)
    # u2's only neighbour is u1: the average of u1's row is (1, 1, 1), ties broken by item index
    assert items[0].tolist() == [0, 1, 2] and scores[0].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="similarity"):
        UserKNNRecommender(similarity="jaccard").fit(data)


def test_als_separates_the_clusters_and_matches_its_factors(data: Interactions) -> None:
    # two clusters, two factors
    model = ALSRecommender(factors=2, iterations=20, regularization=0.01, random_state=0).fit(data)
    assert model.user_factors_.shape == (data.n_users, 2) and model.item_factors_.shape == (data.n_items, 2)
    target = user(data, "target")
    items, scores = model.recommend(np.array([target]), n=3, exclude_seen=True)
    assert set(data.item_ids[items[0]]) == {"a2", "a3", "a4"}, "the unseen cluster-A items first"
    expected = model.user_factors_[target] @ model.item_factors_.T
    np.testing.assert_allclose(scores[0], expected[items[0]], rtol=1e-5)
    all_users = np.arange(data.n_users)
    full, _ = model.recommend(all_users, n=data.n_items)
    dense = model.user_factors_ @ model.item_factors_.T
    warm = np.diff(model.user_items_.indptr) > 0
    ranked = np.take_along_axis(dense, full, axis=1)[warm]
    assert np.all(ranked[:, :-1] >= ranked[:, 1:] - 1e-6), "warm users get the full factor ranking"
    again = ALSRecommender(factors=2, iterations=20, regularization=0.01, random_state=0).fit(data)
    np.testing.assert_array_equal(again.item_factors_, model.item_factors_)  # random_state makes the fit repeatable


def test_als_warm_start_continues_from_earlier_item_factors(data: Interactions) -> None:
    """A daily refit from the full run's item factors: a few sweeps reach the full fit's lists, an item the
    earlier fit lacked is solved from its users, and the factor rows follow the item ids, not their positions."""
    params = {"factors": 2, "iterations": 20, "regularization": 0.01, "random_state": 0}
    full = ALSRecommender(**params).fit(data)
    new_item = item(data, "a2")
    known = np.flatnonzero(np.arange(data.n_items) != new_item)[::-1]  # a2 unknown, the rest in reverse order
    earlier = ItemFactors(full.item_ids_[known], full.item_factors_[known])
    model = ALSRecommender(**params, warm_start_iterations=2)
    warm = model.fit(data, warm_start=earlier)
    assert model.warm_start_key() == ALSRecommender(**{**params, "iterations": 5}).warm_start_key()
    assert model.warm_start_key() != ALSRecommender(**{**params, "factors": 3}).warm_start_key()
    target = user(data, "target")
    items, _ = warm.recommend(np.array([target]), n=3, exclude_seen=True)
    assert set(data.item_ids[items[0]]) == {"a2", "a3", "a4"}, "the unseen cluster-A items first, a2 included"
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(warm.recommend(users, n=3)[0], full.recommend(users, n=3)[0])
    # the new item's factors come from its users: near its cluster mates', far from a random start's 0.01 scale
    mates = full.item_factors_[[item(data, "a3"), item(data, "a4")]].mean(axis=0)
    assert np.linalg.norm(warm.item_factors_[new_item]) > 10 * 0.01 * np.sqrt(2)
    assert np.dot(warm.item_factors_[new_item], mates) > 0
    again = ALSRecommender(**params, warm_start_iterations=2).fit(data, warm_start=earlier)
    np.testing.assert_array_equal(again.item_factors_, warm.item_factors_)  # repeatable


def test_als_blocks_bounded_by_entries_give_the_same_lists(data: Interactions) -> None:
    """A large catalogue makes an ALS score block fewer users (at most ``dense_limit`` entries), same lists."""
    users = np.arange(data.n_users)
    whole = ALSRecommender(factors=2, iterations=5, random_state=0).fit(data)
    small = ALSRecommender(factors=2, iterations=5, random_state=0, dense_limit=2 * data.n_items).fit(data)
    assert (small._rows_per_batch(data.n_items), small._rows_per_batch(10**9)) == (2, 1)
    assert whole._rows_per_batch(data.n_items) >= data.n_users  # one block
    for left, right in zip(small.recommend(users, n=5), whole.recommend(users, n=5), strict=True):
        np.testing.assert_array_equal(left, right)


def rated(
    rows: list[tuple[str, str, float]],
    rated_ts: float | list[float] = T0,
    extra_events: tuple[tuple[str, str], ...] = (),
) -> Interactions:
    """Interactions with one purchase per rating (plus ``extra_events``) and the ratings ``(user, item, stars)``."""
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(rated_ts=rated_ts)
    pairs = pd.concat(
        [ratings[["user_id", "item_id"]], pd.DataFrame(list(extra_events), columns=["user_id", "item_id"])]
    )
    return Interactions.from_frame(pairs.assign(event_type="purchase", event_ts=T0)).with_side_data(ratings=ratings)


def _planted_ratings(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """200 users x 50 items, ratings clip(round(3 + b_u + b_i + rank-2 term)), 30% observed; a 20% held-out mask."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 200, 50
    true = (
        3.0
        + 0.5 * rng.normal(size=(n_users, 1))
        + 0.5 * rng.normal(size=(1, n_items))
        + rng.normal(size=(n_users, 2)) @ rng.normal(size=(2, n_items))
    )
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{index:03d}" for index in users],
            "item_id": [f"i{index:02d}" for index in items],
            "rating": np.clip(np.round(true[users, items]), 1, 5),
            "rated_ts": T0,
        }
    )
    return frame, rng.random(len(frame)) < 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_svd_recovers_a_planted_low_rank_rating_matrix(seed: int) -> None:
    frame, held_out = _planted_ratings(seed)
    train, test = frame[~held_out], frame[held_out]
    events = train[["user_id", "item_id"]].assign(event_type="purchase", event_ts=T0)
    data = Interactions.from_frame(
        events, user_ids=sorted(set(frame["user_id"])), item_ids=sorted(set(frame["item_id"]))
    )
    data = data.with_side_data(ratings=train)
    users = pd.Index(data.user_ids).get_indexer(test["user_id"])
    items = pd.Index(data.item_ids).get_indexer(test["item_id"])
    truth = test["rating"].to_numpy()

    def rmse(model: SVDRecommender) -> float:
        return float(np.sqrt(np.mean((model.predict(users, items) - truth) ** 2)))

    mean_rmse = float(np.sqrt(np.mean((truth - train["rating"].mean()) ** 2)))
    bias_rmse = rmse(SVDRecommender(factors=0, random_state=0).fit(data))
    svd = SVDRecommender(random_state=0).fit(data)
    svd_rmse = rmse(svd)
    # measured: mean 1.24 / 1.25, bias-only 1.14 / 1.15, svd 0.68 / 0.64 (seeds 0 / 1)
    assert bias_rmse < mean_rmse, "the biases alone already beat the global mean"
    assert svd_rmse < 0.8 * mean_rmse and svd_rmse < 0.8 * bias_rmse, (svd_rmse, bias_rmse, mean_rmse)
    assert svd.epoch_rmse_[-1] < 0.5 * svd.epoch_rmse_[0], "the training error falls"
    # one batch of all ratings and a step size 10x too large: without the damping the summed updates diverge
    # (nan from epoch 2); damped, each user's and item's step is capped and the fit still converges
    bold = SVDRecommender(learning_rate=0.1, batch_size=len(train), epochs=100, random_state=0).fit(data)
    assert np.isfinite(bold.epoch_rmse_).all() and rmse(bold) < 0.8 * bias_rmse, rmse(bold)


def _taste_data() -> Interactions:
    """Five users like A and C and dislike B and D, five the opposite; C and D have the same mean rating."""
    rows = []
    for index in range(5):
        rows += [(f"like{index}", name, stars) for name, stars in zip("ABCD", (5, 1, 5, 1), strict=True)]
        rows += [(f"other{index}", name, stars) for name, stars in zip("ABCD", (1, 5, 1, 5), strict=True)]
    rows += [("target", "A", 5), ("target", "B", 1), ("contrarian", "A", 1), ("contrarian", "B", 5)]
    return rated(rows)


def test_svd_ranks_what_similar_raters_liked_first() -> None:
    data = _taste_data()
    model = SVDRecommender(factors=2, epochs=200, learning_rate=0.05, random_state=0).fit(data)
    a, b, c, d = (item(data, name) for name in "ABCD")
    for name, liked, disliked in [("target", c, d), ("contrarian", d, c)]:
        items, scores = model.recommend(np.array([user(data, name)]), n=4, exclude_seen=True)
        assert items[0].tolist() == [liked, disliked, -1, -1], "among the unrated items, the similar raters' favourite"
        np.testing.assert_allclose(scores[0, :2], model.predict(user(data, name), items[0, :2]))
        assert scores[0, 0] > 4.5 and scores[0, 1] < 1.5
    items, scores = model.recommend(np.array([user(data, "target")]), n=4)
    assert items[0].tolist() == [a, c, d, b], "without exclude_seen the rated items stay candidates"
    assert np.all(scores[0] >= 1.0) and np.all(scores[0] <= 5.0), "scores are predictions clipped to [1, 5]"


def test_svd_batch_size_one_is_textbook_sgd() -> None:
    """With one rating per batch, the vectorized step equals the classic per-rating Funk SVD update."""
    data = _taste_data()
    factors, rate, penalty, epochs = 3, 0.02, 0.05, 4
    model = SVDRecommender(
        factors=factors, epochs=epochs, learning_rate=rate, regularization=penalty, batch_size=1, random_state=5
    ).fit(data)
    order = np.lexsort((data.ratings["item_index"], data.ratings["user_index"]))  # the canonical order
    users = data.ratings["user_index"].to_numpy()[order]
    items = data.ratings["item_index"].to_numpy()[order]
    ratings = data.ratings["rating"].to_numpy()[order]
    rng = np.random.default_rng(5)
    user_factors = rng.normal(0.0, 0.1, (data.n_users, factors))
    item_factors = rng.normal(0.0, 0.1, (data.n_items, factors))
    user_bias, item_bias, mu = np.zeros(data.n_users), np.zeros(data.n_items), ratings.mean()
    for _ in range(epochs):
        for index in rng.permutation(len(ratings)):  # the reference: one rating at a time
            user_, item_ = users[index], items[index]
            error = ratings[index] - (
                mu + user_bias[user_] + item_bias[item_] + user_factors[user_] @ item_factors[item_]
            )
            user_bias[user_] += rate * (error - penalty * user_bias[user_])
            item_bias[item_] += rate * (error - penalty * item_bias[item_])
            user_factors[user_], item_factors[item_] = (
                user_factors[user_] + rate * (error * item_factors[item_] - penalty * user_factors[user_]),
                item_factors[item_] + rate * (error * user_factors[user_] - penalty * item_factors[item_]),
            )
    assert model.global_mean_ == pytest.approx(3.0)
    np.testing.assert_allclose(model.user_bias_, user_bias, atol=1e-12)
    np.testing.assert_allclose(model.item_bias_, item_bias, atol=1e-12)
    np.testing.assert_allclose(model.user_factors_, user_factors, atol=1e-12)
    np.testing.assert_allclose(model.item_factors_, item_factors, atol=1e-12)


def test_svd_random_state_makes_the_fit_reproducible() -> None:
    data = _taste_data()
    first = SVDRecommender(factors=4, random_state=3).fit(data)
    second = SVDRecommender(factors=4, random_state=3).fit(data)
    other = SVDRecommender(factors=4, random_state=4).fit(data)
    np.testing.assert_array_equal(first.user_factors_, second.user_factors_)
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
    np.testing.assert_array_equal(first.epoch_rmse_, second.epoch_rmse_)
    assert not np.allclose(first.item_factors_, other.item_factors_), "another seed, another starting point"


def test_svd_predicts_the_bias_fallback_for_unknown_users_and_items() -> None:
    # "late" rated only after the reference time and "ghost" only bought "new": no training rating for either
    rows = [("u1", "x", 5), ("u1", "y", 3), ("u2", "x", 4), ("u2", "y", 2), ("late", "x", 1)]
    data = rated(rows, rated_ts=[T0] * 4 + [T0 + SECONDS_PER_DAY], extra_events=(("ghost", "new"),))
    model = SVDRecommender(factors=2, epochs=100, learning_rate=0.05, random_state=0).fit(data, T0 + 1)
    u1, late, ghost = user(data, "u1"), user(data, "late"), user(data, "ghost")
    x, new = item(data, "x"), item(data, "new")
    assert model.n_ratings_ == 4 and model.global_mean_ == pytest.approx(3.5), "only ratings before the reference"
    assert not model.user_rated_[late] and not model.user_rated_[ghost] and not model.item_rated_[new]
    mu, user_bias, item_bias = model.global_mean_, model.user_bias_[u1], model.item_bias_[x]
    assert user_bias > 0 and item_bias > 0, "u1 rates above the mean, x is rated above the mean"
    np.testing.assert_allclose(model.predict(late, x), mu + item_bias)  # unknown user: mu + b_i
    np.testing.assert_allclose(model.predict(u1, new), mu + user_bias)  # unknown item: mu + b_u
    np.testing.assert_allclose(model.predict([late, ghost, -1, 99], [new, new, x, -1]), [mu, mu, mu + item_bias, mu])
    full = mu + user_bias + item_bias + model.user_factors_[u1] @ model.item_factors_[x]
    np.testing.assert_allclose(model.predict(u1, x), np.clip(full, 1, 5))  # a known pair: the full model
    assert model.predict(np.array([[u1], [late]]), np.array([x, new])).shape == (2, 2), "indices broadcast"
    items, scores = model.recommend(np.array([late, ghost]), n=3)
    np.testing.assert_array_equal(items, np.tile(model.fallback_.ranking_[:3], (2, 1)))
    assert np.all(scores == 0.0), "users without ratings get the popularity fill"


def test_svd_without_ratings() -> None:
    data = rated([("u1", "x", 5)])
    unrated = SVDRecommender().fit(Interactions.from_frame(fixture_frame()))  # a shop without reviews
    assert unrated.n_ratings_ == 0 and np.all(unrated.recommend(np.array([0]), n=2)[1] == 0.0)
    model = SVDRecommender(random_state=0).fit(data, T0)  # the only rating is not before T0
    assert model.n_ratings_ == 0 and np.isnan(model.epoch_rmse_).all()
    assert model.predict(0, 0) == 3.0, "no ratings at all: the middle of the scale"
    items, scores = model.recommend(np.array([0]), n=1)
    assert items.tolist() == [[0]] and scores.tolist() == [[0.0]]


def test_svd_keeps_the_latest_rating_of_a_pair() -> None:
    data = rated([("u1", "x", 1), ("u1", "x", 5), ("u2", "x", 3)], rated_ts=[T0 + 10, T0 + 5, T0])  # 5, then 1
    model = SVDRecommender(factors=0, epochs=0).fit(data)
    assert model.n_ratings_ == 2 and model.global_mean_ == pytest.approx(2.0)


def test_segment_popularity(data: Interactions) -> None:
    model = PopularityRecommender(window_days=None).fit(data)
    groups = np.full(data.n_users, -1)
    groups[[user(data, f"ua{index}") for index in range(6)]] = 0
    groups[user(data, "cold")] = 2  # a segment without events: pure global fill
    items, scores = model.recommend_groups(groups, n=6)
    assert items.shape == (3, 6)
    assert {name[0] for name in data.item_ids[items[0, :5]]} == {"a"}, "segment 0 only bought cluster A"
    assert list(data.item_ids[items[0, 5:]]) == ["b0"] and scores[0, 5] == 0.0
    np.testing.assert_array_equal(items[1], model.ranking_[:6])  # group 1 has no members
    np.testing.assert_array_equal(items[2], model.ranking_[:6])
    blocked = model.ranking_[:2]
    filtered, _ = model.recommend_groups(groups, n=6, filter_items=blocked)
    assert not np.isin(filtered, blocked).any()


def test_unknown_similarity_is_rejected(data: Interactions) -> None:
    with pytest.raises(ValueError, match="similarity"):
        ItemKNNRecommender(similarity="jaccard").fit(data)


def test_item_pearson_drops_opposite_tastes_that_cosine_keeps() -> None:
    # u1 buys x and y (weight 5) and views z (1); u2 views x and y and buys z. Centred on each item's mean
    # (3): x = y = (2, -2) and z = (-2, 2): Pearson(x, y) = 1, Pearson(x, z) = -1 (dropped), while
    # cosine(x, z) = (5 + 5) / 26 > 0
    events = pd.DataFrame(
        [
            ("u1", "x", "purchase", T0),
            ("u1", "y", "purchase", T0),
            ("u1", "z", "view", T0),
            ("u2", "x", "view", T0),
            ("u2", "y", "view", T0),
            ("u2", "z", "purchase", T0),
        ],
        columns=["user_id", "item_id", "event_type", "event_ts"],
    )
    data = Interactions.from_frame(events)
    pearson = ItemKNNRecommender(similarity="pearson", shrinkage=0.0).fit(data).similarity_.toarray()
    cosine = ItemKNNRecommender(shrinkage=0.0).fit(data).similarity_.toarray()
    x, y, z = (item(data, name) for name in "xyz")
    assert pearson[x, y] == pytest.approx(1.0) and pearson[x, z] == 0.0
    assert cosine[x, z] == pytest.approx(10 / 26)


# ----------------------------------------------------------------------------- helpers and scale


def test_top_n_per_row_orders_by_score_then_index() -> None:
    scores = sp.csr_array(np.array([[0.0, 2.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]))
    items, values = top_n_per_row(scores, 2)
    assert items.tolist() == [[1, 3], [-1, -1], [0, -1]]
    assert values[0].tolist() == [2.0, 2.0] and np.isnan(values[1]).all() and np.isnan(values[2, 1])


def test_first_unexcluded_and_fill() -> None:
    ranking = np.array([4, 0, 3, 1, 2])
    exclude = sp.csr_array(np.array([[1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=np.float32))
    assert first_unexcluded(ranking, exclude, 3).tolist() == [[3, 1, 2], [4, 0, 3]]
    items = np.array([[2, -1, -1], [1, 0, 3]])
    scores = np.array([[0.5, np.nan, np.nan], [3.0, 2.0, 1.0]])
    filled, filled_scores = fill_from_ranking(items, scores, ranking, 5, exclude)
    assert filled.tolist() == [[2, 3, 1], [1, 0, 3]]  # row 0 excludes 0, 4 and its own item 2
    assert filled_scores[0].tolist() == [0.5, 0.0, 0.0]


def test_scales_to_a_million_users_without_dense_matrices() -> None:
    """1M users x 100k items: a dense float32 matrix would need 400 GB, so any densifying step fails."""
    rng = np.random.default_rng(1)
    n_users, n_items, n_events = 1_000_000, 100_000, 300_000
    events = Interactions(
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
        user_index=rng.integers(0, n_users, n_events, dtype=np.int32),
        item_index=(rng.zipf(1.3, n_events) % n_items).astype(np.int32),
        event_type=rng.choice(np.array([0, 1, 3], dtype=np.int8), n_events),
        event_ts=T0 + rng.random(n_events) * 30 * SECONDS_PER_DAY,
    )
    model = ItemKNNRecommender(k=50).fit(events)
    users = rng.choice(n_users, 2_000, replace=False)
    items, _ = model.recommend(users, n=20)
    because, _ = model.explain(users, items)
    assert items.shape == because.shape == (2_000, 20) and np.all(items >= 0)
    similar, _ = model.similar_items(10)
    assert similar.shape == (n_items, 10)


def test_top_n_per_row_matches_a_full_sort_on_long_rows_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = sp.random_array((40, 500), density=0.3, rng=rng, format="csr")
    scores.data = np.ceil(scores.data * 4)  # values 1..4: many ties, rows of very different lengths
    scores = sp.csr_array(scores[np.argsort(rng.random(40))])
    items, values = top_n_per_row(scores, 7)
    dense = scores.toarray()
    for row in range(dense.shape[0]):  # the brute-force reference, row by row
        stored = np.flatnonzero(dense[row])
        expected = sorted(stored, key=lambda column: (-dense[row, column], column))[:7]
        assert items[row, : len(expected)].tolist() == expected
        assert values[row, : len(expected)].tolist() == dense[row, expected].tolist()


@pytest.mark.parametrize("n", [1, 2])
def test_top_n_per_row_with_empty_and_short_rows(n: int) -> None:
    scores = sp.csr_array(np.array([[0, 5, 1, 5], [0, 0, 0, 0], [2, 0, 0, 0], [1, 3, 2, 0], [0, 0, 0, 9]], dtype=float))
    items, _ = top_n_per_row(scores, n)
    expected = [[1, 3], [-1, -1], [0, -1], [1, 2], [3, -1]]
    assert items.tolist() == [row[:n] for row in expected]
