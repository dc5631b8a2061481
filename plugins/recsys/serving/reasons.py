"""Grounded reasons: a ``reason_code`` and a ``reason_text`` for every published row, from data.

Every row of every model gets the first reason that holds (rows the model
ranked itself, then rows filled from popularity):

=====================  =================================================  ==========================================
reason_code            reason_text                                        grounded in
=====================  =================================================  ==========================================
``buy_again``          You bought X before                                X is the item, bought by the user, in a
                                                                          repeat-purchase category (rules)
``similar_to_history`` Because you bought / viewed X (or added X to your  item-KNN attribution: X is the history
                       cart)                                              item contributing most to the item's
                                                                          item-CF score, similarity >= min_similarity
``also_bought``        People who viewed X also bought it                 X viewed by the user; at least
                                                                          min_also_bought_users people viewed X and
                                                                          bought the item
``friends_bought``     N people you follow bought this                    N >= min_friends_bought people the user
                                                                          follows (analytics.user_follows) bought
                                                                          the item; a count, never a name; only
                                                                          people who allow personalization count,
                                                                          only such users see it
``category_interest``  Matches your interest in <category>                the category is among the user's top
                                                                          interest tags (analytics.user_interest_tags)
``popular_segment``    Popular with <segment>                             popularity fill; the item is in the
                                                                          k-anonymous segment's cold-start list
``popular``            Popular in the last N days / Popular with shoppers popularity fill
model fallback         (the model's own code, e.g. ``matrix_factorization``) a model row none of the above explains
=====================  =================================================  ==========================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.db import frames
from recsys.features.interactions import Interactions, lookup
from recsys.features.social import follow_matrix
from recsys.models.base import top_n_per_row
from recsys.models.knn import ItemKNNRecommender
from recsys.models.popularity import PopularityRecommender
from recsys.serving.rules import BusinessRules, ServingLayers

logger = logging.getLogger(__name__)

#: every reason code the layers write, with what it means (the recs yml accepts these and the model fallbacks)
REASONS: dict[str, str] = {
    "buy_again": "You bought X before: the item itself, in a repeat-purchase category",
    "similar_to_history": "Because you bought/viewed X: the history item that drove the item-CF score",
    "also_bought": "People who viewed X also bought it: co-view -> purchase counts",
    "friends_bought": "N people you follow bought this: a count of followed people, never a name",
    "category_interest": "Matches your interest in <category>: one of the user's top interest tags",
    "popular_segment": "Popular with <segment>: in the k-anonymous segment's popularity list",
    "popular": "Popular in the last N days: global popularity",
}

#: "Because you <before> <item name><after>", indexed by the strongest-event code (none, view, cart, purchase)
_BEFORE = np.array(["viewed", "viewed", "added", "bought"], dtype=object)
_AFTER = np.array(["", "", " to your cart", ""], dtype=object)


def attribute(history: sp.csr_array, matrix: sp.csr_array, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every (row, item) the history item ``h`` maximizing ``history[row, h] * matrix[h, item]``.

    Only the rows' history entries are read (one batched sparse lookup per
    entry and column), never whole columns of ``matrix``.

    Returns
    -------
    because : numpy.ndarray
        Int64 like ``items``: the history item, ``-1`` when nothing points at the item.
    value : numpy.ndarray
        Float64 like ``items``: the maximal product, ``nan`` where ``-1``.
    """
    items = np.asarray(items, dtype=np.int64)
    history = sp.csr_array(history)
    n = items.shape[1]
    entry_row = np.repeat(np.arange(items.shape[0], dtype=np.int64), np.diff(history.indptr))
    pair = (entry_row[:, None] * n + np.arange(n)[None, :]).ravel()
    source = np.repeat(history.indices.astype(np.int64), n)
    target = items[entry_row].ravel()
    valid = target >= 0
    value = np.zeros(len(pair))
    value[valid] = np.repeat(history.data, n)[valid] * lookup(matrix, source[valid], target[valid])
    contributions = sp.csr_array((value, (pair, source)), shape=(items.shape[0] * n, matrix.shape[0]))
    contributions.eliminate_zeros()
    because, best = top_n_per_row(contributions, 1)
    return because.reshape(items.shape), best.reshape(items.shape)


def also_bought_matrix(data: Interactions, end: float, min_users: int) -> sp.csr_array:
    """``(n_items, n_items)``: entry ``[x, j]`` = people who viewed ``x`` and bought ``j`` (``x != j``).

    Counts below ``min_users`` are dropped, so a statement is only made about
    a group of at least that many people.
    """
    viewed = sp.csr_array(data.to_csr({"view": 1.0}, end=end) > 0, dtype=np.float32)
    bought = sp.csr_array(data.to_csr({"purchase": 1.0}, end=end) > 0, dtype=np.float32)
    counts = sp.csr_array(viewed.T @ bought)
    counts = sp.csr_array(counts - sp.diags_array(counts.diagonal()))
    counts.data[counts.data < min_users] = 0.0
    counts.eliminate_zeros()
    return counts


def interest_matrix(tags: pd.DataFrame, user_ids: np.ndarray, category_names: np.ndarray, top: int) -> sp.csr_array:
    """``(n_users, n_categories)`` 1 where ``category:<name>`` is among the user's top ``top`` interest tags.

    ``tags`` has ``user_id``, ``tag``, ``tag_rank`` (``analytics.user_interest_tags``).
    """
    chosen = tags[tags["tag"].str.startswith("category:") & (pd.to_numeric(tags["tag_rank"]) <= top)]
    users = pd.Index(user_ids).get_indexer(chosen["user_id"])
    categories = pd.Index(category_names).get_indexer(chosen["tag"].str.slice(len("category:")))
    keep = (users >= 0) & (categories >= 0)
    return sp.csr_array(
        (np.ones(int(keep.sum()), dtype=np.float32), (users[keep], categories[keep])),
        shape=(len(user_ids), len(category_names)),
    )


def segment_text(segment_keys: np.ndarray) -> np.ndarray:
    """ "Popular with female shoppers aged 25-34" for an ``age_band|gender`` key (unknown parts left out)."""
    if len(segment_keys) == 0:
        return np.zeros(0, dtype=object)
    parts = pd.Series(segment_keys, dtype=object).str.split("|", n=1, expand=True).reindex(columns=[0, 1])
    age, gender = parts[0].fillna("unknown"), parts[1].fillna("unknown")
    who = np.where(gender != "unknown", gender + " shoppers", "shoppers")
    aged = np.where(age != "unknown", " aged " + age, "")
    return ("Popular with " + pd.Series(who, dtype=object) + pd.Series(aged, dtype=object)).to_numpy(dtype=object)


def consenting_follows(follows: sp.csr_array, consent: np.ndarray) -> sp.csr_array:
    """The follows between people who both allow personalization (``consent`` 1 per user, 0 opted out)."""
    only_consenting = sp.diags_array(np.asarray(consent, dtype=np.float64))
    return sp.csr_array(only_consenting @ follows @ only_consenting)


def friends_bought(data: ReasonData, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Int64 like ``items``: how many people each user follows bought the item (0 without ``data.follows``).

    ``data.follows`` and ``data.purchases`` hold only people who allow personalization, so nobody who opted
    out is counted, and a user who opted out follows nobody here.
    """
    if data.follows is None:
        return np.zeros(items.shape, dtype=np.int64)
    buyers = sp.csr_array(data.follows[users] @ sp.csr_array(data.purchases > 0, dtype=np.float32))
    user_of = np.broadcast_to(np.arange(len(users))[:, None], items.shape)
    valid = items >= 0
    counts = np.zeros(items.shape, dtype=np.int64)
    counts[valid] = lookup(buyers, user_of[valid], items[valid]).astype(np.int64)
    return counts


@dataclass
class ReasonData:
    """What the reasons are grounded in, built once per run (all indices in the run's encoding).

    Attributes
    ----------
    item_names, item_categories : numpy.ndarray
        Display name and top-level category per item.
    repeat_item : numpy.ndarray
        Bool per item: in a repeat-purchase category.
    purchases : scipy.sparse.csr_array
        ``(n_users, n_items)`` everything each user bought.
    strength : scipy.sparse.csr_array
        Strongest event per (user, item), :meth:`Interactions.strongest_events`.
    knn : ItemKNNRecommender
        Fitted item-KNN for the attribution.
    min_similarity : float
        Weaker neighbours are not named.
    viewed : scipy.sparse.csr_array
        ``(n_users, n_items)`` views.
    also_bought : scipy.sparse.csr_array
        :func:`also_bought_matrix`.
    interests : scipy.sparse.csr_array
        :func:`interest_matrix` over ``category_names``.
    category_code : numpy.ndarray
        Int per item: column of ``interests`` (``-1`` unknown).
    group_of_user : numpy.ndarray
        Segment per user (``-1``: none published).
    segment_items : scipy.sparse.csr_array
        ``(n_segments, n_items)`` the segments' popularity lists.
    segment_texts : numpy.ndarray
        "Popular with ..." per segment.
    popular_text : str
        Text of the global popularity fill.
    follows : scipy.sparse.csr_array, optional
        ``(n_users, n_users)`` 1 where the row user, who allows personalization, follows the column user, who
        allows it too (:func:`recsys.features.social.follow_matrix`); None: no ``friends_bought`` reason.
    min_friends_bought : int
        Fewer followed buyers than this are not counted out loud.
    """

    item_names: np.ndarray
    item_categories: np.ndarray
    repeat_item: np.ndarray
    purchases: sp.csr_array
    strength: sp.csr_array
    knn: ItemKNNRecommender
    min_similarity: float
    viewed: sp.csr_array
    also_bought: sp.csr_array
    interests: sp.csr_array
    category_code: np.ndarray
    group_of_user: np.ndarray
    segment_items: sp.csr_array
    segment_texts: np.ndarray
    popular_text: str
    follows: sp.csr_array | None = None
    min_friends_bought: int = 2


def reasons(
    data: ReasonData,
    users: np.ndarray,
    items: np.ndarray,
    from_model: np.ndarray,
    fallback_code: str,
    fallback_text: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``reason_code`` and ``reason_text`` of a batch of lists, first reason that holds per row.

    Parameters
    ----------
    data : ReasonData
        The run's grounding data.
    users : numpy.ndarray
        ``(B,)`` user indices.
    items : numpy.ndarray
        ``(B, n)`` final items, ``-1`` for none.
    from_model : numpy.ndarray
        ``(B, n)`` bool: ranked by the model (else popularity fill).
    fallback_code : str
        Code of a model row nothing grounds (the model's own code).
    fallback_text : numpy.ndarray
        ``(B, n)`` texts of those rows.

    Returns
    -------
    codes, texts : numpy.ndarray
        Object ``(B, n)``.
    """
    users = np.asarray(users, dtype=np.int64)
    safe = np.maximum(items, 0)
    user_of = np.broadcast_to(users[:, None], items.shape)
    valid = items >= 0
    names = data.item_names

    bought = valid & (lookup(data.purchases, user_of.ravel(), safe.ravel()).reshape(items.shape) > 0)
    buy_again = bought & data.repeat_item[safe]

    because, _ = data.knn.explain(users, np.where(valid, items, -1))
    has_because = because >= 0
    similarity = np.zeros(items.shape)
    similarity[has_because] = lookup(data.knn.similarity_, because[has_because], items[has_because])
    similar = has_because & (similarity >= data.min_similarity)
    verb = np.zeros(items.shape, dtype=np.int64)
    verb[similar] = lookup(data.strength, user_of[similar], because[similar])

    viewed_item, _ = attribute(data.viewed[users], data.also_bought, np.where(valid, items, -1))
    also = viewed_item >= 0

    friends = friends_bought(data, users, items)

    code = data.category_code[safe]
    interest = np.zeros(items.shape, dtype=bool)
    known = valid & (code >= 0)
    interest[known] = lookup(data.interests, user_of[known], code[known]) > 0

    group = data.group_of_user[users]
    in_segment = np.zeros(items.shape, dtype=bool)
    grouped = valid & (group[:, None] >= 0)
    rows, cols = np.nonzero(grouped)
    in_segment[rows, cols] = lookup(data.segment_items, group[rows], items[rows, cols]) > 0

    model = from_model & valid
    fill = ~from_model & valid
    conditions = [
        buy_again,
        model & similar,
        model & also,
        model & (friends >= data.min_friends_bought),
        model & interest,
        model,
        fill & in_segment,
    ]
    codes = np.select(
        conditions,
        [
            "buy_again",
            "similar_to_history",
            "also_bought",
            "friends_bought",
            "category_interest",
            fallback_code,
            "popular_segment",
        ],
        "popular",
    ).astype(object)
    texts = np.select(
        conditions,
        [
            "You bought " + names[safe] + " before",
            "Because you " + _BEFORE[verb] + " " + names[np.maximum(because, 0)] + _AFTER[verb],
            "People who viewed " + names[np.maximum(viewed_item, 0)] + " also bought it",
            friends.astype(str).astype(object) + " people you follow bought this",
            "Matches your interest in " + data.item_categories[safe],
            fallback_text,
            data.segment_texts[np.maximum(group, 0)][:, None] if len(data.segment_texts) else "",
        ],
        data.popular_text,
    ).astype(object)
    return codes, texts


def popular_text(model: PopularityRecommender) -> str:
    """The reason text of a popularity row: "Popular in the last 30 days"."""
    if model.window_days is None:
        return "Popular with shoppers"
    return f"Popular in the last {model.window_days:g} days"


def read_reason_data(
    conn: Any,
    data: Interactions,
    end: float,
    knn: ItemKNNRecommender,
    layers: ServingLayers,
    rules: BusinessRules,
    item_names: np.ndarray,
    consent: np.ndarray,
    group_of_user: np.ndarray,
    segment_items: np.ndarray,
    segment_keys: np.ndarray,
    popularity: PopularityRecommender,
) -> ReasonData:
    """What the run's reasons are grounded in, read at ``end``; opted-out users' events are not read (``consent`` 0).

    ``segment_items`` and ``segment_keys``: the cold-start segment lists (without ``all``) the segment reasons cite.
    """
    until = np.nextafter(end, np.inf)
    only_consenting = sp.diags_array(consent.astype(np.float32))

    def pattern(event: str) -> sp.csr_array:
        return sp.csr_array(only_consenting @ sp.csr_array(data.to_csr({event: 1.0}, end=until) > 0, dtype=np.float32))

    category_names = np.unique(layers.categories[layers.categories != ""]).astype(object)
    tags = pd.DataFrame(columns=["user_id", "tag", "tag_rank"])
    if frames.table_exists(conn, "analytics.user_interest_tags"):
        tags = frames.read_frame(
            conn,
            "select user_id, tag, tag_rank from analytics.user_interest_tags"
            f" where tag like 'category:%' and tag_rank <= {int(rules.interest_tags)}",
        )
    rows, cols = np.nonzero(segment_items >= 0)
    return ReasonData(
        item_names=item_names.astype(object),
        item_categories=layers.categories,
        repeat_item=layers.repeat_item,
        purchases=pattern("purchase"),
        strength=data.strongest_events(),
        knn=knn,
        min_similarity=rules.min_similarity,
        viewed=pattern("view"),
        also_bought=also_bought_matrix(data, until, rules.min_also_bought_users),
        interests=interest_matrix(tags, data.user_ids, category_names, rules.interest_tags),
        category_code=pd.Index(category_names).get_indexer(layers.categories).astype(np.int64),
        group_of_user=np.where(consent > 0, group_of_user, -1),
        segment_items=sp.csr_array(
            (np.ones(len(rows), dtype=np.float32), (rows, segment_items[rows, cols])),
            shape=(segment_items.shape[0], data.n_items),
        ),
        segment_texts=segment_text(segment_keys),
        popular_text=popular_text(popularity),
        follows=consenting_follows(follow_matrix(data.follows, data.user_ids, until), consent),
        min_friends_bought=rules.min_friends_bought,
    )
