"""Model tasks the Airflow DAG calls: time-split evaluation and publishing lists to ``ml``.

Both entry points take a psycopg2 connection (or a DSN), a ``run_id`` and the
data interval, read ``analytics.*`` with ``COPY ... TO STDOUT``, and write the
``ml`` tables of ``docs/CONTRACTS.md`` with ``COPY ... FROM STDIN``. Each call
is one transaction that first deletes the rows of its ``run_id``, so a re-run
replaces them and readers see either the old or the new rows. "Now" is always
``data_interval_end``, never the wall clock (only the audit columns
``started_at``/``finished_at`` of ``ml.runs`` are wall-clock times).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql

from recsys.interactions import (
    Timestamp,
    load_interactions,
    lookup,
    time_split,
    to_epoch_seconds,
)
from recsys.metrics import METRICS, catalogue_coverage, evaluate, per_user_metrics
from recsys.recommenders import ItemKNNRecommender, PopularityRecommender, Recommender

logger = logging.getLogger(__name__)

#: cut-offs every model is evaluated at
EVAL_KS: tuple[int, ...] = (5, 10, 20)
#: evaluation variant: candidates are all items known at the cutoff (stock status is today's, so not used)
EVAL_VARIANT = "all_items"

ML_DDL = """
create schema if not exists ml;
create table if not exists ml.runs (
    run_id text primary key,
    data_interval_start timestamptz,
    data_interval_end timestamptz,
    eval_cutoff_at timestamptz,
    data_cutoff_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    status text not null,
    champion_model text,
    champion_reason text
);
create table if not exists ml.model_evaluations (
    run_id text not null,
    model_name text not null,
    variant text not null,
    segment text not null,
    metric text not null,
    k integer not null,
    metric_value double precision,
    primary key (run_id, model_name, variant, segment, metric, k)
);
create table if not exists ml.recommendations (
    run_id text not null,
    user_id text not null,
    item_rank integer not null,
    item_id text not null,
    score double precision,
    model_name text not null,
    reason_code text not null,
    reason_text text,
    generated_at timestamptz not null,
    primary key (run_id, user_id, item_rank)
);
create table if not exists ml.similar_items (
    run_id text not null,
    item_id text not null,
    item_rank integer not null,
    similar_item_id text not null,
    score double precision,
    primary key (run_id, item_id, item_rank)
);
create table if not exists ml.cold_start_recommendations (
    run_id text not null,
    segment_key text not null,
    item_rank integer not null,
    item_id text not null,
    score double precision,
    primary key (run_id, segment_key, item_rank)
);
"""

#: "Because you <before> <item name><after>", indexed by the strongest-event code (none, view, cart, purchase)
_REASON_BEFORE = np.array(["viewed", "viewed", "added", "bought"], dtype=object)
_REASON_AFTER = np.array(["", "", " to your cart", ""], dtype=object)


# --------------------------------------------------------------------------- database plumbing


@contextmanager
def _connection(conn: Any) -> Iterator[Any]:
    """Yield a connection: the one given, or a new one for a DSN string (closed afterwards)."""
    if isinstance(conn, str):
        owned = psycopg2.connect(conn)
        try:
            yield owned
        finally:
            owned.close()
    else:
        yield conn


def ensure_schema(conn: Any) -> None:
    """Create the ``ml`` schema and tables if missing (serialized by an advisory lock), then commit.

    Parameters
    ----------
    conn : psycopg2 connection
        An open connection; its current transaction is committed.
    """
    with conn.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(hashtext('recsys.ml.schema'))")
        cursor.execute(ML_DDL)
    conn.commit()


def _read_query(conn: Any, query: str) -> pd.DataFrame:
    """Run ``query`` through ``COPY ... TO STDOUT`` (CSV, NULL as ``\\N``) into a frame of strings."""
    buffer = io.BytesIO()
    with conn.cursor() as cursor:
        cursor.copy_expert(f"copy ({query}) to stdout with (format csv, header true, null '\\N')", buffer)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype=str, keep_default_na=False, na_values=["\\N"])


def _table_exists(conn: Any, name: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass(%s) is not null", (name,))
        return bool(cursor.fetchone()[0])


def _copy_rows(conn: Any, table: str, frame: pd.DataFrame) -> int:
    """Append a frame to ``table`` with ``COPY FROM STDIN`` (columns by name); return rows written.

    The CSV is written by Arrow's C++ writer (strings quoted, nulls as
    unquoted empty fields: exactly Postgres' CSV convention).
    """
    if frame.empty:
        return 0
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), sink, pa_csv.WriteOptions(include_header=False))
    schema, name = table.split(".")
    statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    with conn.cursor() as cursor:
        cursor.copy_expert(statement.as_string(cursor), pa.BufferReader(sink.getvalue()))
    return len(frame)


def _delete_run(conn: Any, tables: Sequence[str], run_id: str) -> None:
    with conn.cursor() as cursor:
        for table in tables:  # a few tables, not rows
            schema, name = table.split(".")
            cursor.execute(sql.SQL("delete from {} where run_id = %s").format(sql.Identifier(schema, name)), (run_id,))


def _upsert_run(conn: Any, run_id: str, keep_existing: Sequence[str] = (), **columns: Any) -> None:
    """Insert or update the ``ml.runs`` row of ``run_id``.

    Only the given columns change; those named in ``keep_existing`` are only
    filled where the row has no value yet.
    """
    names = list(columns)

    def update(name: str) -> sql.Composable:
        if name in keep_existing:
            return sql.SQL("{0} = coalesce(ml.runs.{0}, excluded.{0})").format(sql.Identifier(name))
        return sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name))

    statement = sql.SQL(
        "insert into ml.runs (run_id, {columns}) values (%s, {values}) on conflict (run_id) do update set {updates}"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, names)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
        updates=sql.SQL(", ").join(update(name) for name in names),
    )
    with conn.cursor() as cursor:
        cursor.execute(statement, [run_id, *columns.values()])


def _mark_failed(conn: Any, run_id: str, started_at: datetime) -> None:
    """Record a failed step in ``ml.runs`` in its own transaction (best effort: the caller re-raises).

    The champion and its reason of an earlier successful step stay; the error
    itself is in the task log.
    """
    try:
        conn.rollback()
        _upsert_run(
            conn,
            run_id,
            keep_existing=("started_at",),
            status="failed",
            started_at=started_at,
            finished_at=datetime.now(UTC),
        )
        conn.commit()
    except psycopg2.Error:
        logger.exception("could not record the failure of run %s", run_id)
        conn.rollback()


def _as_datetime(value: Timestamp) -> datetime:
    return pd.Timestamp(to_epoch_seconds(value), unit="s", tz="UTC").to_pydatetime()


# --------------------------------------------------------------------------- evaluation


def _recommend_in_batches(
    model: Recommender,
    users: np.ndarray,
    n: int,
    batch_size: int,
    filter_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``model.recommend`` over ``users`` in batches (memory is bounded by the batch)."""
    items = np.full((len(users), n), -1, dtype=np.int64)
    scores = np.full((len(users), n), np.nan)
    for start in range(0, len(users), batch_size):  # batches of users, each fully vectorized
        batch = users[start : start + batch_size]
        items[start : start + len(batch)], scores[start : start + len(batch)] = model.recommend(
            batch, None, n, filter_items=filter_items
        )
    return items, scores


def _segment_codes(conn: Any, user_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Lifecycle-stage segment of each user (from ``analytics.user_profiles``), as codes and names."""
    if not _table_exists(conn, "analytics.user_profiles"):
        logger.warning("analytics.user_profiles is missing: evaluating segment 'all' only")
        return np.zeros(len(user_ids), dtype=np.int64), []
    profiles = _read_query(conn, "select user_id, lifecycle_stage from analytics.user_profiles")
    stage = profiles["lifecycle_stage"].fillna("unknown").to_numpy()
    position = pd.Index(profiles["user_id"]).get_indexer(pd.Index(user_ids))
    labels = np.where(position >= 0, stage[np.maximum(position, 0)], "unknown").astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), [f"lifecycle_stage={name}" for name in names]


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _choose_champion(ndcg: dict[str, float], k: int) -> tuple[str, str]:
    """Highest NDCG@k wins; ties keep the model listed first (the simpler one)."""
    ordered = sorted(ndcg, key=lambda name: -(ndcg[name] if math.isfinite(ndcg[name]) else -math.inf))
    if not any(math.isfinite(value) for value in ndcg.values()):
        first = next(iter(ndcg))
        return first, f"no purchases in the test window to evaluate on; keeping the {first} baseline"
    champion = ordered[0]
    parts = [f"{champion} NDCG@{k} {ndcg[champion]:.4f}"]
    for other in ordered[1:]:
        relation = ">" if ndcg[champion] > ndcg[other] or not math.isfinite(ndcg[other]) else "="
        parts.append(f"{relation} {other} {ndcg[other]:.4f}")
    reason = " ".join(parts)
    if "=" in reason.split():
        reason += " (tie: the simpler model wins)"
    return champion, reason


def _evaluation_rows(
    model_name: str,
    recommended: np.ndarray,
    truth: Any,
    ks: tuple[int, ...],
    n_items: int,
    segment_codes: np.ndarray,
    segment_names: list[str],
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float]]:
    """``ml.model_evaluations`` rows of one model: segment ``all`` (with coverage) and one per segment."""
    scores = evaluate(recommended, truth, ks)
    rows = [
        dict(model_name=model_name, segment="all", metric=metric, k=cut, metric_value=value)
        for (metric, cut), value in scores.items()
    ]
    size = np.bincount(segment_codes, minlength=len(segment_names))
    for cut in ks:  # three cut-offs; every metric below is one vectorized pass over all users
        coverage = catalogue_coverage(recommended, n_items, cut)
        rows.append(dict(model_name=model_name, segment="all", metric="coverage", k=cut, metric_value=coverage))
        if not segment_names:
            continue
        per_user = per_user_metrics(recommended, truth, cut)
        for metric in METRICS:
            means = np.bincount(segment_codes, weights=per_user[metric], minlength=len(segment_names)) / size
            rows += [
                dict(model_name=model_name, segment=name, metric=metric, k=cut, metric_value=float(value))
                for name, value in zip(segment_names, means, strict=True)
            ]
    return rows, scores


def default_models() -> list[Recommender]:
    """The models every run evaluates, simplest first (ties go to the earlier one)."""
    return [PopularityRecommender(), ItemKNNRecommender()]


def train_and_evaluate(
    conn: Any,
    run_id: str,
    data_interval_start: Timestamp,
    data_interval_end: Timestamp,
    test_days: float = 7,
    k: int = 10,
    history_days: float | None = None,
    models: Sequence[Recommender] | None = None,
    batch_size: int = 5_000,
) -> dict[str, Any]:
    """Fit every model before the evaluation cutoff, score it on the purchases after, pick the champion.

    ``eval_cutoff = data_interval_end - test_days``; models are fitted on the
    events before it and recommend ``max(5, 10, 20, k)`` items to every user
    with a purchase in ``[eval_cutoff, data_interval_end)``; those purchases
    are the truth. Writes ``ml.model_evaluations`` (precision, recall, ndcg,
    hit_rate at 5/10/20 for segment ``all`` and per ``lifecycle_stage=<stage>``;
    catalogue ``coverage`` for ``all``), and upserts ``ml.runs`` with status
    ``evaluated``, the champion (best NDCG@k) and the reason.

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN. The work is one transaction, committed here.
    run_id : str
        Key of the run; a re-run replaces its rows.
    data_interval_start, data_interval_end : datetime
        The DAG run's data interval; the end is "now".
    test_days : float, default 7
        Length of the test window before ``data_interval_end``.
    k : int, default 10
        Cut-off of the champion metric (NDCG@k).
    history_days : float, optional
        Only read events from ``data_interval_end - history_days`` on; default all history.
    models : sequence of Recommender, optional
        Defaults to :func:`default_models`.
    batch_size : int, default 5000
        Users per recommend call.

    Returns
    -------
    dict
        JSON-safe summary for XCom: ``run_id``, ``champion_model``,
        ``champion_reason``, ``eval_cutoff_at``, ``n_train_events``,
        ``n_test_users`` and ``metrics`` (``{model: {"ndcg@10": ...}}``).
    """
    started_at = datetime.now(UTC)
    end = to_epoch_seconds(data_interval_end)
    cutoff = end - test_days * 86_400.0
    ks = tuple(sorted({*EVAL_KS, k}))
    models = list(default_models() if models is None else models)
    with _connection(conn) as connection:
        try:
            ensure_schema(connection)
            start = None if history_days is None else end - history_days * 86_400.0
            split = time_split(load_interactions(connection, start, end), cutoff, end)
            users = split.test_users
            truth = split.truth[users]
            segment_codes, segment_names = _segment_codes(connection, split.train.user_ids[users])

            rows: list[dict[str, Any]] = []
            summary: dict[str, dict[str, float | None]] = {}
            ndcg = {model.name: float("nan") for model in models}
            if not len(users):
                logger.warning("run %s: no purchases in the test window, nothing to evaluate", run_id)
            for model in models if len(users) else []:  # a couple of models
                model.fit(split.train, cutoff)
                recommended, _ = _recommend_in_batches(model, users, max(ks), batch_size)
                model_rows, scores = _evaluation_rows(
                    model.name, recommended, truth, ks, split.train.n_items, segment_codes, segment_names
                )
                rows += model_rows
                ndcg[model.name] = scores[("ndcg", k)]
                summary[model.name] = {f"{metric}@{cut}": _json_float(value) for (metric, cut), value in scores.items()}
                logger.info("%s: %s", model.name, summary[model.name])
            champion, reason = _choose_champion(ndcg, k)
            logger.info("run %s champion: %s", run_id, reason)

            evaluations = pd.DataFrame(rows, columns=["model_name", "segment", "metric", "k", "metric_value"])
            evaluations.insert(0, "run_id", run_id)
            evaluations.insert(2, "variant", EVAL_VARIANT)
            _delete_run(connection, ["ml.model_evaluations"], run_id)
            written = _copy_rows(connection, "ml.model_evaluations", evaluations)
            _upsert_run(
                connection,
                run_id,
                data_interval_start=_as_datetime(data_interval_start),
                data_interval_end=_as_datetime(end),
                eval_cutoff_at=_as_datetime(cutoff),
                data_cutoff_at=_as_datetime(end),
                started_at=started_at,
                finished_at=datetime.now(UTC),
                status="evaluated",
                champion_model=champion,
                champion_reason=reason,
            )
            connection.commit()
        except Exception:
            _mark_failed(connection, run_id, started_at)
            raise
    return {
        "run_id": run_id,
        "champion_model": champion,
        "champion_reason": reason,
        "eval_cutoff_at": _as_datetime(cutoff).isoformat(),
        "n_train_events": int(split.train.n_events),
        "n_test_users": int(len(users)),
        "evaluation_rows": written,
        "metrics": summary,
    }


# --------------------------------------------------------------------------- publishing


def _champion_of(conn: Any, run_id: str) -> str:
    with conn.cursor() as cursor:
        cursor.execute("select champion_model from ml.runs where run_id = %s", (run_id,))
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"run {run_id!r} has no champion in ml.runs: run train_and_evaluate first")
    return row[0]


def _concat(*parts: pd.Series | str) -> pd.Series:
    """Vectorized string concatenation of Series and constants."""
    result = None
    for part in parts:  # a few string pieces, each a whole column
        result = part if result is None else result + part
    return result


def _popular_text(model: PopularityRecommender) -> str:
    if model.window_days is None:
        return "Popular with shoppers"
    return f"Popular in the last {model.window_days:g} days"


def generate_recommendations(
    conn: Any,
    run_id: str,
    data_interval_end: Timestamp,
    n: int = 20,
    batch_size: int = 10_000,
    n_similar: int = 20,
    n_cold_start: int = 20,
    model_name: str | None = None,
    history_days: float | None = None,
) -> dict[str, Any]:
    """Refit the champion on all data up to ``data_interval_end`` and write every list of the run.

    Writes, replacing earlier rows of ``run_id``:

    * ``ml.recommendations``: top ``n`` in-stock items for every user of
      ``analytics.dim_users``. Users with history and
      ``is_personalization_allowed`` get the champion's list; others get
      popularity. Item-KNN rows: ``reason_code`` ``similar_to_history``,
      ``reason_text`` "Because you viewed/bought <item_name>" (or "added <item_name>
      to your cart") naming the history item that contributed most; positions
      filled from popularity say ``popular`` / "Popular in the last 30 days"
      with ``model_name`` ``popularity`` and score 0 (so scores never increase
      with rank; a list that is popularity only carries popularity scores).
    * ``ml.similar_items``: top ``n_similar`` in-stock neighbours of every item
      from item-KNN (always fitted, whatever the champion).
    * ``ml.cold_start_recommendations``: top ``n_cold_start`` in-stock items by
      popularity for ``segment_key`` ``all`` and for every ``age_band|gender``
      of ``dim_users`` (missing values read ``unknown``), filled from global
      popularity (score 0) where a segment has too few items.
    * ``ml.runs``: status ``recommended`` and ``finished_at``.

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN. The work is one transaction, committed here.
    run_id : str
        The run evaluated by :func:`train_and_evaluate`.
    data_interval_end : datetime
        "Now": events up to here are used; stamped as ``generated_at``.
    n : int, default 20
        Items per user.
    batch_size : int, default 10000
        Users per batch (bounds memory).
    n_similar, n_cold_start : int, default 20
        List lengths of ``ml.similar_items`` and ``ml.cold_start_recommendations``.
    model_name : str, optional
        Override the champion recorded in ``ml.runs``.
    history_days : float, optional
        Only use events from ``data_interval_end - history_days`` on.

    Returns
    -------
    dict
        Row and user counts for XCom.
    """
    started_at = datetime.now(UTC)
    end = to_epoch_seconds(data_interval_end)
    generated_at = _as_datetime(end)
    with _connection(conn) as connection:
        try:
            ensure_schema(connection)
            champion = model_name or _champion_of(connection, run_id)
            if champion not in (PopularityRecommender.name, ItemKNNRecommender.name):
                raise ValueError(f"unknown champion model {champion!r}")
            users = _read_query(
                connection,
                "select user_id, age_band, gender, is_personalization_allowed from analytics.dim_users",
            ).drop_duplicates("user_id", ignore_index=True)
            catalogue = _read_query(
                connection, "select item_id, item_name, is_in_stock from analytics.dim_items"
            ).drop_duplicates("item_id", ignore_index=True)
            start = None if history_days is None else end - history_days * 86_400.0
            data = load_interactions(
                connection, start, end, user_ids=users["user_id"].to_numpy(), item_ids=catalogue["item_id"].to_numpy()
            )

            knn = ItemKNNRecommender().fit(data, end)
            popularity = knn.fallback_
            item_names = data.item_ids.copy()
            item_names[: len(catalogue)] = catalogue["item_name"].fillna(catalogue["item_id"]).to_numpy()
            in_stock = np.zeros(data.n_items, dtype=bool)
            in_stock[: len(catalogue)] = catalogue["is_in_stock"].to_numpy() == "t"
            blocked = np.flatnonzero(~in_stock)

            # users of dim_users are the first rows of the encoding
            targets = np.arange(len(users), dtype=np.int64)
            allowed = users["is_personalization_allowed"].fillna("t").to_numpy() != "f"
            has_history = np.diff(knn.user_items_.indptr)[: len(users)] > 0
            personalized = allowed & has_history & (champion == ItemKNNRecommender.name)
            strength = data.strongest_events() if personalized.any() else None

            _delete_run(connection, ["ml.recommendations", "ml.similar_items", "ml.cold_start_recommendations"], run_id)
            popular_items, popular_scores = popularity.recommend(np.zeros(1, dtype=np.int64), n=n, filter_items=blocked)
            popular_text = _popular_text(popularity)
            n_recommendations = 0
            for first in range(0, len(targets), batch_size):  # batches of users, each fully vectorized
                batch = targets[first : first + batch_size]
                items = np.tile(popular_items, (len(batch), 1))
                scores = np.tile(popular_scores, (len(batch), 1))
                because = np.full(items.shape, -1, dtype=np.int64)
                mine = np.flatnonzero(personalized[batch])
                if len(mine):
                    knn_items, knn_scores = knn.recommend(batch[mine], n=n, filter_items=blocked)
                    knn_because, _ = knn.explain(batch[mine], knn_items)
                    from_knn = knn_scores > 0  # the popularity fill carries score 0
                    only_fill = ~from_knn.any(axis=1, keepdims=True)  # no neighbours at all: a pure popularity list
                    items[mine] = knn_items
                    because[mine] = np.where(from_knn, knn_because, -1)
                    scores[mine] = np.where(only_fill, popularity.item_scores_[np.maximum(knn_items, 0)], knn_scores)
                rows, ranks = np.nonzero(items >= 0)
                row_because = because[rows, ranks]
                is_similar = row_because >= 0
                strongest = np.zeros(len(rows), dtype=np.int64)
                if strength is not None and is_similar.any():
                    strongest[is_similar] = lookup(strength, batch[rows[is_similar]], row_because[is_similar])
                reason_text = np.where(
                    is_similar,
                    _concat(
                        "Because you ",
                        pd.Series(_REASON_BEFORE[strongest], dtype=object),
                        " ",
                        pd.Series(item_names[np.maximum(row_because, 0)], dtype=object),
                        pd.Series(_REASON_AFTER[strongest], dtype=object),
                    ).to_numpy(),
                    popular_text,
                )
                frame = pd.DataFrame(
                    {
                        "run_id": run_id,
                        "user_id": users["user_id"].to_numpy()[batch[rows]],
                        "item_rank": ranks + 1,
                        "item_id": data.item_ids[items[rows, ranks]],
                        "score": scores[rows, ranks],
                        "model_name": np.where(is_similar, ItemKNNRecommender.name, PopularityRecommender.name),
                        "reason_code": np.where(is_similar, "similar_to_history", "popular"),
                        "reason_text": reason_text,
                        "generated_at": generated_at.isoformat(),
                    }
                )
                n_recommendations += _copy_rows(connection, "ml.recommendations", frame)

            similar, similar_scores = knn.similar_items(n_similar, filter_items=blocked)
            item_rows, item_ranks = np.nonzero(similar >= 0)
            n_similar_rows = _copy_rows(
                connection,
                "ml.similar_items",
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "item_id": data.item_ids[item_rows],
                        "item_rank": item_ranks + 1,
                        "similar_item_id": data.item_ids[similar[item_rows, item_ranks]],
                        "score": similar_scores[item_rows, item_ranks],
                    }
                ),
            )

            segment_labels = _concat(
                users["age_band"].fillna("unknown"), "|", users["gender"].fillna("unknown")
            ).to_numpy()
            segment_names, segment_of_user = np.unique(segment_labels.astype(str), return_inverse=True)
            group_of_user = np.full(data.n_users, -1, dtype=np.int64)
            group_of_user[: len(users)] = segment_of_user
            segment_items, segment_scores = popularity.recommend_groups(group_of_user, n_cold_start, blocked)
            all_items, all_scores = popularity.recommend(
                np.zeros(1, dtype=np.int64), n=n_cold_start, filter_items=blocked
            )
            keys = np.concatenate([["all"], segment_names]).astype(object)
            cold_items = np.vstack([all_items, segment_items])
            cold_scores = np.vstack([all_scores, segment_scores])
            seg_rows, seg_ranks = np.nonzero(cold_items >= 0)
            n_cold_rows = _copy_rows(
                connection,
                "ml.cold_start_recommendations",
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "segment_key": keys[seg_rows],
                        "item_rank": seg_ranks + 1,
                        "item_id": data.item_ids[cold_items[seg_rows, seg_ranks]],
                        "score": cold_scores[seg_rows, seg_ranks],
                    }
                ),
            )
            _upsert_run(
                connection,
                run_id,
                data_interval_end=generated_at,
                data_cutoff_at=generated_at,
                finished_at=datetime.now(UTC),
                status="recommended",
                champion_model=champion,
            )
            connection.commit()
        except Exception:
            _mark_failed(connection, run_id, started_at)
            raise
    result = {
        "run_id": run_id,
        "champion_model": champion,
        "users": int(len(users)),
        "personalized_users": int(personalized.sum()),
        "recommendations": n_recommendations,
        "similar_items": n_similar_rows,
        "cold_start_recommendations": n_cold_rows,
        "cold_start_segments": int(len(keys)),
        "in_stock_items": int(in_stock.sum()),
    }
    logger.info("run %s recommendations: %s", run_id, result)
    return result
