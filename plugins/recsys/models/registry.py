"""Every estimator a model configuration (``models.toml``) can name, by its ``name``."""

from __future__ import annotations

from recsys.models.base import Recommender
from recsys.models.factorization import ALSRecommender, SVDRecommender
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import NeuralRanker
from recsys.models.sequence import SequenceRecommender

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
    )
}
