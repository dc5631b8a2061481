"""Planted cross-platform identities of the simulated shop: second accounts, devices, shared devices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.dev.simulate.shop import HOUR, IDENTITY_RATES, PLATFORMS, Window, iso


def add_linked_accounts(
    rng: np.random.Generator, tables: dict[str, pd.DataFrame], is_bot: np.ndarray, window: Window
) -> pd.DataFrame:
    """Give events a ``device_id``, some people a second account, and a few devices to many accounts.

    Every event gets the device id of its account (``D-<user_id>``). A share
    :data:`IDENTITY_RATES` ``second_account`` of the human users with a valid view
    gets a second account (ids ``A000001``...) on another platform, appended to
    ``users`` and to ``events`` (copies of up to 3 of the person's views, same items
    and times). Half of them are linked by the same e-mail written differently
    (case, padding), half by events on the person's device (with an e-mail of
    their own). About one in ten second accounts states a birth year one off (an
    attribute conflict). ``shared_devices`` devices (a shop's tablet) each carry
    one view of ``accounts_per_shared_device`` random accounts: over-shared keys
    that must not link anyone. Tables are changed in place; nothing before is
    redrawn, so every earlier row stays byte-identical.

    Returns
    -------
    DataFrame
        The planted persons: ``user_id`` (every account), ``person_id`` (the
        person's first account), ``link`` (``self``, ``email`` or ``device``).
    """
    users, events = tables["users"], tables["events"]
    events["device_id"] = "D-" + events["user_id"].str.strip()
    parsed = pd.to_datetime(events["event_at"].str.slice(0, 19), format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    at = (parsed - pd.Timestamp("1970-01-01")).dt.total_seconds().fillna(-1).to_numpy(dtype=np.int64)
    views = events[
        (events["event_type"] == "view")
        & (at > 0)
        & (at < window.end)
        & events["item_id"].isin(tables["items"]["item_id"])
        & events["user_id"].isin(users["user_id"])
    ].drop_duplicates("event_id")
    humans = users["user_id"].to_numpy()[: len(is_bot)][~is_bot]
    active = np.intersect1d(humans, views["user_id"].unique())
    first = active[rng.random(len(active)) < IDENTITY_RATES["second_account"]]
    n = len(first)
    second = ("A" + pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(6)).to_numpy(dtype=object)
    by_email = rng.random(n) < 0.5

    # the person's views, up to 3 at random, copied to the second account
    picked = views[views["user_id"].isin(first)].assign(_key=lambda frame: rng.random(len(frame)))
    picked = picked.sort_values(["user_id", "_key"], kind="stable")
    picked = picked[picked.groupby("user_id").cumcount() < 3].drop(columns="_key")
    index_of = pd.Series(np.arange(n), index=first)
    which = index_of[picked["user_id"]].to_numpy()
    rows = users.set_index("user_id").loc[first].reset_index()
    platform = np.array(PLATFORMS, dtype=object)
    other = rows["platform"].map({name: code for code, name in enumerate(PLATFORMS)}).fillna(0)
    second_platform = platform[(other.to_numpy(dtype=np.int64) + rng.integers(1, 3, n)) % 3]
    copies = picked.assign(
        event_id=("EA" + pd.Series(np.arange(1, len(picked) + 1)).astype(str).str.zfill(8)).to_numpy(),
        user_id=second[which],
        session_id=("SA" + pd.Series(which + 1).astype(str).str.zfill(7)).to_numpy(),
        platform=second_platform[which],
        device_id=np.where(by_email[which], "D-" + second[which], "D-" + first[which]),
    )
    first_seen = (
        pd.Series(at[events.index.get_indexer(picked.index)]).groupby(which).min().reindex(np.arange(n)).to_numpy()
    )
    email = rows["email"].astype(str)
    variants = np.where(rng.random(n) < 0.5, "  " + email.str.upper(), email.str.capitalize() + " ")
    birth_year = rows["birth_year"].astype("Int64")
    typo = rng.random(n) < 0.1
    rows = rows.assign(
        user_id=second,
        signup_at=iso(first_seen - HOUR, np.zeros(n, dtype=bool)),
        platform=second_platform,
        email=np.where(by_email, variants, "alt." + email.str.strip()),
        phone="",
        birth_year=birth_year.where(~typo, birth_year + 1),
    )[users.columns]

    # a few devices with one view each of many accounts: must not link them
    per_device = int(IDENTITY_RATES["accounts_per_shared_device"])
    n_shared = min(
        max(1, len(users) * int(IDENTITY_RATES["shared_devices_per_1000_users"]) // 1000), len(active) // per_device
    )
    sharers = rng.choice(active, size=(n_shared, per_device), replace=False)
    on_shared = views[views["user_id"].isin(sharers.ravel())].drop_duplicates("user_id")
    device = pd.Series(np.repeat(np.arange(1, n_shared + 1), sharers.shape[1]), index=sharers.ravel())
    shared = on_shared.assign(
        event_id=("EK" + pd.Series(np.arange(1, len(on_shared) + 1)).astype(str).str.zfill(8)).to_numpy(),
        device_id=("SHARED-" + device[on_shared["user_id"]].astype(str).str.zfill(3)).to_numpy(),
    )
    tables["users"] = pd.concat([users, rows], ignore_index=True)
    tables["events"] = pd.concat([events, copies, shared], ignore_index=True)
    accounts = tables["users"]["user_id"].to_numpy()
    person = pd.Series(accounts, index=accounts)
    person[second] = first
    link = np.full(len(accounts), "self", dtype=object)
    if n:
        link[-n:] = np.where(by_email, "email", "device")
    return pd.DataFrame({"user_id": accounts, "person_id": person.to_numpy(), "link": link})
