"""``recsys.usecases.cold_start`` and its estimators on a tiny shop whose answers are computed by hand.

Items ``a1``, ``a2`` (category A) and ``b1``, ``b2`` (category B); five
established users, all ``25-34|female``, who only view:

* region North: ``n1`` views a1 and a2, ``n2`` views a1 (category shares: A 1, B 0);
* region South: ``s1`` views b1 and b2, ``s2`` and ``s3`` view b1 (A 0, B 1).

Window popularity (views weigh 1): a1 2, a2 1, b1 3, b2 1; per category A 3,
B 4, so within their category a1 2/3, a2 1/3, b1 3/4, b2 1/4. The global
ranking is b1, a1, a2, b2 (a2 before b2 on the tie: lower index).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.features.interactions import Interactions
from recsys.usecases import cold_start

DAY = 86_400.0
NOW = 100 * DAY
USERS = ["n1", "n2", "s1", "s2", "s3"]
ITEMS = ["a1", "a2", "b1", "b2"]


def demographics(regions: list[str], age_band: str = "25-34", gender: str = "female") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "signup_ts": 0.0,
            "age_band": age_band,
            "gender": gender,
            "region": regions,
            "platform": "web",
            "signup_channel": "organic",
        }
    )


@pytest.fixture
def shop() -> tuple[Interactions, pd.DataFrame]:
    views = [("n1", "a1"), ("n1", "a2"), ("n2", "a1"), ("s1", "b1"), ("s1", "b2"), ("s2", "b1"), ("s3", "b1")]
    frame = pd.DataFrame(views, columns=["user_id", "item_id"]).assign(event_type="view")
    frame["event_ts"] = NOW - DAY * (1 + np.arange(len(frame)))
    data = Interactions.from_frame(frame, user_ids=USERS, item_ids=ITEMS)
    data = data.with_side_data(
        items=pd.DataFrame({"item_id": ITEMS, "category": list("AABB"), "brand": "", "price": 1})
    )
    return data, demographics(["North", "North", "South", "South", "South"])


def ids(items: np.ndarray) -> list[list[str]]:
    return np.array(ITEMS, dtype=object)[items].tolist()


def test_demographic_model_maps_demographics_to_category_shares(shop) -> None:
    data, people = shop
    model = cold_start.DemographicRecommender(alpha=1e-6, segment_weight=0.0, min_segment_users=1).fit(
        cold_start.with_demographics(data, people), NOW
    )
    new = demographics(["South", "North", "North"])
    np.testing.assert_allclose(model.predict_shares(new), [[0, 1], [1, 0], [1, 0]], atol=1e-4)
    items, scores = model.recommend_demographics(new, n=4)
    # North: A only -> a1 (2/3), a2 (1/3), then the global ranking fills b1, b2 with score 0
    assert ids(items) == [["b1", "b2", "a1", "a2"], ["a1", "a2", "b1", "b2"], ["a1", "a2", "b1", "b2"]]
    np.testing.assert_allclose(scores[1], [2 / 3, 1 / 3, 0, 0], atol=1e-4)
    np.testing.assert_allclose(scores[0], [3 / 4, 1 / 4, 0, 0], atol=1e-4)


def test_demographic_model_is_mixed_with_segment_popularity(shop) -> None:
    data, people = shop
    model = cold_start.DemographicRecommender(alpha=1e-6, segment_weight=0.5, min_segment_users=1).fit(
        cold_start.with_demographics(data, people), NOW
    )
    items, scores = model.recommend_demographics(demographics(["North"]), n=4)
    # 0.5 * share(A) * within + 0.5 * segment share (a1 2/7, a2 1/7, b1 3/7, b2 1/7)
    assert ids(items) == [["a1", "a2", "b1", "b2"]]
    np.testing.assert_allclose(scores[0], [1 / 3 + 1 / 7, 1 / 6 + 1 / 14, 3 / 14, 1 / 14], atol=1e-4)
    # outside any k-anonymous segment the regression alone decides
    items, scores = model.recommend_demographics(demographics(["North"], gender="male"), n=2)
    assert ids(items) == [["a1", "a2"]]

    # the segment's list comes from its users' mean profile: A 2/5, B 3/5
    plain = cold_start.DemographicRecommender(alpha=1e-6, segment_weight=0.0, min_segment_users=1).fit(
        cold_start.with_demographics(data, people), NOW
    )
    keys, items, scores = plain.segment_recommend(4, demographics=people)
    assert keys.tolist() == ["25-34|female"] and ids(items) == [["b1", "a1", "b2", "a2"]]
    np.testing.assert_allclose(scores[0], [0.45, 0.4 * 2 / 3, 0.15, 0.4 / 3], atol=1e-4)


def test_segment_popularity_respects_k_anonymity(shop) -> None:
    data, people = shop
    model = cold_start.SegmentPopularityRecommender(min_segment_users=5).fit(
        cold_start.with_demographics(data, people), NOW
    )
    keys, items, scores = model.segment_recommend(4)
    assert keys.tolist() == ["25-34|female"] and ids(items) == [["b1", "a1", "a2", "b2"]]
    np.testing.assert_allclose(scores[0], [3, 2, 1, 1])
    items, _ = model.recommend_demographics(demographics(["North"], gender="male"), n=4, filter_items=np.array([2]))
    assert ids(items[:, :3]) == [["a1", "a2", "b2"]] and items[0, 3] == -1, "b1 is filtered, nothing else is left"

    # six users needed, five have events: the segment is not published, everyone gets global popularity
    small = cold_start.SegmentPopularityRecommender(min_segment_users=6).fit(
        cold_start.with_demographics(data, people), NOW
    )
    assert len(small.segment_recommend(4)[0]) == 0
    items, scores = small.recommend_demographics(demographics(["North"]), n=4)
    assert ids(items) == [["b1", "a1", "a2", "b2"]]


def test_rows_with_the_same_demographics_share_one_list(shop) -> None:
    data, people = shop
    model = cold_start.DemographicRecommender(min_segment_users=1).fit(cold_start.with_demographics(data, people), NOW)
    many = demographics(["North", "South"] * 50)
    items, scores = model.recommend_demographics(many, n=3)
    single, _ = model.recommend_demographics(demographics(["South"]), n=3)
    assert (items[::2] == items[0]).all() and (items[1::2] == single[0]).all()
    assert items.shape == (100, 3) and model.recommend_demographics(many.iloc[:0], n=3)[0].shape == (0, 3)


def test_new_user_truth_keeps_first_days_purchases_of_users_who_signed_up_in_the_window() -> None:
    cutoff, end = NOW - 10 * DAY, NOW
    users = ["new", "new_seen_before", "old", "late_buyer", "viewer"]
    events = pd.DataFrame(
        [
            ("new", "a1", "purchase", cutoff + 2 * DAY),
            ("new", "b1", "purchase", cutoff + 3 * DAY),
            ("new", "b2", "view", cutoff + 3 * DAY),
            ("new_seen_before", "a1", "view", cutoff - DAY),
            ("new_seen_before", "a2", "purchase", cutoff + 2 * DAY),
            ("old", "a1", "purchase", cutoff + 2 * DAY),
            ("late_buyer", "a2", "purchase", cutoff + 9 * DAY),  # 8 days after signing up
            ("viewer", "a1", "view", cutoff + 2 * DAY),
        ],
        columns=["user_id", "item_id", "event_type", "event_ts"],
    )
    data = Interactions.from_frame(events, user_ids=users, item_ids=ITEMS)
    people = demographics(["North"] * 5)
    people["signup_ts"] = [cutoff + DAY, cutoff - 2 * DAY, cutoff - 30 * DAY, cutoff + DAY, cutoff + DAY]
    people.loc[1, "signup_ts"] = cutoff + DAY  # signed up in the window but seen before the cutoff
    evaluated, truth = cold_start.new_user_truth(data, people, cutoff, end, first_days=7)
    assert evaluated.tolist() == [0]
    assert ids(np.sort(truth[[0]].indices)) == ["a1", "b1"]
    evaluated, truth = cold_start.new_user_truth(data, people, cutoff, end, 7, ("view", "purchase"))
    assert evaluated.tolist() == [0, 4]


def test_configuration_errors_are_clear() -> None:
    assert cold_start.settings({})["truth_events"] == ("purchase",)
    with pytest.raises(ValueError, match="truth_events must be some of"):
        cold_start.settings({"cold_start": {"truth_events": ["wishlist"]}})
    with pytest.raises(ValueError, match="one row per user"):
        data = Interactions.from_frame(
            pd.DataFrame({"user_id": ["u"], "item_id": ["a1"], "event_type": ["view"], "event_ts": [0.0]})
        )
        cold_start.with_demographics(data, demographics(["North", "South"]))


def test_without_events_in_the_window_everyone_gets_the_all_time_ranking(shop) -> None:
    data, people = shop
    later = NOW + 100 * DAY  # the 30-day window before it is empty
    model = cold_start.DemographicRecommender(min_segment_users=1).fit(
        cold_start.with_demographics(data, people), later
    )
    assert model.ridge_ is None and len(model.segment_names_) == 0
    items, scores = model.recommend_demographics(demographics(["North", "South"]), n=4)
    assert ids(items) == [["b1", "a1", "a2", "b2"]] * 2 and (scores == 0).all()


def test_one_weighted_row_per_profile_is_the_ridge_fit_of_all_users(shop) -> None:
    from sklearn.linear_model import Ridge

    data, people = shop
    people = people.assign(platform=["web", "app", "web", "web", "app"])  # three distinct profiles
    model = cold_start.DemographicRecommender(alpha=0.7, min_segment_users=1).fit(
        cold_start.with_demographics(data, people), NOW
    )
    features = model.encoder_.transform(model._features(people))  # every level is frequent here
    shares = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], dtype=float)  # every user has events here
    direct = Ridge(alpha=0.7).fit(features, shares)
    np.testing.assert_allclose(model.ridge_.coef_, direct.coef_, atol=1e-6)
    np.testing.assert_allclose(model.ridge_.intercept_, direct.intercept_, atol=1e-6)


def test_levels_of_fewer_than_k_users_are_pooled(shop) -> None:
    data, people = shop
    model = cold_start.DemographicRecommender(alpha=1e-6, min_segment_users=3).fit(
        cold_start.with_demographics(data, people), NOW
    )
    assert list(model.levels_["region"]) == ["South"], "North has 2 established users, South 3"
    shares = model.predict_shares(demographics(["North", "West", "South"]))
    np.testing.assert_allclose(shares[0], shares[1])  # a rare and an unseen region read the same
    np.testing.assert_allclose(shares, [[1, 0], [1, 0], [0, 1]], atol=1e-4)


def test_a_one_category_catalogue_gives_every_profile_that_category(shop) -> None:
    """Invoice exports have no categories: one target column, which scikit-learn's ridge returns as 1-D.

    Every share is then 1 (the one category), two profiles stay two rows, and the lists are the
    category's popularity: b1 (3 views), a1 (2), then a2 and b2 (1 each, the lower index first).
    """
    data, people = shop
    data = data.with_side_data(items=pd.DataFrame({"item_id": ITEMS, "category": "", "brand": "", "price": 1}))
    model = cold_start.DemographicRecommender(alpha=1e-6, segment_weight=0.0, min_segment_users=1).fit(
        cold_start.with_demographics(data, people), NOW
    )
    np.testing.assert_allclose(model.predict_shares(demographics(["North", "South"])), [[1.0], [1.0]])
    keys, items, _ = model.segment_recommend(4, demographics=people)
    assert keys.tolist() == ["25-34|female"] and ids(items) == [["b1", "a1", "a2", "b2"]]
    items, _ = model.recommend_demographics(demographics(["North", "South"]), n=4)
    assert ids(items) == [["b1", "a1", "a2", "b2"]] * 2


def test_fitted_users_are_served_the_list_of_their_demographics(shop) -> None:
    """The estimator contract: ``recommend(user_indices)`` is the list of each fitted user's demographics.

    ``n1`` (North) gets a1, a2, then b1, b2 (as a new North user would); with ``exclude_seen`` the two items
    ``n1`` viewed go, and the global ranking fills the list: b1, b2.
    """
    data, people = shop
    model = cold_start.DemographicRecommender(alpha=1e-6, segment_weight=0.0, min_segment_users=1)
    model.fit(cold_start.with_demographics(data, people), NOW)
    items, scores = model.recommend(np.array([0, 2]), n=4)
    assert ids(items) == [["a1", "a2", "b1", "b2"], ["b1", "b2", "a1", "a2"]]
    np.testing.assert_allclose(scores, model.recommend_demographics(people.iloc[[0, 2]], n=4)[1])
    items, scores = model.recommend(np.array([0]), n=4, exclude_seen=True)
    assert ids(items[:, :2]) == [["b1", "b2"]] and (items[0, 2:] == -1).all() and np.isnan(scores[0, 2:]).all()
    with pytest.raises(IndexError):
        model.recommend(np.array([len(USERS)]), n=4)
