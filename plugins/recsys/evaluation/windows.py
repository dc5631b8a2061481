"""The evaluation windows of a run: one definition of its cutoffs, used by every evaluation.

With ``end = data_interval_end``: models are tuned on ``[validation_cutoff, test_cutoff)`` after training
before ``validation_cutoff``, and evaluated on ``[test_cutoff, end)`` after training before ``test_cutoff``
(``[evaluation] test_days`` and ``validation_days`` of ``models.toml``, 7 each by default).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from recsys.features.interactions import SECONDS_PER_DAY, Timestamp, to_epoch_seconds


class Cutoffs(NamedTuple):
    """Epoch seconds UTC of the run's evaluation boundaries."""

    validation: float
    test: float
    end: float


def cutoffs(config: dict[str, Any], data_interval_end: Timestamp) -> Cutoffs:
    """The validation and test cutoffs before ``data_interval_end`` from the ``[evaluation]`` section of ``config``."""
    evaluation = config.get("evaluation", {})
    end = to_epoch_seconds(data_interval_end)
    test = end - float(evaluation.get("test_days", 7)) * SECONDS_PER_DAY
    return Cutoffs(test - float(evaluation.get("validation_days", 7)) * SECONDS_PER_DAY, test, end)
