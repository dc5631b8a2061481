"""The simulated shop's world: its categories, demographics, rates, time window and the state the stages share.

Everything here is read by the stages of :func:`recsys.dev.simulate.simulate` (catalogue, users, behaviour,
dirt, accounts, writing); the numbers that only one stage uses live in that stage's module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from recsys.ingest import landing

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

DAY = 86_400
HOUR = 3_600
N_STYLES = 4
#: relative activity by weekday, Monday first
_WEEKDAY_WEIGHTS = np.array([0.9, 0.9, 0.95, 1.0, 1.1, 1.4, 1.35])
_TREND = 0.2  # activity grows by this share from the first to the last day

#: planted cross-platform identities (see ``add_linked_accounts``)
IDENTITY_RATES: dict[str, float | int] = {
    "second_account": 0.08,
    "shared_devices_per_1000_users": 1,
    "accounts_per_shared_device": 12,
}
EVENT_CODES = {name: code for code, name in enumerate(landing.EVENT_TYPES)}
#: timestamps :func:`iso` writes at a time
_ISO_BLOCK = 1_000_000


@dataclass
class Window:
    """The simulated days: their bounds in epoch seconds and how activity spreads over them."""

    start: int  # epoch seconds of the first day's midnight (UTC)
    end: int  # epoch seconds of the midnight after end_date
    day_cdf: np.ndarray  # cumulative share of activity per day, ends at exactly 1

    @property
    def day_starts(self) -> np.ndarray:
        return self.start + DAY * np.arange(len(self.day_cdf))


@dataclass
class Catalogue:
    """The items as arrays by item index, with the cumulative weights items are drawn from."""

    item_ids: np.ndarray
    leaf: np.ndarray
    category: np.ndarray
    price: np.ndarray
    tier: np.ndarray
    style: np.ndarray
    created_at: np.ndarray
    choice_cdf: np.ndarray  # see choose_items
    popularity_cdf: np.ndarray
    fallback: np.ndarray  # per leaf: its most popular item, listed before the window

    @property
    def is_consumable(self) -> np.ndarray:
        return REPURCHASE_DAYS[self.category] > 0


@dataclass
class People:
    """The users as arrays by user index, with their planted preferences and activity."""

    user_ids: np.ndarray
    signup_at: np.ndarray
    platform: np.ndarray
    tier: np.ndarray
    style: np.ndarray
    sensitivity: np.ndarray
    preference: np.ndarray  # users x categories
    leaf_cdf: np.ndarray  # users x leaves
    activity: np.ndarray  # expected sessions over 90 days


@dataclass
class IdCounter:
    """The numbers the ids of each kind have used so far: the chunks of a big shop continue them.

    :func:`recsys.dev.simulate.simulate` writes a big shop in chunks of users; each stage that mints ids
    (``U...``, ``S...``, ``E...``, ...) takes its numbers here, so ids stay unique across the chunks, and a
    shop of one chunk numbers them 1, 2, ... as before.
    """

    used: dict[str, int] = field(default_factory=dict)

    def take(self, kind: str, n: int) -> int:
        """Reserve ``n`` numbers of ``kind``; returns how many were used before them (0 the first time)."""
        before = self.used.get(kind, 0)
        self.used[kind] = before + n
        return before


REPURCHASE_DAYS = np.array([category.repurchase_days for category in CATEGORIES])
LEAF_PATHS = [f"{category.name} > {leaf}" for category in CATEGORIES for leaf in category.leaves]
#: the top-level category of each leaf category; leaves are contiguous per category
LEAF_CATEGORY = np.repeat(np.arange(len(CATEGORIES)), [len(category.leaves) for category in CATEGORIES])


def make_window(end_date: date, days: int) -> Window:
    """The window of ``days`` days ending with ``end_date``: weekly cycle and a mild upward trend."""
    first_day = end_date - timedelta(days=days - 1)
    start = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp())
    weekday = (np.arange(days) + first_day.weekday()) % 7
    weights = _WEEKDAY_WEIGHTS[weekday] * (1 + _TREND * np.arange(days) / max(days - 1, 1))
    cdf = np.cumsum(weights)
    return Window(start=start, end=start + days * DAY, day_cdf=cdf / cdf[-1])


def sample_rows(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a row-wise cumulative distribution."""
    draws = (cdf < rng.random(len(cdf))[:, None]).sum(axis=1)
    return np.minimum(draws, cdf.shape[1] - 1)


def iso(seconds: np.ndarray, naive: np.ndarray) -> np.ndarray:
    """Epoch seconds as ISO 8601 strings: with ``Z``, or without an offset where ``naive``."""
    strings = np.empty(len(seconds), dtype=object)
    for start in range(0, len(seconds), _ISO_BLOCK):  # numpy's fixed-width strings take 80 bytes a value
        block = slice(start, start + _ISO_BLOCK)
        with_z = np.datetime_as_string(seconds[block].astype("datetime64[s]"), unit="s", timezone="UTC")
        strings[block] = np.where(naive[block], with_z.astype("<U19"), with_z)
    return strings


def take_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[rows]`` with a new index, made a column at a time while ``frame`` is emptied.

    Memory for one more column, not a second frame: the events of a chunk are gigabytes.
    """
    return pd.DataFrame({column: frame.pop(column).take(rows).reset_index(drop=True) for column in list(frame.columns)})


def concat_rows(first: pd.DataFrame, *more: pd.DataFrame) -> pd.DataFrame:
    """``pd.concat([first, *more], ignore_index=True)`` of frames with ``first``'s columns, made a column at a time
    while ``first`` is emptied (see :func:`take_rows`)."""
    return pd.DataFrame(
        {
            column: pd.concat([first.pop(column), *(frame[column] for frame in more)], ignore_index=True)
            for column in list(first.columns)
        }
    )
