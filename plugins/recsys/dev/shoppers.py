"""Simulated shoppers played against the serving API in a closed loop (a development tool, not product code).

Each shopper asks for their list, looks at what was shown and clicks an item with a probability that depends
on whether they like it (:attr:`Shoppers.liked`) and on its position; a click on a liked item turns into a
purchase with probability ``buy``. Clicks go back to the API as ``click`` events carrying the list's
``request_id``, purchases as ``purchase`` events, so the API logs, spools and drains them like any shop's.
The draws come from one seeded generator: the same API answers give the same clicks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Shoppers:
    """Who shops and what they like; ``click_liked``/``click_other`` are the click rates at position 1."""

    user_ids: list[str]
    liked: set[str]
    click_liked: float = 0.4
    click_other: float = 0.05
    buy: float = 0.3
    position_decay: float = 0.1  # the click rate falls by this share per position
    seed: int = 0
    tally: Counter = field(default_factory=Counter)

    def play(self, client: Any, headers: dict[str, str], rounds: int = 1, n: int = 5) -> Counter:
        """``rounds`` visits of every shopper; returns the tally.

        The tally counts ``(user, "impressions" | "clicks" | "purchases")`` and ``("position", p)`` (items shown
        at position ``p``).
        """
        rng = np.random.default_rng(self.seed)
        for _ in range(rounds):
            for user in self.user_ids:
                response = client.get(f"/v1/users/{user}/recommendations?n={n}", headers=headers)
                response.raise_for_status()
                self._react(client, headers, user, response.json(), rng)
        return self.tally

    def _react(self, client: Any, headers: dict[str, str], user: str, answer: dict, rng: np.random.Generator) -> None:
        items = [item["item_id"] for item in answer["items"]]
        liked = np.isin(items, list(self.liked))
        rate = np.where(liked, self.click_liked, self.click_other) * (1 - self.position_decay) ** np.arange(len(items))
        clicked = rng.random(len(items)) < rate
        bought = clicked & liked & (rng.random(len(items)) < self.buy)
        shown = np.asarray(items, dtype=object)
        events = [
            {"user_id": user, "event_type": "click", "item_id": item, "request_id": answer["request_id"]}
            for item in shown[clicked]
        ] + [{"user_id": user, "event_type": "purchase", "item_id": item} for item in shown[bought]]
        if events:
            client.post("/v1/events", json={"events": events}, headers=headers).raise_for_status()
        self.tally.update({(user, "impressions"): len(items), (user, "clicks"): int(clicked.sum())})
        self.tally[user, "purchases"] += int(bought.sum())
        self.tally.update(("position", position) for position in range(1, len(items) + 1))
