"""Benchmark the recommenders on one time split: speed, peak memory and ranking quality.

``python -m recsys.dev.bench [--sizes small,medium] [--data DIR ...]`` measures every
model of :func:`recsys.models.registry.default_models` (whatever it holds when run) and
two references in the same harness on the same split:

* ``ref_implicit_als``: ``implicit``'s ALS used the plain way (64 factors, 15
  iterations, its own batched ``recommend``);
* ``ref_ease``: EASE (Steck 2019), the closed-form item-item linear model; our
  own few lines of numpy because no installed library has it. It needs a dense
  item x item inverse, so it is skipped above ``ease_max_items`` items.

Data sets are the simulated shop (clean, at the sizes of :data:`SIZES`) and
landing directories (``events.csv`` read directly with pandas: the bench
measures models, not the pipeline). The split is by time: ``cutoff = last
event - test_days``, train on the events before it, truth = the purchases
after it (:func:`recsys.evaluation.windows.time_split`).

Two evaluation variants, both at ``k``:

* ``all_items``: every item known at the cutoff is a candidate;
* ``new_items``: items the user purchased before the cutoff are removed from
  both the ranking (the list is compacted, so it still has ``k`` items) and
  the truth; users with no new purchase are not averaged.

Peak memory is the increase of the process's resident-set high-water mark
(``resource.getrusage``'s ``ru_maxrss``) during fit + recommend, after resetting
the mark to the current RSS through ``/proc/self/clear_refs``. It counts every
allocation (numpy, scipy, implicit's C++), unlike ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp
from sklearn.base import clone

from recsys.dev.reference_models import EASERecommender, ImplicitALSRecommender
from recsys.dev.simulate import simulate
from recsys.dev.simulate.social import landing_follows
from recsys.evaluation.metrics import catalogue_coverage, evaluate
from recsys.evaluation.offline import without_items
from recsys.evaluation.windows import TimeSplit, time_split
from recsys.features.interactions import SECONDS_PER_DAY, Interactions
from recsys.models.base import Recommender
from recsys.models.neural_ranker import NeuralRanker

logger = logging.getLogger(__name__)

#: simulated shop sizes: users, items, days
SIZES: dict[str, dict[str, int]] = {
    "small": {"users": 5_000, "items": 1_000, "days": 60},
    "medium": {"users": 50_000, "items": 5_000, "days": 90},
}

#: event types the bench keeps from a landing ``events.csv``
BENCH_EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase")

#: columns of the result table, in order
COLUMNS: tuple[str, ...] = (
    "model",
    "train_s",
    "recommend_s",
    "peak_mem_mb",
    "precision@k",
    "recall@k",
    "ndcg@k",
    "new_precision@k",
    "new_recall@k",
    "new_ndcg@k",
    "coverage@k",
    "new_ndcg_spread",
    "note",
)


# --------------------------------------------------------------------------- data


def read_landing_events(directory: Path | str) -> pd.DataFrame:
    """Read the item events of a landing directory's ``events.csv``.

    Keeps ``view``/``cart``/``purchase`` (lower-cased, trimmed) with a user,
    an item and a parseable timestamp; exact duplicate rows (same
    ``event_id``, when the file has one) and malformed lines are dropped.

    Parameters
    ----------
    directory : path
        A landing directory (see :mod:`recsys.ingest.landing`).

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id``, ``item_id``, ``event_type`` and ``event_ts``
        (float64 epoch seconds), ready for :meth:`Interactions.from_frame`.
    """
    path = Path(directory) / "events.csv"
    # every column is read: with ``usecols`` pandas no longer notices lines with too many fields
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], on_bad_lines="skip", engine="c")
    raw.columns = raw.columns.str.strip()
    wanted = ["user_id", "item_id", "event_type", "event_at"] + (["event_id"] if "event_id" in raw else [])
    raw = raw[wanted].drop_duplicates(ignore_index=True)
    event_type = raw["event_type"].str.strip().str.lower()
    stamps = pd.to_datetime(raw["event_at"].str.strip(), utc=True, errors="coerce", format="ISO8601")
    keep = (
        event_type.isin(BENCH_EVENT_TYPES) & raw["user_id"].notna() & raw["item_id"].notna() & stamps.notna()
    ).to_numpy()
    frame = pd.DataFrame(
        {
            "user_id": raw["user_id"].str.strip().to_numpy()[keep],
            "item_id": raw["item_id"].str.strip().to_numpy()[keep],
            "event_type": event_type.to_numpy()[keep],
            "event_ts": ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()[keep],
        }
    )
    logger.info("%s: kept %d of %d rows", path, len(frame), len(raw))
    return frame


def read_landing_side_data(directory: Path | str) -> dict[str, pd.DataFrame]:
    """Item and user attributes of a landing directory, shaped like ``dim_items`` / ``dim_users``.

    ``items.csv`` gives ``category`` (top level of ``category_path``),
    ``category_path``, ``brand``, ``price``, ``item_name``, ``description`` and
    ``listed_ts`` (``created_at``, epoch seconds); ``users.csv`` gives ``gender``,
    ``region`` and the ``age_band`` of ``birth_year`` (the bands of
    ``dim_users``, at the year of the newest sign-up); ``reviews.csv`` gives
    the ratings (1 to 5), ``social_edges.csv`` the follows. Missing files give no frame.
    """
    directory = Path(directory)
    side: dict[str, pd.DataFrame] = {}
    if (directory / "items.csv").exists():
        items = pd.read_csv(directory / "items.csv", dtype=str, keep_default_na=False, na_values=[""])
        path = items["category_path"].str.strip()
        listed = pd.to_datetime(
            items.get("created_at", pd.Series(pd.NaT, index=items.index)), utc=True, errors="coerce", format="ISO8601"
        )
        side["items"] = pd.DataFrame(
            {
                "item_id": items["item_id"].str.strip(),
                "category": path.str.split(">").str[0].str.strip(),
                "category_path": path,
                "brand": items.get("brand"),
                "price": pd.to_numeric(items.get("price"), errors="coerce"),
                "item_name": items.get("name"),
                "description": items.get("description"),
                "listed_ts": (listed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1),
            }
        )
    if (directory / "users.csv").exists():
        users = pd.read_csv(directory / "users.csv", dtype=str, keep_default_na=False, na_values=[""])
        year = pd.to_datetime(users["signup_at"], utc=True, errors="coerce", format="ISO8601").dt.year.max()
        age = year - pd.to_numeric(users.get("birth_year"), errors="coerce")
        bands = pd.cut(age, [-np.inf, 18, 25, 35, 45, 55, 65, np.inf], right=False, labels=AGE_BANDS)
        side["users"] = pd.DataFrame(
            {
                "user_id": users["user_id"].str.strip(),
                "age_band": bands.astype(object).where(bands.notna(), "unknown"),
                "gender": users.get("gender"),
                "region": users.get("region"),
            }
        )
    if (directory / "reviews.csv").exists():
        reviews = pd.read_csv(directory / "reviews.csv", dtype=str, keep_default_na=False, na_values=[""])
        stamps = pd.to_datetime(reviews["reviewed_at"].str.strip(), utc=True, errors="coerce", format="ISO8601")
        side["ratings"] = pd.DataFrame(
            {
                "user_id": reviews["user_id"].str.strip(),
                "item_id": reviews["item_id"].str.strip(),
                "rating": pd.to_numeric(reviews["rating"], errors="coerce"),
                "rated_ts": (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1),
            }
        ).query("rating >= 1 and rating <= 5")
    if (directory / "social_edges.csv").exists():
        side["follows"] = landing_follows(directory / "social_edges.csv")
    return side


#: the age bands of ``dim_users``
AGE_BANDS: tuple[str, ...] = ("under_18", "18-24", "25-34", "35-44", "45-54", "55-64", "65_plus")


def split_events(
    events: pd.DataFrame,
    test_days: float = 7.0,
    side_data: dict[str, pd.DataFrame] | None = None,
    end: float | None = None,
) -> TimeSplit:
    """Encode events and split them at ``end - test_days``.

    ``end`` (epoch seconds, exclusive) defaults to just after the last event;
    events at or after it are ignored.
    """
    interactions = Interactions.from_frame(events).with_side_data(**(side_data or {}))
    if interactions.n_events == 0:
        raise ValueError("no usable events")
    end = np.nextafter(float(interactions.event_ts.max()), np.inf) if end is None else end
    return time_split(interactions, end - test_days * SECONDS_PER_DAY, end)


def landing_end(directory: Path | str) -> float | None:
    """End of a landing directory's data: the day after the manifest's ``end_date`` (None without one).

    Dirty files can hold a few future-dated events; the manifest says where the data really ends.
    """
    manifest = Path(directory) / "manifest.json"
    if not manifest.exists() or "end_date" not in json.loads(manifest.read_text()):
        return None
    end_date = pd.Timestamp(json.loads(manifest.read_text())["end_date"], tz="UTC") + pd.Timedelta(days=1)
    return (end_date - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


# --------------------------------------------------------------------------- measuring


def _reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@dataclass
class _Targets:
    users: np.ndarray
    truth: sp.csr_array
    purchased: sp.csr_array
    new_truth: sp.csr_array
    width: int


def _targets(split: TimeSplit, k: int) -> _Targets:
    """Test users, their truth, their pre-cutoff purchases and the truth without those."""
    users = split.test_users
    truth = sp.csr_array(split.truth[users])
    purchased = sp.csr_array(split.train.to_csr({"purchase": 1.0})[users] > 0, dtype=np.float32)
    padded = sp.csr_array(
        sp.hstack([purchased, sp.csr_array((len(users), truth.shape[1] - purchased.shape[1]), dtype=np.float32)])
    )
    new_truth = sp.csr_array(truth - truth.multiply(padded))
    new_truth.eliminate_zeros()
    max_purchased = int(np.diff(purchased.indptr).max()) if len(users) else 0
    return _Targets(users, truth, purchased, new_truth, k + max_purchased)


def bench_model(model: Recommender, split: TimeSplit, targets: _Targets, k: int = 10) -> dict[str, object]:
    """Fit and evaluate one model on a split; return its table row (see :data:`COLUMNS`)."""
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    _reset_peak_rss()
    started = time.perf_counter()
    model.fit(split.train, split.cutoff)
    fitted = time.perf_counter()
    recommended, _ = model.recommend(targets.users, None, targets.width)
    finished = time.perf_counter()
    peak = max(_peak_rss_bytes() - rss_before, 0)

    top = recommended[:, :k]
    scores = evaluate(top, targets.truth, (k,))
    new_scores = evaluate(without_items(recommended, targets.purchased, k), targets.new_truth, (k,))
    return {
        "model": model.name,
        "train_s": fitted - started,
        "recommend_s": finished - fitted,
        "peak_mem_mb": peak / 2**20,
        "precision@k": scores[("precision", k)],
        "recall@k": scores[("recall", k)],
        "ndcg@k": scores[("ndcg", k)],
        "new_precision@k": new_scores[("precision", k)],
        "new_recall@k": new_scores[("recall", k)],
        "new_ndcg@k": new_scores[("ndcg", k)],
        "coverage@k": catalogue_coverage(top, split.train.n_items, k),
        "note": "",
    }


def bench_models(models: Sequence[Recommender] | None = None) -> list[Recommender]:
    """The project's :func:`recsys.models.registry.default_models`, the ranker without profile, references."""
    if models is None:
        from recsys.models.registry import default_models

        models = default_models()
    ablation = [clone(model).set_params(profile_features=False) for model in models if isinstance(model, NeuralRanker)]
    return [*models, *ablation, ImplicitALSRecommender(), EASERecommender()]


def run_bench(
    events: pd.DataFrame,
    models: Sequence[Recommender] | None = None,
    k: int = 10,
    test_days: float = 7.0,
    ease_max_items: int = 10_000,
    side_data: dict[str, pd.DataFrame] | None = None,
    seeds: Sequence[int] = (0,),
    end: float | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Benchmark models on one data set.

    Parameters
    ----------
    events : pandas.DataFrame
        Output of :func:`read_landing_events`.
    models : sequence of Recommender, optional
        Default: :func:`bench_models` (the project's models and the references).
    k : int, default 10
        Cut-off of every metric.
    test_days : float, default 7
        Length of the test window before the last event.
    ease_max_items : int, default 10000
        EASE is skipped (a row of ``nan`` with a note) above this many items.
    side_data : dict, optional
        Output of :func:`read_landing_side_data` (the neural ranker's profile
        features and svd's ratings need it).
    seeds : sequence of int, default (0,)
        Every model runs once per seed (its own ``random_state``); the row
        holds the means and ``new_ndcg_spread``, the max - min of the
        new-items NDCG over the seeds.
    end : float, optional
        End of the data (epoch seconds, exclusive), see :func:`split_events`.

    Returns
    -------
    table : pandas.DataFrame
        One row per model, columns :data:`COLUMNS`.
    info : dict
        Split facts: events, users, items, test users, cutoff.
    """
    split = split_events(events, test_days, side_data, end)
    targets = _targets(split, k)
    info = {
        "train_events": split.train.n_events,
        "users": split.train.n_users,
        "items": split.train.n_items,
        "test_users": len(targets.users),
        "test_users_with_new_items": int((np.diff(targets.new_truth.indptr) > 0).sum()),
        "cutoff": pd.Timestamp(split.cutoff, unit="s", tz="UTC").isoformat(),
        "recommend_width": targets.width,
        "seeds": list(seeds),
    }
    rows = []
    for model in bench_models() if models is None else list(models):  # a handful of models
        if isinstance(model, EASERecommender) and split.train.n_items > ease_max_items:
            note = f"skipped: {split.train.n_items} items > {ease_max_items} (dense item x item inverse)"
            rows.append({**dict.fromkeys(COLUMNS, float("nan")), "model": model.name, "note": note})
            continue
        logger.info("benchmarking %s", model.name)
        runs = pd.DataFrame(
            [bench_model(clone(model).set_params(random_state=seed), split, targets, k) for seed in seeds]
        )
        row = {**runs.iloc[0].to_dict(), **runs.drop(columns=["model", "note"]).mean().to_dict()}
        row["new_ndcg_spread"] = runs["new_ndcg@k"].max() - runs["new_ndcg@k"].min()
        if isinstance(model, NeuralRanker) and not model.profile_features:
            row["note"] = "ablation: candidate ranks and item features only, no profile features"
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS)), info


def format_table(table: pd.DataFrame, title: str, info: dict[str, object], k: int = 10) -> str:
    """The plain-text report of one data set."""
    header = [
        f"== {title}: {info['train_events']:,} train events, {info['users']:,} users x {info['items']:,} items; "
        f"cutoff {info['cutoff']}; {info['test_users']:,} test users "
        f"({info['test_users_with_new_items']:,} with new-item purchases)",
        f"   k={k}; recommend_s = one call for all test users, width {info['recommend_width']} "
        "(k + most items any test user bought before the cutoff); peak_mem_mb = increase of the process RSS "
        "high-water mark (resource.getrusage ru_maxrss, reset via /proc/self/clear_refs) during fit + recommend; "
        "new_* = items bought before the cutoff removed from ranking and truth; "
        f"means over the seeds {info['seeds']} (random_state of each model), new_ndcg_spread = max - min",
    ]
    shown = table.rename(columns=lambda name: name.replace("@k", f"@{k}"))
    body = shown.to_string(index=False, float_format=lambda value: f"{value:.4f}", na_rep="-")
    return "\n".join([*header, body])


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m recsys.dev.bench [--sizes small,medium] [--data DIR ...]``."""
    parser = argparse.ArgumentParser(prog="python -m recsys.dev.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=None,
        help=f"comma-separated simulated shop sizes of {sorted(SIZES)}; default small,medium without --data",
    )
    parser.add_argument("--data", nargs="+", action="extend", default=[], help="landing directories to bench")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated shops")
    parser.add_argument(
        "--model-seeds", default="0", help="comma-separated random_state values every model runs with (e.g. 0,1,2)"
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--test-days", type=float, default=7.0)
    parser.add_argument("--ease-max-items", type=int, default=10_000)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    sizes_text = args.sizes if args.sizes is not None else ("" if args.data else "small,medium")
    sizes = [size.strip() for size in sizes_text.split(",") if size.strip()]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose from {sorted(SIZES)}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as scratch:
        datasets = []
        for size in sizes:  # at most a few data sets
            directory = Path(scratch) / size
            simulate(directory, **SIZES[size], seed=args.seed, dirty=False)
            datasets.append((f"simulated {size} ({SIZES[size]})", directory))
        datasets += [(f"landing {directory}", Path(directory)) for directory in args.data]
        for title, directory in datasets:
            table, info = run_bench(
                read_landing_events(directory),
                k=args.k,
                test_days=args.test_days,
                ease_max_items=args.ease_max_items,
                side_data=read_landing_side_data(directory),
                seeds=[int(seed) for seed in args.model_seeds.split(",")],
                end=landing_end(directory),
            )
            print(format_table(table, title, info, args.k), flush=True)
            print(flush=True)
    print(f"wall time {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
