"""Encoding, confidence matrices and the time split of ``recsys.features.interactions``."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.evaluation.windows import sample_users, time_split
from recsys.features.interactions import (
    EVENT_WEIGHTS,
    SECONDS_PER_DAY,
    STRENGTH_NAMES,
    Interactions,
    lookup,
    to_epoch_seconds,
)

DAY = SECONDS_PER_DAY
T0 = to_epoch_seconds(datetime(2026, 1, 10, tzinfo=UTC))


def frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_ts"])


@pytest.fixture
def events() -> Interactions:
    return Interactions.from_frame(
        frame(
            [
                ("u2", "i1", "view", T0),
                ("u2", "i1", "purchase", T0 + 1),  # same pair: 1 + 5
                ("u2", "i1", "view", T0 + 2),  # duplicates are summed: 1 + 5 + 1
                ("u1", "i2", "cart", T0),
                ("u1", "i3", "remove_from_cart", T0),  # weight 0: not stored
                ("u1", "i1", "search", T0),  # unknown type: dropped
            ]
        )
    )


def test_ids_are_sorted_and_unknown_event_types_dropped(events: Interactions) -> None:
    assert list(events.user_ids) == ["u1", "u2"]
    assert list(events.item_ids) == ["i1", "i2", "i3"]
    assert events.n_events == 5
    assert events.user_index.dtype == np.int32 and events.event_type.dtype == np.int8


def test_universe_comes_first_and_unseen_ids_are_appended() -> None:
    data = Interactions.from_frame(
        frame([("zed", "i9", "view", T0), ("u1", "i1", "view", T0)]), user_ids=["u3", "u1"], item_ids=["i1"]
    )
    assert list(data.user_ids) == ["u3", "u1", "zed"]
    assert list(data.item_ids) == ["i1", "i9"]
    matrix = data.to_csr()
    assert matrix.shape == (3, 2)
    assert np.diff(matrix.indptr).tolist() == [0, 1, 1]  # u3 has an empty row


def test_event_at_timestamps_are_read_as_epoch_seconds() -> None:
    data = Interactions.from_frame(
        pd.DataFrame(
            {
                "user_id": ["u"],
                "item_id": ["i"],
                "event_type": ["view"],
                "event_at": [pd.Timestamp("2026-01-10T00:00:00Z")],
            }
        )
    )
    assert data.event_ts[0] == T0
    assert to_epoch_seconds(datetime(2026, 1, 10)) == T0  # naive means UTC


def test_confidence_sums_weights_per_pair(events: Interactions) -> None:
    matrix = events.to_csr()
    assert isinstance(matrix, sp.csr_array) and matrix.dtype == np.float32
    dense = matrix.toarray()
    # u1: cart on i2 = 3; remove_from_cart on i3 weighs 0 and is not stored. u2: 1 + 5 + 1 on i1
    assert dense.tolist() == [[0, 3, 0], [7, 0, 0]]
    assert matrix.nnz == 2
    custom = events.to_csr({"purchase": 1.0}).toarray()
    assert custom.tolist() == [[0, 0, 0], [1, 0, 0]]


def test_unknown_weight_names_are_rejected(events: Interactions) -> None:
    with pytest.raises(ValueError, match="unknown event types"):
        events.to_csr({"wishlist": 1.0})


def test_time_decay_halves_the_weight_per_half_life() -> None:
    reference = T0 + 20 * DAY
    data = Interactions.from_frame(
        frame(
            [
                ("u", "a", "purchase", T0 + 10 * DAY),  # 10 days old, half-life 10: 5 * 0.5 = 2.5
                ("u", "b", "purchase", T0),  # 20 days old: 5 * 0.25 = 1.25
                ("u", "c", "view", reference + DAY),  # after the reference: age clipped to 0, weight 1
            ]
        )
    )
    matrix = data.to_csr(half_life_days=10, reference_time=reference, dtype=np.float64)
    np.testing.assert_allclose(matrix.toarray(), [[2.5, 1.25, 1.0]])
    with pytest.raises(ValueError, match="reference_time"):
        data.to_csr(half_life_days=10)


def test_window_is_half_open() -> None:
    data = Interactions.from_frame(frame([("u", "a", "view", T0), ("u", "b", "view", T0 + DAY)]))
    assert data.to_csr(start=T0, end=T0 + DAY).toarray().tolist() == [[1, 0]]
    assert data.to_csr(start=T0 + 1).toarray().tolist() == [[0, 1]]


def test_lookup_reads_many_pairs() -> None:
    matrix = sp.csr_array(np.array([[0, 2, 0], [3, 0, 4]], dtype=np.float32))
    values = lookup(matrix, np.array([0, 1, 1, 0, 1]), np.array([1, 0, 2, 0, 1]))
    assert values.tolist() == [2, 3, 4, 0, 0]
    assert lookup(matrix, np.array([], dtype=int), np.array([], dtype=int)).size == 0


def test_strongest_event_per_pair(events: Interactions) -> None:
    strength = events.strongest_events()
    codes = lookup(strength, np.array([1, 0, 0]), np.array([0, 1, 2]))
    assert [STRENGTH_NAMES[code] for code in codes] == ["purchase", "cart", ""]


def test_default_weights_are_the_documented_ones() -> None:
    assert EVENT_WEIGHTS == {"view": 1.0, "cart": 3.0, "remove_from_cart": 0.0, "purchase": 5.0}


class TestTimeSplit:
    cutoff = T0 + 10 * DAY
    end = T0 + 17 * DAY

    @pytest.fixture
    def split(self):
        data = Interactions.from_frame(
            frame(
                [
                    ("alice", "a", "purchase", T0),
                    ("alice", "b", "view", T0 + 1),
                    ("bob", "b", "purchase", T0 + 2),
                    ("alice", "c", "purchase", self.cutoff),  # test truth (at the cutoff)
                    ("alice", "new", "purchase", self.cutoff + DAY),  # test item unseen in train
                    ("alice", "a", "view", self.cutoff + DAY),  # a view in the test window: not truth
                    ("carol", "b", "purchase", self.cutoff + 2 * DAY),  # test user unseen in train
                    ("bob", "a", "purchase", self.end),  # after the window: ignored
                    ("dave", "a", "purchase", self.end + DAY),  # only after the window: not a test user
                ]
            )
        )
        return time_split(data, self.cutoff, self.end)

    def test_train_has_only_events_before_the_cutoff(self, split) -> None:
        assert split.train.n_events == 3
        assert np.all(split.train.event_ts < self.cutoff)

    def test_train_encoding_appends_test_only_users_and_keeps_train_items(self, split) -> None:
        assert list(split.train.user_ids) == ["alice", "bob", "carol"]
        assert list(split.train.item_ids) == ["a", "b"]
        train = split.train.to_csr()
        assert train.shape == (3, 2)
        assert train[[2]].nnz == 0  # carol has no train history

    def test_truth_is_test_window_purchases_with_unseen_items_last(self, split) -> None:
        assert list(split.truth_item_ids) == ["a", "b", "c", "new"]
        assert split.truth.shape == (3, 4)
        assert split.truth.toarray().tolist() == [
            [0, 0, 1, 1],  # alice: c and new, both first seen in the test window
            [0, 0, 0, 0],  # bob bought only after the window
            [0, 1, 0, 0],  # carol
        ]
        assert split.test_users.tolist() == [0, 2]

    def test_cutoff_must_precede_end(self) -> None:
        data = Interactions.from_frame(frame([("u", "a", "view", T0)]))
        with pytest.raises(ValueError):
            time_split(data, T0, T0)


def test_side_data_is_aligned_to_the_encoding_and_follows_the_time_split() -> None:
    data = Interactions.from_frame(
        frame(
            [
                ("u1", "i1", "purchase", T0),
                ("u2", "i2", "view", T0),
                ("u2", "i1", "purchase", T0 + 2 * DAY),  # test window
                ("u3", "i3", "purchase", T0 + 2 * DAY),  # u3 and i3 only in the test window
            ]
        )
    ).with_side_data(
        items=pd.DataFrame(
            {"item_id": ["i2", "i1"], "category": ["toys", "books"], "brand": ["b", None], "price": ["9.5", ""]}
        ),
        users=pd.DataFrame({"user_id": ["u2"], "age_band": ["25-34"], "gender": [None], "region": ["north"]}),
        ratings=pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u9", "u2", "u3"],
                "item_id": ["i1", "i2", "i1", "i1", "i3"],
                "rating": [5, 2, 4, 3, 1],
                "rated_ts": [T0, T0, T0, T0 + 2 * DAY, T0 + 2 * DAY],
            }
        ),
    )
    assert data.items["category"].tolist() == ["books", "toys", ""]  # i1, i2, i3 (no attributes)
    assert data.items["category_path"].tolist() == data.items["category"].tolist()  # no paths: the category
    assert np.isnan(data.items["price"][0]) and data.items["price"][1] == 9.5
    assert data.users.loc[1].tolist() == ["25-34", "unknown", "north"] and data.users.loc[0, "region"] == "unknown"
    assert len(data.ratings) == 4  # u9 is unknown: dropped
    assert len(data.before(T0 + DAY).ratings) == 2

    split = time_split(data, T0 + DAY, T0 + 3 * DAY)
    assert split.train.item_ids.tolist() == ["i1", "i2"] and split.train.items["category"].tolist() == ["books", "toys"]
    assert split.train.users["age_band"].tolist() == ["unknown", "25-34", "unknown"]  # u1, u2, then test-only u3
    assert split.train.ratings[["user_index", "item_index", "rating"]].values.tolist() == [[0, 0, 5], [1, 1, 2]]
    test = split.test_ratings
    assert test[["user_index", "item_index", "rating"]].values.tolist() == [[1, 0, 3], [2, 2, 1]]


def test_a_sample_of_users_keeps_all_their_events_and_only_theirs() -> None:
    users = [f"u{number}" for number in range(5)]
    data = Interactions.from_frame(
        frame([(user, item, "view", T0 + offset) for offset, user in enumerate(users) for item in ("i1", "i2")])
    )
    assert sample_users(data, 5) is data
    sample = sample_users(data, 3)
    kept = np.unique(sample.user_index)
    assert len(kept) == 3 and sample.n_events == 6 and np.bincount(sample.user_index).max() == 2
    assert np.array_equal(np.unique(sample_users(data, 3).user_index), kept)  # the same users every time
    split = time_split(sample, T0 + 10, T0 + 20)
    assert split.train.user_ids.tolist() == data.user_ids[kept].tolist()  # the split drops the others


def test_event_weights_are_defined_once_in_the_dbt_project(tmp_path):
    from recsys.features.interactions import DBT_PROJECT_FILE, event_weight_sql, read_event_weights

    assert read_event_weights() == EVENT_WEIGHTS
    assert event_weight_sql("e.event_type") == (
        "case e.event_type when 'view' then 1 when 'cart' then 3 when 'remove_from_cart' then 0"
        " when 'purchase' then 5 else 0 end"
    )
    root = DBT_PROJECT_FILE.parents[1]
    hard_coded = [
        path.relative_to(root)
        for folder in ("plugins", "dbt_project/models", "dbt_project/macros")
        for path in (root / folder).rglob("*")
        if path.suffix in {".py", ".sql"} and "when 'cart' then 3" in path.read_text()
    ]
    assert hard_coded == []
    negative = tmp_path / "dbt_project.yml"
    negative.write_text(DBT_PROJECT_FILE.read_text().replace("remove_from_cart: 0", "remove_from_cart: -1"))
    with pytest.raises(ValueError, match="non-negative"):
        read_event_weights(negative)
