"""Promotion targeting: who is likely to redeem a promotion, evaluated on held-out promotions.

For a promotion starting at ``T``, every user active in the ``history_days`` before ``T``
(an event or an order, signed up before ``T``) gets point-in-time features from
``analytics`` rows before ``T`` only (:data:`FEATURES`):

* promotion sensitivity: share of the promotions that ran in the history window the user
  redeemed, and share of their completed orders that carried a promotion;
* category affinity: share and (log) number of their events in the promotion's category
  (a sitewide promotion: all their events, i.e. overall activity);
* spending power: (log) net amount of completed orders; frequency: (log) completed orders;
  recency: days since their last event or order.

The label is whether the user redeemed that promotion (``analytics.fct_redemptions``).
A propensity model (scikit-learn, :class:`PromotionPropensity`) is trained on past
promotions and compared on held-out ones with two baselines: targeting by an RFM score
alone (quintiles of recency, frequency and monetary at ``T``, summed) and targeting
everyone (a constant score: AUC 0.5, precision = base rate).

:func:`target_promotions` (the Airflow task ``target_promotions``) writes, replacing the
run's earlier rows:

* ``ml.model_evaluations``: variant ``promotion``, segment ``all`` (pooled held-out
  promotions) and ``promotion:<promotion_id>``, models ``promotion_propensity``,
  ``promotion_rfm`` and ``promotion_everyone``, metrics ``roc_auc``,
  ``precision_top_decile``, ``lift_top_decile``, ``base_rate`` and ``users`` (k=0);
* ``ml.promotion_targets``: for every promotion active at the interval end (ends after it,
  starts before it plus ``horizon_days``), the users who allow personalization ranked by
  the propensity of a model refitted on every promotion ended by then, at most
  ``target_share`` of the scored users and ``max_targets`` rows per promotion;
* ``ml.fitted_learners``: that model (key :data:`LEARNER_KEY`). An incremental run
  (:mod:`recsys.orchestration.schedule`) scores with the model of the full run it carries
  from, without the evaluation and without refitting: the training rows are the features of
  promotions that ended, which a day changes only when a promotion ends.

The settings are the ``[promotions]`` section of the model configuration (``models.toml``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from recsys.db import frames, runs
from recsys.models import registry
from recsys.models.config import Promotions

logger = logging.getLogger(__name__)

VARIANT = "promotion"
PROPENSITY, RFM, EVERYONE = "promotion_propensity", "promotion_rfm", "promotion_everyone"
#: model features, in order (see the module docstring)
FEATURES: tuple[str, ...] = (
    "redemption_share",
    "promotion_order_share",
    "promotion_time_lift",
    "category_share",
    "log_category_events",
    "log_monetary",
    "log_orders",
    "recency_days",
    "is_sitewide",
)
#: events of prior weight in ``promotion_time_lift`` (a user with few events is not far from the average)
PRIOR_EVENTS = 5.0
#: defaults of the ``[promotions]`` configuration section
#: the ``[promotions]`` settings when the configuration has none (:class:`recsys.models.config.Promotions`)
DEFAULTS: dict[str, Any] = Promotions().model_dump()

_FEATURE_QUERY = """
with
promotions_in_history as (
    select starts_at, least(ends_at, %(cutoff)s) as ends_at
    from analytics.dim_promotions
    where starts_at < %(cutoff)s and ends_at > %(history_from)s
),
offered as (
    select count(*) as offered from promotions_in_history
),
events as (
    select
        interactions.user_id,
        count(*) as events,
        count(*) filter (where %(sitewide)s or lower(items.category) = lower(%(category)s)) as category_events,
        count(*) filter (
            where exists (
                select from promotions_in_history as running
                where interactions.event_at >= running.starts_at and interactions.event_at < running.ends_at
            )
        ) as promotion_events,
        max(interactions.event_at) as last_event_at
    from analytics.fct_interactions as interactions
    left join analytics.dim_items as items on interactions.item_id = items.item_id
    where interactions.event_at >= %(history_from)s and interactions.event_at < %(cutoff)s
    group by interactions.user_id
),
orders as (
    select
        user_id,
        count(*) filter (where is_completed) as orders,
        count(*) filter (where is_completed and has_promotion) as promotion_orders,
        coalesce(sum(net_amount), 0) as monetary,
        max(ordered_at) as last_order_at,
        max(ordered_at) filter (where is_completed) as last_completed_order_at
    from analytics.fct_orders
    where ordered_at >= %(history_from)s and ordered_at < %(cutoff)s
    group by user_id
),
redeemed_before as (
    select user_id, count(distinct promotion_id) as redeemed
    from analytics.fct_redemptions
    where redeemed_at >= %(history_from)s and redeemed_at < %(cutoff)s
    group by user_id
),
label as (
    select distinct user_id
    from analytics.fct_redemptions
    where promotion_id = %(promotion_id)s and redeemed_at < %(label_until)s
)
select
    users.user_id,
    users.is_personalization_allowed,
    coalesce(events.events, 0) as events,
    coalesce(events.category_events, 0) as category_events,
    coalesce(events.promotion_events, 0) as promotion_events,
    coalesce(orders.orders, 0) as orders,
    coalesce(orders.promotion_orders, 0) as promotion_orders,
    coalesce(orders.monetary, 0) as monetary,
    coalesce(redeemed_before.redeemed, 0) as redeemed,
    offered.offered,
    extract(epoch from %(cutoff)s - greatest(events.last_event_at, orders.last_order_at)) / 86400 as recency_days,
    extract(epoch from %(cutoff)s - orders.last_completed_order_at) / 86400 as order_recency_days,
    label.user_id is not null as redeemed_promotion
from analytics.dim_users as users
cross join offered
left join events on users.user_id = events.user_id
left join orders on users.user_id = orders.user_id
left join redeemed_before on users.user_id = redeemed_before.user_id
left join label on users.user_id = label.user_id
where users.signup_at < %(cutoff)s and (events.user_id is not null or orders.user_id is not null)
"""

PROMOTION_TARGETS_COLUMNS = ("run_id", "promotion_id", "user_id", "target_rank", "propensity")


@dataclass(frozen=True)
class Promotion:
    """A promotion as the feature query needs it."""

    promotion_id: str
    category: str | None
    starts_at: pd.Timestamp
    ends_at: pd.Timestamp


def settings(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``[promotions]`` section of the model configuration over :data:`DEFAULTS`."""
    config = config if config is not None else registry.load_model_config()
    return {**DEFAULTS, **config.get("promotions", {})}


# --------------------------------------------------------------------------- features


def read_promotions(conn: Any) -> list[Promotion]:
    """Every promotion of ``analytics.dim_promotions``, by start."""
    frame = frames.read_frame(
        conn, "select promotion_id, category, starts_at, ends_at from analytics.dim_promotions order by starts_at"
    )
    return [
        Promotion(pid, category if isinstance(category, str) else None, pd.Timestamp(start), pd.Timestamp(end))
        for pid, category, start, end in zip(  # a handful of promotions, not rows of users
            frame["promotion_id"], frame["category"], frame["starts_at"], frame["ends_at"], strict=True
        )
    ]


#: columns of the promotion queries read as text (the others are parsed: numbers, ``t``/``f`` booleans)
_TEXT = {"user_id": str, "promotion_id": str, "category": str, "starts_at": str, "ends_at": str}


def feature_frame(raw: pd.DataFrame, is_sitewide: bool) -> pd.DataFrame:
    """Model features (:data:`FEATURES`) from the per-user aggregates of the feature query.

    Parameters
    ----------
    raw : DataFrame
        Columns ``events``, ``category_events``, ``orders``, ``promotion_orders``, ``monetary``,
        ``redeemed``, ``offered``, ``recency_days`` (numbers, or their text from ``COPY``).
    is_sitewide : bool
        The promotion applies to every category.

    Returns
    -------
    DataFrame
        One float column per feature, index of ``raw``.
    """
    counts = ["events", "category_events", "promotion_events", "orders", "promotion_orders", "monetary", "redeemed"]
    number = raw[[*counts, "offered"]].apply(pd.to_numeric).astype(float)
    # how much more than the average user someone shops while promotions run (shrunk towards the average)
    expected = number["promotion_events"].sum() / max(number["events"].sum(), 1.0)
    promotion_time = (number["promotion_events"] + PRIOR_EVENTS * expected) / (number["events"] + PRIOR_EVENTS)
    recency = pd.to_numeric(raw["recency_days"]).astype(float)
    return pd.DataFrame(
        {
            "redemption_share": number["redeemed"] / number["offered"].clip(lower=1),
            "promotion_order_share": number["promotion_orders"] / number["orders"].clip(lower=1),
            "promotion_time_lift": promotion_time - expected,
            "category_share": number["category_events"] / number["events"].clip(lower=1),
            "log_category_events": np.log1p(number["category_events"]),
            "log_monetary": np.log1p(number["monetary"].clip(lower=0)),
            "log_orders": np.log1p(number["orders"]),
            "recency_days": recency.fillna(recency.max() if recency.notna().any() else 0.0),
            "is_sitewide": float(is_sitewide),
        },
        index=raw.index,
    )


def rfm_score(raw: pd.DataFrame) -> np.ndarray:
    """Classic RFM score (3..15): quintiles of recency (of the last completed order), frequency and monetary.

    Ranks are among the rows given (one promotion's users at its start); users without a completed
    order share the worst recency, frequency and monetary ranks.
    """
    recency = pd.to_numeric(raw["order_recency_days"]).astype(float).fillna(np.inf)
    parts = [-recency, pd.to_numeric(raw["orders"]).astype(float), pd.to_numeric(raw["monetary"]).astype(float)]
    return sum(np.ceil(5 * part.rank(pct=True, method="min")).to_numpy() for part in parts)


def promotion_rows(
    conn: Any,
    promotion: Promotion,
    cutoff: pd.Timestamp,
    label_until: pd.Timestamp,
    history_days: float,
    max_users: int | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Point-in-time rows of one promotion: features at ``cutoff``, label, RFM score, user id.

    Parameters
    ----------
    conn : psycopg2 connection
        Warehouse connection.
    promotion : Promotion
        The promotion (its category decides the affinity features).
    cutoff : Timestamp
        Features use rows strictly before it (a promotion's start, or "now" to target).
    label_until : Timestamp
        Redemptions of the promotion strictly before it count as the label.
    history_days : float
        Length of the feature window before ``cutoff``.
    max_users : int, optional
        Keep a uniform random sample of at most this many users (bounds memory at 1M users).
    random_state : int
        Seed of the sample.

    Returns
    -------
    DataFrame
        ``promotion_id``, ``user_id``, ``is_personalization_allowed``, :data:`FEATURES`, ``rfm``, ``label``.
    """
    with conn.cursor() as cursor:
        query = cursor.mogrify(
            _FEATURE_QUERY,
            {
                "cutoff": cutoff.to_pydatetime(),
                "history_from": (cutoff - timedelta(days=history_days)).to_pydatetime(),
                "label_until": label_until.to_pydatetime(),
                "promotion_id": promotion.promotion_id,
                "category": promotion.category,
                "sitewide": promotion.category is None,
            },
        ).decode()
    raw = frames.read_frame(conn, query, dtype=_TEXT)
    if max_users is not None and len(raw) > max_users:
        raw = raw.sample(n=max_users, random_state=random_state).sort_index()
    features = feature_frame(raw, promotion.category is None)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "promotion_id": promotion.promotion_id,
                    "user_id": raw["user_id"].to_numpy(),
                    "is_personalization_allowed": raw["is_personalization_allowed"].astype(bool).to_numpy(),
                },
                index=raw.index,
            ),
            features.astype(np.float32),
            pd.DataFrame({"rfm": rfm_score(raw), "label": raw["redeemed_promotion"].astype(bool)}, index=raw.index),
        ],
        axis=1,
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- model and metrics


class PromotionPropensity:
    """Probability that a user redeems a promotion, from :data:`FEATURES`.

    Parameters
    ----------
    estimator : {"logistic", "gradient_boosting"}
        Standardized logistic regression, or scikit-learn's histogram gradient boosting.
    random_state : int
        Seed of the estimator.
    """

    def __init__(self, estimator: str = "logistic", random_state: int = 0) -> None:
        self.estimator = estimator
        self.random_state = random_state

    def fit(self, rows: pd.DataFrame) -> PromotionPropensity:
        """Fit on rows of :func:`promotion_rows` (both labels must occur)."""
        labels = rows["label"].to_numpy()
        if labels.all() or not labels.any():
            raise ValueError("training rows need redeemers and non-redeemers")
        if self.estimator == "logistic":
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=self.random_state))
        elif self.estimator == "gradient_boosting":
            model = HistGradientBoostingClassifier(
                max_iter=200,
                learning_rate=0.05,
                max_leaf_nodes=15,
                min_samples_leaf=100,
                random_state=self.random_state,
            )
        else:
            raise ValueError(f"unknown estimator {self.estimator!r}: use 'logistic' or 'gradient_boosting'")
        self.model_ = model.fit(rows[list(FEATURES)].to_numpy(), labels)
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Redemption probability of each row."""
        return self.model_.predict_proba(rows[list(FEATURES)].to_numpy())[:, 1]


def precision_at_top(labels: np.ndarray, scores: np.ndarray, share: float = 0.1) -> float:
    """Precision of the top ``share`` of rows by score; ties at the cut count at their mean label.

    That is the expected precision when ties are broken at random, so a constant score gets the base rate.
    """
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    k = max(1, math.ceil(share * len(scores)))
    threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = scores > threshold
    tied = scores == threshold
    return float((labels[above].sum() + (k - above.sum()) * labels[tied].mean()) / k)


def targeting_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``roc_auc``, ``precision_top_decile``, ``lift_top_decile``, ``base_rate`` of one score."""
    base_rate = float(np.mean(labels))
    precision = precision_at_top(labels, scores)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "precision_top_decile": precision,
        "lift_top_decile": precision / base_rate,
        "base_rate": base_rate,
    }


# --------------------------------------------------------------------------- evaluation


def holdout_promotions(
    promotions: list[Promotion], end: pd.Timestamp, test_days: float, minimum: int
) -> list[Promotion]:
    """Promotions starting in the test window ``[end - test_days, end)``, else the latest ``minimum`` before ``end``."""
    started = [promotion for promotion in promotions if promotion.starts_at < end]
    in_window = [promotion for promotion in started if promotion.starts_at >= end - timedelta(days=test_days)]
    return in_window if len(in_window) >= minimum else started[-minimum:]


def evaluate(
    conn: Any, run_id: str, end: pd.Timestamp, options: dict[str, Any], test_days: float, min_users: int
) -> pd.DataFrame:
    """Evaluation rows of the held-out promotions (model trained on promotions ended by the first held-out start).

    Returns an empty frame (with a warning) when there is no held-out promotion, no earlier one to train
    on, or no redeemer and non-redeemer among either.
    """
    promotions = read_promotions(conn)
    held_out = holdout_promotions(promotions, end, test_days, int(options["holdout_promotions"]))
    if not held_out:
        logger.warning("no promotion started before %s: no promotion evaluation", end)
        return pd.DataFrame()
    cutoff = min(promotion.starts_at for promotion in held_out)
    train_on = [promotion for promotion in promotions if promotion.ends_at <= cutoff]
    train = _rows(conn, train_on, cutoff, options, keep_user_ids=False)
    test = _rows(conn, held_out, end, options)
    if train.empty or test.empty or train["label"].nunique() < 2 or test["label"].nunique() < 2:
        logger.warning("too few promotions or redemptions before %s to evaluate promotion targeting", end)
        return pd.DataFrame()
    model = PromotionPropensity(options["estimator"], int(options["random_state"])).fit(train)
    test = test.assign(propensity=model.predict(test))
    segments = [("all", test)] + [
        (f"promotion:{pid}", group)
        for pid, group in test.groupby("promotion_id", sort=True)
        if group["user_id"].nunique() >= min_users and group["label"].nunique() == 2
    ]
    rows = []
    for segment, group in segments:  # a few segments x three scores
        for model_name, scores in (
            (PROPENSITY, group["propensity"]),
            (RFM, group["rfm"]),
            (EVERYONE, np.zeros(len(group))),
        ):
            metrics = targeting_metrics(group["label"].to_numpy(), np.asarray(scores)) | {
                "users": float(group["user_id"].nunique())
            }
            rows += [
                {"model_name": model_name, "segment": segment, "metric": metric, "k": 0, "metric_value": value}
                for metric, value in metrics.items()
            ]
    logger.info(
        "promotion targeting on %d held-out promotions (%d rows), trained on %d promotions (%d rows) before %s",
        len(held_out),
        len(test),
        len(train_on),
        len(train),
        cutoff,
    )
    return pd.DataFrame(rows).assign(run_id=run_id, variant=VARIANT)


def _rows(
    conn: Any,
    promotions: list[Promotion],
    label_until: pd.Timestamp,
    options: dict[str, Any],
    keep_user_ids: bool = True,
) -> pd.DataFrame:
    """Training or test rows: each promotion's users at its start, labelled until ``label_until``.

    Training rows drop ``user_id`` (the largest column) as each promotion is read, to bound memory.
    """
    parts = [
        promotion_rows(
            conn,
            promotion,
            promotion.starts_at,
            label_until,
            float(options["history_days"]),
            int(options["max_users_per_promotion"]),
            int(options["random_state"]),
        ).drop(columns=[] if keep_user_ids else ["user_id"])
        for promotion in promotions  # a handful of promotions; each query is set-based
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# --------------------------------------------------------------------------- targets


def active_promotions(promotions: list[Promotion], end: pd.Timestamp, horizon_days: float) -> list[Promotion]:
    """Promotions that end after ``end`` and start before ``end + horizon_days``."""
    return [p for p in promotions if p.ends_at > end and p.starts_at < end + timedelta(days=horizon_days)]


def rank_targets(scored: pd.DataFrame, target_share: float, max_targets: int) -> pd.DataFrame:
    """Rank one promotion's users by propensity (ties by user_id) and keep the top of them.

    Parameters
    ----------
    scored : DataFrame
        ``promotion_id``, ``user_id``, ``is_personalization_allowed``, ``propensity`` of the scored users.
    target_share : float
        Keep at most this share of the scored users (rounded up) ...
    max_targets : int
        ... and at most this many.

    Returns
    -------
    DataFrame
        ``promotion_id``, ``user_id``, ``target_rank`` (1 = most likely), ``propensity``; only users
        who allow personalization.
    """
    allowed = scored[scored["is_personalization_allowed"]]
    keep = min(max_targets, math.ceil(target_share * len(scored)))
    top = allowed.sort_values(["propensity", "user_id"], ascending=[False, True], kind="stable").head(keep)
    return top.assign(target_rank=np.arange(1, len(top) + 1))[["promotion_id", "user_id", "target_rank", "propensity"]]


#: the key of the propensity model in ``ml.fitted_learners``
LEARNER_KEY = "promotion_propensity"


def targets(
    conn: Any, end: pd.Timestamp, options: dict[str, Any], model: PromotionPropensity | None = None
) -> tuple[pd.DataFrame, PromotionPropensity | None]:
    """Targets of every active promotion, and the model that scored them.

    ``model`` scores when given; else a model refitted on every promotion ended by ``end`` (``None`` when no
    promotion is active or none ended with both redeemers and non-redeemers: no targets).
    """
    no_targets = pd.DataFrame(columns=["promotion_id", "user_id", "target_rank", "propensity"])
    promotions = read_promotions(conn)
    active = active_promotions(promotions, end, float(options["horizon_days"]))
    if not active:
        logger.info("no promotion active at %s: no promotion targets", end)
        return no_targets, None
    if model is None:
        train = _rows(conn, [p for p in promotions if p.ends_at <= end], end, options, keep_user_ids=False)
        if train.empty or train["label"].nunique() < 2:
            logger.warning("no past promotion with redeemers and non-redeemers before %s: no promotion targets", end)
            return no_targets, None
        model = PromotionPropensity(options["estimator"], int(options["random_state"])).fit(train)
    parts = []
    for promotion in active:  # a few active promotions; every user of one is scored in one call
        scored = promotion_rows(conn, promotion, end, end, float(options["history_days"]))
        parts.append(
            rank_targets(
                scored.assign(propensity=model.predict(scored)),
                float(options["target_share"]),
                int(options["max_targets"]),
            )
        )
    return pd.concat(parts, ignore_index=True), model


def target_promotions(
    conn: Any,
    run_id: str,
    data_interval_end: datetime,
    config: dict[str, Any] | None = None,
    carried_from: str | None = None,
) -> dict[str, Any]:
    """Evaluate promotion targeting and write the run's promotion targets (one transaction, committed here).

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN.
    run_id : str
        The model run (its earlier promotion rows are replaced).
    data_interval_end : datetime
        "Now": features and labels use rows before it; active promotions are judged against it.
    config : dict, optional
        The model configuration (default :func:`recsys.models.registry.load_model_config`).
    carried_from : str, optional
        The full run an incremental run (:mod:`recsys.orchestration.schedule`) carries its models from: the run
        scores with that run's propensity model (refitted when it stored none) and does not evaluate (that run's
        evaluation stands). ``None``: a full run, which evaluates, refits and stores its model.

    Returns
    -------
    dict
        Rows written per table, and the held-out metrics of the ``all`` segment (for XCom and logs).
    """
    config = config if config is not None else registry.load_model_config()
    options = settings(config)
    end = pd.Timestamp(data_interval_end).tz_convert("UTC")
    test_days = float(config.get("evaluation", {}).get("test_days", 7))
    with frames.connection(conn) as connection, runs.run_step(connection, run_id):
        runs.ensure_schema(connection)
        full_run = carried_from is None
        evaluations = (
            evaluate(connection, run_id, end, options, test_days, registry.min_segment_users(config))
            if full_run
            else pd.DataFrame()
        )
        kept = None if full_run else runs.read_learners(connection, carried_from, [LEARNER_KEY]).get(LEARNER_KEY)
        chosen, model = targets(connection, end, options, kept)
        chosen = chosen.assign(run_id=run_id)
        runs.delete_run(connection, ["ml.model_evaluations"], run_id, variant=VARIANT)
        runs.delete_run(connection, ["ml.promotion_targets"], run_id)
        if full_run:  # the model the incremental runs after it score with
            runs.delete_run(connection, ["ml.fitted_learners"], run_id, model_key=LEARNER_KEY)
            runs.save_learners(connection, run_id, {} if model is None else {LEARNER_KEY: model})
        written = {
            "model_evaluations": frames.copy_frame(connection, "ml.model_evaluations", evaluations),
            "promotion_targets": frames.copy_frame(
                connection, "ml.promotion_targets", chosen[list(PROMOTION_TARGETS_COLUMNS)]
            ),
        }
    summary = {}
    if not evaluations.empty:
        overall = evaluations[(evaluations["segment"] == "all") & (evaluations["metric"] != "users")]
        keys = overall["model_name"] + "." + overall["metric"]
        summary = dict(zip(keys, overall["metric_value"].round(4), strict=True))
    logger.info("promotion targeting of run %s: %s %s", run_id, written, summary)
    used = f"kept from {carried_from}" if kept is not None else "refitted" if model is not None else None
    targeted = int(chosen["promotion_id"].nunique())
    return {"rows": written, "evaluation": summary, "promotions_targeted": targeted, "model": used}
