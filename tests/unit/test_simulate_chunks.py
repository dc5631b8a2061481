"""A big shop is simulated in chunks of users: ids stay unique, rows refer to written users, one chunk is the shop.

The shops here are small (3,000 users in two chunks of 1,500, 30 days), a second or so each. Also the
simulator's CSV writer, which must write the bytes ``DataFrame.to_csv`` writes.
"""

from __future__ import annotations

import csv
import filecmp
import json

import numpy as np
import pandas as pd
import pytest

from recsys.dev.simulate import DIRT_RATES, simulate
from recsys.dev.simulate.writing import write_csv
from recsys.ingest import landing

SHOP = {"users": 3_000, "items": 300, "days": 30, "seed": 3}


def read(directory, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / landing.FILES[name].filename, dtype=str, keep_default_na=False)


def read_events(directory) -> pd.DataFrame:
    """events.csv as the loader sees it: lines with the wrong number of fields left out."""
    with open(directory / "events.csv", newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return pd.DataFrame([row for row in rows if len(row) == len(header)], columns=header)


def data_lines(path) -> int:
    return path.read_bytes().count(b"\n") - 1


@pytest.fixture(scope="module")
def clean_chunks(tmp_path_factory):
    """A clean shop of 3,000 users in two chunks of 1,500."""
    directory = tmp_path_factory.mktemp("clean_chunks")
    return directory, simulate(directory, **SHOP, chunk_users=1_500, dirty=False)


@pytest.fixture(scope="module")
def dirty_chunks(tmp_path_factory):
    """The same shop with the default dirt."""
    directory = tmp_path_factory.mktemp("dirty_chunks")
    return directory, simulate(directory, **SHOP, chunk_users=1_500)


@pytest.mark.parametrize("shop", ["clean_chunks", "dirty_chunks"])
def test_ids_continue_across_chunks(shop, request):
    """3,000 users U000001..U003000 (then the second accounts A...), every id unique in its file."""
    directory, _ = request.getfixturevalue(shop)
    users = read(directory, "users")["user_id"]
    assert users.is_unique
    registered = users[users.str.startswith("U")]
    assert registered.tolist() == [f"U{number:06d}" for number in range(1, 3_001)]
    assert users.str.startswith("A").sum() > 0
    for name, key in [("orders", "order_id"), ("reviews", "review_id")]:
        assert read(directory, name)[key].is_unique, name
    # exact copies (the duplicate_events dirt) share their event id; no two different events do
    events = read_events(directory).drop_duplicates()
    assert events["event_id"].is_unique
    # a session belongs to one user, though both chunks number their sessions from 0
    sessions = events[(events["session_id"] != "") & events["user_id"].isin(users)]
    assert sessions.groupby("session_id")["user_id"].nunique().max() == 1
    assert sessions["session_id"].nunique() > 1_000


def test_every_row_of_a_clean_shop_refers_to_a_written_user(clean_chunks):
    directory, _ = clean_chunks
    users = set(read(directory, "users")["user_id"])
    events = read_events(directory)
    assert set(events["user_id"]) <= users
    assert set(read(directory, "orders")["user_id"]) <= users
    assert set(read(directory, "reviews")["user_id"]) <= users
    edges = read(directory, "social_edges")
    assert set(edges["from_user_id"]) | set(edges["to_user_id"]) <= users
    assert set(read(directory, "order_lines")["order_id"]) <= set(read(directory, "orders")["order_id"])
    # both chunks shop: users of the second half have events too
    assert (events["user_id"] > "U001500").sum() > 1_000


def test_unknown_users_of_a_dirty_shop_are_only_its_dirt(dirty_chunks):
    """Purchases always name a written user; other events miss one at about the ``unknown_ids`` rate."""
    directory, _ = dirty_chunks
    users = set(read(directory, "users")["user_id"])
    events = read_events(directory)
    purchases = events["event_type"].str.strip().str.lower() == "purchase"
    assert events.loc[purchases, "user_id"].isin(users).all()
    unknown = ~events["user_id"].isin(users) & (events["user_id"] != "")
    assert 0 < unknown.mean() < 2 * DIRT_RATES["unknown_ids"]


@pytest.mark.parametrize("shop", ["clean_chunks", "dirty_chunks"])
def test_truth_has_one_row_per_user_and_counts_are_the_lines_written(shop, request):
    directory, counts = request.getfixturevalue(shop)
    truth = pd.read_csv(directory / landing.TRUTH_FILE, dtype=str, keep_default_na=False)
    users = read(directory, "users")["user_id"]
    assert truth["user_id"].is_unique
    assert set(truth["user_id"]) == set(users)
    assert counts == {name: data_lines(directory / spec.filename) for name, spec in landing.FILES.items()}
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["users"], manifest["chunk_users"]) == (3_000, 1_500)


def test_dirty_chunks_each_have_a_bot(dirty_chunks):
    directory, _ = dirty_chunks
    truth = pd.read_csv(directory / landing.TRUTH_FILE, dtype=str, keep_default_na=False)
    bots = truth.loc[truth["is_bot"] == "true", "user_id"]
    assert (bots <= "U001500").any() and (bots > "U001500").any()


def test_one_chunk_is_the_shop_without_chunks(tmp_path):
    """``users <= chunk_users`` writes the same bytes as ``chunk_users=None`` (every user at once)."""
    shop = {**SHOP, "users": 1_500}
    simulate(tmp_path / "none", **shop, chunk_users=None)
    simulate(tmp_path / "exact", **shop, chunk_users=1_500)
    simulate(tmp_path / "default", **shop)
    files = [spec.filename for spec in landing.FILES.values()]
    files += [landing.TRUTH_FILE, landing.PERSONS_TRUTH_FILE, "manifest.json"]
    for other in ("exact", "default"):
        match, mismatch, errors = filecmp.cmpfiles(tmp_path / "none", tmp_path / other, files, shallow=False)
        assert (mismatch, errors) == ([], []), other
        assert len(match) == len(files)


def test_chunked_shops_are_deterministic(tmp_path, clean_chunks):
    simulate(tmp_path, **SHOP, chunk_users=1_500, dirty=False)
    for spec in landing.FILES.values():
        assert filecmp.cmp(tmp_path / spec.filename, clean_chunks[0] / spec.filename, shallow=False), spec.filename


def test_activity_multiplies_the_events(tmp_path):
    counts = {
        activity: simulate(tmp_path / str(activity), **SHOP, dirty=False, activity=activity)["events"]
        for activity in (1.0, 2.0)
    }
    assert counts[2.0] > 1.6 * counts[1.0]


@pytest.mark.parametrize("arguments", [{"activity": 0.0}, {"chunk_users": 0}])
def test_no_activity_or_empty_chunks_is_an_error(tmp_path, arguments):
    with pytest.raises(ValueError, match="activity"):
        simulate(tmp_path, **SHOP, **arguments)


def test_the_csv_writer_writes_what_pandas_writes(tmp_path):
    """Quoting only where needed, empty missing values, "%.2f" floats (ties, -0.0, huge), then appended rows."""
    texts = ["E1", "E,2", 'E"3', "E\n4", "\u00e9\r5", " 6 ", "", "  VIEW  ", 'x,"y"', "U7"]
    frame = pd.DataFrame(
        {
            "event_id": texts,
            "user_id": pd.array([None, *texts[1:]], dtype="str"),
            "event_type": np.array(texts[::-1], dtype=object),
            "quantity": pd.array([1, None, -2, 0, 3, 4, None, 5, 6, 7], dtype="Int64"),
            "price": [1.005, 2.675, 0.125, -0.0, -1e-17, np.nan, 1e17, 12.5, -3.333, np.inf],
        }
    )
    expected = frame.reindex(columns=landing.FILES["events"].column_names)
    first = expected.to_csv(index=False, float_format="%.2f", lineterminator="\n")
    more = expected.iloc[3:].to_csv(index=False, header=False, float_format="%.2f", lineterminator="\n")
    assert write_csv(tmp_path, "events", frame) == 10
    assert write_csv(tmp_path, "events", frame.iloc[3:], append=True) == 7
    assert (tmp_path / "events.csv").read_bytes() == (first + more).encode()
