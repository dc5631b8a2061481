"""Review sentiment: VADER polarity of the review texts, scored in Python for new reviews only, in the warehouse.

Why Python and not SQL: VADER is a lexicon *and* rules (negation "not good", intensifiers "very",
"but" clauses, capitals and "!"), which is what makes it beat a plain word-score average on short
reviews; re-implementing those rules in SQL would be a second, untested VADER. Its lexicon ships inside
the ``vaderSentiment`` wheel, so nothing is downloaded at run time.

Cost is kept bounded: only reviews without a score, or whose text changed since it was scored (its md5
differs), are read; each distinct text is scored once (shops repeat short texts: "Great!"); batches of
:data:`BATCH_ROWS` reviews are written and committed one by one, so a retry goes on where a failure
stopped. The scores land in ``ml.review_sentiment`` (review_id, text md5, VADER's compound, positive,
negative and neutral shares, the lexicon's version). The dbt project creates that table in its
on-run-start hook (macro ``review_sentiment_table``): a warehouse that never ran the scorer reads no
sentiment instead of failing. The review text itself never leaves staging (it may hold personal data).
"""

from __future__ import annotations

import functools
import logging
import time
from importlib.metadata import version
from typing import Any

import pandas as pd

from recsys.db import frames

logger = logging.getLogger(__name__)

TABLE = "ml.review_sentiment"
#: reviews scored and committed per batch
BATCH_ROWS = 20_000
#: characters of a text that are scored: VADER's cost grows with the square of a text's length (about 0.05 s at
#: 2,000 characters, 35 s at the landing format's 65,536), so a longer text is scored on its beginning
MAX_TEXT_CHARS = 2_000
#: VADER's score columns, in the order of its ``polarity_scores``, and their names in the table
SCORE_COLUMNS = {"compound": "compound", "pos": "positive", "neg": "negative", "neu": "neutral"}

PENDING = """
select reviews.review_id, reviews.review_text, md5(reviews.review_text) as text_md5
from staging.stg_shop__reviews as reviews
left join ml.review_sentiment as scored
    on reviews.review_id = scored.review_id and md5(reviews.review_text) = scored.text_md5
where reviews.review_text <> '' and scored.review_id is null
order by reviews.review_id
"""


@functools.cache
def analyzer() -> Any:
    """VADER's analyzer, its lexicon read once per process from the installed package."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def lexicon_version() -> str:
    """The lexicon the scores come from, stored beside them: ``vaderSentiment <version>``."""
    return f"vaderSentiment {version('vaderSentiment')}"


def score_texts(texts: pd.Series | list[str]) -> pd.DataFrame:
    """VADER polarity of each text, each distinct text scored once.

    Parameters
    ----------
    texts : Series or list of str
        Review texts; a missing text scores as an empty one (all zeros), a text longer than
        :data:`MAX_TEXT_CHARS` is scored on its first :data:`MAX_TEXT_CHARS` characters.

    Returns
    -------
    DataFrame
        One row per text, in order: ``compound`` in [-1, 1] (VADER's normalized sum: > 0.05 is
        usually read as positive, < -0.05 as negative), and ``positive``, ``negative``, ``neutral``
        (the shares of the text's words, summing to 1 for a text with words).
    """
    codes, distinct = pd.factorize(pd.Series(texts, dtype=object).fillna("").str.slice(0, MAX_TEXT_CHARS))
    score = analyzer().polarity_scores  # per text: VADER's rules read each sentence as a whole
    table = pd.DataFrame.from_records([score(text) for text in distinct], columns=list(SCORE_COLUMNS))
    return pd.DataFrame(table.to_numpy(dtype=float)[codes], columns=list(SCORE_COLUMNS.values()))


def score_new_reviews(conn: Any, batch_rows: int = BATCH_ROWS) -> dict[str, float]:
    """Score the reviews of ``staging.stg_shop__reviews`` that have no score for their current text.

    Parameters
    ----------
    conn : psycopg2 connection
        The warehouse; ``ml.review_sentiment`` must exist (the dbt project's on-run-start hook creates it).
    batch_rows : int
        Reviews per written and committed batch.

    Returns
    -------
    dict
        ``reviews_scored``, ``distinct_texts``, ``texts_truncated`` (longer than :data:`MAX_TEXT_CHARS`),
        ``seconds`` (scoring only) and ``reviews_per_second``.
    """
    pending = frames.read_frame(conn, PENDING)
    lexicon = lexicon_version()
    scoring = 0.0
    for start in range(0, len(pending), batch_rows):
        batch = pending.iloc[start : start + batch_rows]
        started = time.perf_counter()
        scores = score_texts(batch["review_text"])
        scoring += time.perf_counter() - started
        rows = pd.concat([batch[["review_id", "text_md5"]].reset_index(drop=True), scores], axis=1)
        with conn.cursor() as cursor:
            cursor.execute("delete from ml.review_sentiment where review_id = any(%s)", (list(batch["review_id"]),))
        frames.copy_frame(conn, TABLE, rows.assign(lexicon=lexicon))
        conn.commit()
    result = {
        "reviews_scored": len(pending),
        "distinct_texts": int(pending["review_text"].nunique()),
        "texts_truncated": int((pending["review_text"].str.len() > MAX_TEXT_CHARS).sum()),
        "seconds": round(scoring, 3),
        "reviews_per_second": round(len(pending) / scoring) if scoring > 0 else 0,
    }
    logger.info("review sentiment: %s", result)
    return result
