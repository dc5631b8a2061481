"""Planted cross-platform identities of the simulated shop: second accounts, devices, shared devices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.dev.simulate.shop import HOUR, IDENTITY_RATES, PLATFORMS, IdCounter, Window, concat_rows, iso


def add_linked_accounts(
    rng: np.random.Generator,
    tables: dict[str, pd.DataFrame],
    is_bot: np.ndarray,
    window: Window,
    item_ids: np.ndarray,
    ids: IdCounter,
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
    redrawn, so every earlier row stays byte-identical. ``item_ids`` are the
    catalogue's; the new ids are numbered after ``ids``' (the chunks before).

    Returns
    -------
    DataFrame
        The planted persons: ``user_id`` (every account), ``person_id`` (the
        person's first account), ``link`` (``self``, ``email`` or ``device``).
    """
    users, events = tables["users"], tables["events"]
    events["device_id"] = "D-" + events["user_id"].str.strip()
    at = _epoch_seconds(events["event_at"])
    is_view = (
        (events["event_type"] == "view")
        & (at > 0)
        & (at < window.end)
        & events["item_id"].isin(item_ids)
        & events["user_id"].isin(users["user_id"])
    )
    # ids only: the few views copied below are taken from events whole
    views = events.loc[is_view, ["event_id", "user_id"]].drop_duplicates("event_id")
    humans = users["user_id"].to_numpy()[: len(is_bot)][~is_bot]
    active = np.intersect1d(humans, views["user_id"].unique())
    first = active[rng.random(len(active)) < IDENTITY_RATES["second_account"]]
    n = len(first)
    first_account = ids.take("account", n) + 1
    number = np.arange(first_account, first_account + n)
    second = ("A" + pd.Series(number).astype(str).str.zfill(6)).to_numpy(dtype=object)
    by_email = rng.random(n) < 0.5

    # the person's views, up to 3 at random, copied to the second account
    picked = views[views["user_id"].isin(first)].assign(_key=lambda frame: rng.random(len(frame)))
    picked = picked.sort_values(["user_id", "_key"], kind="stable")
    picked = events.loc[picked.index[(picked.groupby("user_id").cumcount() < 3).to_numpy()]]
    index_of = pd.Series(np.arange(n), index=first)
    which = index_of[picked["user_id"]].to_numpy()
    rows = users.set_index("user_id").loc[first].reset_index()
    platform = np.array(PLATFORMS, dtype=object)
    other = rows["platform"].map({name: code for code, name in enumerate(PLATFORMS)}).fillna(0)
    second_platform = platform[(other.to_numpy(dtype=np.int64) + rng.integers(1, 3, n)) % 3]
    first_copy = ids.take("account_event", len(picked)) + 1
    copy_number = pd.Series(np.arange(first_copy, first_copy + len(picked)))
    copies = picked.assign(
        event_id=("EA" + copy_number.astype(str).str.zfill(8)).to_numpy(),
        user_id=second[which],
        session_id=("SA" + pd.Series(number[which]).astype(str).str.zfill(7)).to_numpy(),
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
    on_shared = events.loc[views[views["user_id"].isin(sharers.ravel())].drop_duplicates("user_id").index]
    first_device = ids.take("shared_device", n_shared) + 1
    device = pd.Series(np.repeat(np.arange(first_device, first_device + n_shared), per_device), index=sharers.ravel())
    first_shared = ids.take("shared_event", len(on_shared)) + 1
    shared_number = pd.Series(np.arange(first_shared, first_shared + len(on_shared)))
    shared = on_shared.assign(
        event_id=("EK" + shared_number.astype(str).str.zfill(8)).to_numpy(),
        device_id=("SHARED-" + device[on_shared["user_id"]].astype(str).str.zfill(3)).to_numpy(),
    )
    tables["users"] = pd.concat([users, rows], ignore_index=True)
    tables["events"] = concat_rows(events, copies, shared)
    accounts = tables["users"]["user_id"].to_numpy()
    person = pd.Series(accounts, index=accounts)
    person[second] = first
    link = np.full(len(accounts), "self", dtype=object)
    if n:
        link[-n:] = np.where(by_email, "email", "device")
    return pd.DataFrame({"user_id": accounts, "person_id": person.to_numpy(), "link": link})


def _epoch_seconds(event_at: pd.Series) -> np.ndarray:
    """Epoch seconds of ISO 8601 times (with or without ``Z``), -1 where unparseable (dirt); parsed by Arrow."""
    text = pc.utf8_slice_codeunits(pa.array(event_at, type=pa.large_string()), 0, 19)
    parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    return pc.fill_null(parsed.cast(pa.int64()), -1).to_numpy()
