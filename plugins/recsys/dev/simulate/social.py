"""The simulated shop's social graph and the influence planted through it.

Everything here draws from its own generator (``[seed, 17]``, or a chunk's own in a shop written in chunks of
users), never from the shop's: with ``social_influence=0`` every other landing file is byte for byte what it
would be without social data. The graph links the users of one chunk.

The graph
---------
* **Follows**: each user follows a Poisson(:data:`FOLLOWS_PER_USER`) number of other users, chosen with
  probability proportional to the square root of their activity (active shoppers have more followers). About
  :data:`FRIEND_SHARE` of the pairs are mutual friends (one ``friend`` row per pair).
* **Referrals**: every user whose ``signup_channel`` is ``referral`` was invited by a user who signed up
  before them (chosen uniformly); the edge is made at the referred user's signup.
* **Shares**: :data:`SHARE_RATE` of the order lines are shared by the buyer with one of their followers, at
  the order's time.

The influence (``social_influence`` = s, default :data:`SOCIAL_INFLUENCE`)
------------------------------------------------------------------------
Before any behaviour is drawn, each user's leaf-category preference (and so their top-level category
preference, its sum) becomes ``(1 - s) * own + s * mean over the people they see`` of *their* preferences
after the influence (the fixed point, as in the Friedkin-Johnsen opinion model): those they follow, their
friends and their referrer. With probability ``s`` a user who sees someone also takes the item style
of one of them. And every purchase is bought again by each user who sees the buyer with probability
``s *`` :data:`SOCIAL_BUY_RATE`, about :data:`SOCIAL_DELAY_DAYS` days later, in a short session of its own
(view, cart, buy): the item-level influence a "people you follow bought this" model can find. ``s = 0``
plants nothing: the graph is then independent of behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.dev.simulate.behaviour import browse_and_buy, make_orders, rebuy_sessions
from recsys.dev.simulate.shop import DAY, HOUR, LEAF_CATEGORY, Catalogue, People, Window, iso

#: the default strength of the planted influence (the ``social_influence`` argument of ``simulate``)
SOCIAL_INFLUENCE = 0.05
FOLLOWS_PER_USER = 3.0
FRIEND_SHARE = 0.3
SHARE_RATE = 0.05
#: at strength 1, the chance that a user buys an item someone they see bought (times the strength below 1)
SOCIAL_BUY_RATE = 0.25
#: mean days from that purchase to the copy
SOCIAL_DELAY_DAYS = 3.0
#: with ``dirty=True``: this share of the edges is appended again with each of the four faults
SOCIAL_DIRT_RATE = 0.002
_FOLLOW_WITHIN_DAYS = 60
#: rounds of the influence iteration: what is left of the fixed point shrinks by ``strength`` per round
_INFLUENCE_ROUNDS = 20
#: people are followed with probability proportional to their activity to this power (a mild pull to the active)
_POPULARITY_POWER = 0.5
_NAIVE_TIMESTAMP_SHARE = 0.3

_FOLLOW, _FRIEND, _REFERRAL, _SHARE = "follow", "friend", "referral", "share"


@dataclass
class SocialGraph:
    """Edges by user index: ``source`` -> ``target`` of ``kind`` at ``at`` (epoch seconds)."""

    source: np.ndarray
    target: np.ndarray
    kind: np.ndarray
    at: np.ndarray

    def seen(self, n_users: int) -> sp.csr_array:
        """``(n_users, n_users)`` 1 where the row user sees the column user: follows, friends both ways, referrer."""
        follow = np.isin(self.kind, (_FOLLOW, _FRIEND))
        friend = self.kind == _FRIEND
        referral = self.kind == _REFERRAL
        rows = np.concatenate([self.source[follow], self.target[friend], self.target[referral]])
        cols = np.concatenate([self.target[follow], self.source[friend], self.source[referral]])
        seen = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_users))
        seen.sum_duplicates()
        seen.data[:] = 1.0
        return seen


def make_graph(rng: np.random.Generator, people: People, signup_channel: np.ndarray, window: Window) -> SocialGraph:
    """Follows, friends and referrals between the users (see the module docstring)."""
    n_users = len(people.user_ids)
    weight = people.activity**_POPULARITY_POWER
    cdf = np.cumsum(weight)
    counts = rng.poisson(FOLLOWS_PER_USER, n_users)
    source = np.repeat(np.arange(n_users), counts)
    target = np.minimum(np.searchsorted(cdf, rng.random(len(source)) * cdf[-1]), n_users - 1)
    keep = source != target
    pairs = np.unique(np.stack([source[keep], target[keep]], axis=1), axis=0)
    source, target = pairs[:, 0], pairs[:, 1]
    kind = np.where(rng.random(len(source)) < FRIEND_SHARE, _FRIEND, _FOLLOW).astype(object)
    start = np.maximum(people.signup_at[source], people.signup_at[target])
    at = np.minimum(start + rng.integers(0, _FOLLOW_WITHIN_DAYS * DAY, len(source)), window.end - HOUR)

    referred = np.flatnonzero(signup_channel == "referral")
    order = np.argsort(people.signup_at, kind="stable")
    earlier = np.searchsorted(people.signup_at[order], people.signup_at[referred], side="left")
    referred, earlier = referred[earlier > 0], earlier[earlier > 0]
    referrer = order[np.minimum((rng.random(len(referred)) * earlier).astype(np.int64), earlier - 1)]
    return SocialGraph(
        source=np.concatenate([source, referrer]),
        target=np.concatenate([target, referred]),
        kind=np.concatenate([kind, np.full(len(referred), _REFERRAL, dtype=object)]),
        at=np.concatenate([at, people.signup_at[referred]]),
    )


def plant_influence(rng: np.random.Generator, people: People, graph: SocialGraph, strength: float) -> People:
    """The users with their preferences moved toward those of the people they see, by ``strength``."""
    if not 0 <= strength <= 1:
        raise ValueError(f"social_influence must be in [0, 1], got {strength}")
    if strength == 0:
        return people
    n_users = len(people.user_ids)
    seen = graph.seen(n_users)
    degree = np.asarray(seen.sum(axis=1)).ravel()
    has = degree > 0
    mean = sp.diags_array(1.0 / np.maximum(degree, 1)) @ seen
    own = np.diff(people.leaf_cdf, axis=1, prepend=0.0)
    leaf = own
    for _ in range(_INFLUENCE_ROUNDS):  # the fixed point of leaf = (1 - s) own + s mean(leaf of those seen)
        leaf = np.where(has[:, None], (1 - strength) * own + strength * (mean @ leaf), own)
    category_start = np.r_[0, np.cumsum(np.bincount(LEAF_CATEGORY))[:-1]]
    preference = np.add.reduceat(leaf, category_start, axis=1)
    leaf_cdf = np.cumsum(leaf, axis=1)
    leaf_cdf /= leaf_cdf[:, -1:]
    # the style of one person seen (a uniform pick among the row's columns), taken with probability strength
    offset = (rng.random(n_users) * np.maximum(degree, 1)).astype(np.int64)
    one_seen = seen.indices[np.minimum(seen.indptr[:-1] + offset, max(seen.nnz - 1, 0))] if seen.nnz else 0
    takes = has & (rng.random(n_users) < strength)
    style = np.where(takes, people.style[one_seen], people.style)
    preference /= preference.sum(axis=1, keepdims=True)
    return replace(people, preference=preference, leaf_cdf=leaf_cdf, style=style)


def social_purchases(
    rng: np.random.Generator,
    graph: SocialGraph,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    people: People,
    window: Window,
    strength: float,
) -> pd.DataFrame:
    """Purchases copied along the graph: ``user``, ``item``, ``at`` (see the module docstring); none at strength 0.

    Each order line's item is bought by each user who sees its buyer with probability
    ``strength * SOCIAL_BUY_RATE``, an exponential :data:`SOCIAL_DELAY_DAYS` days later (inside the window,
    after the user's signup).
    """
    bought = lines.merge(orders[["session", "user", "at"]], on="session")
    if strength == 0 or bought.empty:
        return pd.DataFrame({"user": [], "item": [], "at": []}, dtype=np.int64)
    followers = graph.seen(len(people.user_ids)).T.tocsr()  # row: a user, columns: who sees them
    buyer = bought["user"].to_numpy()
    count = np.diff(followers.indptr)[buyer]
    line = np.repeat(np.arange(len(bought)), count)
    within = np.arange(len(line)) - np.repeat(np.cumsum(count) - count, count)
    follower = followers.indices[np.repeat(followers.indptr[buyer], count) + within]
    at = bought["at"].to_numpy()[line] + (rng.exponential(SOCIAL_DELAY_DAYS, len(line)) * DAY).astype(np.int64)
    keep = rng.random(len(line)) < strength * SOCIAL_BUY_RATE
    keep &= (at < window.end - 2 * HOUR) & (people.signup_at[follower] < at)
    return pd.DataFrame({"user": follower[keep], "item": bought["item"].to_numpy()[line[keep]], "at": at[keep]})


def shares(rng: np.random.Generator, graph: SocialGraph, orders: pd.DataFrame, lines: pd.DataFrame, n_users: int):
    """:data:`SHARE_RATE` of the order lines, shared by the buyer with one of their followers at the order's time.

    Returns
    -------
    SocialGraph
        The share edges, their ``kind`` ``share``, with the item index as a fifth array ``item``.
    """
    followers = graph.seen(n_users).T.tocsr()  # row: a user, columns: who sees them
    order_of = pd.Series(np.arange(len(orders)), index=orders["session"].to_numpy())
    chosen = lines[rng.random(len(lines)) < SHARE_RATE]
    order = order_of[chosen["session"].to_numpy()].to_numpy()
    buyer = orders["user"].to_numpy()[order]
    count = np.diff(followers.indptr)[buyer]
    pick = followers.indptr[buyer] + (rng.random(len(buyer)) * np.maximum(count, 1)).astype(np.int64)
    has = count > 0
    edges = SocialGraph(
        source=buyer[has],
        target=followers.indices[np.minimum(pick[has], max(followers.nnz - 1, 0))],
        kind=np.full(int(has.sum()), _SHARE, dtype=object),
        at=orders["at"].to_numpy()[order][has],
    )
    return edges, chosen["item"].to_numpy()[has]


def add_social_dirt(rng: np.random.Generator, edges: pd.DataFrame) -> pd.DataFrame:
    """Append :data:`SOCIAL_DIRT_RATE` of the rows, each again with one fault: an unknown kind, a self-edge, an
    unknown user or a share without an item (staging excludes each with its reason)."""
    n = max(1, int(len(edges) * SOCIAL_DIRT_RATE)) if len(edges) else 0
    bad = edges.iloc[rng.integers(0, max(len(edges), 1), 4 * n)].reset_index(drop=True)
    fault = np.arange(len(bad)) % 4
    bad.loc[fault == 0, "kind"] = "like"
    bad.loc[fault == 1, "to_user_id"] = bad.loc[fault == 1, "from_user_id"]
    bad.loc[fault == 2, "to_user_id"] = "U_UNKNOWN"
    bad.loc[fault == 3, ["kind", "item_id"]] = [_SHARE, ""]
    return pd.concat([edges, bad], ignore_index=True)


def social_edges_frame(
    rng: np.random.Generator, graph: SocialGraph, shared: SocialGraph, shared_items: np.ndarray, people, catalogue
) -> pd.DataFrame:
    """The ``social_edges`` landing rows, in time order."""
    frame = pd.DataFrame(
        {
            "from_user_id": people.user_ids[np.concatenate([graph.source, shared.source])],
            "to_user_id": people.user_ids[np.concatenate([graph.target, shared.target])],
            "kind": np.concatenate([graph.kind, shared.kind]),
            "created_at": np.concatenate([graph.at, shared.at]).astype(np.int64),
            "item_id": np.concatenate(
                [np.full(len(graph.source), "", dtype=object), catalogue.item_ids[shared_items].astype(object)]
            ),
        }
    )
    frame = frame.sort_values(["created_at", "from_user_id", "to_user_id", "kind"], kind="stable", ignore_index=True)
    frame["created_at"] = iso(frame["created_at"].to_numpy(), rng.random(len(frame)) < _NAIVE_TIMESTAMP_SHARE)
    return frame


def social_world(
    rng: np.random.Generator, people: People, users_frame: pd.DataFrame, window: Window, strength: float
) -> tuple[SocialGraph, People]:
    """The graph drawn from the social generator ``rng``, and the users with the influence planted."""
    graph = make_graph(rng, people, users_frame["signup_channel"].to_numpy(), window)
    return graph, plant_influence(rng, people, graph, strength)


def copied_shopping(
    rng: np.random.Generator,
    graph: SocialGraph,
    bought: tuple[pd.DataFrame, pd.DataFrame],
    people: People,
    catalogue: Catalogue,
    promotions: pd.DataFrame,
    window: Window,
    strength: float,
    first_session: int,
) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The sessions that copy the ``(orders, lines)`` along the graph: their count, events, orders and lines."""
    copied = social_purchases(rng, graph, *bought, people, window, strength)
    sessions = rebuy_sessions(copied, people, catalogue, first_session=first_session)
    events, purchases = browse_and_buy(rng, sessions, people, catalogue)
    return len(sessions), events, *make_orders(rng, purchases, sessions, people, catalogue, promotions)


def edges_table(
    rng: np.random.Generator,
    graph: SocialGraph,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    people: People,
    catalogue: Catalogue,
    dirty: bool,
) -> pd.DataFrame:
    """The ``social_edges`` landing rows: the graph, the shares of the ``orders``' lines, and the dirt if ``dirty``."""
    shared, shared_items = shares(rng, graph, orders, lines, len(people.user_ids))
    edges = social_edges_frame(rng, graph, shared, shared_items, people, catalogue)
    return add_social_dirt(rng, edges) if dirty else edges


def landing_follows(path) -> pd.DataFrame:
    """``analytics.user_follows`` of a landing ``social_edges.csv``, for the benchmark and tests without a warehouse.

    Follow and friend edges from ``from`` to ``to``, friend edges back, referrals from the referred user to the
    referrer (the rule of the dbt model, without staging's exclusions: the simulator's clean shops need none).
    """
    edges = pd.read_csv(path, dtype=str, keep_default_na=False)
    at = (pd.to_datetime(edges["created_at"], utc=True, format="ISO8601") - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(
        seconds=1
    )
    parts = [
        (edges["kind"].isin([_FOLLOW, _FRIEND]), "from_user_id", "to_user_id"),
        (edges["kind"].isin([_FRIEND, _REFERRAL]), "to_user_id", "from_user_id"),
    ]
    frames = [
        pd.DataFrame({"user_id": edges.loc[m, a], "followed_user_id": edges.loc[m, b], "followed_ts": at[m]})
        for m, a, b in parts
    ]
    return pd.concat(frames, ignore_index=True).drop_duplicates(["user_id", "followed_user_id"])
