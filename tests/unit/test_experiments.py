"""A/B arms by a deterministic hash, and the two-proportion z-test of the report, on hand-computed cases."""

from __future__ import annotations

import pytest

from recsys.api.experiments import CHALLENGER, CHAMPION, Experiment
from recsys.reporting.online import two_proportion_z_test

USERS = [f"user-{n}" for n in range(20_000)]


def test_a_shopper_stays_in_one_arm_and_the_split_is_the_configured_share():
    test = Experiment("home-ab", "item_knn", challenger_share=0.2)
    arms = [test.arm(user) for user in USERS]
    assert arms == [Experiment("home-ab", "item_knn", 0.2).arm(user) for user in USERS]  # same on every server
    assert arms.count(CHALLENGER) / len(USERS) == pytest.approx(0.2, abs=0.01)
    # a larger share only moves shoppers from the champion to the challenger, never back
    wider = Experiment("home-ab", "item_knn", challenger_share=0.5)
    assert all(wider.arm(user) == CHALLENGER for user, arm in zip(USERS, arms, strict=True) if arm == CHALLENGER)
    # another test's name draws another split
    other = [Experiment("search-ab", "item_knn", 0.2).arm(user) for user in USERS]
    assert sum(a != b for a, b in zip(arms, other, strict=True)) > 0.2 * len(USERS)


def test_shares_zero_and_one_put_everyone_in_one_arm_and_others_are_refused():
    assert {Experiment("t", "als", 0.0).arm(user) for user in USERS[:1000]} == {CHAMPION}
    assert {Experiment("t", "als", 1.0).arm(user) for user in USERS[:1000]} == {CHALLENGER}
    with pytest.raises(ValueError, match="between 0 and 1"):
        Experiment("t", "als", 1.5)


def test_the_two_proportion_z_test_matches_the_hand_computed_case():
    # 10/100 against 20/100: pooled p = 0.15, se = sqrt(0.15 * 0.85 * 0.02) = 0.0504975, z = 0.1 / se = 1.98030
    z, p = two_proportion_z_test(10, 100, 20, 100)
    assert z == pytest.approx(1.98030, abs=1e-5)
    assert p == pytest.approx(0.047676, abs=1e-5)  # two-sided: 2 * (1 - Phi(1.98030))
    assert two_proportion_z_test(20, 100, 10, 100)[0] == pytest.approx(-z)
    assert all(value != value for value in two_proportion_z_test(0, 100, 0, 100))  # no successes: undefined
