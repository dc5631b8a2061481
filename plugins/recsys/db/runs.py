"""The ``ml`` schema and the bookkeeping of a run: its tables, its ``ml.runs`` row, one step as one transaction.

Every step of a run (train and evaluate, recommend, search, promotions) writes its rows for its ``run_id``
in one transaction that first deletes the rows the same step wrote before, so a re-run replaces them and
readers see either the old or the new rows; a step that fails is recorded as ``failed`` in ``ml.runs``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql

logger = logging.getLogger(__name__)

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
    champion_reason text,
    champion_params text,
    validation_cutoff_at timestamptz
);
alter table ml.runs add column if not exists champion_params text;
alter table ml.runs add column if not exists validation_cutoff_at timestamptz;
alter table ml.runs add column if not exists business_rules_version text;
alter table ml.runs add column if not exists repeat_purchase_categories text;
alter table ml.runs add column if not exists placement_champions text;
create table if not exists ml.model_search (
    run_id text not null,
    model_name text not null,
    trial integer not null,
    params text not null,
    fit_seconds double precision,
    ndcg double precision,
    ndcg_new_items double precision,
    is_selected boolean not null,
    primary key (run_id, model_name, trial)
);
alter table ml.model_search add column if not exists ndcg_served double precision;
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
    placement text not null default 'for_you',
    item_rank integer not null,
    item_id text not null,
    score double precision,
    model_name text not null,
    reason_code text not null,
    reason_text text,
    generated_at timestamptz not null,
    primary key (run_id, user_id, placement, item_rank)
);
-- a warehouse from before placements (recsys.serving.placements): its rows are the for_you lists
alter table ml.recommendations add column if not exists placement text not null default 'for_you';
do $$
begin
    if not exists (
        select from pg_constraint as con
        join pg_attribute as att on att.attrelid = con.conrelid and att.attnum = any(con.conkey)
        where con.conrelid = 'ml.recommendations'::regclass and con.contype = 'p' and att.attname = 'placement'
    ) then
        alter table ml.recommendations drop constraint if exists recommendations_pkey;
        alter table ml.recommendations add primary key (run_id, user_id, placement, item_rank);
    end if;
end
$$;
-- an incremental run's lists of the users it did not score: the earlier run whose ml.recommendations rows hold
-- them (recsys.orchestration.schedule); the lists are not copied
create table if not exists ml.carried_lists (
    run_id text not null,
    user_id text not null,
    list_run_id text not null,
    primary key (run_id, user_id)
);
-- every list of a run: the rows it generated and the lists it carried (read this, not ml.recommendations);
-- created once (replacing a view locks out its readers)
do $$
begin
    if to_regclass('ml.run_recommendations') is null then
        create view ml.run_recommendations as
        select
            run_id, user_id, placement, item_rank, item_id, score, model_name, reason_code, reason_text, generated_at
        from ml.recommendations
        union all
        select
            carried.run_id,
            lists.user_id,
            lists.placement,
            lists.item_rank,
            lists.item_id,
            lists.score,
            lists.model_name,
            lists.reason_code,
            lists.reason_text,
            lists.generated_at
        from ml.carried_lists as carried
        inner join ml.recommendations as lists
            on carried.list_run_id = lists.run_id and carried.user_id = lists.user_id;
    end if;
end
$$;
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
create table if not exists ml.promotion_targets (
    run_id text not null,
    promotion_id text not null,
    user_id text not null,
    target_rank integer not null,
    propensity double precision not null,
    primary key (run_id, promotion_id, user_id),
    unique (run_id, promotion_id, target_rank)
);
-- an A/B test's challenger: its lists for the run, served to its arm (recsys.orchestration.challenger)
create table if not exists ml.challenger_recommendations (
    run_id text not null,
    model_name text not null,
    user_id text not null,
    item_rank integer not null,
    item_id text not null,
    score double precision,
    reason_code text not null,
    reason_text text,
    primary key (run_id, model_name, user_id, item_rank)
);
-- a full run's trained ranker learners, for the incremental runs after it (recsys.orchestration.schedule)
create table if not exists ml.fitted_learners (
    run_id text not null,
    model_key text not null,
    learner bytea not null,
    primary key (run_id, model_key)
);
"""


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


def delete_run(conn: Any, tables: Sequence[str], run_id: str, **match: Any) -> None:
    """Delete the rows of ``run_id`` (and, with ``match``, only those whose columns equal the given values)."""
    with conn.cursor() as cursor:
        for table in tables:  # a few tables, not rows
            schema, name = table.split(".")
            where = sql.SQL("").join(sql.SQL(" and {} = %s").format(sql.Identifier(column)) for column in match)
            statement = sql.SQL("delete from {} where run_id = %s{}").format(sql.Identifier(schema, name), where)
            cursor.execute(statement, (run_id, *match.values()))


def save_learners(conn: Any, run_id: str, learners: dict[str, object]) -> None:
    """Store the run's trained learners (pickled) under their model key, replacing the run's earlier ones of those
    keys (``recommend`` stores the rankers' and the ALS item factors, ``target_promotions`` the propensity model).

    A role that can write ``ml.fitted_learners`` can make the model tasks unpickle what it wrote: only the
    pipeline's own role should (docs/security.md).
    """
    with conn.cursor() as cursor:
        for key, learner in learners.items():  # one per distinct ranker of the run's placements, or the promotions'
            cursor.execute("delete from ml.fitted_learners where run_id = %s and model_key = %s", (run_id, key))
            cursor.execute(
                "insert into ml.fitted_learners (run_id, model_key, learner) values (%s, %s, %s)",
                (run_id, key, pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)),
            )


def read_learners(conn: Any, run_id: str, keys: Sequence[str] | None = None) -> dict[str, object]:
    """The learners :func:`save_learners` stored for ``run_id`` (only ``keys``, when given), by model key (empty
    when it stored none)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "select model_key, learner from ml.fitted_learners where run_id = %s"
            " and (%s::text[] is null or model_key = any(%s::text[]))",
            (run_id, *[None if keys is None else list(keys)] * 2),
        )
        # only the pipeline's role writes the table (see save_learners)
        return {key: pickle.loads(learner) for key, learner in cursor.fetchall()}


def upsert_run(conn: Any, run_id: str, keep_existing: Sequence[str] = (), **columns: Any) -> None:
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


def mark_failed(conn: Any, run_id: str, started_at: datetime) -> None:
    """Record a failed step in ``ml.runs`` in its own transaction (best effort: the caller re-raises).

    The champion and its reason of an earlier successful step stay; the error
    itself is in the task log.
    """
    try:
        conn.rollback()
        upsert_run(
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


@contextmanager
def run_step(conn: Any, run_id: str, started_at: datetime | None = None) -> Iterator[datetime]:
    """One step of a run as one transaction: commit at the end; on an error roll back, mark the run failed, re-raise.

    Parameters
    ----------
    conn : psycopg2 connection
    run_id : str
    started_at : datetime, optional
        When the step started (default now); recorded with a failure.

    Yields
    ------
    datetime
        ``started_at``.
    """
    started_at = started_at or datetime.now(UTC)
    try:
        yield started_at
        conn.commit()
    except Exception:
        mark_failed(conn, run_id, started_at)
        raise
