"""The publish task: the champion's lists, similar items and cold-start lists written to ``ml`` with their reasons."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.db import frames, runs
from recsys.features.interactions import (
    SECONDS_PER_DAY,
    Interactions,
    Timestamp,
    as_datetime,
    load_interactions,
    to_epoch_seconds,
)
from recsys.models.base import Recommender
from recsys.models.content import ContentRecommender
from recsys.models.factorization import ALSRecommender, ItemFactors, SVDRecommender, fit_warm
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import CandidateRanker
from recsys.models.registry import (
    ESTIMATORS,
    build_model,
    load_model_config,
)
from recsys.models.sequence import SequenceRecommender
from recsys.models.shared_fits import shared_fits
from recsys.models.social import FriendsBoughtRecommender
from recsys.models.workers import iterate_in_workers
from recsys.orchestration import schedule
from recsys.serving import placements
from recsys.serving import reasons as reasons_module
from recsys.serving import rules as rules_module
from recsys.serving.rules import BusinessRules, ServingLayers, load_business_rules
from recsys.usecases import cold_start

logger = logging.getLogger(__name__)


#: ``reason_code`` and ``reason_text`` of a row the champion ranked that no grounded reason of
#: :mod:`recsys.serving.reasons` explains (those come first for every model)
REASON_CODES: dict[str, str] = {
    ItemKNNRecommender.name: "similar_items",
    RepeatPurchaseRecommender.name: "past_purchases",
    UserKNNRecommender.name: "similar_users",
    ALSRecommender.name: "matrix_factorization",
    SVDRecommender.name: "rated_by_similar_shoppers",
    NeuralRanker.name: "profile_match",
    LightGBMRanker.name: "profile_match",
    SequenceRecommender.name: "next_in_sequence",
    ContentRecommender.name: "content_match",
    # the model's rows say nothing of who bought them: "friends_bought" (a count) only from 2 consenting people
    FriendsBoughtRecommender.name: "social_picks",
}


FALLBACK_TEXTS: dict[str, str] = {
    ItemKNNRecommender.name: "Similar to items you looked at",
    RepeatPurchaseRecommender.name: "Based on your past purchases",
    UserKNNRecommender.name: "Popular with shoppers like you",
    ALSRecommender.name: "Matches your taste",
    SVDRecommender.name: "Rated highly by shoppers with your taste",
    NeuralRanker.name: "Picked for you",
    LightGBMRanker.name: "Picked for you",
    SequenceRecommender.name: "Often chosen next after your recent items",
    ContentRecommender.name: "Like the items you looked at",
    FriendsBoughtRecommender.name: "Picked for you",
}
#: where a position of a list came from, carried through the business rules and the re-rank
_FROM_FILL, _FROM_MODEL, _FROM_COLD_START = 0, 1, 2


def _champions_of(conn: Any, run_id: str) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """The champion of every placement of a run and its parameters (``None``: the configured ``params``).

    A run evaluated before placements has only ``champion_model``: it serves ``for_you`` and ``discover``,
    and ``buy_again`` gets ``repeat_purchase``.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "select champion_model, champion_params, placement_champions from ml.runs where run_id = %s", (run_id,)
        )
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"run {run_id!r} has no champion in ml.runs: run train_and_evaluate first")
    champion = (row[0], None if row[1] is None else json.loads(row[1]))
    if row[2] is None:
        return {
            placements.FOR_YOU: champion,
            placements.DISCOVER: champion,
            placements.BUY_AGAIN: (RepeatPurchaseRecommender.name, None),
        }
    return {placement: (value["model"], value.get("params")) for placement, value in json.loads(row[2]).items()}


@dataclass
class _Lists:
    """What every placement's lists of a batch of users are made from (see :func:`generate_recommendations`)."""

    run_id: str
    user_ids: np.ndarray
    data: Interactions
    layers: ServingLayers
    rules: BusinessRules
    n: int
    wide: int
    #: the most purchases of any user: the restricting placements' room, the same for every batch (a list does
    #: not depend on the users scored with it)
    room: int
    popularity: PopularityRecommender
    ranking: np.ndarray
    can_personalize: np.ndarray
    recent: sp.csr_array
    cold: Any
    cold_row: np.ndarray
    reason_data: reasons_module.ReasonData
    generated_at: str

    def frame(
        self, batch: np.ndarray, placement: str, name: str, model: Recommender, ranked: dict[int, tuple]
    ) -> pd.DataFrame:
        """The ``ml.recommendations`` rows of ``placement`` for the users ``batch``, ranked by ``model``.

        ``model`` ranks ``overfetch * n`` items (plus room for the most purchases of any user, when the
        placement restricts to or away from them: a list does not depend on the users scored with it) for users
        with history who allow personalization; the others start from popularity, users without events from
        their cold-start list; then the placement's served list (:func:`recsys.serving.placements.serve`) and
        grounded reasons. Opted-out users' purchases are not read (``reason_data.purchases`` holds only
        consenting users'), so they get no ``buy_again`` list. ``ranked`` keeps a model's ranking of the batch for
        the next placement it ranks (one ``recommend`` call per model and batch, at the widest width any
        placement needs).
        """
        bought = self.reason_data.purchases[batch]
        width = self.wide + (0 if placement == placements.FOR_YOU else self.room)
        blocked = np.flatnonzero(self.layers.blocked)
        popular_items, popular_scores = self.popularity.recommend(
            np.zeros(1, dtype=np.int64), n=width, filter_items=blocked
        )
        items, scores = np.tile(popular_items, (len(batch), 1)), np.tile(popular_scores, (len(batch), 1))
        from_model = np.zeros(items.shape, dtype=bool)
        mine = np.flatnonzero(self.can_personalize[batch] & (name != PopularityRecommender.name))
        if len(mine):
            if id(model) not in ranked:  # the widest list: room for any user's purchases
                ranked[id(model)] = model.recommend(batch[mine], n=self.wide + self.room, filter_items=blocked)
            own_items, own_scores = (values[:, :width] for values in ranked[id(model)])
            # every model fills with popularity at score 0 except ALS, which fills cold users only
            own = (own_items >= 0) if name == ALSRecommender.name else own_scores > 0
            only_fill = ~own.any(axis=1, keepdims=True)  # no evidence at all: a pure popularity list
            items[mine] = own_items
            from_model[mine] = own
            scores[mine] = np.where(only_fill, self.popularity.item_scores_[np.maximum(own_items, 0)], own_scores)
        new = np.flatnonzero(self.cold_row[batch] >= 0)  # no events: the cold-start list of the segment
        cold_items = self.cold.items[self.cold_row[batch[new]]]
        items[new], scores[new] = -1, np.nan
        items[new, : cold_items.shape[1]] = cold_items
        scores[new, : cold_items.shape[1]] = self.cold.scores[self.cold_row[batch[new]]]
        source = np.where(from_model, _FROM_MODEL, _FROM_FILL).astype(np.int8)
        source[new] = np.where(items[new] >= 0, _FROM_COLD_START, _FROM_FILL)
        items, scores, source = placements.serve(
            self.layers, placement, items, scores, self.n, self.rules, self.recent[batch], bought, self.ranking, source
        )
        return self._rows(batch, placement, name, items, scores, source)

    def _rows(
        self, batch: np.ndarray, placement: str, name: str, items: np.ndarray, scores: np.ndarray, source: np.ndarray
    ) -> pd.DataFrame:
        """The served lists of a batch as rows, with their grounded reasons."""
        from_model = source == _FROM_MODEL
        codes, texts = reasons_module.reasons(
            self.reason_data,
            batch,
            items,
            from_model,
            REASON_CODES.get(name, "popular"),
            np.full(items.shape, FALLBACK_TEXTS.get(name, self.reason_data.popular_text), dtype=object),
        )
        rows, ranks = np.nonzero(items >= 0)
        is_model, is_cold = from_model[rows, ranks], source[rows, ranks] == _FROM_COLD_START
        # no cold user served at all (every user has events, as in an invoice export): no texts to index
        cold = self.cold
        cold_text = cold.reason_text[np.maximum(self.cold_row[batch[rows]], 0)] if len(cold.reason_text) else ""
        return pd.DataFrame(
            {
                "run_id": self.run_id,
                "user_id": self.user_ids[batch[rows]],
                "placement": placement,
                "item_rank": ranks + 1,
                "item_id": self.data.item_ids[items[rows, ranks]],
                "score": scores[rows, ranks],
                "model_name": np.where(is_model, name, np.where(is_cold, cold.model_name, PopularityRecommender.name)),
                "reason_code": np.where(is_cold, cold_start.REASON_CODE, codes[rows, ranks]),
                "reason_text": np.where(is_cold, cold_text, texts[rows, ranks]),
                "generated_at": self.generated_at,
            }
        )


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
    config: dict[str, Any] | None = None,
    rules: BusinessRules | None = None,
    rescore: schedule.Rescore | None = None,
    shelves: Sequence[str] = placements.PLACEMENTS,
) -> dict[str, Any]:
    """Refit the champion on all data up to ``data_interval_end`` and write every list of the run.

    Writes, replacing earlier rows of ``run_id``:

    * ``ml.recommendations``: top ``n`` in-stock items for every user of
      ``analytics.dim_users``. Users with history and
      ``is_personalization_allowed`` get the list of the champion (any model
      of :data:`ESTIMATORS`, refitted with the parameters chosen on the
      validation window); others get popularity. Every list passes the
      layers of :mod:`recsys.serving.rules` (the business rules file): the model ranks
      ``overfetch * n`` items, blocked items (out of stock, deny lists), the
      user's purchases of the last ``recent_purchase_days`` outside
      repeat-purchase categories and items past ``max_per_brand`` leave it,
      the MMR diversity re-rank orders the rest, the top ``n`` stay (scores
      made non-increasing), and a list cut short is filled from the
      rules-filtered popularity ranking. Rows the champion ranked carry its
      name as ``model_name``, filled rows ``popularity`` (score 0, or
      popularity scores for a list of popularity only). Every row gets a
      grounded reason from :func:`recsys.serving.reasons.reasons`; a champion row
      none of them explains gets the champion's :data:`REASON_CODES` code and
      :data:`FALLBACK_TEXTS` text. One such list per placement of ``shelves``
      (``placement``; :mod:`recsys.serving.placements`), each ranked by the
      placement's champion (``ml.runs.placement_champions``): ``for_you`` as
      above, ``discover`` without any item the user bought (popularity fill
      included), ``buy_again`` only items the user bought (no brand cap, no
      re-rank, no fill; none for a user without purchases or who opted out).
    * ``ml.similar_items``: top ``n_similar`` neighbours of every item from
      item-KNN (always fitted, whatever the champion), after the blocked
      items and the brand cap (no re-rank).
    * ``ml.cold_start_recommendations``: top ``n_cold_start`` items for
      ``segment_key`` ``all`` (popularity) and for every ``age_band|gender``
      of ``dim_users`` (missing values read ``unknown``) with at least
      ``min_segment_users`` users with events (k-anonymity):
      the list of the better segment-aware cold-start model of the run's
      ``new_users`` evaluation (:func:`recsys.usecases.cold_start.serving_lists`) where
      it has the segment, else the segment's popularity; filled from global
      popularity (score 0) where a segment has too few items, after the rules
      and the re-rank. Users without events who allow personalization get
      that model's list (``reason_code`` ``new_user_segment``, "Popular with
      new shoppers like you (<age band>, <region>)") when it beat global
      popularity on the new users; otherwise global popularity.
    * ``ml.runs``: status ``recommended``, ``finished_at``, ``business_rules_version`` and the run's
      ``repeat_purchase_categories`` (``|``-separated; serving keeps a just-bought item of those).

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
        Override the champions recorded in ``ml.runs`` (with its configured ``params``): every placement's.
    history_days : float, optional
        Only use events from ``data_interval_end - history_days`` on.
    config : dict, optional
        Model configuration; default :func:`load_model_config`.
    rules : BusinessRules, optional
        Default :func:`recsys.serving.rules.load_business_rules`.
    rescore : recsys.orchestration.schedule.Rescore, optional
        An incremental run (:mod:`recsys.orchestration.schedule`): only these users' lists are scored, every
        other user keeps the previous run's list (``ml.carried_lists``, same transaction). Similar items and
        cold-start segment lists are written in full either way.
    shelves : sequence of str, default every placement
        The placements to write lists of (an A/B challenger writes ``for_you`` only).

    Returns
    -------
    dict
        Row and user counts for XCom.
    """
    started_at = datetime.now(UTC)
    end = to_epoch_seconds(data_interval_end)
    generated_at = as_datetime(end)
    with frames.connection(conn) as connection:
        with runs.run_step(connection, run_id, started_at):
            runs.ensure_schema(connection)
            config = load_model_config() if config is None else config
            rules = load_business_rules() if rules is None else rules
            shelf = _shelf_specs(connection, run_id, model_name, shelves, config)
            champion = shelf.get(placements.FOR_YOU, next(iter(shelf.values())))[0]
            start = None if history_days is None else end - history_days * SECONDS_PER_DAY
            shop = _read_shop(connection, start, end)
            # an incremental run: its rankers keep the full run's learners, its ALS start from its item factors
            full_run = schedule.carried_from(connection, run_id)
            kept = {} if full_run is None else runs.read_learners(connection, full_run)
            knn, shelf, learners = _fit_shelves(shop[2], end, shelf, config, kept)
            targets = schedule.targets(shop[0]["user_id"], rescore)  # an incremental run: the touched users only
            tables = ["ml.recommendations", "ml.carried_lists", "ml.similar_items", "ml.cold_start_recommendations"]
            runs.delete_run(connection, tables, run_id)
            runs.save_learners(connection, run_id, {} if full_run else learners)
            lists, (keys, cold_items, cold_scores) = _prepare_lists(
                connection, run_id, shop, end, knn, shelf, rules, config, targets, (n, n_cold_start), generated_at
            )
            per_shelf = dict.fromkeys(shelf, 0)
            batches = [targets[first : first + batch_size] for first in range(0, len(targets), batch_size)]
            for batch_rows in iterate_in_workers(partial(_batch_rows, lists, shelf), batches):  # copied as they come
                for name, rows in batch_rows.items():
                    per_shelf[name] += frames.copy_csv(connection, "ml.recommendations", rows)

            layers = lists.layers
            n_similar_rows = _write_similar_items(connection, run_id, lists.data, knn, layers, rules, n_similar)
            n_cold_rows = _write_cold_start(connection, run_id, lists.data, keys, cold_items, cold_scores)
            carried = schedule.carry_untouched(connection, run_id, rescore)
            runs.upsert_run(
                connection,
                run_id,
                data_interval_end=generated_at,
                data_cutoff_at=generated_at,
                finished_at=datetime.now(UTC),
                status="recommended",
                champion_model=champion,
                business_rules_version=rules.version,
                repeat_purchase_categories="|".join(sorted(set(layers.categories[layers.repeat_item]))),
            )
    result = {
        "run_id": run_id,
        "champion_model": champion,
        "users": len(lists.user_ids),
        "personalized_users": int(lists.can_personalize.sum()) if champion != PopularityRecommender.name else 0,
        "recommendations": sum(per_shelf.values()),
        "placements": per_shelf,
        "placement_champions": {name: champion_name for name, (champion_name, _) in shelf.items()},
        "users_carried": carried,
        "similar_items": n_similar_rows,
        "cold_start_recommendations": n_cold_rows,
        "cold_start_segments": int(len(keys)),
        "cold_start_model": lists.cold.model_name,
        "cold_start_users": int(lists.cold.served.sum()),
        "in_stock_items": int((shop[1]["is_in_stock"] == "t").sum()),
        "business_rules_version": rules.version,
    }
    logger.info("run %s recommendations: %s", run_id, result)
    return result


def _batch_rows(
    lists: _Lists, shelf: dict[str, tuple[str, Recommender]], batch: np.ndarray
) -> dict[str, frames.CsvRows]:
    """The ``ml.recommendations`` rows of every placement for the users ``batch`` (in a worker process)."""
    ranked: dict[int, tuple] = {}  # a model's ranking of the batch, shared by its placements
    with shared_fits():  # and the candidates of rankers that share their fits
        return {
            name: frames.CsvRows.of(lists.frame(batch, name, champion_name, model, ranked))
            for name, (champion_name, model) in shelf.items()
        }


def _prepare_lists(
    connection: Any,
    run_id: str,
    shop: tuple[pd.DataFrame, pd.DataFrame, Interactions],
    end: float,
    knn: ItemKNNRecommender,
    shelf: dict[str, tuple[str, Recommender]],
    rules: BusinessRules,
    config: dict[str, Any],
    targets: np.ndarray,
    lengths: tuple[int, int],
    generated_at: datetime,
) -> tuple[_Lists, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The batches' list maker, and the cold-start segment lists (keys, items, scores) of the run.

    ``shop``: the users of ``dim_users`` (the first rows of the encoding), the catalogue and the events
    (:func:`_read_shop`); ``shelf``: the fitted model of each placement; ``lengths``: items per user list and
    per cold-start segment list.
    """
    users, catalogue, data = shop
    n, n_cold_start = lengths
    model = shelf.get(placements.FOR_YOU, next(iter(shelf.values())))[1]
    popularity = model if isinstance(model, PopularityRecommender) else knn.fallback_
    in_stock = np.zeros(data.n_items, dtype=bool)
    in_stock[: len(catalogue)] = catalogue["is_in_stock"].to_numpy() == "t"
    layers = ServingLayers.of(data, end, in_stock, rules)
    blocked = np.flatnonzero(layers.blocked)
    allowed = users["is_personalization_allowed"].fillna("t").to_numpy() != "f"
    has_history = np.diff(knn.user_items_.indptr)[: len(users)] > 0
    # opted-out users' purchases are not read, not even to filter their list
    consent = np.zeros(data.n_users, dtype=np.float32)
    consent[: len(users)] = allowed
    recent = sp.csr_array(sp.diags_array(consent) @ layers.recent)
    recent.eliminate_zeros()
    wide = n * rules.overfetch
    cold_users = np.intersect1d(np.flatnonzero(allowed & ~has_history), targets)
    cold = cold_start.serving_lists(
        connection, run_id, data, end, cold_users, config, wide, n_cold_start * rules.overfetch, blocked
    )
    cold_row = np.full(len(users), -1, dtype=np.int64)  # row of cold.items per user, -1: not served
    cold_row[cold_users[cold.served]] = np.flatnonzero(cold.served)
    group_of_user, keys, cold_items, cold_scores = cold_start.segment_lists(
        users, data, popularity, blocked, n_cold_start, rules, layers, config, cold.table, has_history
    )
    item_names = data.item_ids.copy()
    item_names[: len(catalogue)] = catalogue["item_name"].fillna(catalogue["item_id"]).to_numpy()
    reason_data = reasons_module.read_reason_data(
        connection,
        data,
        end,
        knn,
        layers,
        rules,
        item_names,
        consent,
        group_of_user,
        cold_items[1:],
        keys[1:],
        popularity,
    )
    lists = _Lists(
        run_id,
        users["user_id"].to_numpy(),
        data,
        layers,
        rules,
        n,
        wide,
        int(np.diff(reason_data.purchases.indptr).max(initial=0)),
        popularity,
        popularity.ranking(blocked),
        allowed & has_history,
        recent,
        cold,
        cold_row,
        reason_data,
        generated_at,
    )
    return lists, (keys, cold_items, cold_scores)


def _shelf_specs(
    conn: Any, run_id: str, model_name: str | None, shelves: Sequence[str], config: dict[str, Any]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each placement's model and parameters: ``model_name`` for all, else the run's champions (configured
    ``params`` where the run recorded none)."""
    shelf = {name: (model_name, None) for name in shelves} if model_name else _champions_of(conn, run_id)
    specs = {}
    for name in shelves:  # three placements
        champion, params = shelf[name]
        if champion not in ESTIMATORS:
            raise ValueError(f"unknown champion model {champion!r}")
        specs[name] = (champion, config["models"].get(champion, {}).get("params", {}) if params is None else params)
    return specs


def _fit_shelves(
    data: Interactions,
    end: float,
    specs: dict[str, tuple[str, dict[str, Any]]],
    config: dict[str, Any],
    carried: dict[str, object],
) -> tuple[ItemKNNRecommender, dict[str, tuple[str, Recommender]], dict[str, object]]:
    """The item-KNN of similar items (always) and each placement's model, each distinct model fitted once; and
    what a later incremental run keeps of them, by key: each trained ranker's learner and feature names, each
    ALS's item factors.

    ``carried`` is what the full run kept (an incremental run's; empty for a full run): a ranker whose key is in
    it keeps that learner and refits only its candidates
    (:meth:`recsys.models.ranker.CandidateRanker.refit_candidates`), and an ALS, alone or a ranker's candidate,
    starts from the full run's item factors (:meth:`recsys.models.factorization.ALSRecommender.fit`).
    """
    champion, params = specs.get(placements.FOR_YOU, next(iter(specs.values())))
    knn_params = config["models"].get(ItemKNNRecommender.name, {}).get("params", {})
    if champion == ItemKNNRecommender.name:
        knn_params = params
    knn = build_model(ItemKNNRecommender.name, knn_params, config).fit(data, end)
    fitted: dict[str, Recommender] = {json.dumps([ItemKNNRecommender.name, knn_params], sort_keys=True): knn}
    warm = {key: value for key, value in carried.items() if isinstance(value, ItemFactors)}
    shelf = {}
    with shared_fits():  # two placements' rankers that differ in the learner only share their candidates
        for name, spec in specs.items():  # a model per placement, each fitted once
            key = json.dumps(list(spec), sort_keys=True)
            if key not in fitted:
                model = build_model(*spec, config)
                if isinstance(model, CandidateRanker) and key in carried:
                    fitted[key] = model.refit_candidates(data, end, *carried[key], warm_start=warm)
                else:
                    fitted[key] = fit_warm(model, data, end, warm)
            shelf[name] = (spec[0], fitted[key])
    kept: dict[str, object] = {
        key: (model.model_, model.feature_names_)
        for key, model in fitted.items()
        if isinstance(model, CandidateRanker) and model.model_ is not None
    }
    for model in fitted.values():
        candidates = model.profile_.models if isinstance(model, CandidateRanker) else [model]
        kept |= {als.warm_start_key(): als.item_factors() for als in candidates if isinstance(als, ALSRecommender)}
    return knn, shelf, kept


def _write_similar_items(
    connection: Any,
    run_id: str,
    data: Interactions,
    knn: ItemKNNRecommender,
    layers: ServingLayers,
    rules: BusinessRules,
    n_similar: int,
) -> int:
    """``ml.similar_items`` of the run: item-KNN neighbours after the rules (no re-rank); the rows written."""
    blocked = np.flatnonzero(layers.blocked)
    similar, similar_scores = knn.similar_items(n_similar * rules.overfetch, filter_items=blocked)
    similar, similar_scores, _ = rules_module.apply_layers(
        similar,
        similar_scores,
        n_similar,
        rules,
        layers.blocked,
        layers.brands,
        layers.categories,
        diversify=False,
    )
    item_rows, item_ranks = np.nonzero(similar >= 0)
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "item_id": data.item_ids[item_rows],
            "item_rank": item_ranks + 1,
            "similar_item_id": data.item_ids[similar[item_rows, item_ranks]],
            "score": similar_scores[item_rows, item_ranks],
        }
    )
    return frames.copy_frame(connection, "ml.similar_items", frame)


def _write_cold_start(
    connection: Any, run_id: str, data: Interactions, keys: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> int:
    """``ml.cold_start_recommendations`` of the run, one list per segment key; the rows written."""
    rows, ranks = np.nonzero(items >= 0)
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "segment_key": keys[rows],
            "item_rank": ranks + 1,
            "item_id": data.item_ids[items[rows, ranks]],
            "score": scores[rows, ranks],
        }
    )
    return frames.copy_frame(connection, "ml.cold_start_recommendations", frame)


def _read_shop(connection: Any, start: float | None, end: float) -> tuple[pd.DataFrame, pd.DataFrame, Interactions]:
    """The users and catalogue of the marts, and the interactions in ``[start, end]`` encoded with them first."""
    users = frames.read_frame(
        connection,
        "select user_id, age_band, gender, is_personalization_allowed from analytics.dim_users",
    ).drop_duplicates("user_id", ignore_index=True)
    catalogue = frames.read_frame(
        connection, "select item_id, item_name, category, is_in_stock from analytics.dim_items"
    ).drop_duplicates("item_id", ignore_index=True)
    data = load_interactions(
        connection,
        start,
        end,
        user_ids=users["user_id"].to_numpy(),
        item_ids=catalogue["item_id"].to_numpy(),
        side_data=True,
    )
    return users, catalogue, data
