"""The dirt of the simulated shop (:data:`recsys.dev.simulate.shop.DIRT_RATES`): bots, blanks, bad values, copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.dev.simulate.catalogue import listed
from recsys.dev.simulate.shop import (
    DAY,
    DIRT_RATES,
    EVENT_CODES,
    HOUR,
    PLATFORMS,
    Catalogue,
    People,
    Window,
    iso,
    take_rows,
)
from recsys.ingest import landing

_BOT_VIEWS = (1000, 4000)  # views per bot, drawn uniformly
_BOT_SESSION_VIEWS = 250
_BOT_SPAN = 6 * HOUR  # a bot's views take at most 5.6 hours (4000 views, at most 5 s apart)
_BAD_TIMESTAMPS = np.array(["not-a-date", "31/02/2026 25:61", "2026-13-45T00:00:00", "yesterday"])
_GENDER_VARIANTS = {
    "female": np.array(["F", "f", "Female", "FEMALE", " female"]),
    "male": np.array(["M", "m", " Male ", "MALE", "male "]),
    "other": np.array(["O", "Other", " other "]),
}


def choose_bots(rng: np.random.Generator, people: People, window: Window) -> np.ndarray:
    """Which users become bots (a share ``DIRT_RATES['bot_users']``, at least one)."""
    n_users = len(people.user_ids)
    candidates = np.flatnonzero(people.signup_at < window.end - 2 * _BOT_SPAN)
    n_bots = min(max(1, round(DIRT_RATES["bot_users"] * n_users)), len(candidates))
    is_bot = np.zeros(n_users, dtype=bool)
    is_bot[rng.choice(candidates, n_bots, replace=False)] = True
    return is_bot


def replace_bots(
    rng: np.random.Generator,
    is_bot: np.ndarray,
    people: People,
    events: pd.DataFrame,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    reviews: pd.DataFrame,
    catalogue: Catalogue,
    window: Window,
    first_session: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop what bot users did as shoppers and give them bursts of views instead."""
    bot_orders = orders["session"][is_bot[orders["user"]]]
    events = events[~is_bot[events["user"]]]
    orders = orders[~is_bot[orders["user"]]]
    lines = lines[~lines["session"].isin(bot_orders)]
    reviews = reviews[~is_bot[reviews["user"]]]

    bots = np.flatnonzero(is_bot)
    n_views = rng.integers(*_BOT_VIEWS, len(bots))
    bot = np.repeat(np.arange(len(bots)), n_views)
    first_view = np.cumsum(n_views) - n_views
    position = np.arange(len(bot)) - first_view[bot]
    sessions_per_bot = -(-n_views // _BOT_SESSION_VIEWS)
    session = first_session + (np.cumsum(sessions_per_bot) - sessions_per_bot)[bot] + position // _BOT_SESSION_VIEWS
    earliest = np.maximum(people.signup_at[bots], window.start)
    begin = rng.integers(earliest, window.end - _BOT_SPAN)
    elapsed = np.cumsum(rng.integers(1, 6, len(bot)))
    at = begin[bot] + elapsed - elapsed[first_view][bot]
    item = listed(catalogue, rng.integers(0, len(catalogue.leaf), len(bot)), at)
    views = pd.DataFrame(
        {
            "session": session,
            "user": bots[bot],
            "item": item,
            "event_type": EVENT_CODES["view"],
            "at": at,
            "platform": PLATFORMS.index("web"),
            "price": catalogue.price[item],
        }
    )
    return pd.concat([events, views], ignore_index=True), orders, lines, reviews


def add_dirt(
    rng: np.random.Generator, tables: dict[str, pd.DataFrame], window: Window, n_users: int, n_items: int
) -> None:
    """Put the dirt of DIRT_RATES into the formatted tables, in place.

    ``items`` may be missing from ``tables`` (the later chunks of a big shop); unknown ids are numbered
    above ``n_users`` and ``n_items``, the shop's users and items.
    """
    users, items = tables["users"], tables.get("items")
    for column in ("birth_year", "gender", "region"):
        _blank(rng, users, column)
    if items is not None:
        for column in ("name", "brand"):
            _blank(rng, items, column)
    gender = users["gender"].to_numpy()
    for canonical, variants in _GENDER_VARIANTS.items():
        hit = (gender == canonical) & (rng.random(len(users)) < DIRT_RATES["gender_spellings"])
        users.loc[hit, "gender"] = variants[rng.integers(0, len(variants), hit.sum())]
    messy = rng.random(len(users)) < DIRT_RATES["messy_strings"]
    users.loc[messy, "region"] = users.loc[messy, "region"].str.upper()
    if items is not None:
        messy = (rng.random(len(items)) < DIRT_RATES["messy_strings"]) & (items["brand"] != "")
        items.loc[messy, "brand"] = "  " + items.loc[messy, "brand"].str.lower()
        bad = rng.random(len(items)) < DIRT_RATES["bad_amounts"]
        items.loc[bad, "price"] = np.where(rng.random(bad.sum()) < 0.5, 0.0, -items.loc[bad, "price"])
    tables["events"] = _dirty_events(rng, tables["events"], window, n_users, n_items)


def _blank(rng: np.random.Generator, frame: pd.DataFrame, column: str) -> None:
    hit = rng.random(len(frame)) < DIRT_RATES["missing_optional"]
    frame.loc[hit, column] = pd.NA if column == "birth_year" else ""


def _dirty_events(
    rng: np.random.Generator, events: pd.DataFrame, window: Window, n_users: int, n_items: int
) -> pd.DataFrame:
    n = len(events)
    # masks from the columns as they are, compared where they are (not as millions of Python strings)
    event_type = events["event_type"]
    # dirt that changes ids, amounts or timestamps spares purchase events (see the module docstring)
    spare = (event_type != "purchase").to_numpy()
    has_item = (events["item_id"] != "").to_numpy()

    def pick(rate: float, among: np.ndarray) -> np.ndarray:
        return among & (rng.random(n) < rate)

    for column in ("session_id", "platform"):
        events.loc[pick(DIRT_RATES["missing_optional"], np.ones(n, dtype=bool)), column] = ""

    unknown = pick(DIRT_RATES["unknown_ids"], spare)
    unknown_item = unknown & has_item & (rng.random(n) < 0.5)
    unknown_user = unknown & ~unknown_item
    events.loc[unknown_user, "user_id"] = (
        "U" + pd.Series(n_users + rng.integers(1, 10**6, unknown_user.sum())).astype(str).str.zfill(6).to_numpy()
    )
    events.loc[unknown_item, "item_id"] = (
        "I" + pd.Series(n_items + rng.integers(1, 10**5, unknown_item.sum())).astype(str).str.zfill(5).to_numpy()
    )

    bad_amount = pick(DIRT_RATES["bad_amounts"], event_type.isin(["view", "cart"]).to_numpy())
    bad_price = bad_amount & (event_type == "view").to_numpy()
    bad_quantity = bad_amount & (event_type == "cart").to_numpy()
    events.loc[bad_price, "price"] = np.where(rng.random(bad_price.sum()) < 0.5, 0.0, -events.loc[bad_price, "price"])
    events.loc[bad_quantity, "quantity"] = rng.integers(-2, 1, bad_quantity.sum())

    future = pick(DIRT_RATES["future_timestamps"], spare)
    future_at = window.end + rng.integers(DAY, 400 * DAY, future.sum())
    events.loc[future, "event_at"] = iso(future_at, np.zeros(future.sum(), dtype=bool))
    unparseable = pick(DIRT_RATES["unparseable_timestamps"], spare & ~future)
    events.loc[unparseable, "event_at"] = _BAD_TIMESTAMPS[rng.integers(0, len(_BAD_TIMESTAMPS), unparseable.sum())]

    missing = pick(DIRT_RATES["missing_required"], spare)
    which = rng.integers(0, 3, n)
    for code, column in enumerate(("user_id", "event_type", "event_at")):
        events.loc[missing & (which == code), column] = ""

    messy = pick(DIRT_RATES["messy_strings"], (events["event_type"] != "").to_numpy())
    style = rng.integers(0, 3, n)
    types = events["event_type"]
    upper, title, padded = (messy & (style == code) for code in range(3))
    events.loc[upper, "event_type"] = " " + types[upper].str.upper() + " "
    events.loc[title, "event_type"] = types[title].str.title()
    events.loc[padded, "event_type"] = types[padded] + "  "

    copies = 1 + pick(DIRT_RATES["duplicate_events"], np.ones(n, dtype=bool))
    return take_rows(events, np.repeat(np.arange(n), copies))


def malformed_lines(rng: np.random.Generator, events: pd.DataFrame) -> np.ndarray:
    """Lines with too few or too many columns, made from a sample of the ``events`` rows."""
    n = max(1, round(DIRT_RATES["malformed_lines"] * len(events)))
    sample = events.iloc[rng.integers(0, len(events), n)]
    short = sample["event_id"] + "," + sample["user_id"] + "," + sample["item_id"] + ",view"
    long = short + ",2026-01-01T00:00:00Z,,web,,1,9.99,extra,columns,more"
    return np.where(rng.random(n) < 0.5, short, long)


def append_malformed_lines(out_dir: Path, lines: np.ndarray) -> int:
    """Append the :func:`malformed_lines` to events.csv; returns how many."""
    with open(out_dir / landing.FILES["events"].filename, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return len(lines)
