"""The model configuration file: its models build, its grids expand as documented, bad files fail clearly."""

from __future__ import annotations

import pytest

from recsys.models.ranker import NeuralRanker
from recsys.orchestration import training

SMALL = """
[evaluation]
test_days = 7

[models.popularity]
params = { window_days = 30 }
search = { window_days = [7, 30] }

[models.user_knn]
params = { k = 50 }
search = { k = [20], similarity = ["cosine", "pearson"] }

[models.neural_ranker]
params = { hidden_layer_sizes = [8], label_windows = 1 }
"""


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    path = tmp_path / "models.toml"
    path.write_text(SMALL)
    monkeypatch.setenv("RECSYS_MODEL_CONFIG", str(path))
    return training.load_model_config()


def test_the_shipped_configuration_builds_every_model() -> None:
    models = training.default_models(training.load_model_config(training.MODEL_CONFIG))
    assert [model.name for model in models] == [
        "popularity",
        "repeat_purchase",
        "item_knn",
        "user_knn",
        "als",
        "svd",
        "neural_ranker",
    ]


def test_environment_variable_points_at_another_file(config: dict) -> None:
    assert list(config["models"]) == ["popularity", "user_knn", "neural_ranker"]
    ranker = training.default_models(config)[-1]
    assert isinstance(ranker, NeuralRanker) and ranker.hidden_layer_sizes == (8,)  # TOML arrays become tuples
    # the ranker's candidates are the configured candidate models, with their params
    assert [model.name for model in ranker.candidate_models] == ["popularity", "user_knn"]
    assert ranker.candidate_models[1].k == 50


def test_grid_is_every_combination_of_configured_and_searched_values(config: dict) -> None:
    trials = training._search_trials(config)
    assert trials[:3] == [
        ("popularity", {"window_days": 30}),
        ("user_knn", {"k": 50}),
        ("neural_ranker", {"hidden_layer_sizes": [8], "label_windows": 1}),
    ], "every model's params come first"
    assert trials[3:] == [
        ("popularity", {"window_days": 7}),  # 30 is the configured value: not repeated
        # similarity is not in params: the estimator's default (left out) is one value of its axis
        ("user_knn", {"k": 50, "similarity": "cosine"}),
        ("user_knn", {"k": 50, "similarity": "pearson"}),
        ("user_knn", {"k": 20}),
        ("user_knn", {"k": 20, "similarity": "cosine"}),
        ("user_knn", {"k": 20, "similarity": "pearson"}),
    ]


def test_an_unknown_model_name_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[models.deep_magic]\nparams = {}\n")
    with pytest.raises(ValueError, match=r"unknown models \['deep_magic'\]"):
        training.load_model_config(path)
