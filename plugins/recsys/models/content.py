"""Content-based recommendations: a shopper's history matched to what items are, so new items reach lists.

Every item gets one sparse content vector, the weighted blocks

* its TF-IDF text vector (name, description, category path and brand tokens,
  :func:`recsys.features.text.item_text_vectors`),
* a one-hot of its leaf category (its category without a path), a one-hot of its brand,
* a one-hot of its price band (the third of its top-level category's prices it
  falls in: cheap, middle, dear),

each L2-normalized and scaled by its weight, the sum L2-normalized again. A
user's profile is the L2-normalized sum of the vectors of their history,
weighted by the event weights (optionally time-decayed), and an item's score
is the cosine of profile and item vector, plus ``popularity_weight`` times the
item's log popularity (0 to 1; 0 for an item without events). Nothing about an
item's own events is needed, so an item listed yesterday scores like an old one
with the same content: that is what the ``new_catalogue`` evaluation variant
measures.

Scores are computed in blocks of users (the block's profiles dense, then
``item_vectors @ profiles.T``: ``(block, n_items)`` dense, at most
:data:`BLOCK_ENTRIES` values), top-n per row, filled from popularity where a
user has no history (or no item matches).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from recsys.features.interactions import Interactions, Timestamp
from recsys.features.text import item_text_vectors
from recsys.models.base import Recommender, ScoreBatch
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)

#: most dense scores held at once by :meth:`ContentRecommender.recommend` (float64: 8 bytes each)
BLOCK_ENTRIES = 4_000_000


def _one_hot(labels: np.ndarray) -> sp.csr_array:
    """Rows one-hot over the distinct non-empty labels (an empty label is an empty row)."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object).replace("", None), sort=True)
    rows = np.flatnonzero(codes >= 0)
    return sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, codes[rows])), shape=(len(labels), max(len(uniques), 1))
    )


def price_bands(items: pd.DataFrame, n_bands: int = 3) -> np.ndarray:
    """Price band label per item: ``"<category>|<band>"``, the band its price's rank in its category falls in.

    Items without a price get ``""`` (no band).
    """
    price = items["price"].astype(np.float64)
    by_category = price.groupby(items["category"].to_numpy())
    share = (by_category.rank(method="average") - 0.5) / by_category.transform("count")  # mid-rank, 0 to 1
    band = np.minimum((share.fillna(0.0).to_numpy() * n_bands).astype(np.int64), n_bands - 1)
    labels = items["category"].astype(str).to_numpy(dtype=object) + "|" + band.astype(str).astype(object)
    return np.where(np.isfinite(price.to_numpy()), labels, "").astype(object)


def content_vectors(
    items: pd.DataFrame | None,
    n_items: int,
    weights: Mapping[str, float],
    max_features: int = 20_000,
) -> sp.csr_array:
    """The item content matrix ``(n_items, n_features)``, rows L2-normalized (see the module docstring).

    Without item attributes every item is its own feature (the identity), so
    the model can only match a user to items they already touched.
    """
    if items is None:
        return sp.csr_array(sp.identity(n_items, dtype=np.float32, format="csr"))
    path = items["category_path"].astype(object).fillna("").astype(str).to_numpy(dtype=object)  # the leaf
    blocks = {
        "text": item_text_vectors(items, max_features=max_features)[0],
        "category": _one_hot(np.where(path != "", path, items["category"].astype(str).to_numpy(dtype=object))),
        "brand": _one_hot(items["brand"].to_numpy(dtype=object)),
        "price": _one_hot(price_bands(items)),
    }
    parts = [
        sp.csr_array(normalize(block) * np.float32(weights[name]))
        for name, block in blocks.items()
        if weights[name] > 0 and block.shape[1]
    ]
    if not parts:
        raise ValueError("content: every feature weight is 0")
    return sp.csr_array(normalize(sp.hstack(parts, format="csr")), dtype=np.float32)


class ContentRecommender(Recommender):
    """Items whose content matches the user's history, new ones included.

    Parameters
    ----------
    text_weight, category_weight, brand_weight, price_weight : float
        Weights of the content blocks (0 leaves a block out).
    popularity_weight : float, default 0.1
        Added score per unit of log popularity (the most popular item has 1),
        so among equal matches the proven item comes first; 0 ranks by content
        alone.
    half_life_days : float, optional
        Time decay of the history's event weights.
    event_weights : mapping of str to float, optional
        Weight per event type; default the dbt project's.
    max_features : int, default 20000
        TF-IDF vocabulary size.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    item_vectors_ : scipy.sparse.csr_array
        Content vector per item, L2-normalized.
    item_bonus_ : numpy.ndarray
        ``popularity_weight`` times the item's log popularity (0 to 1).
    user_items_ : scipy.sparse.csr_array
        The history the profiles are built from.
    fallback_ : PopularityRecommender
        Fills lists of users without history.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "content"

    def __init__(
        self,
        text_weight: float = 1.0,
        category_weight: float = 1.0,
        brand_weight: float = 0.5,
        price_weight: float = 0.5,
        popularity_weight: float = 0.1,
        half_life_days: float | None = None,
        event_weights: Mapping[str, float] | None = None,
        max_features: int = 20_000,
        random_state: int | None = None,
    ) -> None:
        self.text_weight = text_weight
        self.category_weight = category_weight
        self.brand_weight = brand_weight
        self.price_weight = price_weight
        self.popularity_weight = popularity_weight
        self.half_life_days = half_life_days
        self.event_weights = event_weights
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Build the item vectors, the users' histories and the popularity bonus.

        Parameters
        ----------
        interactions : Interactions
            Encoded events with item side data (:meth:`Interactions.with_side_data`); every
            item of the encoding is a candidate, events or not.
        reference_time : timestamp, optional
            "Now": later events are ignored; default the last event.

        Returns
        -------
        ContentRecommender
            ``self``.
        """
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        weights = {
            "text": self.text_weight,
            "category": self.category_weight,
            "brand": self.brand_weight,
            "price": self.price_weight,
        }
        self.item_vectors_ = content_vectors(interactions.items, interactions.n_items, weights, self.max_features)
        self.user_items_ = interactions.to_csr(
            self.event_weights, self.half_life_days, reference, end=until, dtype=np.float32
        )
        self.fallback_ = PopularityRecommender(event_weights=self.event_weights).fit(interactions, reference)
        popularity = np.log1p(self.fallback_.item_scores_)
        top = float(popularity.max(initial=0.0))
        self.item_bonus_ = self.popularity_weight * (popularity / top if top > 0 else popularity)
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "content: %d items x %d content features (%d entries), %d users with history",
            self.n_items_,
            self.item_vectors_.shape[1],
            self.item_vectors_.nnz,
            int((np.diff(self.user_items_.indptr) > 0).sum()),
        )
        return self

    def profiles(self, user_indices: np.ndarray, user_items: sp.csr_array | None = None) -> sp.csr_array:
        """The users' content profiles: L2-normalized weighted sums of their history's item vectors."""
        history = self._history(np.asarray(user_indices, dtype=np.int64), user_items)
        return sp.csr_array(normalize(sp.csr_array(history @ self.item_vectors_)))

    def _rows_per_batch(self, n_columns: int) -> int:
        return max(1, BLOCK_ENTRIES // max(self.n_items_, self.item_vectors_.shape[1], 1))

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray:
        """Content match plus popularity bonus; only items with a positive match are candidates."""
        profile = normalize(sp.csr_array(batch.history @ self.item_vectors_)).toarray()
        # sparse items x dense profiles: work is the items' stored entries times the block, no sparse output
        match = np.asarray(self.item_vectors_ @ profile.T, dtype=np.float64).T
        return np.where(match > 0, match + self.item_bonus_, -np.inf)
