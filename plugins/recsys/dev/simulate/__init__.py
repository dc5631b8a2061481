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
  before its ``created_at``). Every item has a ``description`` naming two words of
  its planted style (``catalogue.STYLE_WORDS``), its price tier's word, its leaf and
  its brand, plus filler noise: the text says what a shopper's choice weighs, so a
  new item's content can reach the shoppers of its style (its own generator, so the
  rest of the shop is the same bytes as without descriptions).
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
  item is in a category the user likes and in their price tier. About 70% carry a text
  (:mod:`recsys.dev.simulate.texts`): an opening sentence whose words follow the rating
  (positive for 4-5 stars, negative for 1-2) and name the item's leaf category and often
  its brand, a remark on the price that follows the item's price tier against the user's
  ("Overpriced." above it, "Feels cheap." below), sometimes a closing sentence.

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

Scale
-----
Users are simulated and written in chunks of at most ``chunk_users`` (:data:`CHUNK_USERS`, 200,000), so
memory follows a chunk, not the shop. The catalogue, the promotions and the window are made once; each
chunk is a whole shop of its users (their social graph, sessions, orders, reviews, bots, dirt and second
accounts) on that catalogue, with generators of its own, its rows appended to the landing files and the
truth. Ids continue from chunk to chunk (``U``, ``S``, ``E``, ``O``, ``R``, ``A``, ...), so they are unique
in the files; each file is in time order within a chunk, not across chunks, and nobody follows, refers or
shares a device with a user of another chunk. A shop of one chunk (``users <= chunk_users``) is the shop
described here, byte for byte. ``activity`` multiplies every user's expected sessions: 1 gives about 10
events per user, 5.2 about 50. Size L of ``make bench-scale`` (:data:`recsys.dev.bench_scale.SIZES`),
1,000,000 users at ``activity=5.2``, is five chunks of 10 million events: 50 million event lines and 5 GB
of files in about 8 minutes, at 4.1 GB peak memory (2026-12-06, 2 cores, with an Arrow CSV writer since
replaced by ``to_csv`` a block at a time; not measured again).

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
    raw lines with the wrong number of columns appended to ``events.csv`` (after each chunk's rows).
``bot_users``
    users replaced by bots: thousands of views in bursts, no carts or purchases
    (``is_bot`` in the truth; at least one bot per chunk).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.dev.simulate.accounts import add_linked_accounts
from recsys.dev.simulate.behaviour import (
    browse_and_buy,
    make_orders,
    make_promotions,
    make_reviews,
    make_sessions,
    purchase_events,
    rebuy_sessions,
    rebuy_times,
    scheduled_promotion,
)
from recsys.dev.simulate.catalogue import make_catalogue
from recsys.dev.simulate.dirt import add_dirt, append_malformed_lines, choose_bots, malformed_lines, replace_bots
from recsys.dev.simulate.shop import (
    AGE_BANDS,
    CATEGORIES,
    DIRT_RATES,
    GENDERS,
    IDENTITY_RATES,
    LEAF_PATHS,
    ORDER_STATUSES,
    PLATFORMS,
    PROMOTION_TYPES,
    REGIONS,
    SIGNUP_CHANNELS,
    SPENDING_TIERS,
    Catalogue,
    Category,
    IdCounter,
    People,
    Window,
    make_window,
)
from recsys.dev.simulate.social import SOCIAL_INFLUENCE, SocialGraph, copied_shopping, edges_table, social_world
from recsys.dev.simulate.users import make_users
from recsys.dev.simulate.writing import (
    format_events,
    format_orders,
    format_promotions,
    format_reviews,
    format_timestamps,
    write_csv,
    write_truth,
)
from recsys.ingest import landing

__all__ = [
    "AGE_BANDS",
    "CATEGORIES",
    "CHUNK_USERS",
    "DIRT_RATES",
    "GENDERS",
    "IDENTITY_RATES",
    "ORDER_STATUSES",
    "PLATFORMS",
    "PROMOTION_TYPES",
    "REGIONS",
    "SIGNUP_CHANNELS",
    "SPENDING_TIERS",
    "Category",
    "simulate",
]

logger = logging.getLogger(__name__)

#: users per chunk (the ``chunk_users`` default of :func:`simulate`): one chunk's frames bound the memory
CHUNK_USERS = 200_000
_STATUS_SHARES = [0.93, 0.045, 0.025]
#: the key that sets the seeds of the chunks after the first apart from the shop's other generators
_CHUNK_STREAM = 29


def simulate(
    out_dir: Path | str,
    users: int = 10_000,
    items: int = 2_000,
    days: int = 90,
    seed: int = 0,
    end_date: date = date(2026, 10, 31),
    dirty: bool = True,
    social_influence: float = SOCIAL_INFLUENCE,
    activity: float = 1.0,
    chunk_users: int | None = CHUNK_USERS,
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
    social_influence : float
        Strength of the influence planted through the social graph, 0 to 1
        (:mod:`recsys.dev.simulate.social`); 0 plants none and leaves every file but ``social_edges`` as
        it would be without social data.
    activity : float
        Multiplies every user's expected number of sessions, and so about the events per user; 1 is the
        shop described above (about 10 events per user over 90 days).
    chunk_users : int or None
        Users simulated and written at a time (see "Scale" above); ``None`` simulates them all at once.
        With ``users <= chunk_users`` the shop is one chunk, the same bytes as ``None``.

    Returns
    -------
    dict of str to int
        Data lines written per landing file name (for ``events`` including
        duplicates and malformed lines).

    Raises
    ------
    ValueError
        If ``users`` or ``days`` is below 1, ``items`` below the number of leaf categories, ``activity`` not
        positive or ``chunk_users`` below 1.
    """
    if users < 1 or days < 1 or items < len(LEAF_PATHS):
        raise ValueError(f"need users >= 1, days >= 1 and items >= {len(LEAF_PATHS)}; got {users}, {days}, {items}")
    if not activity > 0 or (chunk_users is not None and chunk_users < 1):
        raise ValueError(f"need activity > 0 and chunk_users >= 1 (or None); got {activity}, {chunk_users}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    shop_rng, dirt_rng = np.random.default_rng(seed).spawn(2)
    window = make_window(end_date, days)
    catalogue, items_frame = make_catalogue(shop_rng, items, window, np.random.default_rng([seed, 17]))
    shop = _Shop(seed, users, dirty, social_influence, activity, window, catalogue, items_frame)

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = IdCounter()
    counts = dict.fromkeys(landing.FILES, 0)
    n_chunks = -(-users // chunk_users) if chunk_users else 1
    for chunk in range(n_chunks):
        n_users = (chunk + 1) * users // n_chunks - chunk * users // n_chunks
        part = _simulate_chunk(shop, n_users, _generators(seed, chunk, shop_rng, dirt_rng), ids)
        for name in part.tables:
            counts[name] += write_csv(out_dir, name, part.tables[name], append=chunk > 0)
        if dirty:
            counts["events"] += append_malformed_lines(out_dir, part.malformed)
        write_truth(out_dir, part.people, part.is_bot, part.persons, append=chunk > 0)
        del part  # before the next chunk is drawn: one chunk's frames at a time
        if n_chunks > 1:
            logger.info("simulated chunk %d of %d (%d users, %.1f s)", chunk + 1, n_chunks, n_users, _since(started))
    # the arguments that change a shop, when they do (a shop of one chunk at activity 1 keeps its manifest's bytes)
    scale = {"activity": activity} if activity != 1 else {}
    scale |= {"chunk_users": chunk_users} if n_chunks > 1 else {}
    landing.write_manifest(
        out_dir,
        start_date=(end_date - timedelta(days=days - 1)).isoformat(),
        end_date=end_date.isoformat(),
        seed=seed,
        users=users,
        items=items,
        days=days,
        social_influence=social_influence,
        **scale,
        generator="recsys simulate",
    )
    logger.info("simulated shop in %s: %s (%.1f s)", out_dir, counts, _since(started))
    return counts


@dataclass
class _Shop:
    """What every chunk shares: the settings, the window, the catalogue and the promotions (the first chunk's)."""

    seed: int
    users: int
    dirty: bool
    social_influence: float
    activity: float
    window: Window
    catalogue: Catalogue
    items: pd.DataFrame
    promotions: pd.DataFrame | None = None


@dataclass
class _Generators:
    """A chunk's generators: behaviour, dirt, the social graph, review words, linked accounts."""

    shop: np.random.Generator
    dirt: np.random.Generator
    social: np.random.Generator
    text: np.random.Generator
    accounts: np.random.Generator


@dataclass
class _Chunk:
    """A chunk of users as landing tables, its planted truth, and the malformed lines for events.csv."""

    tables: dict[str, pd.DataFrame]
    people: People
    is_bot: np.ndarray
    persons: pd.DataFrame
    malformed: np.ndarray


def _generators(seed: int, chunk: int, shop: np.random.Generator, dirt: np.random.Generator) -> _Generators:
    """The first chunk goes on with the shop's generators (one chunk writes the bytes a shop wrote before
    chunks); each later chunk has its own, from ``[seed, chunk, _CHUNK_STREAM]``."""
    if chunk == 0:
        return _Generators(shop, dirt, *(np.random.default_rng([seed, key]) for key in (17, 13, 7)))
    return _Generators(*np.random.default_rng([seed, chunk, _CHUNK_STREAM]).spawn(5))


def _simulate_chunk(shop: _Shop, n_users: int, rng: _Generators, ids: IdCounter) -> _Chunk:
    """``n_users`` users, their social graph, behaviour and dirt, as landing tables with ids after ``ids``'.

    The first chunk draws the promotions (after its users, as a shop did before chunks) and carries the
    ``items`` and ``promotions`` tables; the later chunks only their users' rows.
    """
    window, catalogue = shop.window, shop.catalogue
    first_chunk = shop.promotions is None
    people, users_frame = make_users(rng.shop, n_users, window, ids)
    graph, people = social_world(rng.social, people, users_frame, window, shop.social_influence)
    if first_chunk:
        shop.promotions = make_promotions(rng.shop, window)
    n_sessions, events, orders, lines = _shopping(shop, rng, people, graph)
    reviews = make_reviews(rng.shop, orders, lines, people, catalogue, window, rng.text, shop.items)

    is_bot = np.zeros(n_users, dtype=bool)
    if shop.dirty:
        is_bot = choose_bots(rng.dirt, people, window)
        events, orders, lines, reviews = replace_bots(
            rng.dirt, is_bot, people, events, orders, lines, reviews, catalogue, window, first_session=n_sessions
        )

    tables = {
        "users": users_frame,
        **({"items": shop.items} if first_chunk else {}),
        "events": format_events(events, people, catalogue, ids),
        **format_orders(orders, lines, people, catalogue, ids),
        "reviews": format_reviews(reviews, people, catalogue, ids),
        **({"promotions": format_promotions(shop.promotions)} if first_chunk else {}),
    }
    del events, reviews  # here and below: a frame is freed once its landing form is made
    for name in tables:
        tables[name] = format_timestamps(rng.shop, name, tables[name])
    malformed = np.array([], dtype=object)
    if shop.dirty:
        add_dirt(rng.dirt, tables, window, n_users=shop.users, n_items=len(catalogue.item_ids))
        malformed = malformed_lines(rng.dirt, tables["events"])
    if first_chunk:
        # its own generator, appended last: every other byte stays as before this promotion existed
        upcoming = scheduled_promotion(np.random.default_rng([shop.seed, 11]), window, len(shop.promotions))
        tables["promotions"] = pd.concat([tables["promotions"], upcoming], ignore_index=True)
    tables["social_edges"] = edges_table(rng.social, graph, orders, lines, people, catalogue, shop.dirty)
    # a separate generator: every draw above, so every value written before this step, stays as it was
    persons = add_linked_accounts(rng.accounts, tables, is_bot, window, catalogue.item_ids, ids)
    return _Chunk(tables, people, is_bot, persons, malformed)


def _shopping(
    shop: _Shop, rng: _Generators, people: People, graph: SocialGraph
) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The users' sessions, buy-again sessions and sessions copied along the graph.

    Returns the sessions numbered (the next number), the events, the orders (with their status) and the lines.
    """
    window, catalogue, promotions = shop.window, shop.catalogue, shop.promotions
    sessions = make_sessions(rng.shop, people, window, promotions, shop.activity)
    events, purchases = browse_and_buy(rng.shop, sessions, people, catalogue)
    orders, lines = make_orders(rng.shop, purchases, sessions, people, catalogue, promotions)
    rebuys = rebuy_times(rng.shop, orders, lines, catalogue, window)
    repeat_sessions = rebuy_sessions(rebuys, people, catalogue, first_session=len(sessions))
    repeat_events, repeat_purchases = browse_and_buy(rng.shop, repeat_sessions, people, catalogue)
    repeat_orders, repeat_lines = make_orders(
        rng.shop, repeat_purchases, repeat_sessions, people, catalogue, promotions
    )
    first_session = len(sessions) + len(repeat_sessions)
    n_social, social_events, social_orders, social_lines = copied_shopping(
        rng.social, graph, (orders, lines), people, catalogue, promotions, window, shop.social_influence, first_session
    )
    orders = pd.concat([orders, repeat_orders, social_orders], ignore_index=True)
    lines = pd.concat([lines, repeat_lines, social_lines], ignore_index=True)
    orders["status"] = rng.shop.choice(len(ORDER_STATUSES), len(orders), p=_STATUS_SHARES)
    events = pd.concat([events, repeat_events, social_events, purchase_events(orders, lines)], ignore_index=True)
    return first_session + n_social, events, orders, lines


def _since(started: float) -> float:
    return time.perf_counter() - started
