"""The catalogue of the simulated shop: items by leaf category, prices, styles, listing times, and item choice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.dev.simulate.shop import CATEGORIES, DAY, LEAF_CATEGORY, LEAF_PATHS, N_STYLES, Catalogue, Window

#: how much a user of a spending tier (row) likes an item of a price tier (column)
_TIER_FIT = np.array([[1.0, 0.35, 0.1], [0.5, 1.0, 0.5], [0.15, 0.5, 1.0]])
_STYLE_BOOST = 3.0
_SERIES = np.array(["Lite", "Pro", "Max", "Plus", "Classic", "Mini", "Eco", "Prime"])


def make_catalogue(
    rng: np.random.Generator, n_items: int, window: Window, text_rng: np.random.Generator | None = None
) -> tuple[Catalogue, pd.DataFrame]:
    """The items: the shared :class:`Catalogue` and the ``items`` landing rows (sorted by id).

    With ``text_rng`` the rows get a ``description`` (:func:`add_descriptions`) drawn from it alone, so
    every other value stays as it was before items had descriptions.
    """
    n_leaves = len(LEAF_PATHS)

    # items are generated leaf by leaf (contiguous), their ids are shuffled below
    per_leaf = 1 + rng.multinomial(n_items - n_leaves, rng.dirichlet(np.full(n_leaves, 3.0)))
    leaf = np.repeat(np.arange(n_leaves), per_leaf)
    category = LEAF_CATEGORY[leaf]
    popularity = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 1.05
    medians = np.array([c.median_price for c in CATEGORIES])
    log_price = np.log(medians[category]) + rng.normal(0, 0.3, n_leaves)[leaf] + rng.normal(0, 0.55, n_items)
    price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
    price_rank = pd.Series(price).groupby(leaf).rank(pct=True, method="first").to_numpy()
    tier = np.minimum((price_rank * 3).astype(int), 2)
    style = rng.integers(0, N_STYLES, n_items)

    leaf_start = np.r_[0, np.cumsum(per_leaf)[:-1]]
    most_popular = np.lexsort((-popularity, leaf))[leaf_start]
    is_new = rng.random(n_items) < 0.12
    is_new[most_popular] = False
    created_at = np.where(
        is_new,
        rng.integers(window.start, window.end, n_items),
        window.start - rng.integers(30 * DAY, 1000 * DAY, n_items),
    )

    brand = rng.choice(4, n_items, p=[0.4, 0.3, 0.2, 0.1])
    brand_names = np.array([c.brands for c in CATEGORIES])[category, brand]
    leaf_names = np.array([path.rsplit(" > ", 1)[1] for path in LEAF_PATHS])[leaf]
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

    catalogue = Catalogue(
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
            "category_path": np.array(LEAF_PATHS, dtype=object)[leaf],
            "brand": brand_names,
            "price": price,
            "stock_quantity": stock,
            "created_at": created_at,
        }
    )
    frame = frame.sort_values("item_id", ignore_index=True)
    if text_rng is not None:
        add_descriptions(text_rng, catalogue, frame)
    return catalogue, frame


#: the words a description of an item of each planted style draws from (index = ``Catalogue.style``)
STYLE_WORDS: tuple[tuple[str, ...], ...] = (
    ("minimalist", "clean", "matte", "understated"),
    ("vintage", "retro", "heritage", "timeless"),
    ("bold", "vibrant", "statement", "colourful"),
    ("natural", "sustainable", "organic", "recycled"),
)
#: the words of each price tier (index = ``Catalogue.tier``: cheapest third of the leaf, middle, dearest)
TIER_WORDS: tuple[tuple[str, ...], ...] = (
    ("budget", "affordable", "everyday"),
    ("reliable", "versatile", "popular"),
    ("premium", "luxury", "crafted"),
)
#: words any description may carry: noise that says nothing about the item
_FILLER = np.array(["", " Ships fast.", " A great gift.", " Easy to care for.", " Customer favourite.", ""])


def item_descriptions(rng: np.random.Generator, catalogue: Catalogue, brands: np.ndarray) -> np.ndarray:
    """One description per item (catalogue order) that follows its planted leaf, brand, style and price tier.

    Two of the four words of the item's style and one of its tier's words, the leaf and the brand,
    in a fixed sentence, plus filler noise, so an item's text says what a shopper's choice
    weighs (:func:`choose_items`): the same ``rng`` state writes the same texts.
    """
    n_items = len(catalogue.leaf)
    style_words = np.array(STYLE_WORDS, dtype=object)[catalogue.style]
    pick = np.argsort(rng.random((n_items, style_words.shape[1])), axis=1)[:, :2]
    first = np.take_along_axis(style_words, pick[:, :1], axis=1).ravel()
    second = np.take_along_axis(style_words, pick[:, 1:], axis=1).ravel()
    tier = np.array(TIER_WORDS, dtype=object)[catalogue.tier, rng.integers(0, len(TIER_WORDS[0]), n_items)]
    leaf = pd.Series(np.array([path.rsplit(" > ", 1)[1] for path in LEAF_PATHS], dtype=object)[catalogue.leaf])
    text = (
        pd.Series(first).str.capitalize()
        + " and "
        + second
        + " "
        + leaf.str.lower()
        + " by "
        + brands
        + ". "
        + pd.Series(tier).str.capitalize()
        + " choice."
        + _FILLER[rng.integers(0, len(_FILLER), n_items)]
    )
    return text.to_numpy(dtype=object)


def add_descriptions(rng: np.random.Generator, catalogue: Catalogue, frame: pd.DataFrame) -> None:
    """Set ``frame["description"]`` (the ``items`` landing rows, in any order) from :func:`item_descriptions`."""
    order = pd.Index(catalogue.item_ids).get_indexer(frame["item_id"])
    brands = np.empty(len(order), dtype=object)
    brands[order] = frame["brand"].to_numpy()
    frame["description"] = item_descriptions(rng, catalogue, brands)[order]


def _choice_cdf(
    popularity: np.ndarray, leaf: np.ndarray, tier: np.ndarray, style: np.ndarray, n_leaves: int
) -> np.ndarray:
    """Cumulative item-choice weights for every (user tier, user style, leaf), flattened.

    Block ``combo = user_tier * N_STYLES + user_style`` holds, for each item in leaf
    order, ``combo * n_leaves + leaf + cdf`` where ``cdf`` is the item's cumulative
    share within its leaf (ending at exactly 1). The values increase over the whole
    array, so one ``searchsorted`` draws items for many (combo, leaf) groups at once.
    """
    leaf_end = np.cumsum(np.bincount(leaf, minlength=n_leaves)) - 1
    blocks = []
    for user_tier in range(3):
        for user_style in range(N_STYLES):
            weight = popularity * _TIER_FIT[user_tier, tier] * np.where(style == user_style, _STYLE_BOOST, 1.0)
            cumulative = np.cumsum(weight)
            before_leaf = np.r_[0.0, cumulative[leaf_end[:-1]]]
            within = (cumulative - before_leaf[leaf]) / (cumulative[leaf_end] - before_leaf)[leaf]
            within[leaf_end] = 1.0
            combo = user_tier * N_STYLES + user_style
            blocks.append(combo * n_leaves + leaf + within)
    return np.concatenate(blocks)


def choose_items(
    rng: np.random.Generator, catalogue: Catalogue, leaf: np.ndarray, tier: np.ndarray, style: np.ndarray
) -> np.ndarray:
    """Draw one item per row from ``leaf``, weighted for users of ``tier`` and ``style``."""
    n_leaves = len(LEAF_PATHS)
    group = (tier * N_STYLES + style) * n_leaves + leaf
    position = np.searchsorted(catalogue.choice_cdf, group + rng.random(len(leaf)), side="right")
    return position % len(catalogue.leaf)


def listed(catalogue: Catalogue, item: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Replace items not yet listed at ``at`` by their leaf's fallback item."""
    return np.where(catalogue.created_at[item] > at, catalogue.fallback[catalogue.leaf[item]], item)
