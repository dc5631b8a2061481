"""Business rules and diversity re-ranking: the layers every recommendation list passes through.

The rules live in one versioned file, :data:`RULES_FILE` (``business_rules.toml``,
override with ``RECSYS_BUSINESS_RULES``). Every model's output goes through the
same steps on a ``(users x candidates)`` array of item indices (best first,
``-1`` for none), fully vectorized over a batch of users:

1. :func:`filter_positions`: drop blocked items (out of stock, denied ids,
   brands, categories), the user's recent purchases outside repeat-purchase
   categories, and items past ``max_per_brand`` of their brand; the rest moves
   up in order.
2. :func:`mmr_positions`: maximal marginal relevance on top-level categories,
   strength 0 = off.

Both return *positions* into the candidate array, so callers gather items,
scores and any side columns with :func:`gather`.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.metrics import hit_matrix
from recsys.features.interactions import EVENT_TYPES, SECONDS_PER_DAY, Interactions, Timestamp, to_epoch_seconds
from recsys.models.base import fill_from_ranking

logger = logging.getLogger(__name__)

#: the rules every list passes through (override with ``RECSYS_BUSINESS_RULES``)
RULES_FILE = Path(__file__).with_name("business_rules.toml")

_PURCHASE = EVENT_TYPES.index("purchase")


@dataclass(frozen=True)
class BusinessRules:
    """The parsed rules file; see ``business_rules.toml`` for the meaning of every field."""

    version: str
    exclude_out_of_stock: bool = True
    recent_purchase_days: float = 180.0
    deny_item_ids: tuple[str, ...] = ()
    deny_brands: tuple[str, ...] = ()
    deny_categories: tuple[str, ...] = ()
    max_per_brand: int = 0
    repeat_purchase_categories: tuple[str, ...] = ()
    derive_repeat_purchase: bool = True
    min_repurchase_rate: float = 0.1
    min_repurchase_pairs: int = 50
    diversity_strength: float = 0.0
    min_intra_list_diversity: float = 0.0
    diversity_k: int = 10
    overfetch: int = 3
    min_similarity: float = 0.05
    min_also_bought_users: int = 5
    interest_tags: int = 5
    min_friends_bought: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity_strength <= 1.0:
            raise ValueError(f"[diversity] strength must be in [0, 1], got {self.diversity_strength}")
        if not 0.0 <= self.min_intra_list_diversity <= 1.0:
            raise ValueError(
                f"[diversity] min_intra_list_diversity must be in [0, 1], got {self.min_intra_list_diversity}"
            )
        if self.min_friends_bought < 2:
            raise ValueError(
                "[reasons] min_friends_bought must be at least 2 (a count of one names that person),"
                f" got {self.min_friends_bought}"
            )
        if self.max_per_brand < 0 or self.overfetch < 1 or self.diversity_k < 2 or self.recent_purchase_days < 0:
            raise ValueError("max_per_brand >= 0, overfetch >= 1, diversity k >= 2 and recent_purchase_days >= 0")


#: (section, key in the file) -> field of :class:`BusinessRules`
_KEYS: dict[tuple[str, str], str] = {
    ("filters", "exclude_out_of_stock"): "exclude_out_of_stock",
    ("filters", "recent_purchase_days"): "recent_purchase_days",
    ("filters", "deny_item_ids"): "deny_item_ids",
    ("filters", "deny_brands"): "deny_brands",
    ("filters", "deny_categories"): "deny_categories",
    ("filters", "max_per_brand"): "max_per_brand",
    ("repeat_purchase", "categories"): "repeat_purchase_categories",
    ("repeat_purchase", "derive_from_data"): "derive_repeat_purchase",
    ("repeat_purchase", "min_repurchase_rate"): "min_repurchase_rate",
    ("repeat_purchase", "min_pairs"): "min_repurchase_pairs",
    ("diversity", "strength"): "diversity_strength",
    ("diversity", "min_intra_list_diversity"): "min_intra_list_diversity",
    ("diversity", "k"): "diversity_k",
    ("candidates", "overfetch"): "overfetch",
    ("reasons", "min_similarity"): "min_similarity",
    ("reasons", "min_also_bought_users"): "min_also_bought_users",
    ("reasons", "interest_tags"): "interest_tags",
    ("reasons", "min_friends_bought"): "min_friends_bought",
}


def parse_rules(config: dict[str, Any], source: str = "business rules") -> BusinessRules:
    """:class:`BusinessRules` from the parsed TOML; unknown sections or keys are an error (typos must not pass)."""
    if "version" not in config:
        raise ValueError(f"{source}: a top-level `version` is required")
    values: dict[str, Any] = {"version": str(config["version"])}
    for section, table in config.items():  # a handful of sections
        if section == "version":
            continue
        if not isinstance(table, dict):
            raise ValueError(f"{source}: unknown top-level key {section!r}")
        for key, value in table.items():
            name = _KEYS.get((section, key))
            if name is None:
                raise ValueError(f"{source}: unknown key [{section}] {key}; known: {sorted(_KEYS)}")
            values[name] = tuple(str(item) for item in value) if isinstance(value, list) else value
    types = {field.name: field.type for field in fields(BusinessRules)}
    for name, value in values.items():  # cast numbers the file may write as int
        if types[name] == "float":
            values[name] = float(value)
        elif types[name] == "int":
            values[name] = int(value)
    return BusinessRules(**values)


def load_business_rules(path: str | Path | None = None) -> BusinessRules:
    """Read the rules: ``path``, else ``RECSYS_BUSINESS_RULES``, else :data:`RULES_FILE`."""
    path = Path(path or os.environ.get("RECSYS_BUSINESS_RULES") or RULES_FILE)
    with path.open("rb") as handle:
        rules = parse_rules(tomllib.load(handle), str(path))
    logger.info("business rules version %s from %s", rules.version, path)
    return rules


# --------------------------------------------------------------------------- per-item and per-user masks


def item_attributes(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Top-level category and brand name per item index (``""`` unknown)."""
    if data.items is None:
        empty = np.full(data.n_items, "", dtype=object)
        return empty, empty.copy()
    return data.items["category"].to_numpy(dtype=object), data.items["brand"].to_numpy(dtype=object)


def repeat_purchase_categories(data: Interactions, end: Timestamp, rules: BusinessRules) -> list[str]:
    """The repeat-purchase categories: the configured ones plus, if enabled, those the data shows.

    A category is derived as repeat-purchase when, over the purchases before
    ``end``, at least ``min_repurchase_rate`` of its (buyer, item) pairs were
    bought on two or more different days, counted over at least
    ``min_repurchase_pairs`` pairs (a small category proves nothing).
    """
    configured = set(rules.repeat_purchase_categories)
    if not rules.derive_repeat_purchase or data.items is None:
        return sorted(configured)
    bought = (data.event_type == _PURCHASE) & (data.event_ts < to_epoch_seconds(end))
    days = pd.DataFrame(
        {
            "user": data.user_index[bought],
            "item": data.item_index[bought],
            "day": np.floor(data.event_ts[bought] / SECONDS_PER_DAY).astype(np.int64),
        }
    ).drop_duplicates()
    pairs = days.groupby(["user", "item"], sort=False).size().rename("days").reset_index()
    pairs["category"] = item_attributes(data)[0][pairs["item"].to_numpy()]
    pairs["repeated"] = pairs["days"] >= 2
    per_category = pairs[pairs["category"] != ""].groupby("category")["repeated"].agg(["mean", "size"])
    derived = per_category[
        (per_category["size"] >= rules.min_repurchase_pairs) & (per_category["mean"] >= rules.min_repurchase_rate)
    ]
    logger.info(
        "repeat-purchase rate per category: %s; derived repeat-purchase: %s",
        per_category["mean"].round(3).to_dict(),
        sorted(derived.index),
    )
    return sorted(configured | set(derived.index))


def blocked_items(
    item_ids: np.ndarray, categories: np.ndarray, brands: np.ndarray, in_stock: np.ndarray, rules: BusinessRules
) -> np.ndarray:
    """Boolean mask per item: never recommended (out of stock if the rule is on, or on a deny list)."""
    blocked = np.isin(item_ids, rules.deny_item_ids) | np.isin(categories, rules.deny_categories)
    blocked |= np.isin(brands, rules.deny_brands)
    if rules.exclude_out_of_stock:
        blocked |= ~np.asarray(in_stock, dtype=bool)
    return blocked


def recent_purchases(data: Interactions, end: Timestamp, rules: BusinessRules, repeat_item: np.ndarray) -> sp.csr_array:
    """``(n_users, n_items)`` pattern of purchases in the last ``recent_purchase_days`` before ``end``.

    Items of repeat-purchase categories (``repeat_item``) are left out: those may be recommended again.
    """
    end = to_epoch_seconds(end)
    bought = sp.csr_array(
        data.to_csr(
            {"purchase": 1.0}, start=end - rules.recent_purchase_days * SECONDS_PER_DAY, end=np.nextafter(end, np.inf)
        )
        > 0,
        dtype=np.float32,
    )
    keep = sp.diags_array((~np.asarray(repeat_item, dtype=bool)).astype(np.float32))
    result = sp.csr_array(bought @ keep)
    result.eliminate_zeros()
    return result


# --------------------------------------------------------------------------- list operations


def gather(values: np.ndarray, positions: np.ndarray, fill: Any = -1) -> np.ndarray:
    """``values[row, positions[row, j]]`` with ``fill`` where the position is ``-1``."""
    taken = np.take_along_axis(values, np.maximum(positions, 0), axis=1)
    return np.where(positions >= 0, taken, fill)


def label_codes(labels: np.ndarray) -> np.ndarray:
    """Int code per item for a label array, ``-1`` for ``""`` (unknown); int arrays pass through."""
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int64)
    codes = pd.factorize(pd.Series(labels, dtype=object).replace("", np.nan))[0]
    return codes.astype(np.int64)


def filter_positions(
    items: np.ndarray,
    n: int,
    blocked: np.ndarray | None = None,
    exclude: sp.csr_array | None = None,
    brands: np.ndarray | None = None,
    max_per_brand: int = 0,
) -> np.ndarray:
    """Positions of the candidates that pass the rules, in order, cut at ``n``.

    Parameters
    ----------
    items : numpy.ndarray
        Int ``(n_rows, width)`` candidates, best first, ``-1`` for none.
    n : int
        Columns of the result.
    blocked : numpy.ndarray, optional
        Bool per item index: never kept.
    exclude : scipy.sparse.csr_array, optional
        ``(n_rows, n_items)``: stored entries are dropped from that row (e.g. recent purchases).
    brands : numpy.ndarray, optional
        Brand label per item index (``""`` unknown: never capped).
    max_per_brand : int, default 0
        Keep at most this many items of one brand per row, the best ones (0 = no cap).

    Returns
    -------
    numpy.ndarray
        Int64 ``(n_rows, n)`` column positions into ``items``, ``-1`` where a row ran out.
    """
    items = np.asarray(items, dtype=np.int64)
    keep = items >= 0
    if blocked is not None:
        keep &= ~np.asarray(blocked, dtype=bool)[np.maximum(items, 0)]
    if exclude is not None and exclude.nnz:
        keep &= ~hit_matrix(items, exclude)
    if max_per_brand and brands is not None:
        brand = np.where(keep, label_codes(brands)[np.maximum(items, 0)], -1)
        rows, cols = np.nonzero(brand >= 0)  # row-major: within a row, best first
        key = rows * (int(brand.max()) + 1) + brand[rows, cols]
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        group_start = np.searchsorted(sorted_key, sorted_key, side="left")
        occurrence = np.empty(len(order), dtype=np.int64)
        occurrence[order] = np.arange(len(order)) - group_start
        keep[rows[occurrence >= max_per_brand], cols[occurrence >= max_per_brand]] = False
    order = np.argsort(~keep, axis=1, kind="stable")  # kept positions first, in their order
    positions = np.where(np.take_along_axis(keep, order, axis=1), order, -1)
    out = np.full((items.shape[0], n), -1, dtype=np.int64)
    out[:, : min(n, positions.shape[1])] = positions[:, :n]
    return out


def mmr_positions(items: np.ndarray, categories: np.ndarray, strength: float, n: int) -> np.ndarray:
    """Maximal-marginal-relevance re-rank of every row on item categories.

    Step ``t`` picks, among the row's candidates not yet picked, the one
    maximizing ``(1 - strength) * relevance - strength * redundancy``, where
    relevance is the DCG gain of its original position,
    ``1 / log2(position + 2)`` (rank-based, so it means the same for every
    model's score scale), and redundancy is 1 if its category is already in
    the list, else 0 (an unknown category counts as one category). Ties keep
    the original order. Only ``n`` steps loop; each is vectorized over rows.

    Parameters
    ----------
    items : numpy.ndarray
        Int ``(n_rows, width)`` candidates, best first, ``-1`` for none (after the rules).
    categories : numpy.ndarray
        Category label (or int code) per item index.
    strength : float
        In ``[0, 1]``; 0 returns the first ``n`` positions unchanged.
    n : int
        Columns of the result.

    Returns
    -------
    numpy.ndarray
        Int64 ``(n_rows, n)`` column positions into ``items``, ``-1`` where a row ran out.
    """
    items = np.asarray(items, dtype=np.int64)
    n_rows, width = items.shape
    valid = items >= 0
    if strength <= 0:
        first = np.broadcast_to(np.arange(min(n, width)), (n_rows, min(n, width)))
        out = np.full((n_rows, n), -1, dtype=np.int64)
        out[:, : first.shape[1]] = np.where(valid[:, :n], first, -1)
        return out
    codes = label_codes(categories)
    codes = np.where(codes < 0, codes.max(initial=-1) + 1, codes)  # unknown: one category of its own
    category = np.where(valid, codes[np.maximum(items, 0)], 0)
    gain = (1.0 - strength) / np.log2(np.arange(width) + 2.0)
    covered = np.zeros((n_rows, int(codes.max(initial=0)) + 1), dtype=bool)
    available = valid.copy()
    rows = np.arange(n_rows)
    out = np.full((n_rows, n), -1, dtype=np.int64)
    for step in range(min(n, width)):  # list positions, not users
        value = gain[None, :] - strength * np.take_along_axis(covered, category, axis=1)
        value = np.where(available, value, -np.inf)
        best = np.argmax(value, axis=1)
        found = available[rows, best]
        out[:, step] = np.where(found, best, -1)
        available[rows[found], best[found]] = False
        covered[rows[found], category[rows[found], best[found]]] = True
    return out


def monotone_scores(scores: np.ndarray) -> np.ndarray:
    """Running minimum along each row (NaN kept): after a re-rank, scores still never increase with rank."""
    filled = np.where(np.isnan(scores), np.inf, scores)
    return np.where(np.isnan(scores), np.nan, np.minimum.accumulate(filled, axis=1))


def apply_layers(
    items: np.ndarray,
    scores: np.ndarray,
    n: int,
    rules: BusinessRules,
    blocked: np.ndarray,
    brands: np.ndarray,
    categories: np.ndarray,
    exclude: sp.csr_array | None = None,
    diversify: bool = True,
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rules, then (if ``diversify``) the MMR re-rank, then the cut to ``n`` of overfetched candidates.

    Parameters
    ----------
    items, scores : numpy.ndarray
        ``(n_rows, width)`` candidates of any model, best first (``width`` >= ``n``, ideally ``overfetch * n``).
    n : int
        List length.
    rules : BusinessRules
        ``max_per_brand`` and ``diversity_strength`` are read here.
    blocked : numpy.ndarray
        Bool per item, :func:`blocked_items`.
    brands, categories : numpy.ndarray
        Brand and top-level category per item (labels, or int codes with ``-1`` unknown: faster per batch).
    exclude : scipy.sparse.csr_array, optional
        ``(n_rows, n_items)`` per-row exclusions (recent purchases).
    diversify : bool, default True
        Apply the MMR re-rank (similar-item lists do not).
    extra : numpy.ndarray, optional
        A side column ``(n_rows, width)`` gathered along (``False``/``-1`` where a row ran out).

    Returns
    -------
    items, scores, extra : numpy.ndarray
        ``(n_rows, n)``; scores are made non-increasing along each row (:func:`monotone_scores`).
    """
    kept = filter_positions(items, items.shape[1], blocked, exclude, brands, rules.max_per_brand)
    strength = rules.diversity_strength if diversify else 0.0
    order = gather(kept, mmr_positions(gather(items, kept), categories, strength, n))
    new_scores = monotone_scores(gather(np.asarray(scores, dtype=np.float64), order, np.nan))
    new_extra = None if extra is None else gather(extra, order, np.zeros(1, dtype=extra.dtype)[0])
    return gather(items, order), new_scores, new_extra


@dataclass
class ServingLayers:
    """Per-item rule inputs of one run (see :mod:`recsys.serving.rules`)."""

    blocked: np.ndarray
    brands: np.ndarray
    categories: np.ndarray
    repeat_item: np.ndarray
    recent: sp.csr_array
    brand_codes: np.ndarray
    category_codes: np.ndarray

    @classmethod
    def of(cls, data: Interactions, end: float, in_stock: np.ndarray | None, rules: BusinessRules) -> ServingLayers:
        """The rule inputs at ``end``; ``in_stock`` None: every item (evaluation, where stock is today's)."""
        in_stock = np.ones(data.n_items, dtype=bool) if in_stock is None else in_stock
        categories, brands = item_attributes(data)
        repeat_item = np.isin(categories, repeat_purchase_categories(data, end, rules))
        blocked = blocked_items(data.item_ids, categories, brands, in_stock, rules)
        recent = recent_purchases(data, end, rules, repeat_item)
        logger.info(
            "business rules %s: %d of %d items blocked, %d recent purchases excluded",
            rules.version,
            int(blocked.sum()),
            len(blocked),
            recent.nnz,
        )
        codes = label_codes(brands), label_codes(categories)
        return cls(blocked, brands, categories, repeat_item, recent, *codes)

    def serve(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        n: int,
        rules: BusinessRules,
        exclude: sp.csr_array | None,
        ranking: np.ndarray,
        extra: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The list a shopper sees, from a model's overfetched candidates: the one definition of serving.

        :func:`recsys.serving.rules.apply_layers` (rules, re-rank, cut to ``n``), then
        a list the rules cut short is filled from ``ranking`` (popularity,
        rules-filtered, no brand cap), then scores made non-increasing.
        :func:`generate_recommendations` publishes these lists and the
        champion gate (:func:`select_models`) scores them, so the champion is
        chosen on what is served.
        """
        items, scores, extra = apply_layers(
            items,
            scores,
            n,
            rules,
            self.blocked,
            self.brand_codes,
            self.category_codes,
            exclude,
            extra=extra,
        )
        items, scores = fill_from_ranking(items, scores, ranking, len(self.blocked), exclude)
        return items, monotone_scores(scores), extra
