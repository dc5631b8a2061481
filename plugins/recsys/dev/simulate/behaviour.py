"""What the simulated users do: promotions, sessions, searches, views, carts, orders, re-buys and reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.dev.simulate.catalogue import choose_items, listed
from recsys.dev.simulate.shop import (
    CATEGORIES,
    DAY,
    EVENT_CODES,
    HOUR,
    LEAF_CATEGORY,
    LEAF_PATHS,
    ORDER_STATUSES,
    PLATFORMS,
    PROMOTION_TYPES,
    REPURCHASE_DAYS,
    Catalogue,
    People,
    Window,
    iso,
    sample_rows,
)
from recsys.dev.simulate.texts import EMPTY_SHARE, review_texts

#: share of sessions a user opens on their signup platform
_HOME_PLATFORM_SHARE = 0.8
#: relative activity by hour of day (UTC)
_HOUR_WEIGHTS = np.array([3, 2, 1, 1, 1, 1, 2, 4, 5, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 10, 10, 8, 5], dtype=float)
_PROMO_EXTRA_SESSIONS = 1.2  # extra sessions during promotions at promo_sensitivity 1
_MEAN_EXTRA_VIEWS = 2.6
_SEARCH_SHARE = 0.3
_SESSION_LEAF_SHARE = 0.5  # views in the session's leaf category
_EXPLORE_SHARE = 0.08  # views of globally popular items, whatever the user likes
_CART_RATE = 0.16
_LIKING_WEIGHT = 0.6  # the cart rate of the least liked category is 1 - this share of the favourite's
_REMOVE_RATE = 0.25
_BUY_RATE = 0.5
_REDEEM_BASE, _REDEEM_SLOPE = 0.1, 0.85
_REPEAT_RATE = 0.6
_MAX_REPEATS = 8
_REVIEW_RATE = 0.15


def make_promotions(rng: np.random.Generator, window: Window) -> pd.DataFrame:
    """Promotions of the window (about one per 6 days), in epoch seconds; ``category`` -1 is sitewide."""
    days = len(window.day_cdf)
    n = int(np.clip(round(days / 6), 2, 20))
    start_day = np.sort(rng.integers(0, days, n))
    starts_at = window.start + start_day * DAY
    ends_at = np.minimum(starts_at + rng.integers(2, 8, n) * DAY, window.end)
    category = np.where(rng.random(n) < 0.4, rng.integers(0, len(CATEGORIES), n), -1)
    kind = rng.choice(len(PROMOTION_TYPES), n, p=[0.5, 0.3, 0.2])
    value = np.select(
        [kind == 0, kind == 1], [rng.choice([10, 15, 20, 25, 30], n), rng.choice([5, 10, 20], n)], 0
    ).astype(float)
    sitewide_names = np.array(["Weekend Sale", "Flash Sale", "Member Days", "Mid-Season Sale"])
    category_names = np.array([c.name for c in CATEGORIES] + [""])
    number = pd.Series(np.arange(1, n + 1)).astype(str)
    name = np.where(
        category >= 0,
        pd.Series(category_names[category]) + " Week",
        pd.Series(sitewide_names[rng.integers(0, len(sitewide_names), n)]) + " " + number,
    )
    return pd.DataFrame(
        {
            "promotion_id": "P" + number.str.zfill(3),
            "name": name,
            "kind": kind,
            "discount_value": value,
            "category": category,
            "starts_at": starts_at,
            "ends_at": ends_at,
        }
    )


def scheduled_promotion(rng: np.random.Generator, window: Window, n_existing: int) -> pd.DataFrame:
    """One promotion starting the day after the window, for 7 days: the one to target at the end date.

    It starts after the last simulated day, so no behaviour in the window depends on it.
    """
    category = int(rng.integers(0, len(CATEGORIES))) if rng.random() < 0.5 else -1
    return pd.DataFrame(
        {
            "promotion_id": [f"P{n_existing + 1:03d}"],
            "name": [f"{CATEGORIES[category].name} Week" if category >= 0 else "Upcoming Sale"],
            "promotion_type": [PROMOTION_TYPES[0]],
            "discount_value": [float(rng.choice([10, 15, 20]))],
            "category": [CATEGORIES[category].name if category >= 0 else ""],
            "starts_at": iso(np.array([window.end]), np.array([False])),
            "ends_at": iso(np.array([window.end + 7 * DAY]), np.array([False])),
        }
    )


def _applicable_promotion(at: np.ndarray, category: np.ndarray, promotions: pd.DataFrame) -> np.ndarray:
    """Index of the first promotion running at ``at`` for ``category``, or -1."""
    starts, ends = promotions["starts_at"].to_numpy(), promotions["ends_at"].to_numpy()
    target = promotions["category"].to_numpy()
    runs = (  # rows x promotions (a handful of promotions, so the block stays small)
        (at[:, None] >= starts) & (at[:, None] < ends) & ((target < 0) | (category[:, None] == target))
    )
    return np.where(runs.any(axis=1), runs.argmax(axis=1), -1)


def _draw_days(rng: np.random.Generator, cdf: np.ndarray, from_day: np.ndarray) -> np.ndarray:
    """Draw a day from ``cdf`` restricted to days ``>= from_day`` (one per row)."""
    floor = np.r_[0.0, cdf][from_day]
    day = np.searchsorted(cdf, floor + rng.random(len(from_day)) * (1 - floor), side="right")
    return np.minimum(day, len(cdf) - 1)


def make_sessions(
    rng: np.random.Generator, people: People, window: Window, promotions: pd.DataFrame, activity: float = 1.0
) -> pd.DataFrame:
    """Browsing sessions: user, start, leaf, platform and per-session funnel rates.

    ``activity`` multiplies every user's expected number of sessions (``People.activity``).
    """
    days = len(window.day_cdf)
    day_weight = np.diff(np.r_[0.0, window.day_cdf])
    day_starts = window.day_starts
    promo_day = (
        (day_starts[:, None] < promotions["ends_at"].to_numpy())
        & (day_starts[:, None] + DAY > promotions["starts_at"].to_numpy())
    ).any(axis=1)
    promo_weight = np.cumsum(day_weight * promo_day)
    promo_cdf = promo_weight / promo_weight[-1]

    signup_day = np.clip((people.signup_at - window.start) // DAY, 0, days - 1)
    base_mass = 1 - np.r_[0.0, window.day_cdf][signup_day]
    promo_mass = promo_weight[-1] - np.r_[0.0, promo_weight][signup_day]
    expected = people.activity * days / 90 * activity
    n_base = rng.poisson(expected * base_mass)
    n_promo = rng.poisson(expected * _PROMO_EXTRA_SESSIONS * people.sensitivity * promo_mass)

    user = np.r_[np.repeat(np.arange(len(n_base)), n_base), np.repeat(np.arange(len(n_promo)), n_promo)]
    is_promo = np.r_[np.zeros(n_base.sum(), dtype=bool), np.ones(n_promo.sum(), dtype=bool)]
    day = np.where(
        is_promo, _draw_days(rng, promo_cdf, signup_day[user]), _draw_days(rng, window.day_cdf, signup_day[user])
    )
    hour = rng.choice(24, len(user), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start = window.start + day * DAY + hour * HOUR + rng.integers(0, HOUR, len(user))
    signup = people.signup_at[user]
    start = np.where(start < signup + 60, signup + rng.integers(5 * 60, 3 * HOUR, len(user)), start)
    start = np.minimum(start, window.end - 2 * HOUR)
    keep = start >= signup
    user, start = user[keep], start[keep]

    n = len(user)
    leaf = sample_rows(rng, people.leaf_cdf[user])
    home = rng.random(n) < _HOME_PLATFORM_SHARE
    promo_runs = _applicable_promotion(start, LEAF_CATEGORY[leaf], promotions) >= 0
    boost = people.sensitivity[user] * promo_runs
    return pd.DataFrame(
        {
            "user": user,
            "start": start,
            "leaf": leaf,
            "platform": np.where(home, people.platform[user], rng.integers(0, len(PLATFORMS), n)),
            "n_views": 1 + rng.poisson(_MEAN_EXTRA_VIEWS, n),
            "has_search": rng.random(n) < _SEARCH_SHARE,
            "cart_rate": _CART_RATE * (1 + 1.5 * boost),
            "remove_rate": _REMOVE_RATE,
            "buy_rate": _BUY_RATE + 0.4 * boost,
        }
    )


def browse_and_buy(
    rng: np.random.Generator, sessions: pd.DataFrame, people: People, catalogue: Catalogue
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Search, view, cart and remove events of the sessions, and what they buy.

    ``sessions`` may carry an ``item`` column (buy-again sessions view that item).
    Returns the events and the purchases (session, user, item, quantity, price, at);
    purchase events are written from the order lines by :func:`purchase_events`.
    """
    n_views = sessions["n_views"].to_numpy()
    session = np.repeat(sessions.index.to_numpy(), n_views)
    row = np.repeat(np.arange(len(sessions)), n_views)
    n = len(session)
    first = np.cumsum(n_views) - n_views
    elapsed = np.cumsum(rng.integers(15, 180, n))
    at = sessions["start"].to_numpy()[row] + elapsed - elapsed[first][row]
    user = sessions["user"].to_numpy()[row]

    if "item" in sessions:
        item = sessions["item"].to_numpy()[row]
        liking = np.ones(n)
    else:
        leaf = sessions["leaf"].to_numpy()[row]
        kind = rng.random(n)
        elsewhere = (kind >= _SESSION_LEAF_SHARE) & (kind < 1 - _EXPLORE_SHARE)
        leaf[elsewhere] = sample_rows(rng, people.leaf_cdf[user[elsewhere]])
        item = choose_items(rng, catalogue, leaf, people.tier[user], people.style[user])
        explore = kind >= 1 - _EXPLORE_SHARE
        item[explore] = np.searchsorted(catalogue.popularity_cdf, rng.random(explore.sum()), side="right")
        item = listed(catalogue, item, at)
        # users cart what they like: the item's category share relative to their favourite's
        affinity = people.preference[user, catalogue.category[item]] / people.preference.max(axis=1)[user]
        liking = 1 - _LIKING_WEIGHT + _LIKING_WEIGHT * affinity

    platform = sessions["platform"].to_numpy()[row]
    price = catalogue.price[item]
    first_look = ~pd.Series(session * len(catalogue.leaf) + item).duplicated().to_numpy()
    carted = first_look & (rng.random(n) < sessions["cart_rate"].to_numpy()[row] * liking)
    removed = carted & (rng.random(n) < sessions["remove_rate"].to_numpy()[row])
    bought = carted & ~removed & (rng.random(n) < sessions["buy_rate"].to_numpy()[row])
    quantity = np.where(catalogue.is_consumable[item], rng.geometric(0.6, n), 1 + (rng.random(n) < 0.08)).astype(float)
    cart_at = at + rng.integers(10, 120, n)
    last_view = pd.Series(at).groupby(row).max().to_numpy()
    checkout_at = last_view + rng.integers(60, 400, len(sessions))

    search = _search_events(rng, sessions)

    def rows(mask: np.ndarray, event_type: str, when: np.ndarray, with_quantity: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "session": session[mask],
                "user": user[mask],
                "item": item[mask],
                "event_type": EVENT_CODES[event_type],
                "at": when[mask],
                "platform": platform[mask],
                "quantity": quantity[mask] if with_quantity else np.nan,
                "price": price[mask],
            }
        )

    all_views = np.ones(n, dtype=bool)
    browse = pd.concat(
        [
            search,
            rows(all_views, "view", at, with_quantity=False),
            rows(carted, "cart", cart_at, with_quantity=True),
            rows(removed, "remove_from_cart", cart_at + rng.integers(10, 300, n), with_quantity=True),
        ],
        ignore_index=True,
    )
    purchases = pd.DataFrame(
        {
            "session": session[bought],
            "user": user[bought],
            "item": item[bought],
            "quantity": quantity[bought],
            "price": price[bought],
            "at": checkout_at[row[bought]],
        }
    )
    return browse, purchases


def _search_events(rng: np.random.Generator, sessions: pd.DataFrame) -> pd.DataFrame:
    """The ``search`` event that opens each session with ``has_search``, shortly before its start."""
    searching = sessions["has_search"].to_numpy()
    search_leaf = sessions["leaf"].to_numpy()[searching]
    return pd.DataFrame(
        {
            "session": sessions.index[searching],
            "user": sessions["user"].to_numpy()[searching],
            "item": -1,
            "event_type": EVENT_CODES["search"],
            "at": sessions["start"].to_numpy()[searching] - rng.integers(5, 60, searching.sum()),
            "platform": sessions["platform"].to_numpy()[searching],
            "query": _search_queries(rng, search_leaf),
        }
    )


def _search_queries(rng: np.random.Generator, leaf: np.ndarray) -> np.ndarray:
    """Search text for sessions in ``leaf``: the leaf name, brand + leaf, or a misspelling."""
    words = [path.rsplit(" > ", 1)[1].lower() for path in LEAF_PATHS]
    misspelt = []
    for word in words:  # one per leaf category: swap two letters in the middle
        middle = len(word) // 2
        misspelt.append(word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :])
    brands = np.array([[brand.lower() for brand in c.brands] for c in CATEGORIES], dtype=object)
    words_array = np.array(words, dtype=object)
    brand_words = brands[LEAF_CATEGORY[leaf], rng.integers(0, 4, len(leaf))]
    kind = rng.choice(3, len(leaf), p=[0.6, 0.25, 0.15])
    return np.select(
        [kind == 0, kind == 1],
        [words_array[leaf], brand_words + " " + words_array[leaf]],
        np.array(misspelt, dtype=object)[leaf],
    )


def make_orders(
    rng: np.random.Generator,
    purchases: pd.DataFrame,
    sessions: pd.DataFrame,
    people: People,
    catalogue: Catalogue,
    promotions: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One order per session with purchases; promotions redeemed by sensitivity.

    Returns orders (session, user, at, platform, promotion) and lines (session, item,
    quantity, unit_price, discount_amount); ``session`` is the order's key.
    """
    order_session, first_line, line_order = np.unique(
        purchases["session"].to_numpy(), return_index=True, return_inverse=True
    )
    order_at = purchases["at"].to_numpy()[first_line]
    order_user = purchases["user"].to_numpy()[first_line]
    session_leaf = sessions.loc[order_session, "leaf"].to_numpy()
    promo = _applicable_promotion(order_at, LEAF_CATEGORY[session_leaf], promotions)
    uses = (promo >= 0) & (rng.random(len(promo)) < _REDEEM_BASE + _REDEEM_SLOPE * people.sensitivity[order_user])

    promo_category = promotions["category"].to_numpy()
    item = purchases["item"].to_numpy()
    quantity = purchases["quantity"].to_numpy()
    price = purchases["price"].to_numpy()
    line_promo = np.where(uses[line_order], promo[line_order], -1)
    eligible = (line_promo >= 0) & (
        (promo_category[line_promo] < 0) | (promo_category[line_promo] == catalogue.category[item])
    )
    uses &= np.bincount(line_order, weights=eligible, minlength=len(uses)) > 0

    kind = promotions["kind"].to_numpy()[line_promo]
    value = promotions["discount_value"].to_numpy()[line_promo]
    eligible_total = np.bincount(line_order, weights=price * quantity * eligible, minlength=len(uses))[line_order]
    amount_cut = np.minimum(value, 0.5 * eligible_total) * price * quantity / np.maximum(eligible_total, 0.01)
    unit_price = np.select(
        [eligible & (kind == 0), eligible & (kind == 1)],
        [price * (1 - value / 100), price - amount_cut / quantity],
        price,
    ).round(2)
    orders = pd.DataFrame(
        {
            "session": order_session,
            "user": order_user,
            "at": order_at,
            "platform": sessions.loc[order_session, "platform"].to_numpy(),
            "promotion": np.where(uses, promo, -1),
        }
    )
    lines = pd.DataFrame(
        {
            "session": purchases["session"].to_numpy(),
            "item": item,
            "quantity": quantity,
            "unit_price": unit_price,
            "discount_amount": ((price - unit_price) * quantity).round(2),
        }
    )
    return orders, lines


def rebuy_times(
    rng: np.random.Generator, orders: pd.DataFrame, lines: pd.DataFrame, catalogue: Catalogue, window: Window
) -> pd.DataFrame:
    """Buy-again times of consumables: each purchase is repeated at about the category's interval."""
    bought = lines.merge(orders[["session", "user", "at"]], on="session")
    current = bought.loc[catalogue.is_consumable[bought["item"]], ["user", "item", "at"]]
    rebuys = []
    for _ in range(_MAX_REPEATS):  # a handful of rounds: each repeats the previous round's purchases
        interval = REPURCHASE_DAYS[catalogue.category[current["item"]]] * rng.lognormal(0, 0.25, len(current))
        current = current.assign(at=current["at"] + (interval * DAY).astype(np.int64))
        current = current[(rng.random(len(current)) < _REPEAT_RATE) & (current["at"] < window.end - 2 * HOUR)]
        if current.empty:
            break
        rebuys.append(current)
    return pd.concat(rebuys, ignore_index=True) if rebuys else current


def rebuy_sessions(rebuys: pd.DataFrame, people: People, catalogue: Catalogue, first_session: int) -> pd.DataFrame:
    """Buy-again sessions: view, cart and buy one known item."""
    user = rebuys["user"].to_numpy()
    return pd.DataFrame(
        {
            "user": user,
            "start": rebuys["at"].to_numpy(),
            "leaf": catalogue.leaf[rebuys["item"].to_numpy()],
            "item": rebuys["item"].to_numpy(),
            "platform": people.platform[user],
            "n_views": 1,
            "has_search": False,
            "cart_rate": 1.0,
            "remove_rate": 0.0,
            "buy_rate": 1.0,
        },
        index=pd.RangeIndex(first_session, first_session + len(rebuys)),
    )


def purchase_events(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """One purchase event per order line, at checkout, priced as paid."""
    joined = lines.merge(orders[["session", "user", "at", "platform"]], on="session")
    return pd.DataFrame(
        {
            "session": joined["session"],
            "user": joined["user"],
            "item": joined["item"],
            "event_type": EVENT_CODES["purchase"],
            "at": joined["at"],
            "platform": joined["platform"],
            "quantity": joined["quantity"],
            "price": joined["unit_price"],
        }
    )


def make_reviews(
    rng: np.random.Generator,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    people: People,
    catalogue: Catalogue,
    window: Window,
    text_rng: np.random.Generator,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """Ratings for some completed order lines, higher when the item fits the user, and their texts.

    The texts (:func:`recsys.dev.simulate.texts.review_texts`) follow the rating and the item's leaf
    category, brand (from the ``items`` landing rows) and price tier; their words come from ``text_rng``.
    """
    completed = orders.loc[orders["status"] == ORDER_STATUSES.index("completed"), ["session", "user", "at"]]
    reviewed = lines.merge(completed, on="session")
    reviewed = reviewed[rng.random(len(reviewed)) < _REVIEW_RATE].drop_duplicates(["user", "item"])
    user, item = reviewed["user"].to_numpy(), reviewed["item"].to_numpy()
    fit = people.preference[user, catalogue.category[item]] / people.preference[user].max(axis=1)
    tier_gap = catalogue.tier[item] - people.tier[user]
    score = 2.6 + 1.8 * fit - 0.5 * np.abs(tier_gap) + rng.normal(0, 0.7, len(user))
    rating = np.clip(np.round(score), 1, 5).astype(int)
    empty = rng.random(len(user)) < EMPTY_SHARE
    opener = rng.integers(0, 3, len(user))
    brands = items.set_index("item_id")["brand"].reindex(catalogue.item_ids).to_numpy(dtype=object)
    words = review_texts(text_rng, rating, catalogue.leaf[item], brands[item], tier_gap, opener)
    text = np.where(empty, "", words)
    reviews = pd.DataFrame(
        {
            "user": user,
            "item": item,
            "rating": rating,
            "at": reviewed["at"].to_numpy() + rng.integers(DAY, 14 * DAY, len(user)),
            "review_text": text,
        }
    )
    return reviews[reviews["at"] < window.end]
