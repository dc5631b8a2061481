"""Promotion targeting without a database: features, RFM, metrics, ranking and promotion selection, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.usecases.promotions import (
    Promotion,
    active_promotions,
    feature_frame,
    holdout_promotions,
    precision_at_top,
    rank_targets,
    rfm_score,
    targeting_metrics,
)

END = pd.Timestamp("2026-03-01", tz="UTC")


def test_features_are_shares_logs_and_recency():
    raw = pd.DataFrame(
        {
            "events": [10, 0],
            "category_events": [4, 0],
            "promotion_events": [6, 0],
            "orders": [2, 0],
            "promotion_orders": [1, 0],
            "monetary": [99.0, 0.0],
            "redeemed": [1, 0],
            "offered": [4, 0],
            "recency_days": [3.0, np.nan],
        }
    )
    features = feature_frame(raw, is_sitewide=False)
    first = features.iloc[0]
    assert first["redemption_share"] == 0.25
    assert first["promotion_order_share"] == 0.5
    # 6 of all 10 events while promotions ran (the average): (6 + 5 * 0.6) / (10 + 5) - 0.6 = 0
    assert first["promotion_time_lift"] == pytest.approx(0.0)
    assert first["category_share"] == 0.4
    assert first["log_category_events"] == pytest.approx(np.log(5))
    assert first["log_monetary"] == pytest.approx(np.log(100))
    assert first["log_orders"] == pytest.approx(np.log(3))
    assert first["recency_days"] == 3.0 and first["is_sitewide"] == 0.0
    # no activity: zero shares (no division by zero), unknown recency is the worst observed
    assert features.iloc[1][["redemption_share", "promotion_order_share", "category_share"]].eq(0).all()
    assert features.iloc[1]["promotion_time_lift"] == pytest.approx(0.0)
    assert features.iloc[1]["recency_days"] == 3.0
    assert feature_frame(raw, is_sitewide=True)["is_sitewide"].eq(1.0).all()


def test_promotion_time_lift_is_shrunk_towards_the_average_user():
    raw = pd.DataFrame(
        {
            "events": [20, 20, 1],
            "category_events": 0,
            "promotion_events": [20, 0, 1],
            "orders": 0,
            "promotion_orders": 0,
            "monetary": 0.0,
            "redeemed": 0,
            "offered": 1,
            "recency_days": 1.0,
        }
    )
    lift = feature_frame(raw, is_sitewide=True)["promotion_time_lift"]
    average = 21 / 41
    assert lift[0] == pytest.approx((20 + 5 * average) / 25 - average)
    assert lift[1] == pytest.approx((0 + 5 * average) / 25 - average)
    assert 0 < lift[2] < lift[0]  # one event during a promotion says less than twenty


def test_rfm_score_sums_recency_frequency_and_monetary_quintiles():
    raw = pd.DataFrame({"order_recency_days": [1.0, 10.0, np.nan], "orders": [3, 1, 0], "monetary": [100.0, 20.0, 0.0]})
    # ranks among 3 users: best = 3/3 -> quintile 5, middle 2/3 -> 4, worst 1/3 -> 2 (no order: worst recency)
    assert rfm_score(raw).tolist() == [15.0, 12.0, 6.0]


def test_precision_at_top_decile_counts_ties_at_the_cut_at_their_mean():
    labels = np.array([1, 1, 0] + [0] * 17)
    assert precision_at_top(labels, np.arange(20, 0, -1)) == 1.0  # top 2 of 20 are both redeemers
    scores = np.array([3.0, 2.0, 2.0, 2.0] + [1.0] * 16)
    labels = np.array([0, 1, 0, 0] + [1] * 16)
    # k = 2: the 3.0 row (no redeemer) plus one of three tied 2.0 rows (one redeemer in three)
    assert precision_at_top(labels, scores) == pytest.approx((0 + 1 / 3) / 2)
    assert precision_at_top(labels, np.zeros(20)) == labels.mean()


def test_targeting_metrics_of_a_perfect_and_a_constant_score():
    labels = np.array([1] * 3 + [0] * 27)
    perfect = targeting_metrics(labels, labels.astype(float))
    assert perfect == {"roc_auc": 1.0, "precision_top_decile": 1.0, "lift_top_decile": 10.0, "base_rate": 0.1}
    everyone = targeting_metrics(labels, np.zeros(30))
    assert everyone["roc_auc"] == 0.5 and everyone["lift_top_decile"] == pytest.approx(1.0)


def test_rank_targets_keeps_the_top_share_of_users_who_allow_personalization():
    scored = pd.DataFrame(
        {
            "promotion_id": "P9",
            "user_id": ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"],
            "is_personalization_allowed": [False] + [True] * 9,
            "propensity": [0.9, 0.5, 0.7, 0.7, 0.1, 0.2, 0.3, 0.05, 0.05, 0.6],
        }
    )
    top = rank_targets(scored, target_share=0.3, max_targets=100)  # ceil(0.3 * 10) = 3 rows, u0 opted out
    assert top["user_id"].tolist() == ["u2", "u3", "u9"]  # tie 0.7: by user_id
    assert top["target_rank"].tolist() == [1, 2, 3]
    assert rank_targets(scored, target_share=1.0, max_targets=2)["user_id"].tolist() == ["u2", "u3"]


def _promotion(pid: str, start_days: float, end_days: float) -> Promotion:
    return Promotion(pid, None, END + pd.Timedelta(days=start_days), END + pd.Timedelta(days=end_days))


def test_held_out_promotions_are_the_test_window_else_the_latest_and_active_ones_are_running_or_soon():
    promotions = [
        _promotion("old", -40, -35),
        _promotion("mid", -20, -15),
        _promotion("late", -5, -1),
        _promotion("running", -2, 3),
        _promotion("soon", 5, 12),
        _promotion("later", 9, 12),
    ]
    assert [p.promotion_id for p in holdout_promotions(promotions, END, 7, 2)] == ["late", "running"]
    assert [p.promotion_id for p in holdout_promotions(promotions, END, 7, 3)] == ["mid", "late", "running"]
    assert [p.promotion_id for p in active_promotions(promotions, END, 7)] == ["running", "soon"]
