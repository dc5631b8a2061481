"""Item content as text: TF-IDF vectors over name, description, category path and brand.

One sparse row per item, so a new item, which has no events yet, still has a
vector a shopper's history can be matched to (``models.content``). The
category levels and the brand become single tokens of their own
(``category_home``, ``category_home_kitchen``, ``brand_casa_nova``), so they
match exactly instead of through the words they share with other names.

Memory is bounded by ``max_features`` (the vocabulary) and the stored entries
(about the number of distinct words per item): 100k items of ~25 words are
~2.5M float32 entries, ~30 MB.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

logger = logging.getLogger(__name__)

#: columns of the item frame that are read as free text (missing ones count as empty)
TEXT_COLUMNS: tuple[str, ...] = ("item_name", "description")


def _tokens(values: pd.Series, prefix: str) -> np.ndarray:
    """One token per value (``prefix_words_joined``), ``""`` for a missing one."""
    words = (
        values.astype(object).fillna("").astype(str).str.lower().str.replace(r"[^\w]+", "_", regex=True).str.strip("_")
    )
    return np.where(words != "", prefix + "_" + words, "").astype(object)


def _category_tokens(paths: pd.Series) -> pd.Series:
    """A token per level prefix: ``"Home > Kitchen"`` gives `` category_home category_home_kitchen``."""
    levels = (
        paths.astype(object)
        .fillna("")
        .astype(str)
        .str.split(">", n=2, expand=True)
        .reindex(columns=range(3), fill_value="")
        .fillna("")
    )
    joined = pd.Series("", index=paths.index, dtype=object)
    tokens = pd.Series("", index=paths.index, dtype=object)
    for level in range(3):  # the levels of a path: columns, not rows
        part = levels[level].astype(str).str.strip()
        joined = joined.where(part == "", joined + " " + part)
        tokens = tokens + " " + _tokens(joined.where(part != "", ""), "category")
    return tokens


def item_text_vectors(
    items: pd.DataFrame,
    max_features: int = 20_000,
    min_df: int = 1,
    sublinear_tf: bool = True,
) -> tuple[sp.csr_array, np.ndarray]:
    """TF-IDF vectors of the items' name, description, category path and brand.

    Parameters
    ----------
    items : pandas.DataFrame
        One row per item, in the order of the result: ``item_name``,
        ``description``, ``category_path`` and ``brand`` (any may be missing
        or empty).
    max_features : int, default 20000
        Vocabulary size (the most frequent terms), which bounds the columns.
    min_df : int, default 1
        Terms in fewer items are dropped.
    sublinear_tf : bool, default True
        ``1 + log(tf)`` instead of raw counts.

    Returns
    -------
    vectors : scipy.sparse.csr_array
        Float32 ``(len(items), n_terms)``, rows L2-normalized; an item without
        any text is an empty row.
    terms : numpy.ndarray
        The term of every column.
    """
    text = pd.Series("", index=items.index, dtype=object)
    for column in TEXT_COLUMNS:  # two columns
        if column in items:
            text = text + " " + items[column].astype(object).fillna("").astype(str)
    if "category_path" in items:
        text = text + _category_tokens(items["category_path"])
    if "brand" in items:
        text = text + " " + _tokens(items["brand"], "brand")
    if len(items) == 0 or not text.str.contains(r"\w\w", regex=True).any():
        return sp.csr_array((len(items), 0), dtype=np.float32), np.array([], dtype=object)
    vectorizer = TfidfVectorizer(
        lowercase=True,
        stop_words="english",
        max_features=max_features,
        min_df=min(min_df, len(items)),
        sublinear_tf=sublinear_tf,
        dtype=np.float32,
    )
    vectors = sp.csr_array(vectorizer.fit_transform(text.to_numpy()))
    terms = vectorizer.get_feature_names_out().astype(object)
    logger.info("item text vectors: %d items x %d terms, %d entries", vectors.shape[0], len(terms), vectors.nnz)
    return vectors, terms
