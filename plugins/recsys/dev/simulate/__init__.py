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
from recsys.dev.simulate.dirt import add_dirt, append_malformed_lines, choose_bots, replace_bots
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
    Category,
    make_window,
)
from recsys.dev.simulate.social import SOCIAL_INFLUENCE, copied_shopping, edges_table, social_world
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

_STATUS_SHARES = [0.93, 0.045, 0.025]


def simulate(
    out_dir: Path | str,
    users: int = 10_000,
    items: int = 2_000,
    days: int = 90,
    seed: int = 0,
    end_date: date = date(2026, 10, 31),
    dirty: bool = True,
    social_influence: float = SOCIAL_INFLUENCE,
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
    if users < 1 or days < 1 or items < len(LEAF_PATHS):
        raise ValueError(f"need users >= 1, days >= 1 and items >= {len(LEAF_PATHS)}; got {users}, {days}, {items}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    shop_rng, dirt_rng = np.random.default_rng(seed).spawn(2)

    window = make_window(end_date, days)
    catalogue, items_frame = make_catalogue(shop_rng, items, window, np.random.default_rng([seed, 17]))
    people, users_frame = make_users(shop_rng, users, window)
    social_rng, graph, people = social_world(seed, people, users_frame, window, social_influence)
    promotions = make_promotions(shop_rng, window)
    sessions = make_sessions(shop_rng, people, window, promotions)
    events, purchases = browse_and_buy(shop_rng, sessions, people, catalogue)
    orders, lines = make_orders(shop_rng, purchases, sessions, people, catalogue, promotions)
    rebuys = rebuy_times(shop_rng, orders, lines, catalogue, window)
    repeat_sessions = rebuy_sessions(rebuys, people, catalogue, first_session=len(sessions))
    repeat_events, repeat_purchases = browse_and_buy(shop_rng, repeat_sessions, people, catalogue)
    repeat_orders, repeat_lines = make_orders(
        shop_rng, repeat_purchases, repeat_sessions, people, catalogue, promotions
    )
    first_session = len(sessions) + len(repeat_sessions)
    n_social, social_events, social_orders, social_lines = copied_shopping(
        social_rng, graph, (orders, lines), people, catalogue, promotions, window, social_influence, first_session
    )
    orders = pd.concat([orders, repeat_orders, social_orders], ignore_index=True)
    lines = pd.concat([lines, repeat_lines, social_lines], ignore_index=True)
    orders["status"] = shop_rng.choice(len(ORDER_STATUSES), len(orders), p=_STATUS_SHARES)
    events = pd.concat([events, repeat_events, social_events, purchase_events(orders, lines)], ignore_index=True)
    # review words from their own generator: every other value stays as it was before reviews had words
    text_rng = np.random.default_rng([seed, 13])
    reviews = make_reviews(shop_rng, orders, lines, people, catalogue, window, text_rng, items_frame)

    is_bot = np.zeros(users, dtype=bool)
    if dirty:
        is_bot = choose_bots(dirt_rng, people, window)
        shop = dirt_rng, is_bot, people, events, orders, lines, reviews, catalogue, window
        events, orders, lines, reviews = replace_bots(*shop, first_session=first_session + n_social)

    tables = {
        "users": users_frame,
        "items": items_frame,
        "events": format_events(events, people, catalogue),
        **format_orders(orders, lines, people, catalogue),
        "reviews": format_reviews(reviews, people, catalogue),
        "promotions": format_promotions(promotions),
    }
    tables = {name: format_timestamps(shop_rng, name, frame) for name, frame in tables.items()}
    if dirty:
        add_dirt(dirt_rng, tables, window, n_users=users, n_items=items)
    # its own generator, appended last: every other byte stays as before this promotion existed
    tables["promotions"] = pd.concat(
        [tables["promotions"], scheduled_promotion(np.random.default_rng([seed, 11]), window, len(promotions))],
        ignore_index=True,
    )
    tables["social_edges"] = edges_table(social_rng, graph, orders, lines, people, catalogue, dirty)
    # a separate generator: every draw above, so every value written before this step, stays as it was
    shop_events = tables["events"]
    persons = add_linked_accounts(np.random.default_rng([seed, 7]), tables, is_bot, window)

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {name: write_csv(out_dir, name, tables[name]) for name in landing.FILES}
    if dirty:
        counts["events"] += append_malformed_lines(dirt_rng, out_dir, shop_events)
    write_truth(out_dir, people, is_bot, persons)
    landing.write_manifest(
        out_dir,
        start_date=(end_date - timedelta(days=days - 1)).isoformat(),
        end_date=end_date.isoformat(),
        seed=seed,
        users=users,
        items=items,
        days=days,
        social_influence=social_influence,
        generator="recsys simulate",
    )
    logger.info("simulated shop in %s: %s (%.1f s)", out_dir, counts, time.perf_counter() - started)
    return counts
