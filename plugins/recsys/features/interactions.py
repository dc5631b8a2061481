"""Interaction data for the recommenders: read, encode, weight, split by time.

The warehouse fact ``analytics.fct_interactions`` is read with ``COPY ... TO STDOUT`` (only the four columns
the models need, timestamps as epoch seconds so nothing is parsed row by row), user and item ids are encoded
to contiguous integer indices, and every matrix built from them is a ``scipy.sparse`` CSR array: there is
never a dense user x item matrix, so one million users x 100k items x tens of millions of events stays within
a few GiB. Per event the encoded data costs 17 bytes (two int32 indices, an int8 event type code and a float64
timestamp), so 50 million events hold ~850 MB.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import scipy.sparse as sp
from psycopg2 import sql

from recsys.db import frames
from recsys.db.warehouse import DBT_PROJECT_FILE, dbt_vars
from recsys.features import social
from recsys.features.profile_source import ProfileSource
from recsys.ingest import landing

logger = logging.getLogger(__name__)

#: event types the models understand; the index is the ``event_type`` code
EVENT_TYPES: tuple[str, ...] = tuple(name for name in landing.EVENT_TYPES if name != "search")


def read_event_weights(path: Path = DBT_PROJECT_FILE) -> dict[str, float]:
    """The var ``event_weights`` of the dbt project: what dbt's interest tags and every model here weigh events by.

    Raises
    ------
    ValueError
        When an event type is unknown or a weight is negative (implicit-feedback confidences add up).
    """
    weights = {name: float(value) for name, value in dbt_vars(path)["event_weights"].items()}
    unknown = set(weights) - set(EVENT_TYPES)
    if unknown or min(weights.values()) < 0:
        raise ValueError(f"{path}: event_weights needs non-negative weights of {EVENT_TYPES}, got {weights}")
    return weights


#: default confidence per event type (``remove_from_cart`` adds nothing), from the dbt project
EVENT_WEIGHTS: dict[str, float] = read_event_weights()


def event_weight_sql(column: str) -> str:
    """:data:`EVENT_WEIGHTS` as a SQL ``case`` over ``column`` (the same expression as dbt's ``event_weight`` macro)."""
    cases = " ".join(f"when '{name}' then {weight:g}" for name, weight in EVENT_WEIGHTS.items())
    return f"case {column} {cases} else 0 end"


SECONDS_PER_DAY = 86_400.0

#: user attributes of :attr:`Interactions.users` (from ``analytics.dim_users``)
USER_ATTRIBUTES: tuple[str, ...] = ("age_band", "gender", "region")

#: columns of ``analytics.fct_interactions`` the models read
_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "event_ts")

Timestamp = datetime | pd.Timestamp | float | int | np.floating


def to_epoch_seconds(value: Timestamp) -> float:
    """Convert a timestamp to seconds since the Unix epoch (UTC).

    Parameters
    ----------
    value : datetime, pandas.Timestamp or number
        A timezone-aware timestamp (naive ones are read as UTC) or a number
        that already is epoch seconds.

    Returns
    -------
    float
        Seconds since 1970-01-01T00:00:00Z.
    """
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return (stamp - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def as_datetime(value: Timestamp) -> datetime:
    """A timestamp (epoch seconds, string or datetime) as an aware UTC :class:`datetime.datetime`."""
    return pd.Timestamp(to_epoch_seconds(value), unit="s", tz="UTC").to_pydatetime()


def weight_vector(event_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Return the confidence weight per event type code.

    Parameters
    ----------
    event_weights : mapping of str to float, optional
        Weight per event type; types not listed weigh 0. Defaults to :data:`EVENT_WEIGHTS`.

    Returns
    -------
    numpy.ndarray
        Float64 array of length ``len(EVENT_TYPES)``.
    """
    weights = EVENT_WEIGHTS if event_weights is None else event_weights
    unknown = set(weights) - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types in event_weights: {sorted(unknown)}")
    return np.array([float(weights.get(name, 0.0)) for name in EVENT_TYPES], dtype=np.float64)


def _sorted_union(universe: Sequence[str] | np.ndarray | None, observed: pd.Index) -> pd.Index:
    """Ids in a fixed, reproducible order: the universe as given, then unseen observed ids sorted."""
    if universe is None:
        return pd.Index(observed.sort_values(), dtype=object)
    base = pd.Index(pd.unique(np.asarray(universe, dtype=object)), dtype=object)
    extra = observed.difference(base, sort=False)
    return base.append(pd.Index(extra.sort_values(), dtype=object))


def _codes(values: pd.Series, categories: pd.Index) -> np.ndarray:
    """Integer codes of ``values`` in ``categories`` (``-1`` where missing), vectorized."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # recode through the (small) category table instead of hashing every row again
        lookup = categories.get_indexer(values.cat.categories)
        raw = values.cat.codes.to_numpy()
        return np.where(raw >= 0, lookup[raw], -1)
    return categories.get_indexer(values)


@dataclass
class Interactions:
    """Encoded interaction events.

    Attributes
    ----------
    user_ids, item_ids : numpy.ndarray
        Object arrays mapping an index back to its warehouse id.
    user_index, item_index : numpy.ndarray
        Int32 index of the user and the item of every event.
    event_type : numpy.ndarray
        Int8 code of every event, an index into :data:`EVENT_TYPES`.
    event_ts : numpy.ndarray
        Float64 event time, epoch seconds UTC.
    items : pandas.DataFrame, optional
        Item attributes, one row per item index (row ``i`` is ``item_ids[i]``): ``category``, ``category_path``
        (the leaf, ``"Home > Kitchen > Kettles"``), ``brand`` (str, ``""`` unknown), ``price`` (float, NaN
        unknown), ``tokens`` (space-joined search tokens); ``item_name``, ``description``, ``listed_ts`` as given,
        if given. Set by :meth:`with_side_data`.
    users : pandas.DataFrame, optional
        User attributes, one row per user index: ``age_band``, ``gender``, ``region`` (str, ``"unknown"`` missing).
    ratings : pandas.DataFrame, optional
        Explicit review ratings in the same encoding: ``user_index``, ``item_index`` (int32), ``rating``
        (float64, 1 to 5), ``rated_ts`` (float64 epoch seconds), ``sentiment`` (VADER compound, NaN without text).
    follows : pandas.DataFrame, optional
        Who sees whose purchases, by warehouse id (:mod:`recsys.features.social`).
    profile_source : ProfileSource, optional
        Where the learned rankers read the point-in-time user profile (:mod:`recsys.features.profile_source`).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_index: np.ndarray
    item_index: np.ndarray
    event_type: np.ndarray
    event_ts: np.ndarray
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    ratings: pd.DataFrame | None = None
    follows: pd.DataFrame | None = None
    profile_source: ProfileSource | None = None

    @property
    def n_users(self) -> int:
        """Number of encoded users (rows of every matrix)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of encoded items (columns of every matrix)."""
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        """Number of events."""
        return len(self.event_ts)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        user_ids: Sequence[str] | np.ndarray | None = None,
        item_ids: Sequence[str] | np.ndarray | None = None,
    ) -> Interactions:
        """Encode an event frame.

        Parameters
        ----------
        frame : pandas.DataFrame
            Columns ``user_id``, ``item_id``, ``event_type`` and either
            ``event_ts`` (epoch seconds) or ``event_at`` (timestamps).
        user_ids, item_ids : array-like of str, optional
            A fixed id universe (for example every user of ``dim_users``): these ids come first, in the given
            order, so users without events get empty rows. Ids seen in the events but not in the universe are
            appended, sorted. Without a universe the observed ids are sorted, so the encoding does not depend
            on row order.

        Returns
        -------
        Interactions
            Events of unknown type or without an item are dropped (and logged).
        """
        if "event_ts" in frame:
            event_ts = frame["event_ts"].to_numpy(dtype=np.float64)
        else:
            stamps = pd.to_datetime(frame["event_at"], utc=True)
            event_ts = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)

        type_codes = _codes(frame["event_type"], pd.Index(EVENT_TYPES, dtype=object))
        users_seen = pd.Index(frame["user_id"].dropna().unique(), dtype=object)
        items_seen = pd.Index(frame["item_id"].dropna().unique(), dtype=object)
        user_table = _sorted_union(user_ids, users_seen)
        item_table = _sorted_union(item_ids, items_seen)
        user_index = _codes(frame["user_id"], user_table)
        item_index = _codes(frame["item_id"], item_table)

        keep = (type_codes >= 0) & (user_index >= 0) & (item_index >= 0) & np.isfinite(event_ts)
        dropped = int(len(keep) - keep.sum())
        if dropped:
            logger.warning("dropped %d of %d events (unknown event type, or no user/item/time)", dropped, len(keep))
        return cls(
            user_ids=user_table.to_numpy(dtype=object),
            item_ids=item_table.to_numpy(dtype=object),
            user_index=user_index[keep].astype(np.int32),
            item_index=item_index[keep].astype(np.int32),
            event_type=type_codes[keep].astype(np.int8),
            event_ts=event_ts[keep],
        )

    def select(self, mask: np.ndarray) -> Interactions:
        """Return the events where ``mask`` is true, keeping the same encoding and all side data."""
        return replace(
            self,
            user_index=self.user_index[mask],
            item_index=self.item_index[mask],
            event_type=self.event_type[mask],
            event_ts=self.event_ts[mask],
        )

    def before(self, time: Timestamp) -> Interactions:
        """Events and ratings strictly before ``time``, same encoding: what was known at that moment."""
        seconds = to_epoch_seconds(time)
        known = self.select(self.event_ts < seconds)
        if self.ratings is not None:
            known.ratings = self.ratings[self.ratings["rated_ts"].to_numpy() < seconds].reset_index(drop=True)
        return known

    def with_side_data(
        self,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        ratings: pd.DataFrame | None = None,
        follows: pd.DataFrame | None = None,
    ) -> Interactions:
        """Attach item and user attributes, ratings and follows (kept by id), keyed by warehouse id.

        Parameters
        ----------
        items : pandas.DataFrame, optional
            ``item_id``, ``category``, ``brand``, ``price`` and optionally
            ``category_path`` (default: the category), ``item_name``, ``description``, ``listed_ts``
            (epoch seconds); items of the encoding not in the frame get unknown attributes.
        users : pandas.DataFrame, optional
            ``user_id``, ``age_band``, ``gender``, ``region``.
        ratings : pandas.DataFrame, optional
            ``user_id``, ``item_id``, ``rating``, ``rated_ts`` (epoch seconds);
            ratings of users or items outside the encoding are dropped (logged).
        follows : pandas.DataFrame, optional
            :data:`recsys.features.social.FOLLOW_COLUMNS`.

        Returns
        -------
        Interactions
            A copy with the ones given set (the others stay as they were).
        """
        result = replace(self, follows=self.follows if follows is None else follows)
        if items is not None:
            aligned = items.drop_duplicates("item_id").set_index("item_id").reindex(self.item_ids)
            path = aligned["category_path"] if "category_path" in aligned else aligned["category"]
            result.items = pd.DataFrame(
                {
                    "category": aligned["category"].fillna("").astype(str).to_numpy(dtype=object),
                    "category_path": path.fillna("").astype(str).to_numpy(dtype=object),
                    "brand": aligned["brand"].fillna("").astype(str).to_numpy(dtype=object),
                    "price": pd.to_numeric(aligned["price"], errors="coerce").to_numpy(dtype=np.float64),
                    "tokens": aligned.reindex(columns=["tokens"], fill_value="")["tokens"].fillna("").to_numpy(object),
                }
            )
            extra = [column for column in ("item_name", "description", "listed_ts") if column in aligned]
            result.items[extra] = aligned[extra].to_numpy()  # the texts and the listing time, as given
        if users is not None:
            aligned = users.drop_duplicates("user_id").set_index("user_id").reindex(self.user_ids)
            result.users = pd.DataFrame(
                {
                    column: aligned[column].fillna("unknown").astype(str).to_numpy(dtype=object)
                    for column in USER_ATTRIBUTES
                }
            )
        if ratings is not None:
            user_index = pd.Index(self.user_ids).get_indexer(ratings["user_id"])
            item_index = pd.Index(self.item_ids).get_indexer(ratings["item_id"])
            rating = pd.to_numeric(ratings["rating"], errors="coerce").to_numpy(dtype=np.float64)
            rated_ts = pd.to_numeric(ratings["rated_ts"], errors="coerce").to_numpy(dtype=np.float64)
            keep = (user_index >= 0) & (item_index >= 0) & np.isfinite(rating) & np.isfinite(rated_ts)
            if not keep.all():
                logger.warning("dropped %d of %d ratings (unknown user or item)", int((~keep).sum()), len(keep))
            result.ratings = pd.DataFrame(
                {
                    "user_index": user_index[keep].astype(np.int32),
                    "item_index": item_index[keep].astype(np.int32),
                    "rating": rating[keep],
                    "rated_ts": rated_ts[keep],
                    "sentiment": ratings.reindex(columns=["sentiment"])["sentiment"].to_numpy(np.float64)[keep],
                }
            )
        return result

    def event_weights(
        self,
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        reference_time: Timestamp | None = None,
    ) -> np.ndarray:
        """Confidence of every event: type weight times an optional exponential time decay.

        Parameters
        ----------
        event_weights : mapping of str to float, optional
            Weight per event type, defaults to :data:`EVENT_WEIGHTS`.
        half_life_days : float, optional
            If given, an event ``half_life_days`` before ``reference_time``
            weighs half as much; events after the reference are not boosted
            (their age is clipped at 0).
        reference_time : timestamp, optional
            The "now" of the decay; required with ``half_life_days``.

        Returns
        -------
        numpy.ndarray
            Float64 weight per event.
        """
        weights = weight_vector(event_weights)[self.event_type]
        if half_life_days is not None:
            if reference_time is None:
                raise ValueError("half_life_days needs a reference_time")
            if half_life_days <= 0:
                raise ValueError("half_life_days must be positive")
            age_days = np.maximum(to_epoch_seconds(reference_time) - self.event_ts, 0.0) / SECONDS_PER_DAY
            weights = weights * np.exp2(-age_days / half_life_days)
        return weights

    def to_csr(
        self,
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        reference_time: Timestamp | None = None,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        dtype: Any = np.float32,
    ) -> sp.csr_array:
        """Build the user x item confidence matrix.

        Weighted events in ``[start, end)`` are summed per (user, item) by a COO -> CSR conversion (duplicates
        are summed); pairs whose total is 0 (for example only ``remove_from_cart``) are dropped.

        Parameters
        ----------
        event_weights, half_life_days, reference_time
            See :meth:`event_weights`.
        start, end : timestamp, optional
            Half-open time window of the events to use.
        dtype : numpy dtype, default float32
            Value type of the matrix.

        Returns
        -------
        scipy.sparse.csr_array
            Shape ``(n_users, n_items)`` with sorted indices.
        """
        mask = np.ones(self.n_events, dtype=bool)
        if start is not None:
            mask &= self.event_ts >= to_epoch_seconds(start)
        if end is not None:
            mask &= self.event_ts < to_epoch_seconds(end)
        events = self if mask.all() else self.select(mask)
        data = events.event_weights(event_weights, half_life_days, reference_time).astype(dtype)
        matrix = sp.coo_array(
            (data, (events.user_index, events.item_index)), shape=(self.n_users, self.n_items)
        ).tocsr()
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix

    def strongest_events(self) -> sp.csr_array:
        """The strongest event per (user, item): 1 view, 2 cart, 3 purchase.

        Used to word reasons ("Because you bought X" beats "viewed").

        Returns
        -------
        scipy.sparse.csr_array
            Int8 matrix of shape ``(n_users, n_items)``; pairs with only
            ``remove_from_cart`` events are not stored. Read it for many pairs
            with :func:`lookup` and name the codes with :data:`STRENGTH_NAMES`.
        """
        strength = None
        for code, name in enumerate(STRENGTH_NAMES[1:], start=1):  # three event types, not rows
            present = (self.to_csr({name: 1.0}) > 0).astype(np.int8) * np.int8(code)
            strength = present if strength is None else strength.maximum(present)
        return sp.csr_array(strength, dtype=np.int8)


#: names of the codes of :meth:`Interactions.strongest_events`
STRENGTH_NAMES: tuple[str, ...] = ("", "view", "cart", "purchase")


def lookup(matrix: sp.csr_array, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Read ``matrix[rows[i], cols[i]]`` for many pairs at once (0 where not stored).

    Only the rows asked for are touched, so reading one batch of users from a
    large matrix costs the size of that batch.

    Parameters
    ----------
    matrix : scipy.sparse.csr_array
        Any CSR matrix; it is not modified.
    rows, cols : numpy.ndarray
        Int arrays of the same length.

    Returns
    -------
    numpy.ndarray
        The values, dtype of the matrix.
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    cols = np.asarray(cols, dtype=np.int64).ravel()
    values = np.zeros(len(rows), dtype=matrix.dtype)
    if len(rows) == 0:
        return values
    wanted, local_rows = np.unique(rows, return_inverse=True)
    sub = sp.csr_array(matrix[wanted])
    sub.sum_duplicates()  # canonical form: sorted column indices, so the flat keys are sorted
    if sub.nnz == 0:
        return values
    n_cols = np.int64(matrix.shape[1])
    stored_keys = np.repeat(np.arange(len(wanted), dtype=np.int64), np.diff(sub.indptr)) * n_cols + sub.indices
    keys = local_rows.astype(np.int64) * n_cols + cols
    position = np.minimum(np.searchsorted(stored_keys, keys), len(stored_keys) - 1)
    found = stored_keys[position] == keys
    values[found] = sub.data[position[found]]
    return values


def read_events(
    conn: Any,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    table: str = "analytics.fct_interactions",
) -> pd.DataFrame:
    """Read the events of a time window from the warehouse with ``COPY ... TO STDOUT``.

    Parameters
    ----------
    conn : psycopg2 connection
        An open connection; the read runs in its current transaction.
    start, end : timestamp, optional
        Half-open window on ``event_at``; ``None`` leaves that side open.
    table : str, default "analytics.fct_interactions"
        Schema-qualified table name.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id``, ``item_id``, ``event_type`` (categoricals) and
        ``event_ts`` (float64 epoch seconds). Rows without an item are skipped.
    """
    conditions = [
        sql.SQL("item_id is not null"),
        sql.SQL("event_type = any({})").format(sql.Literal(list(EVENT_TYPES))),
    ]
    if start is not None:
        conditions.append(sql.SQL("event_at >= to_timestamp({})").format(sql.Literal(to_epoch_seconds(start))))
    if end is not None:
        conditions.append(sql.SQL("event_at < to_timestamp({})").format(sql.Literal(to_epoch_seconds(end))))
    query = sql.SQL(
        "copy (select user_id, item_id, event_type, extract(epoch from event_at)::float8 as event_ts "
        "from {table} where {where}) to stdout with (format csv)"
    ).format(
        table=sql.Identifier(*table.split(".")),
        where=sql.SQL(" and ").join(conditions),
    )
    # a real (C-buffered) temporary file: psycopg2 writes one row per call, the CSV can be gigabytes
    with tempfile.TemporaryFile(mode="w+b") as buffer, conn.cursor() as cursor:
        cursor.copy_expert(query.as_string(cursor), buffer)
        size = buffer.tell()
        buffer.seek(0)
        if size == 0:
            return pd.DataFrame(
                {name: pd.Series(dtype="category" if name != "event_ts" else np.float64) for name in _EVENT_COLUMNS}
            )
        ids = pa.dictionary(pa.int32(), pa.string())  # categoricals: Arrow parses about three times as fast as pandas
        types = dict(zip(_EVENT_COLUMNS, [ids, ids, ids, pa.float64()], strict=True))
        read, convert = pa_csv.ReadOptions(column_names=list(types)), pa_csv.ConvertOptions(column_types=types)
        frame = pa_csv.read_csv(buffer, read_options=read, convert_options=convert).to_pandas()
    logger.info("read %d events from %s (%.1f MB as CSV)", len(frame), table, size / 1e6)
    return frame


def read_side_data(
    conn: Any, start: Timestamp | None = None, end: Timestamp | None = None
) -> dict[str, pd.DataFrame | None]:
    """Read item and user attributes (``dim_items``, ``dim_users``), a window's ratings (``fct_reviews``), follows.

    Returns
    -------
    dict
        ``items``, ``users``, ``ratings`` and ``follows`` for :meth:`Interactions.with_side_data`;
        ``ratings`` (``follows``) is None without ``analytics.fct_reviews`` (``user_follows``).
    """
    has_tokens = frames.table_exists(conn, "analytics.item_search_tokens")  # the text features' item words
    tokens = "(select string_agg(token, ' ' order by token) from analytics.item_search_tokens as tokens"
    tokens = f"{tokens} where tokens.item_id = items.item_id)" if has_tokens else "''"
    columns = f"item_id, category, category_path, brand, price, {tokens} as tokens, item_name, description"
    columns += ", extract(epoch from created_at) as listed_ts"
    items = frames.read_frame(conn, f"select {columns} from analytics.dim_items as items")
    users = frames.read_frame(conn, "select user_id, age_band, gender, region from analytics.dim_users")
    users = users.replace("", None)
    items = items.fillna("")  # attributes of items: a missing one is the empty string
    ratings = None
    if frames.table_exists(conn, "analytics.fct_reviews"):
        conditions = [sql.SQL("true")]
        if start is not None:
            conditions.append(sql.SQL("reviewed_at >= to_timestamp({})").format(sql.Literal(to_epoch_seconds(start))))
        if end is not None:
            conditions.append(sql.SQL("reviewed_at < to_timestamp({})").format(sql.Literal(to_epoch_seconds(end))))
        ratings = frames.read_frame(
            conn,
            sql.SQL(
                "select user_id, item_id, rating, extract(epoch from reviewed_at)::float8 as rated_ts, sentiment "
                "from analytics.fct_reviews where {}"
            ).format(sql.SQL(" and ").join(conditions)),
        )
    return {"items": items, "users": users, "ratings": ratings, "follows": social.read_follows(conn, end)}


def load_interactions(
    conn: Any,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    user_ids: Sequence[str] | np.ndarray | None = None,
    item_ids: Sequence[str] | np.ndarray | None = None,
    side_data: bool = False,
) -> Interactions:
    """Read a window of ``analytics.fct_interactions`` and encode it.

    Parameters
    ----------
    conn : psycopg2 connection
        An open connection.
    start, end : timestamp, optional
        Half-open window on ``event_at``.
    user_ids, item_ids : array-like of str, optional
        Fixed id universes, see :meth:`Interactions.from_frame`.
    side_data : bool, default False
        Also attach item and user attributes and the ratings of the window (:func:`read_side_data`), and the
        warehouse as the :class:`~recsys.features.profile_source.ProfileSource` of the rankers' profile.

    Returns
    -------
    Interactions
    """
    interactions = Interactions.from_frame(read_events(conn, start, end), user_ids=user_ids, item_ids=item_ids)
    if side_data:
        interactions = interactions.with_side_data(**read_side_data(conn, start, end))
        interactions.profile_source = ProfileSource.of(conn)
    return interactions
