"""The learned rankers' text features: how well an item's words match the user's, and the user's review sentiment.

Both are opt-in (``text_features=True`` on :class:`~recsys.models.neural_ranker.NeuralRanker` and
:class:`~recsys.models.lgbm_ranker.LightGBMRanker`) and, like every ranker feature, computed from the
events before the moment they describe (see :mod:`recsys.models.ranker`):

* ``text_match``: the cosine between the item's idf-weighted search tokens (read from
  ``analytics.item_search_tokens``, the one tokenizer's output, as the ``tokens`` item attribute) and
  the user's decayed interaction-weighted sum of their items' (the weights of the dbt profile
  ``analytics.user_text_interests``, as a vector over every term);
* ``category_sentiment``: the user's average review sentiment (``fct_reviews.sentiment``, VADER) in the
  item's category, over reviews before the moment; 0 without one.

The token lists are counted by scikit-learn's ``CountVectorizer`` split on the spaces that join them:
tokens as the SQL tokenizer wrote them, never re-tokenized.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize

from recsys.features.interactions import Interactions

#: the ranker's feature columns these add, in order
TEXT_FEATURES: tuple[str, ...] = ("text_match", "category_sentiment")


def item_terms(tokens: pd.Series | None, n_items: int) -> sp.csr_array:
    """Items x terms: the token's inverse document frequency ln(items / items with it) where the item has it.

    The weights of ``analytics.user_text_interests`` (macro ``text_interests``): binary term presence times
    idf; tokens of digits only and tokens every item has (idf 0) drop out. Items without tokens are zero rows.
    The ranker's encoding holds every item, so the document frequencies also count items listed later.
    """
    if tokens is None or not tokens.fillna("").str.strip().any():
        return sp.csr_array((n_items, 1))
    vectorizer = CountVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False, binary=True)
    presence = sp.csr_array(vectorizer.fit_transform(tokens.fillna("").to_numpy(dtype=object)), dtype=np.float64)
    idf = np.log(n_items / np.maximum(np.asarray(presence.sum(axis=0)).ravel(), 1.0))
    idf[pd.Series(vectorizer.get_feature_names_out()).str.fullmatch(r"[0-9]+").to_numpy()] = 0.0
    return sp.csr_array(presence @ sp.diags_array(idf))


def user_terms(user_item: sp.csr_array, items: sp.csr_array) -> sp.csr_array:
    """Users x terms: the decayed interaction-weighted sum of the user's items' terms, L2-normalized."""
    return sp.csr_array(normalize(sp.csr_array(user_item @ items)))


def text_match(users: sp.csr_array, items: sp.csr_array, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Cosine of each (user, item) pair's term vectors, in [0, 1] (0 for an item without terms)."""
    norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1)).ravel())
    dots = np.asarray(users[user].multiply(items[item]).sum(axis=1)).ravel()
    return dots / np.where(norms[item] > 0, norms[item], 1.0)


def category_sentiment(
    ratings: pd.DataFrame | None, item_category: np.ndarray, n_users: int, reference: float
) -> sp.csr_array:
    """Users x categories: the average review sentiment of the user's reviews before ``reference`` (sparse)."""
    n_categories = int(item_category.max(initial=0)) + 1
    if ratings is None or "sentiment" not in ratings:
        return sp.csr_array((n_users, n_categories))
    scored = ratings[(ratings["rated_ts"] < reference) & ratings["sentiment"].notna()]
    rows = scored["user_index"].to_numpy()
    cols = item_category[scored["item_index"].to_numpy()]
    shape = (n_users, n_categories)
    total = sp.csr_array((scored["sentiment"].to_numpy(dtype=np.float64), (rows, cols)), shape=shape)
    count = sp.csr_array((np.ones(len(scored)), (rows, cols)), shape=shape)
    return sp.csr_array(total.multiply(count.power(-1)))


def aggregates(
    interactions: Interactions, user_item: sp.csr_array, category: np.ndarray, reference: float
) -> dict[str, sp.csr_array]:
    """The text features' aggregates at ``reference`` (item and user terms, category sentiment)."""
    items = interactions.items
    terms = item_terms(None if items is None else items.get("tokens"), interactions.n_items)
    return {
        "item_terms": terms,
        "user_terms": user_terms(user_item, terms),
        "category_sentiment": category_sentiment(interactions.ratings, category, interactions.n_users, reference),
    }
