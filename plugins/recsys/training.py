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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import scipy.sparse as sp
from psycopg2 import sql

from recsys.interactions import (
    Timestamp,
    load_interactions,
    lookup,
    time_split,
    to_epoch_seconds,
)
from recsys.metrics import METRICS, catalogue_coverage, evaluate, hit_matrix, per_user_metrics, relevant_counts
from recsys.recommenders import (
    ALSRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    RepeatPurchaseRecommender,
    UserKNNRecommender,
)

logger = logging.getLogger(__name__)

#: cut-offs every model is evaluated at
EVAL_KS: tuple[int, ...] = (5, 10, 20)
#: evaluation variant: candidates are all items known at the cutoff (stock status is today's, so not used)
EVAL_VARIANT = "all_items"
#: evaluation variant without repeat purchases: items a user bought before the cutoff leave ranking and truth
NEW_ITEMS_VARIANT = "new_items"

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

#: ``reason_code`` of the rows each champion itself ranked (popularity and the fill of any model: ``popular``)
REASON_CODES: dict[str, str] = {
    ItemKNNRecommender.name: "similar_to_history",
    RepeatPurchaseRecommender.name: "buy_again",
    UserKNNRecommender.name: "similar_users",
    ALSRecommender.name: "matrix_factorization",
}

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
    variant: str,
    recommended: np.ndarray,
    truth: Any,
    ks: tuple[int, ...],
    n_items: int,
    segment_codes: np.ndarray,
    segment_names: list[str],
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float]]:
    """``ml.model_evaluations`` rows of one model and variant: segment ``all`` (with coverage) and one per segment.

    Segments without users in this evaluation get no rows.
    """
    scores = evaluate(recommended, truth, ks)
    common = dict(model_name=model_name, variant=variant)
    rows = [
        dict(common, segment="all", metric=metric, k=cut, metric_value=value) for (metric, cut), value in scores.items()
    ]
    size = np.bincount(segment_codes, minlength=len(segment_names))
    present = [code for code in range(len(segment_names)) if size[code] > 0]  # a few segments
    for cut in ks:  # three cut-offs; every metric below is one vectorized pass over all users
        coverage = catalogue_coverage(recommended, n_items, cut)
        rows.append(dict(common, segment="all", metric="coverage", k=cut, metric_value=coverage))
        if not present:
            continue
        per_user = per_user_metrics(recommended, truth, cut)
        for metric in METRICS:
            sums = np.bincount(segment_codes, weights=per_user[metric], minlength=len(segment_names))
            rows += [
                dict(
                    common,
                    segment=segment_names[code],
                    metric=metric,
                    k=cut,
                    metric_value=float(sums[code] / size[code]),
                )
                for code in present
            ]
    return rows, scores


def _without_items(recommended: np.ndarray, exclude: sp.csr_array, width: int) -> np.ndarray:
    """Drop the items of ``exclude`` from every row, shift the rest forward (order kept) and cut at ``width``.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, wide)`` item indices, best first, ``-1`` for none.
    exclude : scipy.sparse.csr_array
        ``(n_users, n_items)`` items to drop per row.
    width : int
        Columns of the result.

    Returns
    -------
    numpy.ndarray
        Int64 ``(n_users, width)``, ``-1`` where a row ran out.
    """
    keep = (recommended >= 0) & ~hit_matrix(recommended, exclude)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept items first, in their order
    compact = np.take_along_axis(np.where(keep, recommended, -1), order, axis=1)
    out = np.full((recommended.shape[0], width), -1, dtype=np.int64)
    out[:, : min(width, compact.shape[1])] = compact[:, :width]
    return out


def _without_prior(truth: sp.csr_array, prior: sp.csr_array) -> sp.csr_array:
    """The truth without the items of ``prior`` (which may have fewer columns: the train items)."""
    truth = sp.csr_array(truth)
    prior = sp.csr_array((prior.data, prior.indices, prior.indptr), shape=truth.shape)
    result = sp.csr_array(truth - truth.multiply(prior != 0))
    result.eliminate_zeros()
    return result


def default_models() -> list[Recommender]:
    """The models every run evaluates, simplest first (ties go to the earlier one).

    :func:`generate_recommendations` refits the champion with these same parameters.
    """
    return [
        PopularityRecommender(),
        RepeatPurchaseRecommender(),
        ItemKNNRecommender(),
        UserKNNRecommender(),
        ALSRecommender(random_state=0),
    ]


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
    hit_rate, f1, map at 5/10/20 for segment ``all`` and per
    ``lifecycle_stage=<stage>``; catalogue ``coverage`` for ``all``) in two
    variants: ``all_items``, and ``new_items``, where the items each user
    bought before the cutoff are removed from the ranking (the models
    recommend more and the rest moves up) and from the truth (users left
    without truth are not evaluated). Upserts ``ml.runs`` with status
    ``evaluated``, the champion (best NDCG@k on ``all_items``) and the reason.

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
        ``n_test_users``, ``metrics`` and ``metrics_new_items``
        (``{model: {"ndcg@10": ...}}`` per variant) and ``fit_seconds``.
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
            if not split.train.n_events:
                logger.warning("run %s: no interactions before the cutoff, nothing to train on", run_id)
                users = users[:0]
            truth = split.truth[users]
            segment_codes, segment_names = _segment_codes(connection, split.train.user_ids[users])

            rows: list[dict[str, Any]] = []
            summary: dict[str, dict[str, float | None]] = {}
            summary_new: dict[str, dict[str, float | None]] = {}
            fit_seconds: dict[str, float] = {}
            ndcg = {model.name: float("nan") for model in models}
            if not len(users):
                logger.warning("run %s: no purchases in the test window, nothing to evaluate", run_id)
            # new_items: what each test user bought before the cutoff leaves both the ranking and the truth
            prior = split.train.to_csr({"purchase": 1.0})[users]
            truth_new = _without_prior(truth, prior)
            has_new = relevant_counts(truth_new) > 0
            wide = min(max(ks) + int(np.diff(prior.indptr).max(initial=0)), max(split.train.n_items, max(ks)))
            for model in models if len(users) else []:  # a handful of models
                started = time.perf_counter()
                model.fit(split.train, cutoff)
                fit_seconds[model.name] = round(time.perf_counter() - started, 3)
                recommended, _ = _recommend_in_batches(model, users, wide, batch_size)
                model_rows, scores = _evaluation_rows(
                    model.name,
                    EVAL_VARIANT,
                    recommended[:, : max(ks)],
                    truth,
                    ks,
                    split.train.n_items,
                    segment_codes,
                    segment_names,
                )
                rows += model_rows
                ndcg[model.name] = scores[("ndcg", k)]
                summary[model.name] = {f"{metric}@{cut}": _json_float(value) for (metric, cut), value in scores.items()}
                if has_new.any():
                    new_rows, new_scores = _evaluation_rows(
                        model.name,
                        NEW_ITEMS_VARIANT,
                        _without_items(recommended[has_new], prior[has_new], max(ks)),
                        truth_new[has_new],
                        ks,
                        split.train.n_items,
                        segment_codes[has_new],
                        segment_names,
                    )
                    rows += new_rows
                    summary_new[model.name] = {
                        f"{metric}@{cut}": _json_float(value) for (metric, cut), value in new_scores.items()
                    }
                logger.info(
                    "%s (fit %.1f s, total %.1f s): %s; new items: %s",
                    model.name,
                    fit_seconds[model.name],
                    time.perf_counter() - started,
                    summary[model.name],
                    summary_new.get(model.name),
                )
            champion, reason = _choose_champion(ndcg, k)
            logger.info("run %s champion: %s", run_id, reason)

            evaluations = pd.DataFrame(
                rows, columns=["model_name", "variant", "segment", "metric", "k", "metric_value"]
            )
            evaluations.insert(0, "run_id", run_id)
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
        "metrics_new_items": summary_new,
        "fit_seconds": fit_seconds,
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


def _reason_texts(
    champion: str,
    users: np.ndarray,
    items: np.ndarray,
    because: np.ndarray,
    strength: sp.csr_array | None,
    item_names: np.ndarray,
    item_categories: np.ndarray,
) -> np.ndarray:
    """``reason_text`` of rows the champion ranked itself, one vectorized string column.

    item_knn: "Because you viewed/bought <history item>" (or "added <item> to
    your cart"); repeat_purchase: "You bought <item> before"; user_knn:
    "Popular with shoppers like you"; als: "Matches your taste in
    <category of the item>" ("Matches your taste" without a category).
    """
    if champion == ItemKNNRecommender.name:
        strongest = np.zeros(len(users), dtype=np.int64)
        has_source = because >= 0
        if strength is not None and has_source.any():
            strongest[has_source] = lookup(strength, users[has_source], because[has_source])
        return _concat(
            "Because you ",
            pd.Series(_REASON_BEFORE[strongest], dtype=object),
            " ",
            pd.Series(item_names[np.maximum(because, 0)], dtype=object),
            pd.Series(_REASON_AFTER[strongest], dtype=object),
        ).to_numpy()
    if champion == RepeatPurchaseRecommender.name:
        return _concat("You bought ", pd.Series(item_names[items], dtype=object), " before").to_numpy()
    if champion == ALSRecommender.name:
        category = pd.Series(item_categories[items], dtype=object)
        return np.where(category != "", _concat("Matches your taste in ", category), "Matches your taste")
    return np.full(len(users), "Popular with shoppers like you", dtype=object)


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
      ``is_personalization_allowed`` get the list of the champion (any model
      of :func:`default_models`, refitted with the same parameters); others
      get popularity. Rows the champion ranked itself carry its name as
      ``model_name`` and its ``reason_code`` (:data:`REASON_CODES`):
      item_knn ``similar_to_history`` "Because you viewed/bought <item_name>"
      (or "added <item_name> to your cart") naming the history item that
      contributed most; repeat_purchase ``buy_again`` "You bought <item_name>
      before"; user_knn ``similar_users`` "Popular with shoppers like you";
      als ``matrix_factorization`` "Matches your taste in <category>".
      Positions filled from popularity say ``popular`` / "Popular in the last
      30 days" with ``model_name`` ``popularity`` and score 0 (so scores
      never increase with rank; a list that is popularity only carries
      popularity scores).
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
            configured = {model.name: model for model in default_models()}
            if champion not in configured:
                raise ValueError(f"unknown champion model {champion!r}")
            users = _read_query(
                connection,
                "select user_id, age_band, gender, is_personalization_allowed from analytics.dim_users",
            ).drop_duplicates("user_id", ignore_index=True)
            catalogue = _read_query(
                connection, "select item_id, item_name, category, is_in_stock from analytics.dim_items"
            ).drop_duplicates("item_id", ignore_index=True)
            start = None if history_days is None else end - history_days * 86_400.0
            data = load_interactions(
                connection, start, end, user_ids=users["user_id"].to_numpy(), item_ids=catalogue["item_id"].to_numpy()
            )

            knn = configured[ItemKNNRecommender.name].fit(data, end)  # similar items, whatever the champion
            popularity = knn.fallback_
            if champion == ItemKNNRecommender.name:
                model: Recommender = knn
            elif champion == PopularityRecommender.name:
                model = popularity
            else:
                model = configured[champion].fit(data, end)
            item_names = data.item_ids.copy()
            item_names[: len(catalogue)] = catalogue["item_name"].fillna(catalogue["item_id"]).to_numpy()
            item_categories = np.full(data.n_items, "", dtype=object)
            item_categories[: len(catalogue)] = catalogue["category"].fillna("").to_numpy()
            in_stock = np.zeros(data.n_items, dtype=bool)
            in_stock[: len(catalogue)] = catalogue["is_in_stock"].to_numpy() == "t"
            blocked = np.flatnonzero(~in_stock)

            # users of dim_users are the first rows of the encoding
            targets = np.arange(len(users), dtype=np.int64)
            allowed = users["is_personalization_allowed"].fillna("t").to_numpy() != "f"
            has_history = np.diff(knn.user_items_.indptr)[: len(users)] > 0
            personalized = allowed & has_history & (champion != PopularityRecommender.name)
            strength = data.strongest_events() if personalized.any() and champion == ItemKNNRecommender.name else None

            _delete_run(connection, ["ml.recommendations", "ml.similar_items", "ml.cold_start_recommendations"], run_id)
            popular_items, popular_scores = popularity.recommend(np.zeros(1, dtype=np.int64), n=n, filter_items=blocked)
            popular_text = _popular_text(popularity)
            n_recommendations = 0
            for first in range(0, len(targets), batch_size):  # batches of users, each fully vectorized
                batch = targets[first : first + batch_size]
                items = np.tile(popular_items, (len(batch), 1))
                scores = np.tile(popular_scores, (len(batch), 1))
                from_model = np.zeros(items.shape, dtype=bool)
                because = np.full(items.shape, -1, dtype=np.int64)
                mine = np.flatnonzero(personalized[batch])
                if len(mine):
                    own_items, own_scores = model.recommend(batch[mine], n=n, filter_items=blocked)
                    # every model fills with popularity at score 0 except ALS, which fills cold users only
                    own = (own_items >= 0) if champion == ALSRecommender.name else own_scores > 0
                    only_fill = ~own.any(axis=1, keepdims=True)  # no evidence at all: a pure popularity list
                    items[mine] = own_items
                    from_model[mine] = own
                    scores[mine] = np.where(only_fill, popularity.item_scores_[np.maximum(own_items, 0)], own_scores)
                    if champion == ItemKNNRecommender.name:
                        knn_because, _ = knn.explain(batch[mine], own_items)
                        because[mine] = np.where(own, knn_because, -1)
                rows, ranks = np.nonzero(items >= 0)
                row_items = items[rows, ranks]
                is_model = from_model[rows, ranks]
                reason_text = np.where(
                    is_model,
                    _reason_texts(
                        champion, batch[rows], row_items, because[rows, ranks], strength, item_names, item_categories
                    ),
                    popular_text,
                )
                frame = pd.DataFrame(
                    {
                        "run_id": run_id,
                        "user_id": users["user_id"].to_numpy()[batch[rows]],
                        "item_rank": ranks + 1,
                        "item_id": data.item_ids[row_items],
                        "score": scores[rows, ranks],
                        "model_name": np.where(is_model, champion, PopularityRecommender.name),
                        "reason_code": np.where(is_model, REASON_CODES.get(champion, "popular"), "popular"),
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
