"""``recsys.features.sentiment.score_texts``: VADER's scores on a hand-made review set with a known order."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from recsys.features import sentiment

#: best to worst, as a reader ranks them; VADER's rules matter for three of them (negation, "but", capitals)
RANKED = [
    "Excellent headphones, I LOVE them! Highly recommend.",
    "Good kettle, happy with it.",
    "The lamp is okay.",
    "It is a lamp.",
    "Not good, the kettle leaks.",
    "Terrible scarf, it broke after a week. Awful!",
]


def test_hand_made_reviews_score_in_the_order_a_reader_ranks_them():
    scores = sentiment.score_texts(RANKED)
    assert list(scores.columns) == ["compound", "positive", "negative", "neutral"]
    assert scores["compound"].is_monotonic_decreasing and scores["compound"].is_unique
    assert scores["compound"].iloc[0] > 0.5 and scores["compound"].iloc[-1] < -0.5
    assert scores["compound"].iloc[3] == 0  # no sentiment word
    np.testing.assert_allclose(scores[["positive", "negative", "neutral"]].sum(axis=1), 1, atol=0.002)


def test_rules_beyond_the_word_list_negation_contrast_and_emphasis():
    scores = sentiment.score_texts(["good", "not good", "good, but it broke", "GOOD!!!", ""])["compound"]
    assert scores[1] < 0 < scores[0]  # negation flips
    assert scores[2] < scores[0]  # the clause after "but" weighs more
    assert scores[3] > scores[0]  # capitals and exclamation marks intensify
    assert scores[4] == 0


def test_repeated_texts_are_scored_once_and_keep_their_row_order():
    texts = pd.Series(["Love it!", None, "Hate it.", "Love it!"])
    scores = sentiment.score_texts(texts)
    assert len(scores) == 4
    assert scores["compound"][0] == scores["compound"][3] > 0 > scores["compound"][2]
    assert scores.iloc[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_throughput_of_distinct_texts_is_at_least_a_thousand_reviews_per_second():
    texts = [f"{text} #{number}" for number in range(300) for text in RANKED]  # distinct: none scored twice
    started = time.perf_counter()
    sentiment.score_texts(texts)
    assert len(texts) / (time.perf_counter() - started) > 1_000


def test_a_hostile_long_text_is_scored_on_its_beginning_in_bounded_time():
    """VADER's cost grows with the square of the length: 65,536 characters (the landing limit) would take ~35 s."""
    long_text = "Love it, but it broke. " * 3_000  # 69,000 characters
    started = time.perf_counter()
    scores = sentiment.score_texts([long_text, long_text[: sentiment.MAX_TEXT_CHARS]])
    assert time.perf_counter() - started < 2
    assert scores["compound"][0] == scores["compound"][1]
