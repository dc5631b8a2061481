"""The field's learned ranker: LightGBM's LambdaMART over the neural ranker's candidates and features.

:class:`LightGBMRanker` is a :class:`~recsys.models.ranker.CandidateRanker`: the
candidates (the union of the single models' top lists), the point-in-time profile
features, the label windows and the negatives are those of the neural ranker,
so the two differ only in the learner. Here it is ``lightgbm.LGBMRanker`` with
the ``lambdarank`` objective, one query per user and label window: it learns
to order each user's candidates (NDCG), where the MLP classifies pairs one by
one. Queries without a bought candidate carry no ranking signal and are left
out of its training set.

Reproducible: ``deterministic=True`` with ``force_row_wise=True`` (LightGBM's
advice for stable sums), a fixed thread count ``n_jobs`` and the seed
``random_state``; the training rows come in a fixed order (label window, user
index, item index), so the same events give the same trees.
"""

from __future__ import annotations

import numpy as np
from lightgbm import LGBMRanker
from scipy.special import expit

from recsys.models.base import Recommender
from recsys.models.ranker import CandidateRanker


class LightGBMRanker(CandidateRanker):
    """LambdaMART re-ranking of the candidate models' lists with profile features (see the module docstring).

    ``candidate_models``, ``candidates_per_model``, ``label_days``, ``label_windows``, ``min_label_users``,
    ``negatives_per_positive``, ``max_train_users``, ``half_life_days``, ``profile_features``,
    ``text_features`` and ``batch_size`` are those of :class:`~recsys.models.neural_ranker.NeuralRanker`, with the
    same defaults: the candidates, the label windows and the features.

    Parameters
    ----------
    n_estimators : int, default 100
        Boosting rounds.
    learning_rate : float, default 0.05
        Shrinkage of each tree.
    num_leaves : int, default 15
        Leaves per tree.
    min_child_samples : int, default 20
        Training pairs per leaf at least.
    n_jobs : int, default 1
        LightGBM's threads (fixed, so a run does not depend on the machine's core count).
    random_state : int, optional
        Seed of the sampling and of LightGBM.

    Attributes
    ----------
    model_ : lightgbm.LGBMRanker or None
        The fitted LambdaMART; ``None`` when there were no labels to train on.
        The other attributes are those of :class:`~recsys.models.ranker.CandidateRanker`.
    train_queries_ : int
        Queries (user x label window with a bought candidate) it was trained on; set when it trained.
    """

    name = "lgbm_ranker"
    learner_params = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "n_jobs")

    def __init__(
        self,
        candidate_models: list[Recommender] | None = None,
        candidates_per_model: int = 50,
        label_days: float = 7.0,
        label_windows: int = 5,
        min_label_users: int = 10_000,
        negatives_per_positive: int = 20,
        max_train_users: int = 20_000,
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        half_life_days: float = 30.0,
        profile_features: bool = True,
        text_features: bool = False,
        batch_size: int = 5_000,
        n_jobs: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.candidate_models = candidate_models
        self.candidates_per_model = candidates_per_model
        self.label_days = label_days
        self.label_windows = label_windows
        self.min_label_users = min_label_users
        self.negatives_per_positive = negatives_per_positive
        self.max_train_users = max_train_users
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.half_life_days = half_life_days
        self.profile_features = profile_features
        self.text_features = text_features
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _train(self, features: np.ndarray, target: np.ndarray, query: np.ndarray) -> LGBMRanker:
        """LambdaMART on the queries with at least one bought candidate (rows of a query are contiguous)."""
        has_positive = np.bincount(query, weights=target.astype(np.float64)) > 0
        keep = has_positive[query]
        _, sizes = np.unique(query[keep], return_counts=True)  # sorted ids: the order of the contiguous blocks
        self.train_queries_ = len(sizes)
        model = LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        return model.fit(features[keep], target[keep].astype(np.int32), group=sizes)

    def _predict(self, features: np.ndarray) -> np.ndarray:
        """The logistic of LambdaMART's score: the same order, in (0, 1) as the served scores need."""
        return expit(self.model_.predict(features, num_threads=self.n_jobs))
