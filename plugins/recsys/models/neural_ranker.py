"""The neural ranker: an MLP over the candidates and profile features of :mod:`recsys.models.ranker`."""

from __future__ import annotations

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from recsys.models.base import Recommender
from recsys.models.ranker import CandidateRanker


class NeuralRanker(CandidateRanker):
    """MLP re-ranking of the candidate models' lists with profile features (see the module docstring).

    Parameters
    ----------
    candidate_models : list of Recommender, optional
        Candidate generators (cloned and fitted); default
        :func:`recsys.models.ranker.default_candidate_models`. The first one that is a
        :class:`~recsys.models.popularity.PopularityRecommender` also fills short lists.
    candidates_per_model : int, default 50
        Items each candidate model proposes per user.
    label_days : float, default 7
        Length of a training label window.
    label_windows : int, default 5
        Consecutive label windows before the reference time at most, each with the
        candidates and features of its own start (more labels for small shops).
    min_label_users : int, default 10000
        Label windows are taken newest first until they hold this many label users (each window's
        at most ``max_train_users``): a large shop learns from its latest weeks, a small one from all.
    negatives_per_positive : int, default 20
        Negatives kept per positive (uniform subsample of the unbought candidates).
    max_train_users : int, default 20000
        Users with label purchases sampled for training (bounds time and memory).
    hidden_layer_sizes : tuple of int, default (64, 32)
        The MLP's hidden layers.
    alpha : float, default 1e-3
        L2 penalty of the MLP.
    max_iter : int, default 60
        Maximum epochs (early stopping on a 10% validation split usually ends sooner).
    half_life_days : float, default 30
        Decay of the interest features (as ``interest_half_life_days`` of dbt).
    profile_features : bool, default True
        Use the user and user-item features; ``False`` keeps only the
        candidate ranks and the item features (an ablation: what the profile adds).
    text_features : bool, default False
        Also the text features of :mod:`recsys.models.text_features` (``text_match``,
        ``category_sentiment``); off by default: they did not help on the simulated shops (docs/text.md).
    batch_size : int, default 5000
        Users per scoring batch.
    random_state : int, optional
        Seed of the sampling and the MLP.

    Attributes
    ----------
    model_ : sklearn.pipeline.Pipeline or None
        Scaler + MLP; ``None`` when there were no labels to train on. The
        other attributes are those of :class:`CandidateRanker`.
    """

    name = "neural_ranker"
    learner_params = ("hidden_layer_sizes", "alpha", "max_iter")

    def __init__(
        self,
        candidate_models: list[Recommender] | None = None,
        candidates_per_model: int = 50,
        label_days: float = 7.0,
        label_windows: int = 5,
        min_label_users: int = 10_000,
        negatives_per_positive: int = 20,
        max_train_users: int = 20_000,
        hidden_layer_sizes: tuple[int, ...] = (64, 32),
        alpha: float = 1e-3,
        max_iter: int = 60,
        half_life_days: float = 30.0,
        profile_features: bool = True,
        text_features: bool = False,
        batch_size: int = 5_000,
        random_state: int | None = None,
    ) -> None:
        self.candidate_models = candidate_models
        self.candidates_per_model = candidates_per_model
        self.label_days = label_days
        self.label_windows = label_windows
        self.min_label_users = min_label_users
        self.negatives_per_positive = negatives_per_positive
        self.max_train_users = max_train_users
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.half_life_days = half_life_days
        self.profile_features = profile_features
        self.text_features = text_features
        self.batch_size = batch_size
        self.random_state = random_state

    def _train(self, features: np.ndarray, target: np.ndarray, query: np.ndarray) -> object:
        """Scaler + MLP on the pairs as independent examples (the query is not used)."""
        model = make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=self.hidden_layer_sizes,
                alpha=self.alpha,
                batch_size=256,
                max_iter=self.max_iter,
                early_stopping=True,
                n_iter_no_change=10,
                random_state=self.random_state,
            ),
        )
        with threadpool_limits(1, "blas"):  # one BLAS thread: the same floating-point sums on every machine
            return model.fit(features, target)

    def _predict(self, features: np.ndarray) -> np.ndarray:
        with threadpool_limits(1, "blas"):  # as in fit: results do not depend on the core count
            return self.model_.predict_proba(features)[:, 1]
