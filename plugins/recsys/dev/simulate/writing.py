"""The simulated shop as landing tables: ids, names and ISO timestamps, the planted truth, the CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.dev.simulate.shop import (
    CATEGORIES,
    LEAF_PATHS,
    ORDER_STATUSES,
    PLATFORMS,
    PROMOTION_TYPES,
    SPENDING_TIERS,
    Catalogue,
    IdCounter,
    People,
    iso,
)
from recsys.ingest import landing

_NAIVE_TIMESTAMP_SHARE = 0.3
#: rows put together at a time by :func:`write_csv`
_BLOCK_ROWS = 500_000


def format_events(events: pd.DataFrame, people: People, catalogue: Catalogue, ids: IdCounter) -> pd.DataFrame:
    """The ``events`` landing rows, in time order, with their ids (event and session numbers after ``ids``')."""
    events = events.sort_values(["at", "session", "event_type"], kind="stable", ignore_index=True)
    item = events["item"].to_numpy()
    item_ids = np.where(item >= 0, catalogue.item_ids[np.maximum(item, 0)], "")
    first = ids.take("event", len(events)) + 1
    # sessions are numbered from 0 in each chunk
    first_session = ids.take("session", int(events["session"].max()) + 1 if len(events) else 0)
    return pd.DataFrame(
        {
            "event_id": "E" + pd.Series(np.arange(first, first + len(events))).astype(str).str.zfill(8),
            "user_id": people.user_ids[events["user"].to_numpy()],
            "item_id": item_ids,
            "event_type": np.array(landing.EVENT_TYPES, dtype=object)[events["event_type"].to_numpy()],
            "event_at": events["at"].to_numpy(),
            "session_id": "S" + (events["session"] + first_session).astype(str).str.zfill(8),
            "platform": np.array(PLATFORMS, dtype=object)[events["platform"].to_numpy()],
            "query": events["query"].fillna(""),
            "quantity": events["quantity"].astype("Int64"),
            "price": events["price"],
        }
    )


def format_orders(
    orders: pd.DataFrame, lines: pd.DataFrame, people: People, catalogue: Catalogue, ids: IdCounter
) -> dict[str, pd.DataFrame]:
    """The ``orders``, ``order_lines`` and ``redemptions`` landing rows, with their ids (after ``ids``' orders)."""
    orders = orders.sort_values(["at", "session"], ignore_index=True)
    first = ids.take("order", len(orders)) + 1
    order_ids = "O" + pd.Series(np.arange(first, first + len(orders))).astype(str).str.zfill(7)
    order_id_of = pd.Series(order_ids.to_numpy(), index=orders["session"].to_numpy())
    promotion = orders["promotion"].to_numpy()
    promotion_ids = np.where(promotion >= 0, "P" + pd.Series(promotion + 1).astype(str).str.zfill(3), "")
    user_ids = people.user_ids[orders["user"].to_numpy()]
    lines = lines.assign(order_id=order_id_of[lines["session"]].to_numpy()).sort_values(
        ["order_id", "item"], ignore_index=True
    )
    used = promotion >= 0
    return {
        "orders": pd.DataFrame(
            {
                "order_id": order_ids,
                "user_id": user_ids,
                "ordered_at": orders["at"],
                "status": np.array(ORDER_STATUSES, dtype=object)[orders["status"].to_numpy()],
                "platform": np.array(PLATFORMS, dtype=object)[orders["platform"].to_numpy()],
                "promotion_id": promotion_ids,
            }
        ),
        "order_lines": pd.DataFrame(
            {
                "order_id": lines["order_id"],
                "item_id": catalogue.item_ids[lines["item"].to_numpy()],
                "quantity": lines["quantity"].astype(int),
                "unit_price": lines["unit_price"],
                "discount_amount": lines["discount_amount"],
            }
        ),
        "redemptions": pd.DataFrame(
            {
                "promotion_id": promotion_ids[used],
                "user_id": user_ids[used],
                "order_id": order_ids[used].to_numpy(),
                "redeemed_at": orders["at"].to_numpy()[used],
            }
        ),
    }


def format_reviews(reviews: pd.DataFrame, people: People, catalogue: Catalogue, ids: IdCounter) -> pd.DataFrame:
    """The ``reviews`` landing rows, in time order, with their ids (after ``ids``' reviews)."""
    reviews = reviews.sort_values(["at", "user", "item"], ignore_index=True)
    first = ids.take("review", len(reviews)) + 1
    return pd.DataFrame(
        {
            "review_id": "R" + pd.Series(np.arange(first, first + len(reviews))).astype(str).str.zfill(7),
            "user_id": people.user_ids[reviews["user"].to_numpy()],
            "item_id": catalogue.item_ids[reviews["item"].to_numpy()],
            "rating": reviews["rating"],
            "reviewed_at": reviews["at"],
            "review_text": reviews["review_text"],
        }
    )


def format_promotions(promotions: pd.DataFrame) -> pd.DataFrame:
    """Promotions with their type and category names, as the landing file spells them."""
    category = promotions["category"].to_numpy()
    names = np.array([c.name for c in CATEGORIES], dtype=object)
    return promotions.assign(
        promotion_type=np.array(PROMOTION_TYPES, dtype=object)[promotions["kind"].to_numpy()],
        category=np.where(category >= 0, names[np.maximum(category, 0)], ""),
    )


def format_timestamps(rng: np.random.Generator, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Epoch seconds to ISO 8601 strings, with ``Z`` or (sometimes) without an offset."""
    frame = frame.copy(deep=False)  # the new columns only: the input is left as it was (copy-on-write)
    for column in landing.FILES[name].columns:
        if column.type == "timestamp":
            frame[column.name] = iso(frame[column.name].to_numpy(), rng.random(len(frame)) < _NAIVE_TIMESTAMP_SHARE)
    return frame


def make_truth(people: People, is_bot: np.ndarray) -> pd.DataFrame:
    """The planted truth per user: top categories, spending tier, promotion sensitivity, bot, top leaf."""
    names = np.array([c.name for c in CATEGORIES], dtype=object)
    top3 = np.argsort(-people.preference, axis=1, kind="stable")[:, :3]
    return pd.DataFrame(
        {
            "user_id": people.user_ids,
            "top_category": names[top3[:, 0]],
            "top_categories": pd.Series(names[top3[:, 0]]) + "|" + names[top3[:, 1]] + "|" + names[top3[:, 2]],
            "spending_tier": np.array(SPENDING_TIERS, dtype=object)[people.tier],
            "promo_sensitivity": people.sensitivity.round(3),
            "is_bot": np.where(is_bot, "true", "false"),
            # the leaf category the user views most (its share of the user's leaf draws is the largest)
            "top_leaf": np.array(LEAF_PATHS, dtype=object)[np.diff(people.leaf_cdf, axis=1, prepend=0).argmax(axis=1)],
        }
    )


def write_csv(out_dir: Path, name: str, frame: pd.DataFrame, append: bool = False) -> int:
    """Write one landing table as its CSV file, or ``append`` its rows (no header); returns the rows written.

    ``to_csv`` a block of rows at a time: its text of a block of a big shop's events is about as large again
    as the block.
    """
    spec = landing.FILES[name]
    with open(out_dir / spec.filename, "a" if append else "w", encoding="utf-8", newline="") as handle:
        for start in range(0, max(len(frame), 1), _BLOCK_ROWS):
            block = frame.iloc[start : start + _BLOCK_ROWS].reindex(columns=spec.column_names)  # request_id: empty
            header = not append and start == 0
            block.to_csv(handle, index=False, header=header, float_format="%.2f", lineterminator="\n")
    return len(frame)


def write_truth(out_dir: Path, people: People, is_bot: np.ndarray, persons: pd.DataFrame, append: bool = False) -> None:
    """Write the planted truth, or ``append`` its rows: per user (a second account inherits its person's), and
    the persons."""
    truth_path = out_dir / landing.TRUTH_FILE
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth = make_truth(people, is_bot)
    second = persons[persons["user_id"] != persons["person_id"]]
    extra = truth.set_index("user_id").loc[second["person_id"]].reset_index(drop=True)
    truth = pd.concat([truth, extra.assign(user_id=second["user_id"].to_numpy())[truth.columns]], ignore_index=True)
    mode = {"mode": "a" if append else "w", "header": not append, "index": False, "lineterminator": "\n"}
    truth.to_csv(truth_path, **mode)
    persons.to_csv(out_dir / landing.PERSONS_TRUTH_FILE, **mode)
