"""The sequence model: a GRU4Rec-style next-item recurrent network, written in numpy.

Each user's events (views, carts, purchases: every type with a positive event
weight) are put in time order; repeats of the same item in a row collapse into
one step. The network reads the last ``max_length`` items of that sequence and
predicts the next one:

* **embedding**: item ``i`` is the vector ``E[i]`` (``factors`` dimensions);
* **one GRU layer** with a hidden state of the same size:
  ``z = σ(x W_z + h U_z + b_z)``, ``r = σ(x W_r + h U_r + b_r)``,
  ``n = tanh(x W_n + (r ⊙ h) U_n + b_n)``, ``h' = (1 - z) ⊙ n + z ⊙ h``;
* **tied output**: the score of item ``j`` after state ``h`` is ``h · E[j] + b_j``
  (the same item vectors as the input, plus an item bias), and the scores over
  the catalogue go through a softmax: the served score is the predicted
  probability that ``j`` is the user's next item.

Training is truncated back-propagation through time over each user's last
``max_length + 1`` items (inputs: all but the last, targets: the next item at
every step), with a sampled softmax and Adam. Each step's target is scored
against the shared negatives of its mini-batch: the batch's other targets plus
``negatives`` items drawn uniformly from the catalogue (or the whole catalogue
when it is at most that large); a negative equal to the step's own target is
left out. Mini-batches are sequences of similar length (so the time loop stops
at the longest one of the batch), visited in a seeded random order: a fit is
deterministic for a ``random_state``, and one BLAS thread makes it the same on
every machine.

Why numpy and not a deep-learning framework: torch from the package index
(CPU wheel and its dependencies) and jax + jaxlib (about 623 MB) each exceed
the ~300 MB the default install may grow by; the network is small enough that
its forward and backward passes are a few matrix products per time step, so
numpy (already installed: +0 MB) does it. The analytic gradient is checked
against finite differences in ``tests/unit/test_sequence.py``.

Everything is vectorized over the users of a batch and over the items; the
Python loops run over epochs, mini-batches and time steps only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.features.interactions import Interactions, Timestamp, weight_vector
from recsys.models.base import Recommender, ScoreBatch
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)

#: the network's parameter arrays (see the module docstring): ``E``, ``b``, ``W`` = ``[W_z W_r W_n]``,
#: ``U`` = ``[U_z U_r]``, ``U_n`` and the gate biases ``[b_z b_r b_n]``
PARAMETERS: tuple[str, ...] = ("embedding", "item_bias", "input_weights", "gate_weights", "candidate_weights", "bias")
#: the parameter arrays with a row per item
ITEM_ARRAYS: tuple[str, ...] = ("embedding", "item_bias")


# --------------------------------------------------------------------------- sequences


def item_sequences(
    interactions: Interactions,
    until: float,
    length: int,
    event_weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every user's last ``length`` items before ``until``, in time order, left-padded with ``-1``.

    Events whose type weighs 0 (``remove_from_cart``) are left out; ties in
    time are ordered by item index, then event type, so the result does not
    depend on the order of the rows. Consecutive events of the same item
    (a view, then a cart, then a purchase) are one step.

    Parameters
    ----------
    interactions : Interactions
        Encoded events.
    until : float
        Epoch seconds; events strictly before it count.
    length : int
        Items per sequence (the last ones).
    event_weights : mapping of str to float, optional
        Which event types count (a positive weight); default
        :data:`recsys.features.interactions.EVENT_WEIGHTS`.

    Returns
    -------
    users : numpy.ndarray
        Int64 indices of the users with at least one event, ascending.
    sequences : numpy.ndarray
        Int64 ``(len(users), length)``; row ``u``'s last item is in the last column.
    """
    keep = (interactions.event_ts < until) & (weight_vector(event_weights)[interactions.event_type] > 0)
    user, item = interactions.user_index[keep].astype(np.int64), interactions.item_index[keep].astype(np.int64)
    order = np.lexsort((interactions.event_type[keep], item, interactions.event_ts[keep], user))
    user, item = user[order], item[order]
    step = np.ones(len(user), dtype=bool)
    step[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
    user, item = user[step], item[step]
    users, first, counts = np.unique(user, return_index=True, return_counts=True)
    row = np.repeat(np.arange(len(users)), counts)
    from_end = np.repeat(first + counts, counts) - 1 - np.arange(len(user))  # 0 = the user's last item
    last = from_end < length
    sequences = np.full((len(users), length), -1, dtype=np.int64)
    sequences[row[last], length - 1 - from_end[last]] = item[last]
    return users, sequences


def length_batches(sequences: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices of ``sequences`` in batches of similar length (shortest first, ties by row)."""
    lengths = (sequences >= 0).sum(axis=1)
    order = np.lexsort((np.arange(len(sequences)), lengths))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------- the network


def init_parameters(n_items: int, factors: int, init_std: float, rng: np.random.Generator, dtype=np.float32) -> dict:
    """Random item vectors (normal, ``init_std``), GRU weights (normal, ``1 / sqrt(factors)``), zero biases."""
    scale = 1.0 / np.sqrt(max(factors, 1))
    return {
        "embedding": rng.normal(0.0, init_std, (n_items, factors)).astype(dtype),
        "item_bias": np.zeros(n_items, dtype=dtype),
        "input_weights": rng.normal(0.0, scale, (factors, 3 * factors)).astype(dtype),
        "gate_weights": rng.normal(0.0, scale, (factors, 2 * factors)).astype(dtype),
        "candidate_weights": rng.normal(0.0, scale, (factors, factors)).astype(dtype),
        "bias": np.zeros(3 * factors, dtype=dtype),
    }


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))  # no overflow for large |values|


def gru_forward(params: dict, inputs: np.ndarray) -> tuple[np.ndarray, dict]:
    """Hidden states after every step of left-padded item sequences (``-1`` steps keep the state).

    Parameters
    ----------
    params : dict
        The arrays of :data:`PARAMETERS`.
    inputs : numpy.ndarray
        Int ``(batch, steps)`` item indices, ``-1`` for padding.

    Returns
    -------
    states : numpy.ndarray
        ``(batch, steps, factors)``, the state after each step (zeros before the first item).
    cache : dict
        What :func:`gru_backward` needs.
    """
    embedding, weights = params["embedding"], params["input_weights"]
    gates, candidate = params["gate_weights"], params["candidate_weights"]
    batch, steps = inputs.shape
    factors = embedding.shape[1]
    mask = inputs >= 0
    x = embedding[np.maximum(inputs, 0)]
    projected = x @ weights + params["bias"]  # every step's input projection in one product
    cache = {name: np.zeros((batch, steps, factors), dtype=x.dtype) for name in ("previous", "z", "r", "n", "rh")}
    states = np.zeros((batch, steps, factors), dtype=x.dtype)
    state = np.zeros((batch, factors), dtype=x.dtype)
    for step in range(steps):  # time steps; each is vectorized over the batch
        gate = _sigmoid(projected[:, step, : 2 * factors] + state @ gates)
        z, r = gate[:, :factors], gate[:, factors:]
        rh = r * state
        n = np.tanh(projected[:, step, 2 * factors :] + rh @ candidate)
        for name, value in (("previous", state), ("z", z), ("r", r), ("n", n), ("rh", rh)):
            cache[name][:, step] = value
        state = np.where(mask[:, step, None], (1.0 - z) * n + z * state, state)
        states[:, step] = state
    cache.update(x=x, mask=mask, inputs=inputs)
    return states, cache


def gru_backward(params: dict, cache: dict, state_gradient: np.ndarray) -> dict:
    """Back-propagation through time: the gradients of :data:`PARAMETERS` from the loss's gradient of the states.

    ``state_gradient`` is ``(batch, steps, factors)``; the item bias gets no gradient here.
    """
    gates, candidate = params["gate_weights"], params["candidate_weights"]
    mask, factors = cache["mask"], gates.shape[0]
    batch, steps, _ = state_gradient.shape
    grads = {name: np.zeros_like(params[name]) for name in PARAMETERS}
    projected_gradient = np.zeros((batch, steps, 3 * factors), dtype=state_gradient.dtype)
    carried = np.zeros((batch, factors), dtype=state_gradient.dtype)
    for step in reversed(range(steps)):  # time steps, backwards
        previous, z, r = cache["previous"][:, step], cache["z"][:, step], cache["r"][:, step]
        n, rh = cache["n"][:, step], cache["rh"][:, step]
        total = state_gradient[:, step] + carried
        active = mask[:, step, None]
        new = np.where(active, total, 0.0)
        back = np.where(active, 0.0, total) + new * z
        candidate_in = new * (1.0 - z) * (1.0 - n * n)
        rh_gradient = candidate_in @ candidate.T
        grads["candidate_weights"] += rh.T @ candidate_in
        back += rh_gradient * r
        gate_in = np.concatenate([new * (previous - n) * z * (1.0 - z), rh_gradient * previous * r * (1.0 - r)], axis=1)
        grads["gate_weights"] += previous.T @ gate_in
        back += gate_in @ gates.T
        projected_gradient[:, step, : 2 * factors] = gate_in
        projected_gradient[:, step, 2 * factors :] = candidate_in
        carried = back
    flat = projected_gradient.reshape(-1, 3 * factors)
    grads["input_weights"] = cache["x"].reshape(-1, factors).T @ flat
    grads["bias"] = flat.sum(axis=0)
    rows = np.flatnonzero(mask.ravel())
    scatter = sp.csr_array(
        (np.ones(len(rows), dtype=flat.dtype), (cache["inputs"].ravel()[rows], np.arange(len(rows)))),
        shape=(params["embedding"].shape[0], len(rows)),
    )
    grads["embedding"] = scatter @ (flat[rows] @ params["input_weights"].T)
    return grads


def loss_and_gradients(
    params: dict, inputs: np.ndarray, targets: np.ndarray, negatives: np.ndarray
) -> tuple[float, dict]:
    """Mean sampled-softmax cross-entropy of the next items, and its gradients.

    Every step's softmax runs over its target and the shared ``negatives`` (a
    negative that is the step's own target is left out), so with every item
    as ``negatives`` it is the full softmax over the catalogue.

    Parameters
    ----------
    params : dict
        The arrays of :data:`PARAMETERS`.
    inputs, targets : numpy.ndarray
        Int ``(batch, steps)``: the items read and the item that follows each
        (``-1`` where ``inputs`` is padding; every other target is an item).
    negatives : numpy.ndarray
        Sorted unique item indices.

    Returns
    -------
    loss : float
        Mean over the non-padding steps.
    grads : dict
        Gradient of ``loss`` per array of :data:`PARAMETERS`.
    """
    states, cache = gru_forward(params, inputs)
    mask = cache["mask"]
    outputs, target = states[mask], targets[mask]
    embedding, item_bias = params["embedding"], params["item_bias"]
    vectors = embedding[negatives]
    delta = np.empty((len(target), len(negatives) + 1), dtype=outputs.dtype)  # the logits, then their gradient
    delta[:, 0] = np.einsum("ij,ij->i", outputs, embedding[target]) + item_bias[target]
    delta[:, 1:] = outputs @ vectors.T
    delta[:, 1:] += item_bias[negatives]
    position = np.minimum(np.searchsorted(negatives, target), len(negatives) - 1)
    hit = np.flatnonzero(negatives[position] == target)
    delta[hit, 1 + position[hit]] = -np.inf
    delta -= delta.max(axis=1, keepdims=True)
    target_logit = delta[:, 0].copy()
    np.exp(delta, out=delta)
    total = delta.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - target_logit)) if len(target) else 0.0
    delta /= total
    delta[:, 0] -= 1.0
    delta /= max(len(target), 1)
    state_gradient = np.zeros_like(states)
    state_gradient[mask] = delta[:, :1] * embedding[target] + delta[:, 1:] @ vectors
    grads = gru_backward(params, cache, state_gradient)
    to_targets = sp.csr_array((delta[:, 0], (target, np.arange(len(target)))), shape=(len(embedding), len(target)))
    grads["embedding"] += to_targets @ outputs
    grads["embedding"][negatives] += delta[:, 1:].T @ outputs
    grads["item_bias"] += np.bincount(target, weights=delta[:, 0], minlength=len(embedding)).astype(item_bias.dtype)
    grads["item_bias"][negatives] += delta[:, 1:].sum(axis=0)
    return loss, grads


class Adam:
    """Adam (Kingma and Ba 2015) over a dict of arrays, updated in place.

    With ``rows``, the per-item arrays (:data:`ITEM_ARRAYS`) change only in those
    rows, and so do their moments (a "lazy" Adam, as TensorFlow Addons' LazyAdam):
    a step costs the items a mini-batch touches, not the whole catalogue.
    """

    def __init__(self, params: dict, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.learning_rate, self.beta1, self.beta2, self.steps = learning_rate, beta1, beta2, 0
        self.first = {name: np.zeros_like(value) for name, value in params.items()}
        self.second = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, params: dict, grads: dict, rows: np.ndarray | None = None) -> None:
        """One update of every array of ``params`` from ``grads`` (of the per-item ones, only ``rows``)."""
        self.steps += 1
        rate = float(self.learning_rate * np.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps))
        for name, gradient in grads.items():  # six arrays
            index = rows if rows is not None and name in ITEM_ARRAYS else slice(None)
            part = gradient[index]
            first = self.beta1 * self.first[name][index] + (1 - self.beta1) * part
            second = self.beta2 * self.second[name][index] + (1 - self.beta2) * part * part
            self.first[name][index], self.second[name][index] = first, second
            params[name][index] -= (rate * first / (np.sqrt(second) + 1e-8)).astype(params[name].dtype)


# --------------------------------------------------------------------------- the estimator


class SequenceRecommender(Recommender):
    """Next-item recommendations from the order of each user's recent items (GRU4Rec-style, numpy).

    See the module docstring for the network and its training. A user's
    list is the catalogue ranked by the predicted probability of being their
    next item, given their last ``max_length`` items before the reference
    time; users without events, and the rest of a list past the items the
    network was trained on, get the popularity ranking (score ``0.0``).

    Parameters
    ----------
    factors : int, default 32
        Size of the item vectors and of the GRU's state.
    max_length : int, default 20
        Items per user the network reads (the last ones); training reads one more (the last target).
    epochs : int, default 5
        Passes over the users' sequences.
    batch_size : int, default 256
        Sequences per mini-batch; the batch's targets are each other's
        negatives, so a larger batch also means more (popular) negatives.
    learning_rate : float, default 0.01
        Adam's step size.
    negatives : int, default 256
        Items drawn uniformly per mini-batch as more negatives of the sampled
        softmax; a catalogue of at most this many items uses the full softmax.
    init_std : float, default 0.1
        Standard deviation of the item vectors' normal initialization.
    event_weights : mapping of str to float, optional
        Event types with a positive weight are steps of the sequences; default
        :data:`recsys.features.interactions.EVENT_WEIGHTS` (views, carts, purchases).
    dense_limit : int, default 2 ** 22
        Largest ``users x items`` score block :meth:`recommend` builds (float64: 32 MB).
    random_state : int, optional
        Seed of the initialization, the batch order and the negatives.

    Attributes
    ----------
    params_ : dict
        The trained arrays of :data:`PARAMETERS` (float32).
    item_trained_ : numpy.ndarray
        Bool per item: it was in a training sequence (only these are scored by the network).
    user_state_row_ : numpy.ndarray
        Int64 per user: their row of ``user_states_``, ``-1`` without events.
    user_states_ : numpy.ndarray
        Float32 ``(users with events, factors)``: the GRU state after each one's last item.
    epoch_loss_ : numpy.ndarray
        Mean sampled-softmax loss of every epoch.
    fallback_ : PopularityRecommender
        The popularity ranking of the fill (default parameters).
    user_items_ : scipy.sparse.csr_array
        The users' history (for ``exclude_seen``).
    train_seconds_ : float
        Wall time of the network's training.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "sequence"
    fitted_users_only = True

    def __init__(
        self,
        factors: int = 32,
        max_length: int = 20,
        epochs: int = 5,
        batch_size: int = 256,
        learning_rate: float = 0.01,
        negatives: int = 256,
        init_std: float = 0.1,
        event_weights: Mapping[str, float] | None = None,
        dense_limit: int = 2**22,
        random_state: int | None = None,
    ) -> None:
        self.factors = factors
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.init_std = init_std
        self.event_weights = event_weights
        self.dense_limit = dense_limit
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Train the network on every user's last items at or before ``reference_time``.

        Parameters
        ----------
        interactions : Interactions
            Encoded events.
        reference_time : timestamp, optional
            Events after it are not read; default: the last event.

        Returns
        -------
        SequenceRecommender
            ``self``.

        Raises
        ------
        ValueError
            If a parameter is out of range.
        """
        if min(self.factors, self.max_length, self.batch_size, self.negatives) < 1 or self.epochs < 0:
            raise ValueError("factors, max_length, batch_size and negatives must be at least 1, epochs at least 0")
        if self.learning_rate <= 0 or self.init_std < 0:
            raise ValueError("learning_rate must be positive, init_std not negative")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        rng = np.random.default_rng(self.random_state)
        started = time.perf_counter()
        _, windows = item_sequences(interactions, until, self.max_length + 1, self.event_weights)
        windows = windows[(windows >= 0).sum(axis=1) >= 2]  # a user needs two items for one next-item pair
        self.item_trained_ = np.bincount(windows[windows >= 0], minlength=interactions.n_items) > 0
        params = init_parameters(interactions.n_items, self.factors, self.init_std, rng)
        with threadpool_limits(1, "blas"):  # one BLAS thread: the same floating-point sums on every machine
            self.epoch_loss_ = self._train(params, windows, np.flatnonzero(self.item_trained_), rng)
            users, sequences = item_sequences(interactions, until, self.max_length, self.event_weights)
            self.user_states_ = self._final_states(params, sequences)
        self.train_seconds_ = time.perf_counter() - started
        self.params_ = params
        self.user_state_row_ = np.full(interactions.n_users, -1, dtype=np.int64)
        self.user_state_row_[users] = np.arange(len(users))
        self.user_items_ = interactions.to_csr(end=until)
        self.fallback_ = PopularityRecommender().fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "sequence: %d training sequences of %d items, %d epochs, last epoch loss %.3f, %.1f s",
            len(windows),
            int(self.item_trained_.sum()),
            self.epochs,
            self.epoch_loss_[-1] if self.epochs else np.nan,
            self.train_seconds_,
        )
        return self

    def _train(self, params: dict, windows: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mini-batch Adam over the windows; returns the mean loss of every epoch."""
        batches = length_batches(windows, self.batch_size)
        optimizer = Adam(params, self.learning_rate)
        losses = np.full(self.epochs, np.nan)
        for epoch in range(self.epochs):  # epochs
            total, steps = 0.0, 0
            for index in rng.permutation(len(batches)):  # mini-batches, in a seeded order
                rows = windows[batches[index]]
                block = rows[:, rows.shape[1] - int((rows >= 0).sum(axis=1).max()) :]
                inputs, targets = block[:, :-1], block[:, 1:]
                sampled = pool[rng.integers(0, len(pool), self.negatives)] if len(pool) > self.negatives else pool
                negatives = np.union1d(targets[targets >= 0], sampled)  # the batch's targets are negatives too
                loss, grads = loss_and_gradients(params, inputs, targets, negatives)
                optimizer.step(params, grads, np.union1d(inputs[inputs >= 0], negatives))  # the items it touched
                count = int((inputs >= 0).sum())
                total, steps = total + loss * count, steps + count
            losses[epoch] = total / max(steps, 1)
        return losses

    def _final_states(self, params: dict, sequences: np.ndarray) -> np.ndarray:
        """The GRU state after the last item of every sequence, in batches of similar length."""
        states = np.zeros((len(sequences), self.factors), dtype=np.float32)
        for rows in length_batches(sequences, 4096):  # batches of users bound the memory
            block = sequences[rows]
            steps = int((block >= 0).sum(axis=1).max())
            states[rows] = gru_forward(params, block[:, block.shape[1] - steps :])[0][:, -1]
        return states

    def _scored_rows(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        if not self.item_trained_.any():  # no network to score with: every list is the popularity fill
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.user_state_row_[users] >= 0)  # users with events

    def _candidate_items(self, filter_items: np.ndarray | None) -> np.ndarray:
        return np.flatnonzero(self.item_trained_)  # the softmax runs over the trained items, filtered ones included

    def _rows_per_batch(self, n_columns: int) -> int:
        return max(1, self.dense_limit // max(1, n_columns))

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray:
        """The predicted next-item probabilities (softmax over the trained items) after each user's last item."""
        vectors, bias = self.params_["embedding"][batch.items], self.params_["item_bias"][batch.items]
        with threadpool_limits(1, "blas"):  # as in fit: results do not depend on the core count
            scores = (self.user_states_[self.user_state_row_[batch.users]] @ vectors.T).astype(np.float64)
        scores += bias  # the logits, then (in place) their softmax
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores
