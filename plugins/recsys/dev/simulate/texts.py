"""Review texts of the simulated shop: words that follow the planted rating and the item's attributes.

A review text is an opening sentence whose tone follows the star rating (positive words for 4-5 stars,
negative for 1-2), naming the item's leaf category and sometimes its brand ("Love this Voltix headphones!"),
then a remark on the price that follows the planted price-tier gap between the user and the item ("Too
expensive for what it is." when the item is above the user's spending tier), then sometimes a closing
sentence of the rating's tone. About 30% of reviews have a rating and no text. Every choice is a vectorized
draw, so the texts are deterministic for a generator's seed.
"""

from __future__ import annotations

import numpy as np

from recsys.dev.simulate.shop import LEAF_PATHS

#: share of reviews with a rating and no text
EMPTY_SHARE = 0.3
#: share of texts that name the item's brand beside its leaf category
BRAND_SHARE = 0.5
#: share of texts with a price remark, and with a closing sentence
PRICE_REMARK_SHARE = 0.6
CLOSER_SHARE = 0.5

#: opening sentences by rating (rows 1..5 stars), each a (before, after) pair around the item words
_OPENERS = np.array(
    [
        [("Terrible ", ", it broke after a week."), ("Awful ", ", not as described."), ("The ", " is useless.")],
        [("Disappointing ", "."), ("Poor quality ", ", not for me."), ("The ", " was a letdown.")],
        [("The ", " is okay."), ("Average ", ", it does the job."), ("Decent ", ", nothing special.")],
        [("Good ", ", happy with it."), ("Nice ", ", works well."), ("The ", " is solid.")],
        [("Love this ", "!"), ("Excellent ", ", works perfectly."), ("Perfect ", ", exactly what I wanted.")],
    ],
    dtype=object,
)
#: price remarks by the item's price tier minus the user's spending tier (-2..2), two variants each
_PRICE_REMARKS = np.array(
    [
        [" Feels cheap.", " Cheaply made."],
        [" A bit cheap.", " Cheap, you get what you pay for."],
        [" Fair price.", " Good value for money."],
        [" A bit pricey.", " Overpriced."],
        [" Too expensive for what it is.", " Way overpriced."],
    ],
    dtype=object,
)
#: closing sentences by rating, two variants each
_CLOSERS = np.array(
    [
        [" Would not buy again.", " Avoid."],
        [" Not recommended.", " I returned it."],
        [" It's fine.", " Maybe."],
        [" Recommended.", " Would buy again."],
        [" Highly recommend!", " Buying again for sure."],
    ],
    dtype=object,
)
#: the words a review uses for an item of each leaf category: its leaf name, lower-cased
LEAF_WORDS = np.array([path.rsplit(" > ", 1)[1].lower() for path in LEAF_PATHS], dtype=object)


def review_texts(
    rng: np.random.Generator,
    rating: np.ndarray,
    leaf: np.ndarray,
    brand: np.ndarray,
    tier_gap: np.ndarray,
    opener: np.ndarray,
) -> np.ndarray:
    """One review text per row, all with text (the caller leaves some empty).

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator of the texts (its own stream: the rest of the shop does not depend on it).
    rating : numpy.ndarray
        Star ratings, integers 1..5.
    leaf : numpy.ndarray
        The leaf category index of each reviewed item.
    brand : numpy.ndarray
        The brand name of each reviewed item (object array).
    tier_gap : numpy.ndarray
        The item's price tier minus the user's spending tier, integers -2..2.
    opener : numpy.ndarray
        Which of the rating's three opening sentences, integers 0..2.

    Returns
    -------
    numpy.ndarray
        Object array of texts.
    """
    n = len(rating)
    row = rating - 1
    words = np.where(rng.random(n) < BRAND_SHARE, brand + " " + LEAF_WORDS[leaf], LEAF_WORDS[leaf])
    text = _OPENERS[row, opener, 0] + words + _OPENERS[row, opener, 1]
    price = _PRICE_REMARKS[tier_gap + 2, rng.integers(0, 2, n)]
    text = text + np.where(rng.random(n) < PRICE_REMARK_SHARE, price, "")
    closer = _CLOSERS[row, rng.integers(0, 2, n)]
    return text + np.where(rng.random(n) < CLOSER_SHARE, closer, "")
