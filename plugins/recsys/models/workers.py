"""Independent fits side by side in worker processes, with the results of one process.

A run fits a few dozen models: every search trial on the validation window, every chosen model on the
test window, the rankers' label windows; publishing scores batches of users. These are independent: each
reads the same inputs and returns its rows. :func:`map_in_workers` runs them in ``RECSYS_WORKERS``
processes of joblib's loky pool (large arrays reach the workers as memory maps, not copies) and returns the
results in the order of the tasks. Every task is deterministic on its own (fixed seeds, BLAS and OpenMP
pinned where the order of a sum could change), so the tables do not depend on the number of workers: one
worker and two write the same rows (``tests/unit/test_workers.py``). Inside a worker, tasks run in turn.

A task's log may show loky's warning "A worker stopped while some jobs were given to the executor": loky
replaces a worker whose memory grew by more than 300 MB over its tasks (its guard against leaks; a fit's
arrays are not always handed back to the system). No task is lost: a new worker takes the queued ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from joblib import Parallel, delayed

T = TypeVar("T")
R = TypeVar("R")

#: the default number of worker processes: one per core, at most this many (memory grows with each)
MAX_DEFAULT_WORKERS = 4

_inside_worker = False


def worker_count() -> int:
    """``RECSYS_WORKERS``, default one per core up to :data:`MAX_DEFAULT_WORKERS`; 1 runs in this process."""
    value = os.environ.get("RECSYS_WORKERS", "").strip()
    if not value:
        return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"RECSYS_WORKERS must be a positive integer, got {value!r}")
    return int(value)


def iterate_in_workers(function: Callable[[T], R], tasks: Sequence[T], workers: int | None = None) -> Iterator[R]:
    """``function(task)`` of each task in turn, computed by ``workers`` processes (default :func:`worker_count`).

    ``function`` and the tasks are pickled to the workers (arrays over 1 MB as copy-on-write memory maps), so
    the function must be a module-level function or a :func:`functools.partial` of one. The workers start at
    the call, so this process can do other work before it reads the results (more tasks given to the
    workers meanwhile queue behind these). Results come as the tasks finish, in task order, a few tasks ahead
    at most (memory stays bounded). Put the longest tasks first: a worker takes the next task when it is free.
    With one worker, or called inside a worker, the tasks run here, each when its result is read.
    """
    workers = worker_count() if workers is None else workers
    if workers <= 1 or len(tasks) <= 1 or _inside_worker:
        return (function(task) for task in tasks)
    parallel = Parallel(
        n_jobs=min(workers, len(tasks)), backend="loky", max_nbytes="1M", mmap_mode="c", return_as="generator"
    )
    return parallel(delayed(_in_worker)(function, task) for task in tasks)


def map_in_workers(function: Callable[[T], R], tasks: Sequence[T], workers: int | None = None) -> list[R]:
    """``[function(task) for task in tasks]`` by :func:`iterate_in_workers`."""
    return list(iterate_in_workers(function, tasks, workers))


def _in_worker(function: Callable[[T], R], task: T) -> R:
    global _inside_worker
    _inside_worker = True  # a worker's own tasks do not start workers of their own
    return function(task)
