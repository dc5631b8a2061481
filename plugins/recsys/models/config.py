"""The model configuration (``models.toml``) as typed settings: a misspelt key is an error naming the valid ones.

Every section and its defaults are declared here once; :func:`recsys.models.registry.load_model_config`
validates the file against :class:`ModelConfig` and hands the code a plain dict with every default filled in.
The settings reference of the docs (``docs/reference/settings.md``) lists the same fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evaluation(_Section):
    """``[evaluation]``: the time split and the hyperparameter search."""

    test_days: float = Field(7, gt=0, description="days of the test window, before the run end")
    validation_days: float = Field(7, gt=0, description="days of the validation window, before the test window")
    k: int = Field(10, ge=1, description="list length of the champion's metric (NDCG@k)")
    max_search_trials: int = Field(40, ge=1, description="trials of the grid search in all, in file order")
    max_users: int = Field(
        50_000, ge=1, description="users evaluated per window at most: a sample with a fixed seed beyond that"
    )
    search_users: int = Field(
        200_000, ge=1, description="users whose events the search's trials fit on at most: a fixed-seed sample"
    )


class Champion(_Section):
    """``[champion]``: the gate a model passes to be served."""

    baselines: list[str] = Field(["popularity", "repeat_purchase"], description="models the champion must beat")
    min_z: float = Field(1.645, description="one-sided z of the paired test against each baseline")


class Privacy(_Section):
    """``[privacy]``: k-anonymity of segment-level outputs."""

    min_segment_users: int = Field(50, ge=1, description="segments with fewer users are suppressed")


class ColdStart(_Section):
    """``[cold_start]``: lists for users without history."""

    first_days: float = Field(7, gt=0, description="days after signup a new user's truth is taken from")
    truth_events: list[str] = Field(["purchase"], min_length=1, description="event types that count as truth")
    window_days: float | None = Field(30, description="days of history the segment lists are built from")
    alpha: float = Field(1.0, ge=0, description="ridge penalty of the demographic model")
    segment_weight: float = Field(0.5, ge=0, le=1, description="blend of segment popularity and overall popularity")


class Promotions(_Section):
    """``[promotions]``: promotion targeting."""

    estimator: str = Field("logistic", description="propensity model: logistic or gradient_boosting")
    history_days: float = Field(60, gt=0, description="days of behaviour the features are built from")
    horizon_days: float = Field(7, gt=0, description="days after a promotion starts a redemption counts")
    holdout_promotions: int = Field(3, ge=1, description="latest promotions held out for evaluation")
    max_users_per_promotion: int = Field(200_000, ge=1, description="sampled users per training promotion")
    target_share: float = Field(0.2, gt=0, le=1, description="share of users targeted per promotion")
    max_targets: int = Field(100_000, ge=1, description="targets per promotion at most")
    random_state: int = Field(0, description="seed of the sampling and the estimator")


class Experiment(_Section):
    """``[experiment]``: the serving API's A/B test (``recsys serve --experiment``)."""

    challenger: str | None = Field(
        None, description="a model of [models] whose lists every run writes for the challenger arm; none: no A/B lists"
    )


class ModelSpec(_Section):
    """``[models.<name>]``: one estimator's parameters and its search grid."""

    params: dict[str, Any] = Field(default_factory=dict, description="constructor parameters")
    search: dict[str, list[Any]] = Field(default_factory=dict, description="values tried beside each parameter")


class ModelConfig(_Section):
    """The whole file; ``version`` is free text recorded with the run."""

    evaluation: Evaluation = Evaluation()
    champion: Champion = Champion()
    privacy: Privacy = Privacy()
    cold_start: ColdStart = ColdStart()
    promotions: Promotions = Promotions()
    experiment: Experiment = Experiment()
    models: dict[str, ModelSpec] = Field(min_length=1)


def validate(raw: dict[str, Any], path: str | Path, estimators: dict[str, type]) -> dict[str, Any]:
    """``raw`` (the parsed TOML) checked against :class:`ModelConfig` and the estimators' parameters.

    Parameters
    ----------
    raw : dict
        The parsed file.
    path : str or Path
        For the error message.
    estimators : dict
        Model name to estimator class (scikit-learn style: ``get_params`` names its parameters).

    Returns
    -------
    dict
        Every section with its defaults filled in.

    Raises
    ------
    ValueError
        For an unknown section, key, model name or model parameter, or a value of the wrong type,
        with the valid names.
    """
    try:
        config = ModelConfig.model_validate(raw)
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            where = ".".join(str(part) for part in detail["loc"])
            if detail["type"] == "extra_forbidden":
                section = _section_of(detail["loc"][:-1])
                problems.append(f"unknown key {where!r}; valid: {sorted(section.model_fields)}")
            else:
                problems.append(f"{where}: {detail['msg']}")
        raise ValueError(f"{path}: " + "; ".join(problems)) from None
    unknown = set(config.models) - set(estimators)
    if unknown:
        raise ValueError(f"{path}: unknown models {sorted(unknown)}; known: {sorted(estimators)}")
    if config.experiment.challenger not in (None, *estimators):
        raise ValueError(
            f"{path}: unknown [experiment] challenger {config.experiment.challenger!r}; known: {sorted(estimators)}"
        )
    for name, spec in config.models.items():
        valid = set(estimators[name]().get_params(deep=False))
        wrong = (set(spec.params) | set(spec.search)) - valid
        if wrong:
            raise ValueError(f"{path}: unknown parameters {sorted(wrong)} of model {name!r}; valid: {sorted(valid)}")
    return config.model_dump()


def _section_of(location: tuple) -> type[BaseModel]:
    """The model class that owns the keys at ``location`` (a section, or a model's spec)."""
    if not location:
        return ModelConfig
    if location[0] == "models":
        return ModelSpec
    return ModelConfig.model_fields[str(location[0])].annotation
