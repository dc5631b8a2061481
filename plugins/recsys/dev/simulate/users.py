"""The users of the simulated shop: demographics, planted preferences, activity, and their landing rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from recsys.dev.simulate.shop import (
    CATEGORIES,
    DAY,
    GENDERS,
    HOUR,
    LEAF_CATEGORY,
    N_STYLES,
    PLATFORMS,
    REGIONS,
    SIGNUP_CHANNELS,
    IdCounter,
    People,
    Window,
    sample_rows,
)

_AGE_EDGES = np.array([25, 35, 45, 55])
_GENDER_SHARES = [0.52, 0.45, 0.03]
_REGION_SHARES = [0.2, 0.16, 0.15, 0.12, 0.11, 0.1, 0.08, 0.08]
_PLATFORM_SHARES = [0.32, 0.5, 0.18]
_CHANNEL_SHARES = [0.45, 0.25, 0.12, 0.13, 0.05]
#: P(spending tier low/mid/high) per age band
_TIER_BY_AGE_BAND = np.array(
    [[0.55, 0.35, 0.10], [0.35, 0.45, 0.20], [0.25, 0.45, 0.30], [0.25, 0.40, 0.35], [0.35, 0.40, 0.25]]
)
#: a user's category preference: prior weight * segment prior + the rest * Dirichlet noise, then the
#: favourite (its largest share) gets a bonus so that it stands out clearly
_PRIOR_WEIGHT, _NOISE_ALPHA, _FAVOURITE_BONUS = 0.5, 0.3, 0.6
_SESSIONS_PER_90_DAYS = 1.8
_ACTIVITY_SIGMA = 1.2
_FIRST_NAMES = np.array(
    [
        "li",
        "wang",
        "zhang",
        "liu",
        "chen",
        "yang",
        "anna",
        "ben",
        "chloe",
        "david",
        "emma",
        "felix",
        "grace",
        "henry",
        "iris",
        "jack",
        "kate",
        "leo",
        "mia",
        "noah",
    ]
)
_LAST_NAMES = np.array(
    [
        "wei",
        "fang",
        "ming",
        "hua",
        "jun",
        "smith",
        "jones",
        "brown",
        "taylor",
        "lee",
        "walker",
        "white",
        "green",
        "hall",
        "young",
        "king",
        "wright",
        "lopez",
        "hill",
        "scott",
    ]
)
_EMAIL_DOMAINS = np.array(["example.com", "example.net", "example.org", "mail.example.com"])


def make_users(rng: np.random.Generator, n_users: int, window: Window, ids: IdCounter) -> tuple[People, pd.DataFrame]:
    """The users: the shared :class:`People` and the ``users`` landing rows, ids numbered after ``ids``' users."""
    in_window = rng.random(n_users) < 0.22
    signup_at = np.where(
        in_window,
        rng.integers(window.start, window.end - 2 * HOUR, n_users),
        window.start
        - (np.minimum(rng.exponential(300, n_users), 1000) * DAY).astype(np.int64)
        - rng.integers(1, DAY, n_users),
    )
    end_year = datetime.fromtimestamp(window.end - 1, UTC).year
    gender = rng.choice(len(GENDERS), n_users, p=_GENDER_SHARES)
    age = np.minimum(18 + rng.gamma(2.2, 8.5, n_users), 85).astype(int)
    age_band = np.searchsorted(_AGE_EDGES, age, side="right")
    tier = sample_rows(rng, np.cumsum(_TIER_BY_AGE_BAND, axis=1)[age_band])

    affinity = np.array([category.affinity for category in CATEGORIES])
    gender_effect = np.stack([affinity[:, 1], affinity[:, 2], np.zeros(len(CATEGORIES))])
    logits = affinity[:, 0] + gender_effect[gender] + affinity[:, 3:].T[age_band]
    prior = np.exp(logits)
    prior /= prior.sum(axis=1, keepdims=True)
    noise = rng.dirichlet(np.full(len(CATEGORIES), _NOISE_ALPHA), n_users)
    preference = _PRIOR_WEIGHT * prior + (1 - _PRIOR_WEIGHT) * noise
    preference[np.arange(n_users), preference.argmax(axis=1)] += _FAVOURITE_BONUS
    preference /= 1 + _FAVOURITE_BONUS

    leaf_weight = rng.gamma(0.5, size=(n_users, len(LEAF_CATEGORY))) + 1e-9
    category_start = np.r_[0, np.cumsum(np.bincount(LEAF_CATEGORY))[:-1]]
    leaf_weight /= np.add.reduceat(leaf_weight, category_start, axis=1)[:, LEAF_CATEGORY]
    leaf_cdf = np.cumsum(preference[:, LEAF_CATEGORY] * leaf_weight, axis=1)
    leaf_cdf /= leaf_cdf[:, -1:]

    first = ids.take("user", n_users) + 1
    user_ids = ("U" + pd.Series(np.arange(first, first + n_users)).astype(str).str.zfill(6)).to_numpy(dtype=object)
    platform = rng.choice(len(PLATFORMS), n_users, p=_PLATFORM_SHARES)
    people = People(
        user_ids=user_ids,
        signup_at=signup_at,
        platform=platform,
        tier=tier,
        style=rng.integers(0, N_STYLES, n_users),
        sensitivity=rng.beta(0.8, 2.0, n_users),
        preference=preference,
        leaf_cdf=leaf_cdf,
        activity=_SESSIONS_PER_90_DAYS * rng.lognormal(-(_ACTIVITY_SIGMA**2) / 2, _ACTIVITY_SIGMA, n_users),
    )
    email = (
        pd.Series(_FIRST_NAMES[rng.integers(0, len(_FIRST_NAMES), n_users)])
        + "."
        + _LAST_NAMES[rng.integers(0, len(_LAST_NAMES), n_users)]
        + pd.Series(rng.integers(1, 1000, n_users)).astype(str)
        + "@"
        + _EMAIL_DOMAINS[rng.integers(0, len(_EMAIL_DOMAINS), n_users)]
    )
    phone = (
        "+86 1"
        + pd.Series(rng.integers(30, 100, n_users)).astype(str)
        + " "
        + pd.Series(rng.integers(0, 10_000, n_users)).astype(str).str.zfill(4)
        + " "
        + pd.Series(rng.integers(0, 10_000, n_users)).astype(str).str.zfill(4)
    )
    frame = pd.DataFrame(
        {
            "user_id": user_ids,
            "signup_at": signup_at,
            "birth_year": pd.array(end_year - age - rng.integers(0, 2, n_users), dtype="Int64"),
            "gender": np.array(GENDERS, dtype=object)[gender],
            "region": np.array(REGIONS, dtype=object)[rng.choice(len(REGIONS), n_users, p=_REGION_SHARES)],
            "platform": np.array(PLATFORMS, dtype=object)[platform],
            "signup_channel": np.array(SIGNUP_CHANNELS, dtype=object)[
                rng.choice(len(SIGNUP_CHANNELS), n_users, p=_CHANNEL_SHARES)
            ],
            "email": email,
            "phone": phone,
            "is_personalization_allowed": np.where(rng.random(n_users) < 0.03, "false", "true"),
        }
    )
    return people, frame
