"""The simulated shop: landing format, determinism, planted structure and dirt."""

from __future__ import annotations

import csv
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from recsys.dev.simulate import CATEGORIES, DIRT_RATES, simulate
from recsys.ingest import landing

END = pd.Timestamp("2026-10-31T23:59:59", tz="UTC")
CONSUMABLES = {category.name for category in CATEGORIES if category.repurchase_days > 0}


def read_events(directory) -> pd.DataFrame:
    """events.csv as the loader sees it: lines with the wrong number of fields left out."""
    with open(directory / "events.csv", newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return pd.DataFrame([row for row in rows if len(row) == len(header)], columns=header)


def read(directory, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


def parse_times(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")


def normalized_types(events: pd.DataFrame) -> pd.Series:
    return events["event_type"].str.strip().str.lower()


@pytest.fixture(scope="module")
def dirty_shop(tmp_path_factory):
    """A shop of 20k users (the default dirt), with its generation time."""
    directory = tmp_path_factory.mktemp("dirty_shop")
    started = time.perf_counter()
    counts = simulate(directory, users=20_000, items=3_000, seed=11)
    return directory, counts, time.perf_counter() - started


@pytest.fixture(scope="module")
def clean_shop(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clean_shop")
    counts = simulate(directory, users=5_000, items=800, seed=5, dirty=False)
    return directory, counts


@pytest.fixture(scope="module")
def events(dirty_shop) -> pd.DataFrame:
    return read_events(dirty_shop[0])


@pytest.fixture(scope="module")
def truth(dirty_shop) -> pd.DataFrame:
    return pd.read_csv(dirty_shop[0] / landing.TRUTH_FILE, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def events_with_categories(dirty_shop, events, truth) -> pd.DataFrame:
    """Item events of real, non-bot users with the item's top-level category."""
    items = read(dirty_shop[0], "items")
    items["top_category"] = items["category_path"].str.split(" > ").str[0]
    humans = truth.loc[truth["is_bot"] == "false", "user_id"]
    events = events[events["user_id"].isin(humans)]
    return events.merge(items[["item_id", "top_category"]], on="item_id")


def test_20k_users_generate_fast(dirty_shop):
    directory, counts, seconds = dirty_shop
    assert seconds < 30
    persons = pd.read_csv(directory / landing.PERSONS_TRUTH_FILE, dtype=str)
    assert counts["users"] == len(persons) == 20_000 + (persons["link"] != "self").sum()  # plus second accounts
    assert 8 * 20_000 < counts["events"] < 20 * 20_000


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate(tmp_path / name, users=1_500, items=200, days=30, seed=seed)
    files = [spec.filename for spec in landing.FILES.values()] + [landing.TRUTH_FILE, "manifest.json"]
    for filename in files:
        assert (tmp_path / "a" / filename).read_bytes() == (tmp_path / "b" / filename).read_bytes(), filename
    assert (tmp_path / "a" / "events.csv").read_bytes() != (tmp_path / "c" / "events.csv").read_bytes()


def test_every_landing_file_has_the_landing_columns_and_the_counted_rows(dirty_shop):
    directory, counts, _ = dirty_shop
    for name, spec in landing.FILES.items():
        with open(directory / spec.filename, newline="", encoding="utf-8") as handle:
            header, *rows = csv.reader(handle)
        assert header == spec.column_names
        assert len(rows) == counts[name]
    manifest = landing.read_manifest(directory)
    assert manifest["start_date"] == "2026-08-03"
    assert manifest["end_date"] == "2026-10-31"
    assert manifest["users"] == 20_000


def test_truth_is_written_apart_from_the_landing_files(dirty_shop, truth):
    directory = dirty_shop[0]
    assert list(truth.columns) == [
        "user_id",
        "top_category",
        "top_categories",
        "spending_tier",
        "promo_sensitivity",
        "is_bot",
        "top_leaf",
    ]
    assert truth["user_id"].tolist() == read(directory, "users")["user_id"].tolist()
    assert set(truth["top_category"]) <= {category.name for category in CATEGORIES}
    assert (truth["top_categories"].str.split("|").str[0] == truth["top_category"]).all()
    assert set(truth["spending_tier"]) == {"low", "mid", "high"}
    assert truth["promo_sensitivity"].astype(float).between(0, 1).all()
    for spec in landing.FILES.values():
        assert not {"top_category", "spending_tier", "promo_sensitivity", "is_bot", "top_leaf"} & set(spec.column_names)


def test_planted_top_category_is_the_most_interacted_category(events_with_categories, truth):
    counts = events_with_categories.groupby(["user_id", "top_category"]).size().unstack(fill_value=0)
    active = counts[counts.sum(axis=1) >= 10]
    planted = truth.set_index("user_id").loc[active.index, "top_category"]
    assert len(active) > 2_000
    assert (active.idxmax(axis=1) == planted).mean() > 0.7


def test_preferences_depend_on_demographics(events_with_categories, dirty_shop):
    users = read(dirty_shop[0], "users")
    gender = users.set_index("user_id")["gender"].str.strip().str.lower().str[0]
    events = events_with_categories.assign(gender=gender.loc[events_with_categories["user_id"]].to_numpy())
    beauty_share = (events["top_category"] == "Beauty").groupby(events["gender"]).mean()
    assert beauty_share["f"] > 1.5 * beauty_share["m"]


def test_high_spenders_buy_dearer_items(events, truth):
    purchases = events[normalized_types(events) == "purchase"]
    tier = truth.set_index("user_id")["spending_tier"].loc[purchases["user_id"]].to_numpy()
    mean_price = purchases["price"].astype(float).groupby(tier).mean()
    assert mean_price["high"] > 1.3 * mean_price["low"]


def test_promotion_sensitive_users_redeem_more(dirty_shop, truth):
    redemptions = read(dirty_shop[0], "redemptions")
    per_user = redemptions.groupby("user_id").size().reindex(truth["user_id"], fill_value=0).to_numpy()
    sensitivity = truth["promo_sensitivity"].astype(float).to_numpy()
    sensitive, insensitive = per_user[sensitivity >= 0.6].mean(), per_user[sensitivity < 0.2].mean()
    assert sensitive > 5 * insensitive


def test_promotion_orders_match_redemptions(dirty_shop):
    directory = dirty_shop[0]
    orders, redemptions = read(directory, "orders"), read(directory, "redemptions")
    promotions = read(directory, "promotions")
    with_promotion = orders[orders["promotion_id"] != ""]
    assert 10 <= len(promotions) <= 20
    assert sorted(with_promotion["order_id"]) == sorted(redemptions["order_id"])
    assert set(with_promotion["promotion_id"]) <= set(promotions["promotion_id"])
    joined = redemptions.merge(with_promotion, on="order_id", suffixes=("", "_order"))
    assert (joined["promotion_id"] == joined["promotion_id_order"]).all()
    assert (joined["user_id"] == joined["user_id_order"]).all()


def test_one_promotion_is_scheduled_after_the_window_and_unused(dirty_shop):
    directory = dirty_shop[0]
    promotions = read(directory, "promotions")
    starts, ends = parse_times(promotions["starts_at"]), parse_times(promotions["ends_at"])
    after = promotions[starts > END]
    assert len(after) == 1 and after.index[0] == len(promotions) - 1  # appended last: earlier rows unchanged
    assert starts.iloc[-1] == END.ceil("D") and ends.iloc[-1] - starts.iloc[-1] == pd.Timedelta(days=7)
    assert (ends.iloc[:-1] <= END.ceil("D")).all()
    scheduled = after["promotion_id"].iloc[0]
    assert scheduled not in set(read(directory, "orders")["promotion_id"])
    assert scheduled not in set(read(directory, "redemptions")["promotion_id"])


def test_every_order_line_is_a_purchase_event(dirty_shop, events):
    directory = dirty_shop[0]
    purchases = events[normalized_types(events) == "purchase"].drop_duplicates()
    lines = read(directory, "order_lines").merge(read(directory, "orders"), on="order_id")
    line_keys = (
        lines["user_id"]
        + "|"
        + lines["item_id"]
        + "|"
        + parse_times(lines["ordered_at"]).astype(str)
        + "|"
        + lines["quantity"]
        + "|"
        + lines["unit_price"]
    )
    event_keys = (
        purchases["user_id"]
        + "|"
        + purchases["item_id"]
        + "|"
        + parse_times(purchases["event_at"]).astype(str)
        + "|"
        + purchases["quantity"]
        + "|"
        + purchases["price"]
    )
    assert sorted(line_keys) == sorted(event_keys)


def test_consumables_are_bought_again(dirty_shop):
    directory = dirty_shop[0]
    lines = read(directory, "order_lines").merge(read(directory, "orders"), on="order_id")
    items = read(directory, "items")
    lines = lines.merge(items[["item_id", "category_path"]], on="item_id")
    lines["consumable"] = lines["category_path"].str.split(" > ").str[0].isin(CONSUMABLES)
    orders_per_pair = lines.groupby(["user_id", "item_id", "consumable"]).size().rename("orders").reset_index()
    repeat_share = (orders_per_pair["orders"] > 1).groupby(orders_per_pair["consumable"]).mean()
    assert (orders_per_pair["orders"][orders_per_pair["consumable"]] >= 3).sum() > 50
    assert repeat_share[True] > 5 * repeat_share[False]


def test_weekends_are_busier_and_late_signups_are_colder(dirty_shop, events, truth):
    directory = dirty_shop[0]
    humans = truth.loc[truth["is_bot"] == "false", "user_id"]
    events = events[events["user_id"].isin(humans)]
    at = parse_times(events["event_at"])
    at = at[at <= END]
    per_day = at.dt.floor("D").value_counts()
    weekend = per_day.index.day_of_week >= 5
    assert per_day[weekend].mean() > 1.2 * per_day[~weekend].mean()

    users = read(directory, "users")
    users = users[users["user_id"].isin(humans)]
    late = parse_times(users["signup_at"]) > pd.Timestamp("2026-10-15", tz="UTC")
    per_user = events.groupby("user_id").size().reindex(users["user_id"], fill_value=0).to_numpy()
    assert per_user[late.to_numpy()].mean() < 0.5 * per_user[~late.to_numpy()].mean()
    assert (per_user[late.to_numpy()] == 0).mean() > 0.5


def test_ratings_are_higher_for_items_users_like(dirty_shop, truth):
    directory = dirty_shop[0]
    reviews = read(directory, "reviews").merge(truth[["user_id", "top_category"]], on="user_id")
    items = read(directory, "items")
    reviews = reviews.merge(items[["item_id", "category_path"]], on="item_id")
    liked = reviews["category_path"].str.split(" > ").str[0] == reviews["top_category"]
    ratings = reviews["rating"].astype(int)
    assert set(ratings) == {1, 2, 3, 4, 5}
    assert ratings[liked].mean() > ratings[~liked].mean() + 0.8


def test_dirt_appears_at_the_documented_rates(dirty_shop, events):
    directory, counts, _ = dirty_shop
    n = len(events)
    duplicates = events.duplicated().sum() / n
    assert duplicates == pytest.approx(DIRT_RATES["duplicate_events"], rel=0.2)

    at = parse_times(events["event_at"])
    unparseable = (at.isna() & (events["event_at"] != "")).mean()
    assert unparseable == pytest.approx(DIRT_RATES["unparseable_timestamps"] * 0.95, rel=0.35)
    assert (at > END).mean() == pytest.approx(DIRT_RATES["future_timestamps"] * 0.95, rel=0.3)

    users, items = read(directory, "users"), read(directory, "items")
    unknown = ~events["user_id"].isin(users["user_id"]) & (events["user_id"] != "")
    unknown |= ~events["item_id"].isin(items["item_id"]) & (events["item_id"] != "")
    assert unknown.mean() == pytest.approx(DIRT_RATES["unknown_ids"] * 0.95, rel=0.3)
    assert (events["session_id"] == "").mean() == pytest.approx(DIRT_RATES["missing_optional"], rel=0.2)
    padded = events["event_type"] != events["event_type"].str.strip().str.lower()
    assert padded.mean() == pytest.approx(DIRT_RATES["messy_strings"], rel=0.2)

    prices = pd.to_numeric(events["price"])
    quantities = pd.to_numeric(events["quantity"])
    assert ((prices <= 0) | (quantities <= 0)).sum() > 0
    assert (pd.to_numeric(items["price"]) <= 0).sum() > 0
    assert (items["brand"] != items["brand"].str.strip()).sum() > 0
    assert users["gender"].isin(["F", " Male ", "FEMALE"]).sum() > 0
    assert (users["region"] == users["region"].str.upper()).sum() > 0

    malformed = counts["events"] - n
    linked = events["event_id"].str.match(r"E[AK]\d").sum()  # views of second accounts and shared devices
    assert malformed == max(1, round(DIRT_RATES["malformed_lines"] * (n - malformed - linked)))


def test_bots_view_thousands_of_items_and_never_buy(dirty_shop, events, truth):
    bots = truth.loc[truth["is_bot"] == "true", "user_id"]
    assert len(bots) == round(DIRT_RATES["bot_users"] * 20_000)
    bot_events = events[events["user_id"].isin(bots)]
    types = normalized_types(bot_events)
    assert (bot_events.groupby("user_id").size() >= 1_000).all()
    assert set(types) <= {"view", ""}
    orders = read(dirty_shop[0], "orders")
    assert not orders["user_id"].isin(bots).any()


def test_clean_shop_has_no_dirt(clean_shop):
    directory, counts = clean_shop
    with open(directory / "events.csv", newline="", encoding="utf-8") as handle:
        assert {len(row) for row in csv.reader(handle)} == {len(landing.FILES["events"].columns)}
    events = read(directory, "events")
    users, items = read(directory, "users"), read(directory, "items")
    truth = pd.read_csv(directory / landing.TRUTH_FILE, dtype=str)
    assert len(events) == counts["events"]
    assert not events.duplicated().any()
    assert events["event_id"].is_unique
    assert set(events["event_type"]) == set(landing.EVENT_TYPES) - {"click"}  # clicks come from the serving API
    at = parse_times(events["event_at"])
    assert at.notna().all() and (at <= END).all()
    assert events["user_id"].isin(users["user_id"]).all()
    assert events.loc[events["event_type"] != "search", "item_id"].isin(items["item_id"]).all()
    assert (events.loc[events["event_type"] == "search", "query"] != "").all()
    assert (pd.to_numeric(events["price"]).dropna() > 0).all()
    assert (pd.to_numeric(events["quantity"]).dropna() > 0).all()
    assert (events[["session_id", "platform"]] != "").all().all()
    assert set(users["gender"]) == {"female", "male", "other"}
    assert (items["brand"] == items["brand"].str.strip()).all()
    assert (pd.to_numeric(items["price"]) > 0).all()
    assert (truth["is_bot"] == "false").all()
    for name, spec in landing.FILES.items():
        frame = read(directory, name)
        required = [column.name for column in spec.columns if column.required]
        assert (frame[required] != "").all().all(), name


def test_clean_shop_is_consistent_in_time(clean_shop):
    directory, _ = clean_shop
    events = read(directory, "events")
    users = read(directory, "users").set_index("user_id")
    items = read(directory, "items").set_index("item_id")
    at = parse_times(events["event_at"])
    assert (at >= parse_times(users.loc[events["user_id"], "signup_at"]).to_numpy()).all()
    with_item = events["item_id"] != ""
    listed = parse_times(items.loc[events.loc[with_item, "item_id"], "created_at"]).to_numpy()
    assert (at[with_item] >= listed).all()
    assert events["event_at"].str.endswith("Z").any() and not events["event_at"].str.endswith("Z").all()
    assert (items["stock_quantity"].astype(int) == 0).mean() == pytest.approx(0.05, abs=0.02)
    assert (users["is_personalization_allowed"] == "false").mean() == pytest.approx(0.03, abs=0.01)
    statuses = read(directory, "orders")["status"].value_counts(normalize=True)
    assert statuses["completed"] > 0.85 and statuses["cancelled"] > 0.02 and statuses["returned"] > 0.01


def test_too_few_items_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="items >= 37"):
        simulate(tmp_path, users=10, items=10)


def test_end_date_moves_the_window(tmp_path):
    simulate(tmp_path, users=500, items=100, days=10, seed=1, end_date=date(2025, 1, 31), dirty=False)
    at = parse_times(read(tmp_path, "events")["event_at"])
    assert at.min() >= pd.Timestamp("2025-01-22", tz="UTC")
    assert at.max() < pd.Timestamp("2025-02-01", tz="UTC")
    assert np.isin(read(tmp_path, "users")["signup_at"].str[:4], ["2022", "2023", "2024", "2025"]).all()
