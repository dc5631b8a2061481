"""A simulated shop: a landing directory with planted structure that tests can recover.

:func:`simulate` writes every file of :data:`recsys.ingest.landing.FILES` into a landing
directory, a ``manifest.json``, and the planted truth to ``truth/user_truth.csv``
(:data:`recsys.ingest.landing.TRUTH_FILE`; never part of the landing files). Everything is
vectorized numpy/pandas and deterministic for a seed: the same arguments write the
same bytes.

The shop
--------
* **Catalogue**: the top-level categories of :data:`CATEGORIES`, each with 3-5 leaf
  categories (``category_path`` like ``"Home > Kitchen > Kettles"``) and 4 brands.
  Item popularity is Zipf-like, prices log-normal around a per-category median
  (each item is in the low, mid or high price tier of its leaf), about 5% of items
  are out of stock, about 12% were listed inside the window (nobody sees an item
  before its ``created_at``).
* **Users**: ids ``U000001``..., signed up before or during the window (late sign-ups
  have few or no events: cold start), age, gender, one of 8 regions, a platform,
  a signup channel, fake e-mail (``example.*`` domains) and phone, about 3% opted
  out of personalization.
* **Planted preferences**: each (age band, gender) segment has a prior over the
  top-level categories; a user's preference is that prior mixed half and half with
  individual Dirichlet noise, and the largest share then gets a bonus, so the planted
  ``top_category`` is clearly the category an active user interacts with most.
  Within a category each user prefers some leaf categories, and each user prefers one
  of four item styles, so items co-occur in users' histories beyond their category
  (the signal collaborative filtering finds).
  A spending tier (low/mid/high, correlated with age) decides which price tier a user
  mostly looks at and buys.
* **Sessions**: per-user activity is log-normal (many sparse users, a few heavy ones,
  about 10 events per user over 90 days). Days are weighted by a weekly cycle (busier
  weekends) and a mild upward trend, hours by a daily cycle. A session is an optional
  ``search`` (query from category and brand words, sometimes misspelt), then views:
  half in the session's leaf category, most others drawn from the user's preferences,
  a few of globally popular items. Users cart items of categories they like more
  often; some carts are removed, most of the rest bought at checkout.
* **Orders**: one order per session with purchases, about 93% completed, 4.5%
  cancelled, 2.5% returned. Consumables (categories with ``repurchase_days``) are
  bought again at about that interval, the same item, in short buy-again sessions.
* **Promotions**: about one per 6 days (2-20), some targeted at a top-level category,
  plus one scheduled to start the day after the window (for 7 days): the promotion a
  run at the end date targets (``recsys.usecases.promotions``); nothing in the window uses it.
  Each user has a planted ``promo_sensitivity`` in 0..1: sensitive users come back
  during promotions, cart and buy more then, and redeem the promotion on most orders
  where it applies; insensitive users rarely do. A used promotion sets
  ``orders.promotion_id``, discounts the eligible lines (``unit_price`` after
  discount, ``discount_amount``) and writes a ``redemptions`` row.
* **Reviews**: about 15% of completed order lines get a 1-5 rating, higher when the
  item is in a category the user likes and in their price tier.

Invariants
----------
* Every order line appears as exactly one ``purchase`` event of the order's user and
  session, at the order's ``ordered_at``, with the line's ``quantity`` and its
  ``unit_price`` as ``price`` (also for cancelled and returned orders). Dirt keeps
  this true after cleaning: the dirt that changes ids, amounts or timestamps is put
  on other event types only; purchase events can be duplicated, miss their optional
  ``session_id``/``platform`` or have a padded or re-cased ``event_type``, which
  deduplication and trimming undo.
* Timestamps are UTC, written as ISO 8601 with ``Z`` or, for about 30% of values in
  every file, without an offset (both valid landing timestamps).
* No event of a user precedes their ``signup_at``; no view precedes the item's
  ``created_at``; nothing but dirt lies after ``end_date``.

Dirt
----
With ``dirty=True`` (the default) the files carry the dirt of :data:`DIRT_RATES`,
each rate a share of the rows named:

``duplicate_events``
    events written twice (exact, adjacent copies, same ``event_id``).
``missing_optional``
    each optional value left empty: events ``session_id``/``platform``, items
    ``name``/``brand``, users ``birth_year``/``gender``/``region``.
``missing_required``
    non-purchase events with an empty ``user_id``, ``event_type`` or ``event_at``.
``unknown_ids``
    non-purchase events whose ``user_id`` (or ``item_id``) is not in users (items).
``bad_amounts``
    view and cart events with a zero or negative ``price`` or ``quantity``; the
    same share of items with a zero or negative ``price``.
``future_timestamps``
    non-purchase events dated after ``end_date``.
``unparseable_timestamps``
    non-purchase events with an ``event_at`` like ``"not-a-date"``.
``messy_strings``
    ``event_type`` padded or re-cased (``" VIEW "``), ``brand`` padded and
    lower-cased (``"  voltix"``), ``region`` upper-cased.
``gender_spellings``
    users whose gender is spelt ``"F"``, ``" Male "``, ``"FEMALE"``, ...
``malformed_lines``
    raw lines with the wrong number of columns appended to ``events.csv``.
``bot_users``
    users replaced by bots: thousands of views in bursts, no carts or purchases
    (``is_bot`` in the truth; at least one bot).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.ingest import landing

logger = logging.getLogger(__name__)

#: dirt written with ``dirty=True``: the share of rows affected (see the module docstring)
DIRT_RATES: dict[str, float] = {
    "duplicate_events": 0.02,
    "missing_optional": 0.03,
    "missing_required": 0.002,
    "unknown_ids": 0.005,
    "bad_amounts": 0.003,
    "future_timestamps": 0.002,
    "unparseable_timestamps": 0.001,
    "messy_strings": 0.05,
    "gender_spellings": 0.3,
    "malformed_lines": 0.0005,
    "bot_users": 0.0005,
}


@dataclass(frozen=True)
class Category:
    """A top-level category of the simulated catalogue."""

    name: str
    median_price: float
    #: typical days between re-buys of the same item; 0 for durable goods
    repurchase_days: float
    #: leaf categories below the top level, levels separated by " > "
    leaves: tuple[str, ...]
    brands: tuple[str, str, str, str]
    #: log-affinity: base, female, male, then one per age band of AGE_BANDS
    affinity: tuple[float, ...]


CATEGORIES: tuple[Category, ...] = (
    Category(
        "Electronics",
        80,
        0,
        ("Audio > Headphones", "Phones > Smartphones", "Phones > Chargers", "Wearables > Smart Watches"),
        ("Voltix", "Sonora", "Nexa", "Pixelon"),
        (0.3, -0.6, 0.6, 0.6, 0.3, 0.0, -0.3, -0.6),
    ),
    Category(
        "Home",
        35,
        0,
        ("Kitchen > Kettles", "Kitchen > Cookware", "Bedding > Pillows", "Decor > Lamps"),
        ("Hearthly", "Casa Nova", "Kettleby", "Lumen"),
        (0.2, 0.3, -0.2, -0.8, 0.2, 0.5, 0.5, 0.4),
    ),
    Category(
        "Fashion",
        40,
        0,
        ("Women > Dresses", "Men > Shirts", "Shoes > Sneakers", "Accessories > Bags", "Accessories > Scarves"),
        ("Urbanite", "Marlow", "Threadline", "Vesta"),
        (0.2, 0.7, -0.3, 0.7, 0.4, 0.0, -0.3, -0.6),
    ),
    Category(
        "Beauty",
        18,
        30,
        ("Skincare > Moisturisers", "Makeup > Lipstick", "Hair > Shampoo"),
        ("Glowa", "Purelle", "Silkleaf", "Dermia"),
        (0.0, 1.0, -1.0, 0.5, 0.4, 0.1, -0.1, -0.3),
    ),
    Category(
        "Groceries",
        6,
        14,
        ("Drinks > Coffee", "Drinks > Tea", "Snacks > Chocolate", "Pantry > Pasta", "Breakfast > Cereal"),
        ("Harvest Hill", "Morning Bean", "Nonna", "Crispo"),
        (0.3, 0.1, 0.0, -0.5, 0.0, 0.3, 0.4, 0.5),
    ),
    Category(
        "Sports",
        45,
        0,
        ("Fitness > Yoga Mats", "Running > Running Shoes", "Cycling > Helmets"),
        ("Stride", "Peakform", "Velo", "Zenmat"),
        (0.0, -0.3, 0.5, 0.5, 0.3, 0.0, -0.3, -0.6),
    ),
    Category(
        "Toys",
        25,
        0,
        ("Building > Blocks", "Games > Board Games", "Outdoor > Scooters"),
        ("Brickit", "Playful Owl", "Tinker", "Zoomie"),
        (-0.3, 0.2, -0.1, -1.0, 0.6, 0.8, 0.0, -0.2),
    ),
    Category(
        "Books",
        15,
        0,
        ("Fiction > Novels", "Children > Picture Books", "Cooking > Cookbooks"),
        ("Paperlane", "Inkwell", "Little Fox", "Chapter One"),
        (-0.2, 0.2, 0.0, 0.0, -0.2, 0.0, 0.3, 0.6),
    ),
    Category(
        "Pet Supplies",
        20,
        21,
        ("Dogs > Dog Food", "Cats > Cat Food", "Cats > Cat Litter", "Toys > Pet Toys"),
        ("Happy Paws", "Whisker", "Barkley", "Purrfect"),
        (-0.2, 0.1, 0.0, -0.2, 0.2, 0.2, 0.1, 0.2),
    ),
    Category(
        "Garden",
        30,
        0,
        ("Tools > Pruners", "Plants > Seeds", "Outdoor > Grills"),
        ("Greenthumb", "Terra", "Sprout", "Ember"),
        (-0.5, 0.0, 0.1, -1.0, -0.4, 0.2, 0.6, 0.9),
    ),
)

AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("female", "male", "other")
REGIONS = ("Guangdong", "Zhejiang", "Jiangsu", "Shanghai", "Beijing", "Sichuan", "Hubei", "Shandong")
PLATFORMS = ("web", "app", "mini_program")
SIGNUP_CHANNELS = ("organic", "ads", "referral", "social", "email")
SPENDING_TIERS = ("low", "mid", "high")
PROMOTION_TYPES = ("percent_off", "amount_off", "free_shipping")
ORDER_STATUSES = ("completed", "cancelled", "returned")

_DAY = 86_400
_HOUR = 3_600
_AGE_EDGES = np.array([25, 35, 45, 55])
_GENDER_SHARES = [0.52, 0.45, 0.03]
_REGION_SHARES = [0.2, 0.16, 0.15, 0.12, 0.11, 0.1, 0.08, 0.08]
_PLATFORM_SHARES = [0.32, 0.5, 0.18]
_CHANNEL_SHARES = [0.45, 0.25, 0.12, 0.13, 0.05]
_STATUS_SHARES = [0.93, 0.045, 0.025]
#: P(spending tier low/mid/high) per age band
_TIER_BY_AGE_BAND = np.array(
    [[0.55, 0.35, 0.10], [0.35, 0.45, 0.20], [0.25, 0.45, 0.30], [0.25, 0.40, 0.35], [0.35, 0.40, 0.25]]
)
#: how much a user of a spending tier (row) likes an item of a price tier (column)
_TIER_FIT = np.array([[1.0, 0.35, 0.1], [0.5, 1.0, 0.5], [0.15, 0.5, 1.0]])
#: a user's category preference: prior weight * segment prior + the rest * Dirichlet noise, then the
#: favourite (its largest share) gets a bonus so that it stands out clearly
_PRIOR_WEIGHT, _NOISE_ALPHA, _FAVOURITE_BONUS = 0.5, 0.3, 0.6
_N_STYLES = 4
_STYLE_BOOST = 3.0
#: share of sessions a user opens on their signup platform
_HOME_PLATFORM_SHARE = 0.8
#: relative activity by weekday, Monday first, and by hour of day (UTC)
_WEEKDAY_WEIGHTS = np.array([0.9, 0.9, 0.95, 1.0, 1.1, 1.4, 1.35])
_HOUR_WEIGHTS = np.array([3, 2, 1, 1, 1, 1, 2, 4, 5, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 10, 10, 8, 5], dtype=float)
_TREND = 0.2  # activity grows by this share from the first to the last day
_SESSIONS_PER_90_DAYS = 1.8
_ACTIVITY_SIGMA = 1.2
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
_NAIVE_TIMESTAMP_SHARE = 0.3

#: planted cross-platform identities (see ``_add_linked_accounts``)
IDENTITY_RATES: dict[str, float | int] = {
    "second_account": 0.08,
    "shared_devices_per_1000_users": 1,
    "accounts_per_shared_device": 12,
}
_BOT_VIEWS = (1000, 4000)  # views per bot, drawn uniformly
_BOT_SESSION_VIEWS = 250
_BOT_SPAN = 6 * _HOUR  # a bot's views take at most 5.6 hours (4000 views, at most 5 s apart)

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
_SERIES = np.array(["Lite", "Pro", "Max", "Plus", "Classic", "Mini", "Eco", "Prime"])
_REVIEW_TEXTS = np.array(
    [
        ["Broke after a week.", "Not as described.", "Would not buy again."],
        ["Disappointing.", "Poor quality for the price.", "Not for me."],
        ["It's okay.", "Does the job.", "Average."],
        ["Good value.", "Happy with it.", "Works well."],
        ["Love it!", "Excellent, buying again.", "Perfect, highly recommend."],
    ]
)
_BAD_TIMESTAMPS = np.array(["not-a-date", "31/02/2026 25:61", "2026-13-45T00:00:00", "yesterday"])
_GENDER_VARIANTS = {
    "female": np.array(["F", "f", "Female", "FEMALE", " female"]),
    "male": np.array(["M", "m", " Male ", "MALE", "male "]),
    "other": np.array(["O", "Other", " other "]),
}
_EVENT_CODES = {name: code for code, name in enumerate(landing.EVENT_TYPES)}


@dataclass
class _Window:
    start: int  # epoch seconds of the first day's midnight (UTC)
    end: int  # epoch seconds of the midnight after end_date
    day_cdf: np.ndarray  # cumulative share of activity per day, ends at exactly 1

    @property
    def day_starts(self) -> np.ndarray:
        return self.start + _DAY * np.arange(len(self.day_cdf))


@dataclass
class _Catalogue:
    item_ids: np.ndarray
    leaf: np.ndarray
    category: np.ndarray
    price: np.ndarray
    tier: np.ndarray
    style: np.ndarray
    created_at: np.ndarray
    choice_cdf: np.ndarray  # see _choose_items
    popularity_cdf: np.ndarray
    fallback: np.ndarray  # per leaf: its most popular item, listed before the window

    @property
    def is_consumable(self) -> np.ndarray:
        return _REPURCHASE_DAYS[self.category] > 0


@dataclass
class _People:
    user_ids: np.ndarray
    signup_at: np.ndarray
    platform: np.ndarray
    tier: np.ndarray
    style: np.ndarray
    sensitivity: np.ndarray
    preference: np.ndarray  # users x categories
    leaf_cdf: np.ndarray  # users x leaves
    activity: np.ndarray  # expected sessions over 90 days


_REPURCHASE_DAYS = np.array([category.repurchase_days for category in CATEGORIES])
_LEAF_PATHS = [f"{category.name} > {leaf}" for category in CATEGORIES for leaf in category.leaves]
#: the top-level category of each leaf category; leaves are contiguous per category
_LEAF_CATEGORY = np.repeat(np.arange(len(CATEGORIES)), [len(category.leaves) for category in CATEGORIES])


def simulate(
    out_dir: Path | str,
    users: int = 10_000,
    items: int = 2_000,
    days: int = 90,
    seed: int = 0,
    end_date: date = date(2026, 10, 31),
    dirty: bool = True,
) -> dict[str, int]:
    """Write a simulated shop as a landing directory, with its planted truth.

    Parameters
    ----------
    out_dir : path
        Landing directory to write (created if missing; files are replaced).
    users : int
        Number of registered users.
    items : int
        Number of catalogue items; at least the number of leaf categories.
    days : int
        Length of the window of behaviour, ending with ``end_date``.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same arguments write the same bytes.
    end_date : date
        Last day of the window (UTC).
    dirty : bool
        Write the dirt of :data:`DIRT_RATES`; ``False`` writes clean files.

    Returns
    -------
    dict of str to int
        Data lines written per landing file name (for ``events`` including
        duplicates and malformed lines).

    Raises
    ------
    ValueError
        If ``users`` or ``days`` is below 1 or ``items`` below the number of leaf categories.
    """
    if users < 1 or days < 1 or items < len(_LEAF_PATHS):
        raise ValueError(f"need users >= 1, days >= 1 and items >= {len(_LEAF_PATHS)}; got {users}, {days}, {items}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    shop_rng, dirt_rng = np.random.default_rng(seed).spawn(2)

    window = _make_window(end_date, days)
    catalogue, items_frame = _make_catalogue(shop_rng, items, window)
    people, users_frame = _make_users(shop_rng, users, window)
    promotions = _make_promotions(shop_rng, window)
    sessions = _make_sessions(shop_rng, people, window, promotions)
    events, purchases = _browse_and_buy(shop_rng, sessions, people, catalogue)
    orders, lines = _make_orders(shop_rng, purchases, sessions, people, catalogue, promotions)
    rebuys = _repeat_purchases(shop_rng, orders, lines, catalogue, window)
    repeat_sessions = _rebuy_sessions(rebuys, people, catalogue, first_session=len(sessions))
    repeat_events, repeat_purchases = _browse_and_buy(shop_rng, repeat_sessions, people, catalogue)
    repeat_orders, repeat_lines = _make_orders(
        shop_rng, repeat_purchases, repeat_sessions, people, catalogue, promotions
    )
    orders = pd.concat([orders, repeat_orders], ignore_index=True)
    lines = pd.concat([lines, repeat_lines], ignore_index=True)
    orders["status"] = shop_rng.choice(len(ORDER_STATUSES), len(orders), p=_STATUS_SHARES)
    events = pd.concat([events, repeat_events, _purchase_events(orders, lines)], ignore_index=True)
    reviews = _make_reviews(shop_rng, orders, lines, people, catalogue, window)

    is_bot = np.zeros(users, dtype=bool)
    if dirty:
        is_bot = _choose_bots(dirt_rng, people, window)
        events, orders, lines, reviews = _replace_bots(
            dirt_rng,
            is_bot,
            people,
            events,
            orders,
            lines,
            reviews,
            catalogue,
            window,
            first_session=len(sessions) + len(repeat_sessions),
        )

    tables = {
        "users": users_frame,
        "items": items_frame,
        "events": _format_events(events, people, catalogue),
        **_format_orders(orders, lines, people, catalogue),
        "reviews": _format_reviews(reviews, people, catalogue),
        "promotions": _format_promotions(promotions),
    }
    tables = {name: _format_timestamps(shop_rng, name, frame) for name, frame in tables.items()}
    if dirty:
        _add_dirt(dirt_rng, tables, window, n_users=users, n_items=items)
    # its own generator, appended last: every other byte stays as before this promotion existed
    tables["promotions"] = pd.concat(
        [tables["promotions"], _scheduled_promotion(np.random.default_rng([seed, 11]), window, len(promotions))],
        ignore_index=True,
    )
    # a separate generator: every draw above, so every value written before this step, stays as it was
    shop_events = tables["events"]
    persons = _add_linked_accounts(np.random.default_rng([seed, 7]), tables, is_bot, window)

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {name: _write_csv(out_dir, name, tables[name]) for name in landing.FILES}
    if dirty:
        counts["events"] += _append_malformed_lines(dirt_rng, out_dir, shop_events)
    truth_path = out_dir / landing.TRUTH_FILE
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth = _make_truth(people, is_bot)
    second = persons[persons["user_id"] != persons["person_id"]]
    extra = truth.set_index("user_id").loc[second["person_id"]].reset_index(drop=True)
    truth = pd.concat([truth, extra.assign(user_id=second["user_id"].to_numpy())[truth.columns]], ignore_index=True)
    truth.to_csv(truth_path, index=False, lineterminator="\n")
    persons.to_csv(out_dir / landing.PERSONS_TRUTH_FILE, index=False, lineterminator="\n")
    landing.write_manifest(
        out_dir,
        start_date=(end_date - timedelta(days=days - 1)).isoformat(),
        end_date=end_date.isoformat(),
        seed=seed,
        users=users,
        items=items,
        days=days,
        generator="recsys simulate",
    )
    logger.info("simulated shop in %s: %s (%.1f s)", out_dir, counts, time.perf_counter() - started)
    return counts


# --- the shop ---------------------------------------------------------------------------------


def _make_window(end_date: date, days: int) -> _Window:
    first_day = end_date - timedelta(days=days - 1)
    start = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp())
    weekday = (np.arange(days) + first_day.weekday()) % 7
    weights = _WEEKDAY_WEIGHTS[weekday] * (1 + _TREND * np.arange(days) / max(days - 1, 1))
    cdf = np.cumsum(weights)
    return _Window(start=start, end=start + days * _DAY, day_cdf=cdf / cdf[-1])


def _make_catalogue(rng: np.random.Generator, n_items: int, window: _Window) -> tuple[_Catalogue, pd.DataFrame]:
    n_leaves = len(_LEAF_PATHS)

    # items are generated leaf by leaf (contiguous), their ids are shuffled below
    per_leaf = 1 + rng.multinomial(n_items - n_leaves, rng.dirichlet(np.full(n_leaves, 3.0)))
    leaf = np.repeat(np.arange(n_leaves), per_leaf)
    category = _LEAF_CATEGORY[leaf]
    popularity = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 1.05
    medians = np.array([c.median_price for c in CATEGORIES])
    log_price = np.log(medians[category]) + rng.normal(0, 0.3, n_leaves)[leaf] + rng.normal(0, 0.55, n_items)
    price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
    price_rank = pd.Series(price).groupby(leaf).rank(pct=True, method="first").to_numpy()
    tier = np.minimum((price_rank * 3).astype(int), 2)
    style = rng.integers(0, _N_STYLES, n_items)

    leaf_start = np.r_[0, np.cumsum(per_leaf)[:-1]]
    most_popular = np.lexsort((-popularity, leaf))[leaf_start]
    is_new = rng.random(n_items) < 0.12
    is_new[most_popular] = False
    created_at = np.where(
        is_new,
        rng.integers(window.start, window.end, n_items),
        window.start - rng.integers(30 * _DAY, 1000 * _DAY, n_items),
    )

    brand = rng.choice(4, n_items, p=[0.4, 0.3, 0.2, 0.1])
    brand_names = np.array([c.brands for c in CATEGORIES])[category, brand]
    leaf_names = np.array([path.rsplit(" > ", 1)[1] for path in _LEAF_PATHS])[leaf]
    names = (
        pd.Series(brand_names)
        + " "
        + leaf_names
        + " "
        + _SERIES[rng.integers(0, len(_SERIES), n_items)]
        + " "
        + pd.Series(rng.integers(100, 1000, n_items)).astype(str)
    )
    labels = pd.Series(rng.permutation(n_items) + 1).astype(str).str.zfill(5)
    item_ids = ("I" + labels).to_numpy(dtype=object)
    stock = np.where(rng.random(n_items) < 0.05, 0, 1 + rng.negative_binomial(2, 0.05, n_items))

    catalogue = _Catalogue(
        item_ids=item_ids,
        leaf=leaf,
        category=category,
        price=price,
        tier=tier,
        style=style,
        created_at=created_at,
        choice_cdf=_choice_cdf(popularity, leaf, tier, style, n_leaves),
        popularity_cdf=np.cumsum(popularity) / popularity.sum(),
        fallback=most_popular,
    )
    frame = pd.DataFrame(
        {
            "item_id": item_ids,
            "name": names,
            "category_path": np.array(_LEAF_PATHS, dtype=object)[leaf],
            "brand": brand_names,
            "price": price,
            "stock_quantity": stock,
            "created_at": created_at,
        }
    )
    return catalogue, frame.sort_values("item_id", ignore_index=True)


def _choice_cdf(
    popularity: np.ndarray, leaf: np.ndarray, tier: np.ndarray, style: np.ndarray, n_leaves: int
) -> np.ndarray:
    """Cumulative item-choice weights for every (user tier, user style, leaf), flattened.

    Block ``combo = user_tier * _N_STYLES + user_style`` holds, for each item in leaf
    order, ``combo * n_leaves + leaf + cdf`` where ``cdf`` is the item's cumulative
    share within its leaf (ending at exactly 1). The values increase over the whole
    array, so one ``searchsorted`` draws items for many (combo, leaf) groups at once.
    """
    leaf_end = np.cumsum(np.bincount(leaf, minlength=n_leaves)) - 1
    blocks = []
    for user_tier in range(3):
        for user_style in range(_N_STYLES):
            weight = popularity * _TIER_FIT[user_tier, tier] * np.where(style == user_style, _STYLE_BOOST, 1.0)
            cumulative = np.cumsum(weight)
            before_leaf = np.r_[0.0, cumulative[leaf_end[:-1]]]
            within = (cumulative - before_leaf[leaf]) / (cumulative[leaf_end] - before_leaf)[leaf]
            within[leaf_end] = 1.0
            combo = user_tier * _N_STYLES + user_style
            blocks.append(combo * n_leaves + leaf + within)
    return np.concatenate(blocks)


def _choose_items(
    rng: np.random.Generator, catalogue: _Catalogue, leaf: np.ndarray, tier: np.ndarray, style: np.ndarray
) -> np.ndarray:
    """Draw one item per row from ``leaf``, weighted for users of ``tier`` and ``style``."""
    n_leaves = len(_LEAF_PATHS)
    group = (tier * _N_STYLES + style) * n_leaves + leaf
    position = np.searchsorted(catalogue.choice_cdf, group + rng.random(len(leaf)), side="right")
    return position % len(catalogue.leaf)


def _listed(catalogue: _Catalogue, item: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Replace items not yet listed at ``at`` by their leaf's fallback item."""
    return np.where(catalogue.created_at[item] > at, catalogue.fallback[catalogue.leaf[item]], item)


def _sample_rows(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a row-wise cumulative distribution."""
    draws = (cdf < rng.random(len(cdf))[:, None]).sum(axis=1)
    return np.minimum(draws, cdf.shape[1] - 1)


def _make_users(rng: np.random.Generator, n_users: int, window: _Window) -> tuple[_People, pd.DataFrame]:
    in_window = rng.random(n_users) < 0.22
    signup_at = np.where(
        in_window,
        rng.integers(window.start, window.end - 2 * _HOUR, n_users),
        window.start
        - (np.minimum(rng.exponential(300, n_users), 1000) * _DAY).astype(np.int64)
        - rng.integers(1, _DAY, n_users),
    )
    end_year = datetime.fromtimestamp(window.end - 1, UTC).year
    gender = rng.choice(len(GENDERS), n_users, p=_GENDER_SHARES)
    age = np.minimum(18 + rng.gamma(2.2, 8.5, n_users), 85).astype(int)
    age_band = np.searchsorted(_AGE_EDGES, age, side="right")
    tier = _sample_rows(rng, np.cumsum(_TIER_BY_AGE_BAND, axis=1)[age_band])

    affinity = np.array([category.affinity for category in CATEGORIES])
    gender_effect = np.stack([affinity[:, 1], affinity[:, 2], np.zeros(len(CATEGORIES))])
    logits = affinity[:, 0] + gender_effect[gender] + affinity[:, 3:].T[age_band]
    prior = np.exp(logits)
    prior /= prior.sum(axis=1, keepdims=True)
    noise = rng.dirichlet(np.full(len(CATEGORIES), _NOISE_ALPHA), n_users)
    preference = _PRIOR_WEIGHT * prior + (1 - _PRIOR_WEIGHT) * noise
    preference[np.arange(n_users), preference.argmax(axis=1)] += _FAVOURITE_BONUS
    preference /= 1 + _FAVOURITE_BONUS

    leaf_weight = rng.gamma(0.5, size=(n_users, len(_LEAF_CATEGORY))) + 1e-9
    category_start = np.r_[0, np.cumsum(np.bincount(_LEAF_CATEGORY))[:-1]]
    leaf_weight /= np.add.reduceat(leaf_weight, category_start, axis=1)[:, _LEAF_CATEGORY]
    leaf_cdf = np.cumsum(preference[:, _LEAF_CATEGORY] * leaf_weight, axis=1)
    leaf_cdf /= leaf_cdf[:, -1:]

    user_ids = ("U" + pd.Series(np.arange(1, n_users + 1)).astype(str).str.zfill(6)).to_numpy(dtype=object)
    platform = rng.choice(len(PLATFORMS), n_users, p=_PLATFORM_SHARES)
    people = _People(
        user_ids=user_ids,
        signup_at=signup_at,
        platform=platform,
        tier=tier,
        style=rng.integers(0, _N_STYLES, n_users),
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


def _make_promotions(rng: np.random.Generator, window: _Window) -> pd.DataFrame:
    days = len(window.day_cdf)
    n = int(np.clip(round(days / 6), 2, 20))
    start_day = np.sort(rng.integers(0, days, n))
    starts_at = window.start + start_day * _DAY
    ends_at = np.minimum(starts_at + rng.integers(2, 8, n) * _DAY, window.end)
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


def _scheduled_promotion(rng: np.random.Generator, window: _Window, n_existing: int) -> pd.DataFrame:
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
            "starts_at": _iso(np.array([window.end]), np.array([False])),
            "ends_at": _iso(np.array([window.end + 7 * _DAY]), np.array([False])),
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


def _make_sessions(
    rng: np.random.Generator, people: _People, window: _Window, promotions: pd.DataFrame
) -> pd.DataFrame:
    """Browsing sessions: user, start, leaf, platform and per-session funnel rates."""
    days = len(window.day_cdf)
    day_weight = np.diff(np.r_[0.0, window.day_cdf])
    day_starts = window.day_starts
    promo_day = (
        (day_starts[:, None] < promotions["ends_at"].to_numpy())
        & (day_starts[:, None] + _DAY > promotions["starts_at"].to_numpy())
    ).any(axis=1)
    promo_weight = np.cumsum(day_weight * promo_day)
    promo_cdf = promo_weight / promo_weight[-1]

    signup_day = np.clip((people.signup_at - window.start) // _DAY, 0, days - 1)
    base_mass = 1 - np.r_[0.0, window.day_cdf][signup_day]
    promo_mass = promo_weight[-1] - np.r_[0.0, promo_weight][signup_day]
    activity = people.activity * days / 90
    n_base = rng.poisson(activity * base_mass)
    n_promo = rng.poisson(activity * _PROMO_EXTRA_SESSIONS * people.sensitivity * promo_mass)

    user = np.r_[np.repeat(np.arange(len(n_base)), n_base), np.repeat(np.arange(len(n_promo)), n_promo)]
    is_promo = np.r_[np.zeros(n_base.sum(), dtype=bool), np.ones(n_promo.sum(), dtype=bool)]
    day = np.where(
        is_promo, _draw_days(rng, promo_cdf, signup_day[user]), _draw_days(rng, window.day_cdf, signup_day[user])
    )
    hour = rng.choice(24, len(user), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start = window.start + day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, len(user))
    signup = people.signup_at[user]
    start = np.where(start < signup + 60, signup + rng.integers(5 * 60, 3 * _HOUR, len(user)), start)
    start = np.minimum(start, window.end - 2 * _HOUR)
    keep = start >= signup
    user, start = user[keep], start[keep]

    n = len(user)
    leaf = _sample_rows(rng, people.leaf_cdf[user])
    home = rng.random(n) < _HOME_PLATFORM_SHARE
    promo_runs = _applicable_promotion(start, _LEAF_CATEGORY[leaf], promotions) >= 0
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


def _browse_and_buy(
    rng: np.random.Generator, sessions: pd.DataFrame, people: _People, catalogue: _Catalogue
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Search, view, cart and remove events of the sessions, and what they buy.

    ``sessions`` may carry an ``item`` column (buy-again sessions view that item).
    Returns the events and the purchases (session, user, item, quantity, price, at);
    purchase events are written from the order lines by :func:`_purchase_events`.
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
        leaf[elsewhere] = _sample_rows(rng, people.leaf_cdf[user[elsewhere]])
        item = _choose_items(rng, catalogue, leaf, people.tier[user], people.style[user])
        explore = kind >= 1 - _EXPLORE_SHARE
        item[explore] = np.searchsorted(catalogue.popularity_cdf, rng.random(explore.sum()), side="right")
        item = _listed(catalogue, item, at)
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

    searching = sessions["has_search"].to_numpy()
    search_leaf = sessions["leaf"].to_numpy()[searching]
    search = pd.DataFrame(
        {
            "session": sessions.index[searching],
            "user": sessions["user"].to_numpy()[searching],
            "item": -1,
            "event_type": _EVENT_CODES["search"],
            "at": sessions["start"].to_numpy()[searching] - rng.integers(5, 60, searching.sum()),
            "platform": sessions["platform"].to_numpy()[searching],
            "query": _search_queries(rng, search_leaf),
        }
    )

    def rows(mask: np.ndarray, event_type: str, when: np.ndarray, with_quantity: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "session": session[mask],
                "user": user[mask],
                "item": item[mask],
                "event_type": _EVENT_CODES[event_type],
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


def _search_queries(rng: np.random.Generator, leaf: np.ndarray) -> np.ndarray:
    """Search text for sessions in ``leaf``: the leaf name, brand + leaf, or a misspelling."""
    words = [path.rsplit(" > ", 1)[1].lower() for path in _LEAF_PATHS]
    misspelt = []
    for word in words:  # one per leaf category: swap two letters in the middle
        middle = len(word) // 2
        misspelt.append(word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :])
    brands = np.array([[brand.lower() for brand in c.brands] for c in CATEGORIES], dtype=object)
    words_array = np.array(words, dtype=object)
    brand_words = brands[_LEAF_CATEGORY[leaf], rng.integers(0, 4, len(leaf))]
    kind = rng.choice(3, len(leaf), p=[0.6, 0.25, 0.15])
    return np.select(
        [kind == 0, kind == 1],
        [words_array[leaf], brand_words + " " + words_array[leaf]],
        np.array(misspelt, dtype=object)[leaf],
    )


def _make_orders(
    rng: np.random.Generator,
    purchases: pd.DataFrame,
    sessions: pd.DataFrame,
    people: _People,
    catalogue: _Catalogue,
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
    promo = _applicable_promotion(order_at, _LEAF_CATEGORY[session_leaf], promotions)
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


def _repeat_purchases(
    rng: np.random.Generator, orders: pd.DataFrame, lines: pd.DataFrame, catalogue: _Catalogue, window: _Window
) -> pd.DataFrame:
    """Buy-again times of consumables: each purchase is repeated at about the category's interval."""
    bought = lines.merge(orders[["session", "user", "at"]], on="session")
    current = bought.loc[catalogue.is_consumable[bought["item"]], ["user", "item", "at"]]
    rebuys = []
    for _ in range(_MAX_REPEATS):  # a handful of rounds: each repeats the previous round's purchases
        interval = _REPURCHASE_DAYS[catalogue.category[current["item"]]] * rng.lognormal(0, 0.25, len(current))
        current = current.assign(at=current["at"] + (interval * _DAY).astype(np.int64))
        current = current[(rng.random(len(current)) < _REPEAT_RATE) & (current["at"] < window.end - 2 * _HOUR)]
        if current.empty:
            break
        rebuys.append(current)
    return pd.concat(rebuys, ignore_index=True) if rebuys else current


def _rebuy_sessions(rebuys: pd.DataFrame, people: _People, catalogue: _Catalogue, first_session: int) -> pd.DataFrame:
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


def _purchase_events(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """One purchase event per order line, at checkout, priced as paid."""
    joined = lines.merge(orders[["session", "user", "at", "platform"]], on="session")
    return pd.DataFrame(
        {
            "session": joined["session"],
            "user": joined["user"],
            "item": joined["item"],
            "event_type": _EVENT_CODES["purchase"],
            "at": joined["at"],
            "platform": joined["platform"],
            "quantity": joined["quantity"],
            "price": joined["unit_price"],
        }
    )


def _make_reviews(
    rng: np.random.Generator,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    people: _People,
    catalogue: _Catalogue,
    window: _Window,
) -> pd.DataFrame:
    """Ratings for some completed order lines, higher when the item fits the user."""
    completed = orders.loc[orders["status"] == ORDER_STATUSES.index("completed"), ["session", "user", "at"]]
    reviewed = lines.merge(completed, on="session")
    reviewed = reviewed[rng.random(len(reviewed)) < _REVIEW_RATE].drop_duplicates(["user", "item"])
    user, item = reviewed["user"].to_numpy(), reviewed["item"].to_numpy()
    fit = people.preference[user, catalogue.category[item]] / people.preference[user].max(axis=1)
    tier_gap = np.abs(people.tier[user] - catalogue.tier[item])
    score = 2.6 + 1.8 * fit - 0.5 * tier_gap + rng.normal(0, 0.7, len(user))
    rating = np.clip(np.round(score), 1, 5).astype(int)
    text = np.where(rng.random(len(user)) < 0.3, "", _REVIEW_TEXTS[rating - 1, rng.integers(0, 3, len(user))])
    reviews = pd.DataFrame(
        {
            "user": user,
            "item": item,
            "rating": rating,
            "at": reviewed["at"].to_numpy() + rng.integers(_DAY, 14 * _DAY, len(user)),
            "review_text": text,
        }
    )
    return reviews[reviews["at"] < window.end]


# --- bots ---------------------------------------------------------------------------------------


def _choose_bots(rng: np.random.Generator, people: _People, window: _Window) -> np.ndarray:
    n_users = len(people.user_ids)
    candidates = np.flatnonzero(people.signup_at < window.end - 2 * _BOT_SPAN)
    n_bots = min(max(1, round(DIRT_RATES["bot_users"] * n_users)), len(candidates))
    is_bot = np.zeros(n_users, dtype=bool)
    is_bot[rng.choice(candidates, n_bots, replace=False)] = True
    return is_bot


def _replace_bots(
    rng: np.random.Generator,
    is_bot: np.ndarray,
    people: _People,
    events: pd.DataFrame,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    reviews: pd.DataFrame,
    catalogue: _Catalogue,
    window: _Window,
    first_session: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop what bot users did as shoppers and give them bursts of views instead."""
    bot_orders = orders["session"][is_bot[orders["user"]]]
    events = events[~is_bot[events["user"]]]
    orders = orders[~is_bot[orders["user"]]]
    lines = lines[~lines["session"].isin(bot_orders)]
    reviews = reviews[~is_bot[reviews["user"]]]

    bots = np.flatnonzero(is_bot)
    n_views = rng.integers(*_BOT_VIEWS, len(bots))
    bot = np.repeat(np.arange(len(bots)), n_views)
    first_view = np.cumsum(n_views) - n_views
    position = np.arange(len(bot)) - first_view[bot]
    sessions_per_bot = -(-n_views // _BOT_SESSION_VIEWS)
    session = first_session + (np.cumsum(sessions_per_bot) - sessions_per_bot)[bot] + position // _BOT_SESSION_VIEWS
    earliest = np.maximum(people.signup_at[bots], window.start)
    begin = rng.integers(earliest, window.end - _BOT_SPAN)
    elapsed = np.cumsum(rng.integers(1, 6, len(bot)))
    at = begin[bot] + elapsed - elapsed[first_view][bot]
    item = _listed(catalogue, rng.integers(0, len(catalogue.leaf), len(bot)), at)
    views = pd.DataFrame(
        {
            "session": session,
            "user": bots[bot],
            "item": item,
            "event_type": _EVENT_CODES["view"],
            "at": at,
            "platform": PLATFORMS.index("web"),
            "price": catalogue.price[item],
        }
    )
    return pd.concat([events, views], ignore_index=True), orders, lines, reviews


# --- landing tables -----------------------------------------------------------------------------


def _format_events(events: pd.DataFrame, people: _People, catalogue: _Catalogue) -> pd.DataFrame:
    events = events.sort_values(["at", "session", "event_type"], kind="stable", ignore_index=True)
    item = events["item"].to_numpy()
    item_ids = np.where(item >= 0, catalogue.item_ids[np.maximum(item, 0)], "")
    return pd.DataFrame(
        {
            "event_id": "E" + pd.Series(np.arange(1, len(events) + 1)).astype(str).str.zfill(8),
            "user_id": people.user_ids[events["user"].to_numpy()],
            "item_id": item_ids,
            "event_type": np.array(landing.EVENT_TYPES, dtype=object)[events["event_type"].to_numpy()],
            "event_at": events["at"].to_numpy(),
            "session_id": "S" + events["session"].astype(str).str.zfill(8),
            "platform": np.array(PLATFORMS, dtype=object)[events["platform"].to_numpy()],
            "query": events["query"].fillna(""),
            "quantity": events["quantity"].astype("Int64"),
            "price": events["price"],
        }
    )


def _format_orders(
    orders: pd.DataFrame, lines: pd.DataFrame, people: _People, catalogue: _Catalogue
) -> dict[str, pd.DataFrame]:
    orders = orders.sort_values(["at", "session"], ignore_index=True)
    order_ids = "O" + pd.Series(np.arange(1, len(orders) + 1)).astype(str).str.zfill(7)
    order_id_of = pd.Series(order_ids.to_numpy(), index=orders["session"].to_numpy())
    promotion = orders["promotion"].to_numpy()
    promotion_ids = np.where(promotion >= 0, "P" + pd.Series(promotion + 1).astype(str).str.zfill(3), "")
    user_ids = people.user_ids[orders["user"].to_numpy()]
    lines = lines.assign(order_id=order_id_of[lines["session"]].to_numpy()).sort_values(
        ["order_id", "item"], ignore_index=True
    )
    used = promotion >= 0
    return {
        "orders": pd.DataFrame(
            {
                "order_id": order_ids,
                "user_id": user_ids,
                "ordered_at": orders["at"],
                "status": np.array(ORDER_STATUSES, dtype=object)[orders["status"].to_numpy()],
                "platform": np.array(PLATFORMS, dtype=object)[orders["platform"].to_numpy()],
                "promotion_id": promotion_ids,
            }
        ),
        "order_lines": pd.DataFrame(
            {
                "order_id": lines["order_id"],
                "item_id": catalogue.item_ids[lines["item"].to_numpy()],
                "quantity": lines["quantity"].astype(int),
                "unit_price": lines["unit_price"],
                "discount_amount": lines["discount_amount"],
            }
        ),
        "redemptions": pd.DataFrame(
            {
                "promotion_id": promotion_ids[used],
                "user_id": user_ids[used],
                "order_id": order_ids[used].to_numpy(),
                "redeemed_at": orders["at"].to_numpy()[used],
            }
        ),
    }


def _format_reviews(reviews: pd.DataFrame, people: _People, catalogue: _Catalogue) -> pd.DataFrame:
    reviews = reviews.sort_values(["at", "user", "item"], ignore_index=True)
    return pd.DataFrame(
        {
            "review_id": "R" + pd.Series(np.arange(1, len(reviews) + 1)).astype(str).str.zfill(7),
            "user_id": people.user_ids[reviews["user"].to_numpy()],
            "item_id": catalogue.item_ids[reviews["item"].to_numpy()],
            "rating": reviews["rating"],
            "reviewed_at": reviews["at"],
            "review_text": reviews["review_text"],
        }
    )


def _format_promotions(promotions: pd.DataFrame) -> pd.DataFrame:
    category = promotions["category"].to_numpy()
    names = np.array([c.name for c in CATEGORIES], dtype=object)
    return promotions.assign(
        promotion_type=np.array(PROMOTION_TYPES, dtype=object)[promotions["kind"].to_numpy()],
        category=np.where(category >= 0, names[np.maximum(category, 0)], ""),
    )


def _format_timestamps(rng: np.random.Generator, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Epoch seconds to ISO 8601 strings, with ``Z`` or (sometimes) without an offset."""
    frame = frame.copy()
    for column in landing.FILES[name].columns:
        if column.type == "timestamp":
            frame[column.name] = _iso(frame[column.name].to_numpy(), rng.random(len(frame)) < _NAIVE_TIMESTAMP_SHARE)
    return frame


def _iso(seconds: np.ndarray, naive: np.ndarray) -> np.ndarray:
    with_z = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s", timezone="UTC")
    return np.where(naive, with_z.astype("<U19"), with_z).astype(object)


def _make_truth(people: _People, is_bot: np.ndarray) -> pd.DataFrame:
    names = np.array([c.name for c in CATEGORIES], dtype=object)
    top3 = np.argsort(-people.preference, axis=1, kind="stable")[:, :3]
    return pd.DataFrame(
        {
            "user_id": people.user_ids,
            "top_category": names[top3[:, 0]],
            "top_categories": pd.Series(names[top3[:, 0]]) + "|" + names[top3[:, 1]] + "|" + names[top3[:, 2]],
            "spending_tier": np.array(SPENDING_TIERS, dtype=object)[people.tier],
            "promo_sensitivity": people.sensitivity.round(3),
            "is_bot": np.where(is_bot, "true", "false"),
        }
    )


def _add_linked_accounts(
    rng: np.random.Generator, tables: dict[str, pd.DataFrame], is_bot: np.ndarray, window: _Window
) -> pd.DataFrame:
    """Give events a ``device_id``, some people a second account, and a few devices to many accounts.

    Every event gets the device id of its account (``D-<user_id>``). A share
    :data:`IDENTITY_RATES` ``second_account`` of the human users with a valid view
    gets a second account (ids ``A000001``...) on another platform, appended to
    ``users`` and to ``events`` (copies of up to 3 of the person's views, same items
    and times). Half of them are linked by the same e-mail written differently
    (case, padding), half by events on the person's device (with an e-mail of
    their own). About one in ten second accounts states a birth year one off (an
    attribute conflict). ``shared_devices`` devices (a shop's tablet) each carry
    one view of ``accounts_per_shared_device`` random accounts: over-shared keys
    that must not link anyone. Tables are changed in place; nothing before is
    redrawn, so every earlier row stays byte-identical.

    Returns
    -------
    DataFrame
        The planted persons: ``user_id`` (every account), ``person_id`` (the
        person's first account), ``link`` (``self``, ``email`` or ``device``).
    """
    users, events = tables["users"], tables["events"]
    events["device_id"] = "D-" + events["user_id"].str.strip()
    parsed = pd.to_datetime(events["event_at"].str.slice(0, 19), format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    at = (parsed - pd.Timestamp("1970-01-01")).dt.total_seconds().fillna(-1).to_numpy(dtype=np.int64)
    views = events[
        (events["event_type"] == "view")
        & (at > 0)
        & (at < window.end)
        & events["item_id"].isin(tables["items"]["item_id"])
        & events["user_id"].isin(users["user_id"])
    ].drop_duplicates("event_id")
    humans = users["user_id"].to_numpy()[: len(is_bot)][~is_bot]
    active = np.intersect1d(humans, views["user_id"].unique())
    first = active[rng.random(len(active)) < IDENTITY_RATES["second_account"]]
    n = len(first)
    second = ("A" + pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(6)).to_numpy(dtype=object)
    by_email = rng.random(n) < 0.5

    # the person's views, up to 3 at random, copied to the second account
    picked = views[views["user_id"].isin(first)].assign(_key=lambda frame: rng.random(len(frame)))
    picked = picked.sort_values(["user_id", "_key"], kind="stable")
    picked = picked[picked.groupby("user_id").cumcount() < 3].drop(columns="_key")
    index_of = pd.Series(np.arange(n), index=first)
    which = index_of[picked["user_id"]].to_numpy()
    rows = users.set_index("user_id").loc[first].reset_index()
    platform = np.array(PLATFORMS, dtype=object)
    other = rows["platform"].map({name: code for code, name in enumerate(PLATFORMS)}).fillna(0)
    second_platform = platform[(other.to_numpy(dtype=np.int64) + rng.integers(1, 3, n)) % 3]
    copies = picked.assign(
        event_id=("EA" + pd.Series(np.arange(1, len(picked) + 1)).astype(str).str.zfill(8)).to_numpy(),
        user_id=second[which],
        session_id=("SA" + pd.Series(which + 1).astype(str).str.zfill(7)).to_numpy(),
        platform=second_platform[which],
        device_id=np.where(by_email[which], "D-" + second[which], "D-" + first[which]),
    )
    first_seen = (
        pd.Series(at[events.index.get_indexer(picked.index)]).groupby(which).min().reindex(np.arange(n)).to_numpy()
    )
    email = rows["email"].astype(str)
    variants = np.where(rng.random(n) < 0.5, "  " + email.str.upper(), email.str.capitalize() + " ")
    birth_year = rows["birth_year"].astype("Int64")
    typo = rng.random(n) < 0.1
    rows = rows.assign(
        user_id=second,
        signup_at=_iso(first_seen - _HOUR, np.zeros(n, dtype=bool)),
        platform=second_platform,
        email=np.where(by_email, variants, "alt." + email.str.strip()),
        phone="",
        birth_year=birth_year.where(~typo, birth_year + 1),
    )[users.columns]

    # a few devices with one view each of many accounts: must not link them
    per_device = int(IDENTITY_RATES["accounts_per_shared_device"])
    n_shared = min(
        max(1, len(users) * int(IDENTITY_RATES["shared_devices_per_1000_users"]) // 1000), len(active) // per_device
    )
    sharers = rng.choice(active, size=(n_shared, per_device), replace=False)
    on_shared = views[views["user_id"].isin(sharers.ravel())].drop_duplicates("user_id")
    device = pd.Series(np.repeat(np.arange(1, n_shared + 1), sharers.shape[1]), index=sharers.ravel())
    shared = on_shared.assign(
        event_id=("EK" + pd.Series(np.arange(1, len(on_shared) + 1)).astype(str).str.zfill(8)).to_numpy(),
        device_id=("SHARED-" + device[on_shared["user_id"]].astype(str).str.zfill(3)).to_numpy(),
    )
    tables["users"] = pd.concat([users, rows], ignore_index=True)
    tables["events"] = pd.concat([events, copies, shared], ignore_index=True)
    accounts = tables["users"]["user_id"].to_numpy()
    person = pd.Series(accounts, index=accounts)
    person[second] = first
    link = np.full(len(accounts), "self", dtype=object)
    if n:
        link[-n:] = np.where(by_email, "email", "device")
    return pd.DataFrame({"user_id": accounts, "person_id": person.to_numpy(), "link": link})


def _write_csv(out_dir: Path, name: str, frame: pd.DataFrame) -> int:
    spec = landing.FILES[name]
    out = frame.reindex(columns=spec.column_names)  # columns it does not simulate (request_id) are empty
    out.to_csv(out_dir / spec.filename, index=False, float_format="%.2f", lineterminator="\n")
    return len(frame)


# --- dirt ----------------------------------------------------------------------------------------


def _add_dirt(
    rng: np.random.Generator, tables: dict[str, pd.DataFrame], window: _Window, n_users: int, n_items: int
) -> None:
    """Put the dirt of DIRT_RATES into the formatted tables, in place."""
    users, items = tables["users"], tables["items"]
    for column in ("birth_year", "gender", "region"):
        _blank(rng, users, column)
    for column in ("name", "brand"):
        _blank(rng, items, column)
    gender = users["gender"].to_numpy()
    for canonical, variants in _GENDER_VARIANTS.items():
        hit = (gender == canonical) & (rng.random(len(users)) < DIRT_RATES["gender_spellings"])
        users.loc[hit, "gender"] = variants[rng.integers(0, len(variants), hit.sum())]
    messy = rng.random(len(users)) < DIRT_RATES["messy_strings"]
    users.loc[messy, "region"] = users.loc[messy, "region"].str.upper()
    messy = (rng.random(len(items)) < DIRT_RATES["messy_strings"]) & (items["brand"] != "")
    items.loc[messy, "brand"] = "  " + items.loc[messy, "brand"].str.lower()
    bad = rng.random(len(items)) < DIRT_RATES["bad_amounts"]
    items.loc[bad, "price"] = np.where(rng.random(bad.sum()) < 0.5, 0.0, -items.loc[bad, "price"])
    tables["events"] = _dirty_events(rng, tables["events"], window, n_users, n_items)


def _blank(rng: np.random.Generator, frame: pd.DataFrame, column: str) -> None:
    hit = rng.random(len(frame)) < DIRT_RATES["missing_optional"]
    frame.loc[hit, column] = pd.NA if column == "birth_year" else ""


def _dirty_events(
    rng: np.random.Generator, events: pd.DataFrame, window: _Window, n_users: int, n_items: int
) -> pd.DataFrame:
    n = len(events)
    event_type = events["event_type"].to_numpy()
    # dirt that changes ids, amounts or timestamps spares purchase events (see the module docstring)
    spare = event_type != "purchase"
    has_item = events["item_id"].to_numpy() != ""

    def pick(rate: float, among: np.ndarray) -> np.ndarray:
        return among & (rng.random(n) < rate)

    for column in ("session_id", "platform"):
        events.loc[pick(DIRT_RATES["missing_optional"], np.ones(n, dtype=bool)), column] = ""

    unknown = pick(DIRT_RATES["unknown_ids"], spare)
    unknown_item = unknown & has_item & (rng.random(n) < 0.5)
    unknown_user = unknown & ~unknown_item
    events.loc[unknown_user, "user_id"] = (
        "U" + pd.Series(n_users + rng.integers(1, 10**6, unknown_user.sum())).astype(str).str.zfill(6).to_numpy()
    )
    events.loc[unknown_item, "item_id"] = (
        "I" + pd.Series(n_items + rng.integers(1, 10**5, unknown_item.sum())).astype(str).str.zfill(5).to_numpy()
    )

    bad_amount = pick(DIRT_RATES["bad_amounts"], np.isin(event_type, ["view", "cart"]))
    bad_price = bad_amount & (event_type == "view")
    bad_quantity = bad_amount & (event_type == "cart")
    events.loc[bad_price, "price"] = np.where(rng.random(bad_price.sum()) < 0.5, 0.0, -events.loc[bad_price, "price"])
    events.loc[bad_quantity, "quantity"] = rng.integers(-2, 1, bad_quantity.sum())

    future = pick(DIRT_RATES["future_timestamps"], spare)
    future_at = window.end + rng.integers(_DAY, 400 * _DAY, future.sum())
    events.loc[future, "event_at"] = _iso(future_at, np.zeros(future.sum(), dtype=bool))
    unparseable = pick(DIRT_RATES["unparseable_timestamps"], spare & ~future)
    events.loc[unparseable, "event_at"] = _BAD_TIMESTAMPS[rng.integers(0, len(_BAD_TIMESTAMPS), unparseable.sum())]

    missing = pick(DIRT_RATES["missing_required"], spare)
    which = rng.integers(0, 3, n)
    for code, column in enumerate(("user_id", "event_type", "event_at")):
        events.loc[missing & (which == code), column] = ""

    messy = pick(DIRT_RATES["messy_strings"], events["event_type"].to_numpy() != "")
    style = rng.integers(0, 3, n)
    types = events["event_type"]
    events.loc[messy & (style == 0), "event_type"] = " " + types.str.upper() + " "
    events.loc[messy & (style == 1), "event_type"] = types.str.title()
    events.loc[messy & (style == 2), "event_type"] = types + "  "

    copies = 1 + pick(DIRT_RATES["duplicate_events"], np.ones(n, dtype=bool))
    return events.iloc[np.repeat(np.arange(n), copies)].reset_index(drop=True)


def _append_malformed_lines(rng: np.random.Generator, out_dir: Path, events: pd.DataFrame) -> int:
    """Append lines with too few or too many columns to events.csv; returns how many."""
    n = max(1, round(DIRT_RATES["malformed_lines"] * len(events)))
    sample = events.iloc[rng.integers(0, len(events), n)]
    short = sample["event_id"] + "," + sample["user_id"] + "," + sample["item_id"] + ",view"
    long = short + ",2026-01-01T00:00:00Z,,web,,1,9.99,extra,columns,more"
    lines = np.where(rng.random(n) < 0.5, short, long)
    with open(out_dir / landing.FILES["events"].filename, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return n
