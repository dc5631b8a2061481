"""Every estimator a model configuration (``models.toml``) can name, by its ``name``."""

from __future__ import annotations

import itertools
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from recsys.models import config as model_config
from recsys.models.base import Recommender
from recsys.models.content import ContentRecommender
from recsys.models.factorization import ALSRecommender, SVDRecommender
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import CANDIDATE_MODELS, CandidateRanker
from recsys.models.sequence import SequenceRecommender
from recsys.models.social import FriendsBoughtRecommender

logger = logging.getLogger(__name__)

#: model name -> class
ESTIMATORS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        PopularityRecommender,
        ItemKNNRecommender,
        RepeatPurchaseRecommender,
        UserKNNRecommender,
        ALSRecommender,
        SVDRecommender,
        NeuralRanker,
        LightGBMRanker,
        SequenceRecommender,
        ContentRecommender,
        FriendsBoughtRecommender,
    )
}


#: the models, hyperparameters, search grids and champion rule (override with ``RECSYS_MODEL_CONFIG``)
MODEL_CONFIG = Path(__file__).with_name("models.toml")


def load_model_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read the model configuration (:data:`MODEL_CONFIG`, or ``RECSYS_MODEL_CONFIG``, or ``path``).

    Returns
    -------
    dict
        ``evaluation``, ``champion`` and ``models`` (``{name: {"params": ..., "search": ...}}``).

    Raises
    ------
    ValueError
        For an unknown section, key, model or model parameter (see :mod:`recsys.models.config`).
    """
    path = Path(path or os.environ.get("RECSYS_MODEL_CONFIG") or MODEL_CONFIG)
    with path.open("rb") as handle:
        return model_config.validate(tomllib.load(handle), path, ESTIMATORS)


def min_segment_users(config: dict[str, Any]) -> int:
    """k of k-anonymity: segment-level outputs need at least this many users (``[privacy] min_segment_users``)."""
    return int(config.get("privacy", {}).get("min_segment_users", 50))


def _params(spec: dict[str, Any]) -> dict[str, Any]:
    """TOML values as estimator parameters (arrays become tuples, as scikit-learn expects)."""
    return {name: tuple(value) if isinstance(value, list) else value for name, value in spec.items()}


def build_model(name: str, params: dict[str, Any], config: dict[str, Any]) -> Recommender:
    """One estimator from its name and parameters; a learned ranker gets the other models as candidates."""
    if issubclass(ESTIMATORS[name], CandidateRanker):
        candidates = [
            build_model(other, spec.get("params", {}), config)
            for other, spec in config["models"].items()
            if other in CANDIDATE_MODELS
        ]
        return ESTIMATORS[name](candidate_models=candidates, **_params(params))
    return ESTIMATORS[name](**_params(params))


def default_models(config: dict[str, Any] | None = None) -> list[Recommender]:
    """The models of the configuration with their ``params``, in file order (ties go to the earlier one)."""
    config = load_model_config() if config is None else config
    return [build_model(name, spec.get("params", {}), config) for name, spec in config["models"].items()]


def search_trials(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every model's ``params``, then its grid, in file order.

    The grid of a model is every combination of, for each parameter in its
    ``search``, the configured value and the searched ones.
    """
    trials = [(name, dict(spec.get("params", {}))) for name, spec in config["models"].items()]
    for name, spec in config["models"].items():  # a handful of models, each a small grid
        params, grid = spec.get("params", {}), spec.get("search", {})
        axes = [list(dict.fromkeys([params.get(key), *values])) for key, values in grid.items()]
        for values in itertools.product(*axes):
            point = {**params, **dict(zip(grid, values, strict=True))}
            point = {key: value for key, value in point.items() if value is not None}
            if point != params:
                trials.append((name, point))
    return trials
