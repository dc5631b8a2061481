"""The benchmark harness on a tiny simulated shop, and its reference models on known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.dev.bench import (
    COLUMNS,
    bench_models,
    format_table,
    main,
    read_landing_events,
    run_bench,
)
from recsys.dev.reference_models import EASERecommender
from recsys.dev.simulate import simulate
from recsys.evaluation.offline import without_items
from recsys.features.interactions import Interactions
from recsys.models.factorization import ALSRecommender

NUMERIC = [column for column in COLUMNS if column not in ("model", "note")]


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-shop")
    simulate(directory, users=300, items=80, days=20, seed=3, dirty=False)
    return directory


def test_bench_has_a_row_of_finite_numbers_per_model(tiny_shop: Path) -> None:
    table, info = run_bench(read_landing_events(tiny_shop))

    expected = [model.name for model in bench_models()]
    assert expected[-2:] == ["ref_implicit_als", "ref_ease"]
    assert table["model"].tolist() == expected
    assert info["test_users"] > 0 and info["test_users_with_new_items"] > 0
    values = table[NUMERIC].to_numpy(dtype=float)
    assert np.isfinite(values).all(), table.to_string()
    assert (values >= 0).all()
    assert (table[["precision@k", "recall@k", "ndcg@k", "coverage@k"]].to_numpy() <= 1).all()
    ablation = table["note"].str.startswith("ablation: ")
    assert table.loc[ablation, "model"].tolist() == ["neural_ranker"] and (table.loc[~ablation, "note"] == "").all()
    assert (table["new_ndcg_spread"] == 0).all(), "one seed: no spread"
    assert "ref_ease" in format_table(table, "tiny", info)


def test_seeds_report_the_mean_and_the_spread(tiny_shop: Path) -> None:
    models = [ALSRecommender(factors=8, iterations=3)]
    table, info = run_bench(read_landing_events(tiny_shop), models=models, seeds=[0, 1, 2])
    single = [run_bench(read_landing_events(tiny_shop), models=models, seeds=[seed])[0] for seed in (0, 1, 2)]
    new_ndcg = [frame.loc[0, "new_ndcg@k"] for frame in single]
    assert info["seeds"] == [0, 1, 2]
    assert table.loc[0, "new_ndcg@k"] == pytest.approx(np.mean(new_ndcg))
    assert table.loc[0, "new_ndcg_spread"] == pytest.approx(max(new_ndcg) - min(new_ndcg))


def test_ease_is_skipped_above_the_item_limit(tiny_shop: Path) -> None:
    table, _ = run_bench(read_landing_events(tiny_shop), models=[EASERecommender()], ease_max_items=10)

    assert table["model"].tolist() == ["ref_ease"]
    assert table.loc[0, "note"].startswith("skipped")
    assert table[NUMERIC].isna().all(axis=None)


def test_main_prints_one_table_per_landing_directory(tiny_shop: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--data", str(tiny_shop)])

    out = capsys.readouterr().out
    assert out.count("== landing") == 1
    assert "ndcg@10" in out and "ru_maxrss" in out and "wall time" in out


def _frame(matrix: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    return pd.DataFrame(
        {
            "user_id": [f"u{user:02d}" for user in users],
            "item_id": [f"i{item:02d}" for item in items],
            "event_type": "purchase",
            "event_ts": 1.0,
        }
    )


def test_ease_ranks_the_users_cluster_first() -> None:
    # items 0-4 and 5-9 form two clusters: users 0-9 bought all of A, users 10-19 all of B
    matrix = np.zeros((22, 10))
    matrix[:10, :5] = 1
    matrix[10:20, 5:] = 1
    matrix[20, [0, 1]] = 1  # a user who bought two items of A
    matrix[21, [8]] = 1  # a user who bought one item of B
    model = EASERecommender(l2=1.0).fit(Interactions.from_frame(_frame(matrix)))

    items, scores = model.recommend(np.array([20, 21]), n=8, exclude_seen=True)

    assert set(items[0, :3]) == {2, 3, 4} and set(items[0, 3:]) == {5, 6, 7, 8, 9}
    assert set(items[1, :4]) == {5, 6, 7, 9} and set(items[1, 4:]) == {0, 1, 2, 3}
    assert (scores[:, 0] > 0).all() and (np.diff(scores, axis=1) <= 0).all()
    assert np.all(np.diag(model.weights_) == 0)


def test_without_items_drops_and_compacts() -> None:
    recommended = np.array([[3, 1, 4, 0, -1], [2, 0, 1, 3, 4]])
    purchased = sp.csr_array(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]]))

    assert without_items(recommended, purchased, 3).tolist() == [[4, 0, -1], [2, 0, 1]]


def test_read_landing_events_keeps_clean_item_events(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "event_id,user_id,item_id,event_type,event_at\n"
        "e1,U1,I1, VIEW ,2026-10-01T10:00:00Z\n"
        "e1,U1,I1, VIEW ,2026-10-01T10:00:00Z\n"
        "e2,U1,I2,purchase,2026-10-02T10:00:00\n"
        "e3,U2,,search,2026-10-02T11:00:00Z\n"
        "e4,U2,I1,remove_from_cart,2026-10-02T12:00:00Z\n"
        "e5,U2,I3,cart,not-a-date\n"
        "e6,U2,I3,Cart,2026-10-03T00:00:00Z\n"
        "e7,U2,I3,cart,2026-10-03T00:00:00Z,extra\n"
    )

    events = read_landing_events(tmp_path)

    assert events["event_type"].tolist() == ["view", "purchase", "cart"]
    assert events["item_id"].tolist() == ["I1", "I2", "I3"]
    expected = pd.to_datetime(["2026-10-01T10:00:00Z", "2026-10-02T10:00:00Z", "2026-10-03T00:00:00Z"], utc=True)
    assert events["event_ts"].tolist() == [1790848800.0, 1790935200.0, 1790985600.0]
    assert np.allclose(events["event_ts"], (expected - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))
