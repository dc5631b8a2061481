"""The model configuration file: its models build, its grids expand as documented, bad files fail clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from recsys.models import registry
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.orchestration import publishing

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
    return registry.load_model_config()


def test_the_shipped_configuration_builds_every_model() -> None:
    models = registry.default_models(registry.load_model_config(registry.MODEL_CONFIG))
    assert [model.name for model in models] == [
        "popularity",
        "repeat_purchase",
        "item_knn",
        "user_knn",
        "als",
        "svd",
        "neural_ranker",
        "lgbm_ranker",
        "sequence",
        "friends_bought",
        "content",
    ]


def test_environment_variable_points_at_another_file(config: dict) -> None:
    assert list(config["models"]) == ["popularity", "user_knn", "neural_ranker"]
    ranker = registry.default_models(config)[-1]
    assert isinstance(ranker, NeuralRanker) and ranker.hidden_layer_sizes == (8,)  # TOML arrays become tuples
    # the ranker's candidates are the configured candidate models, with their params
    assert [model.name for model in ranker.candidate_models] == ["popularity", "user_knn"]
    assert ranker.candidate_models[1].k == 50


def test_the_lgbm_ranker_takes_the_same_configured_candidates(tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(SMALL + "\n[models.lgbm_ranker]\nparams = { num_leaves = 7, random_state = 3 }\n")
    neural, lgbm = registry.default_models(registry.load_model_config(path))[-2:]
    assert isinstance(lgbm, LightGBMRanker) and (lgbm.num_leaves, lgbm.random_state) == (7, 3)
    assert repr(lgbm.candidate_models) == repr(neural.candidate_models)


def test_grid_is_every_combination_of_configured_and_searched_values(config: dict) -> None:
    trials = registry.search_trials(config)
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
        registry.load_model_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[evaluation]\ntest_dayz = 7\n", r"unknown key 'evaluation.test_dayz'; valid: \['k', 'max_search_trials'"),
        ("[evalution]\nk = 5\n", r"unknown key 'evalution'; valid: \['champion', 'cold_start', 'evaluation'"),
        ("[evaluation]\nk = 'ten'\n", r"evaluation.k: Input should be a valid integer"),
        ("[models.user_knn]\nparams = { kk = 5 }\n", r"unknown parameters \['kk'\] of model 'user_knn'; valid: .*'k'"),
        ("[models.user_knn]\nsearch = { simillarity = ['pearson'] }\n", r"unknown parameters \['simillarity'\]"),
    ],
)
def test_a_misspelt_key_is_an_error_naming_the_valid_ones(tmp_path, text, message) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text + ("" if "[models." in text else "[models.popularity]\nparams = {}\n"))
    with pytest.raises(ValueError, match=message):
        registry.load_model_config(path)


def test_sections_left_out_get_their_documented_defaults(config: dict) -> None:
    assert config["evaluation"] == {
        "test_days": 7,
        "validation_days": 7,
        "k": 10,
        "max_search_trials": 40,
        "max_users": 50_000,
        "search_users": 200_000,
    }
    assert config["privacy"]["min_segment_users"] == 50
    assert config["champion"]["baselines"] == ["popularity", "repeat_purchase"]


def test_the_ab_challenger_is_unset_by_default_and_must_be_a_known_model(tmp_path) -> None:
    assert registry.load_model_config(registry.MODEL_CONFIG)["experiment"] == {"challenger": None}
    path = tmp_path / "models.toml"
    path.write_text(SMALL + '\n[experiment]\nchallenger = "user_knn"\n')
    assert registry.load_model_config(path)["experiment"]["challenger"] == "user_knn"
    path.write_text(SMALL + '\n[experiment]\nchallenger = "magic"\n')
    with pytest.raises(ValueError, match="unknown \\[experiment\\] challenger 'magic'"):
        registry.load_model_config(path)


def test_every_configured_model_has_a_reason_code_the_recs_contract_accepts() -> None:
    """A model's own ``reason_code`` (rows no grounded reason explains) must pass the recs contract's check."""
    path = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "recs" / "user_recommendations.yml"
    (model,) = yaml.safe_load(path.read_text())["models"]
    column = next(column for column in model["columns"] if column["name"] == "reason_code")
    check = next(constraint["expression"] for constraint in column["constraints"] if constraint["type"] == "check")
    accepted = set(re.findall(r"'(\w+)'", check))
    configured = {model.name for model in registry.default_models(registry.load_model_config(registry.MODEL_CONFIG))}
    assert configured - {"popularity"} <= set(publishing.REASON_CODES), "popularity's rows say 'popular'"
    assert set(publishing.REASON_CODES.values()) | {"popular"} <= accepted
    assert publishing.REASON_CODES["sequence"] == "next_in_sequence"
