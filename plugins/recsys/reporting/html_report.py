"""For analysts: ``recsys report`` (one self-contained HTML file about the last run) and ``recsys docs`` (dbt docs).

The report reads only published tables (``recs.*``, ``analytics.*``,
``quality.*``) and renders each section from the evaluation rows the training
tasks write (``recs.model_evaluations``: variant, segment, metric, k). A
section whose rows or table are absent says "not computed in this run".
Charts are small SVGs written here, inline: the file needs no network, no
JavaScript and no fonts. Every text from the warehouse is HTML-escaped.
Group counts below ``[privacy] min_segment_users`` (k-anonymity) are not shown.
"""

from __future__ import annotations

import html
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from psycopg2 import sql

from recsys.db.warehouse import REPO_ROOT, connect, dbt_env
from recsys.reporting import online
from recsys.reporting.markup import CSS, bar_chart, fmt, is_number, table, text
from recsys.reporting.report import fetch_frame

log = logging.getLogger(__name__)

REPORTS_DIR = REPO_ROOT / "reports"
DBT_PROJECT = REPO_ROOT / "dbt_project"
DOCS_DIR = DBT_PROJECT / "target" / "docs"
NOT_COMPUTED = "not computed in this run"
K = 10
ACCURACY = ["ndcg", "precision", "recall", "hit_rate"]
BEYOND_ACCURACY = ["coverage", "diversity", "novelty"]
COUNT_METRICS = {"users", "searches"}
PROFILE_COLUMNS = ["rfm_segment", "spending_power", "lifecycle_stage"]
COLD_START_MODELS = ["popularity", "segment_popularity", "cold_start_demographic", "friends_bought"]
SEARCH_MODELS = ["search_text_match", "search_personalized"]
PROMOTION_MODELS = ["promotion_propensity", "promotion_rfm", "promotion_everyone"]
PROMOTION_METRICS = ["roc_auc", "precision_top_decile", "lift_top_decile", "base_rate", "users"]
DIVERSITY_METRICS = [*ACCURACY, *BEYOND_ACCURACY, "category_coverage"]
DIVERSITY_STAGES = [("all_items", "as trained"), ("business_rules", "business rules"), ("reranked", "re-ranked")]


def _absent(what: str) -> str:
    return f'<p class="absent">{html.escape(what)}: {NOT_COMPUTED}.</p>'


def _exists(conn, table_name: str) -> bool:
    return bool(fetch_frame(conn, "select to_regclass(%s) is not null as found", (table_name,))["found"].iloc[0])


def _columns(conn, table_name: str) -> list[str]:
    schema, name = table_name.split(".")
    return list(
        fetch_frame(
            conn,
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
            "order by ordinal_position",
            (schema, name),
        )["column_name"]
    )


def latest_run(conn) -> pd.Series:
    """The published run of ``recs.runs``, else the latest one.

    Raises
    ------
    ValueError
        No run has been published yet.
    """
    if not _exists(conn, "recs.runs"):
        raise ValueError("no recs.runs in the warehouse: run `make run` first")
    runs = fetch_frame(
        conn,
        "select * from recs.runs order by status = 'published' desc, data_cutoff_at desc nulls last, run_id desc "
        "limit 1",
    )
    if runs.empty:
        raise ValueError("recs.runs is empty: run `make run` first")
    return runs.iloc[0]


def metric_table(evaluations: pd.DataFrame, columns: Sequence[tuple[str, int]], models: Sequence[str]) -> pd.DataFrame:
    """One row per model, one column per (metric, k) present: ``metric@k`` (or ``metric`` for k = 0).

    Models listed in ``models`` come first in that order, others after them by name.
    """
    wanted = pd.DataFrame(columns, columns=["metric", "k"])
    rows = evaluations.merge(wanted, on=["metric", "k"])
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(column=rows["metric"].where(rows["k"] == 0, rows["metric"] + "@" + rows["k"].astype(str)))
    wide = rows.pivot_table(index="model_name", columns="column", values="metric_value", aggfunc="first")
    order = [f"{metric}@{k}" if k else metric for metric, k in columns]
    wide = wide[[column for column in order if column in wide.columns]]
    for column in wide.columns:
        if column in COUNT_METRICS:
            wide[column] = wide[column].round().astype("Int64")
    known = [model for model in models if model in wide.index]
    wide = wide.loc[known + sorted(set(wide.index) - set(known))]
    return wide.rename_axis(None, axis=1).reset_index().rename(columns={"model_name": "model"})


def _counts(conn, statement: sql.Composable, min_users: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(value, users, share) of every group, and of the groups of at least ``min_users`` only (for charts).

    In the first frame the counts of smaller groups read "fewer than <min_users>" (k-anonymity).
    """
    counts = fetch_frame(conn, statement)
    counts["users"] = counts["users"].astype("int64")
    counts["share"] = counts["users"] / max(int(counts["users"].sum()), 1)
    small = counts["users"] < min_users
    shown = counts[~small]
    counts = counts.astype({"users": object, "share": object})
    counts.loc[small, ["users", "share"]] = f"fewer than {min_users}"
    return counts, shown


def _section_run(run: pd.Series, conn) -> str:
    fields = [
        "run_id",
        "status",
        "champion_model",
        "champion_reason",
        "champion_params",
        "data_interval_start",
        "data_interval_end",
        "validation_cutoff_at",
        "data_cutoff_at",
        "eval_cutoff_at",
        "started_at",
        "finished_at",
    ]
    fields = [field for field in fields if field in run.index]
    summary = pd.DataFrame({"field": fields, "value": [text(run[field]) for field in fields]})
    counts = {
        table_name: fetch_frame(
            conn, sql.SQL("select count(*) as n from {}").format(sql.Identifier(*table_name.split(".")))
        )["n"].iloc[0]
        for table_name in ["analytics.user_profiles", "recs.user_recommendations", "recs.cold_start_recommendations"]
        if _exists(conn, table_name)
    }
    rows = pd.DataFrame({"table": list(counts), "rows": [int(n) for n in counts.values()]})
    windows = pd.DataFrame(
        {
            "window": ["selection (validation)", "test"],
            "models fitted on events before": [
                text(run.get("validation_cutoff_at")),
                text(run.get("eval_cutoff_at")),
            ],
            "scored on purchases from": [text(run.get("validation_cutoff_at")), text(run.get("eval_cutoff_at"))],
            "until": [text(run.get("eval_cutoff_at")), text(run.get("data_cutoff_at"))],
        }
    )
    return (
        table(summary)
        + "<h3>Time split</h3>"
        + table(windows)
        + '<p class="note">Hyperparameters and the champion come from the selection window, the model comparison '
        "below from the test window; no feature is taken from after a window's start. The published lists come "
        "from models fitted on everything before <code>data_cutoff_at</code>.</p>" + table(rows)
    )


def _section_profiles(conn, min_users: int) -> str:
    if not _exists(conn, "analytics.user_profiles"):
        return _absent("User profiles")
    parts = []
    for column in PROFILE_COLUMNS:
        statement = sql.SQL(
            "select coalesce({column}::text, '(none)') as {column}, count(*) as users "
            "from analytics.user_profiles group by 1 order by 2 desc, 1"
        ).format(column=sql.Identifier(column))
        counts, shown = _counts(conn, statement, min_users)
        chart = bar_chart(
            list(shown[column]), {"users": list(shown["users"].astype(float))}, f"Users by {column}", counts=True
        )
        parts.append(f'<h3>{html.escape(column)}</h3><div class="figure">{chart}{table(counts)}</div>')
    return "".join(parts)


def _section_tags(conn, min_users: int, top: int = 20, rank: int = 3) -> str:
    if not _exists(conn, "analytics.user_interest_tags"):
        return _absent("Interest tags")
    tags = fetch_frame(
        conn,
        """
        select tag, count(*) as users, avg(weight)::float as mean_weight
        from analytics.user_interest_tags
        where tag_rank <= %s
        group by tag
        having count(*) >= %s
        order by users desc, tag
        limit %s""",
        (rank, min_users, top),
    )
    if tags.empty:
        return _absent("Interest tags")
    tags["users"] = tags["users"].astype("int64")
    chart = bar_chart(
        list(tags["tag"]),
        {"users": list(tags["users"].astype(float))},
        "Users with the tag in their top 3",
        counts=True,
    )
    note = (
        f'<p class="note">The {top} tags most often among users\' top {rank} interest tags; '
        f"tags held by fewer than {min_users} users are not listed.</p>"
    )
    return note + f'<div class="figure">{chart}{table(tags)}</div>'


def _section_models(evaluations: pd.DataFrame, champion: str | None) -> str:
    overall = evaluations[(evaluations["segment"] == "all")]
    parts = []
    for variant, caption in [("all_items", "All items"), ("new_items", "New items only (prior purchases left out)")]:
        rows = overall[overall["variant"] == variant]
        wide = metric_table(rows, [(metric, K) for metric in ACCURACY + BEYOND_ACCURACY], [])
        if wide.empty:
            parts.append(_absent(f"Model comparison, {caption.lower()}"))
            continue
        chart = ""
        if f"ndcg@{K}" in wide:
            wide = wide.sort_values(f"ndcg@{K}", ascending=False, kind="stable")
            chart = bar_chart(list(wide["model"]), {f"ndcg@{K}": list(wide[f"ndcg@{K}"])}, f"NDCG@{K}", champion)
        parts.append(
            f'<h3>{html.escape(caption)}</h3><div class="figure">{chart}</div>'
            + table(wide, highlight=champion, key="model")
        )
    return (
        '<p class="note">Test window (the time split above), all evaluated users (segment <code>all</code>); '
        "the champion row is highlighted.</p>" + "".join(parts)
    )


def _section_cold_start(evaluations: pd.DataFrame) -> str:
    rows = evaluations[(evaluations["segment"] == "new_users") & (evaluations["variant"] == "all_items")]
    columns = [(metric, k) for metric in ["ndcg"] for k in (5, 10, 20)]
    columns += [(metric, K) for metric in ["precision", "recall", "hit_rate", "lift_vs_popularity"]] + [("users", 0)]
    wide = metric_table(rows, columns, COLD_START_MODELS)
    if wide.empty:
        return _absent("Cold-start evaluation (segment new_users)")
    if f"ndcg@{K}" not in wide:
        return (
            "<p>Too few new users in the test window to publish their metrics ([privacy] min_segment_users); "
            "only their number is kept.</p>" + table(wide)
        )
    charts = "".join(
        bar_chart(list(wide["model"]), {column: list(wide[column])}, title)
        for column, title in [(f"ndcg@{K}", f"NDCG@{K}, new users"), (f"lift_vs_popularity@{K}", "Lift vs popularity")]
        if column in wide
    )
    return (
        '<p class="note">Users without history before the cutoff, lists from the cold-start models; '
        "lift = NDCG of the model / NDCG of global popularity.</p>"
        f'<div class="figure">{charts}</div>' + table(wide)
    )


def _section_search(evaluations: pd.DataFrame) -> str:
    rows = evaluations[(evaluations["variant"] == "search") & (evaluations["segment"] == "searches")]
    wide = metric_table(rows, [("mrr", 0), ("ndcg", K), ("hit_rate", K), ("searches", 0)], SEARCH_MODELS)
    if wide.empty:
        return _absent("Search evaluation")
    metrics = [column for column in ["mrr", f"ndcg@{K}", f"hit_rate@{K}"] if column in wide]
    series = {model: list(values) for model, values in zip(wide["model"], wide[metrics].to_numpy(), strict=True)}
    summary = ""
    mrr = wide.set_index("model")["mrr"] if "mrr" in wide else pd.Series(dtype=float)
    if set(SEARCH_MODELS) <= set(mrr.index):
        before, after = float(mrr[SEARCH_MODELS[0]]), float(mrr[SEARCH_MODELS[1]])
        change = f" ({(after / before - 1) * 100:+.1f}%)" if before > 0 else ""
        summary = f"<p>MRR before (text match) {fmt(before)} → after (personalized) {fmt(after)}{change}.</p>"
    chart = bar_chart(metrics, series, "Search ranking per model")
    return summary + f'<div class="figure">{chart}</div>' + table(wide)


def _section_promotions(evaluations: pd.DataFrame) -> str:
    rows = evaluations[evaluations["variant"] == "promotion"]
    columns = [(metric, 0) for metric in PROMOTION_METRICS]
    wide = metric_table(rows[rows["segment"] == "all"], columns, PROMOTION_MODELS)
    if wide.empty:
        return _absent("Promotion targeting evaluation")
    parts = [
        '<p class="note">Held-out promotions: users ranked by each model; lift = precision in the top decile / '
        "base rate of redemption.</p>"
    ]
    if "lift_top_decile" in wide:
        parts.append(bar_chart(list(wide["model"]), {"lift": list(wide["lift_top_decile"])}, "Lift in the top decile"))
    parts.append(table(wide))
    per = rows[rows["segment"].str.startswith("promotion:") & (rows["metric"] == "lift_top_decile")]
    if len(per):
        lifts = per.pivot_table(index="segment", columns="model_name", values="metric_value", aggfunc="first")
        lifts = lifts.rename_axis(None, axis=1).reset_index().rename(columns={"segment": "promotion"})
        parts.append("<h3>Lift in the top decile per held-out promotion</h3>" + table(lifts))
    return "".join(parts)


def _section_diversity(evaluations: pd.DataFrame, champion: str | None) -> str:
    rows = evaluations[(evaluations["segment"] == "all") & (evaluations["k"] == K)]
    reranked = rows[rows["variant"] == "reranked"]
    if reranked.empty:
        return _absent("Diversity re-ranking")
    model = champion if champion in set(reranked["model_name"]) else sorted(reranked["model_name"])[0]
    mine = rows[rows["model_name"] == model]
    wide = mine.pivot_table(index="metric", columns="variant", values="metric_value", aggfunc="first")
    stages = [(variant, name) for variant, name in DIVERSITY_STAGES if variant in wide.columns]
    metrics = [metric for metric in DIVERSITY_METRICS if metric in wide.index]
    compared = wide.reindex(index=metrics, columns=[variant for variant, _ in stages]).astype(float)
    compared.columns = [name for _, name in stages]
    compared["change"] = compared[DIVERSITY_STAGES[-1][1]] - compared.get(DIVERSITY_STAGES[0][1], float("nan"))
    compared = compared.reset_index(drop=True)
    compared.insert(0, "metric", [f"{metric}@{K}" for metric in metrics])
    chart = bar_chart(
        list(compared["metric"]),
        {name: list(compared[name]) for _, name in stages},
        f"{model}: test-window lists per stage",
    )
    return (
        f'<p class="note">{html.escape(model)}\'s test-window lists as trained, after the business rules alone '
        "(when evaluated) and after business rules and diversity re-ranking; change = after re-ranking minus as "
        "trained.</p>" + f'<div class="figure">{chart}</div>' + table(compared)
    )


def _section_quality(conn, run_id: str) -> str:
    parts = []
    if _exists(conn, "quality.check_results"):
        checks = fetch_frame(
            conn,
            """
            select gate, severity, count(*) as checks, count(*) filter (where success) as passed,
                count(*) filter (where not success) as failed
            from quality.check_results where run_id = %s group by 1, 2 order by 1, 2""",
            (run_id,),
        )
        failed = fetch_frame(
            conn,
            """
            select gate, suite, table_name, expectation_type, column_name, severity, observed_value
            from quality.check_results where run_id = %s and not success
            order by severity, gate, suite, expectation_type limit 50""",
            (run_id,),
        )
        parts.append("<h3>Checks of this run</h3>" + (table(checks) if len(checks) else _absent("Quality checks")))
        if len(failed):
            parts.append("<h3>Checks that did not pass</h3>" + table(failed))
    else:
        parts.append(_absent("Quality checks"))
    if _exists(conn, "quality.load_audit"):
        audit = fetch_frame(
            conn,
            """
            select table_name, sum(rows_read)::bigint as rows_read, sum(rows_loaded)::bigint as rows_loaded,
                sum(rows_rejected)::bigint as rows_rejected, sum(rows_unchanged)::bigint as rows_unchanged
            from quality.load_audit group by 1 order by 1""",
        )
        parts.append("<h3>Loaded and rejected rows (all batches)</h3>" + table(audit))
    if _exists(conn, "quality.rejected_rows"):
        reasons = fetch_frame(
            conn,
            "select table_name, reason, count(*) as rows from quality.rejected_rows group by 1, 2 "
            "order by 3 desc, 1, 2 limit 20",
        )
        if len(reasons):
            parts.append("<h3>Most frequent rejection reasons</h3>" + table(reasons))
    parts.append("<h3>Identity stitching</h3>" + _identity(conn, run_id))
    return "".join(parts)


def _identity(conn, run_id: str) -> str:
    parts = []
    if _exists(conn, "quality.identity_stitching_summary"):
        columns = _columns(conn, "quality.identity_stitching_summary")
        where, params = (sql.SQL("where run_id = %s"), (run_id,)) if "run_id" in columns else (sql.SQL(""), ())
        order = sql.SQL("order by as_of desc") if "as_of" in columns else sql.SQL("")
        summary = fetch_frame(
            conn,
            sql.SQL("select * from quality.identity_stitching_summary {} {} limit 1").format(where, order),
            params,
        )
        if len(summary):
            row = summary.iloc[0]
            if "merge_rate" in summary and pd.notna(row["merge_rate"]):
                parts.append(f"<p>Merge rate: <strong>{fmt(float(row['merge_rate']))}</strong></p>")
            parts.append(
                table(
                    pd.DataFrame(
                        {
                            "field": summary.columns,
                            "value": [fmt(v) if is_number(v) else text(v) for v in row.to_list()],
                        }
                    )
                )
            )
    if _exists(conn, "quality.check_results"):
        checks = fetch_frame(
            conn,
            """
            select suite, expectation_type, column_name, severity, success, observed_value
            from quality.check_results
            where run_id = %s and (suite like 'identity\\_%%' or expectation_type like 'identity\\_%%')
            order by suite, expectation_type, column_name""",
            (run_id,),
        )
        if len(checks):
            parts.append(table(checks))
    return "".join(parts) or _absent("Identity stitching")


def render(url: str) -> tuple[str, str]:
    """The report of the last run as one HTML document; returns (run_id, html)."""
    # imported here: numpy and scipy are needed only for this
    from recsys.models.registry import load_model_config, min_segment_users

    min_users = min_segment_users(load_model_config())
    with connect(url) as conn:
        run = latest_run(conn)
        run_id = str(run["run_id"])
        champion = None if pd.isna(run.get("champion_model")) else str(run["champion_model"])
        evaluations = fetch_frame(
            conn,
            "select model_name, variant, segment, metric, k, metric_value::float as metric_value "
            "from recs.model_evaluations where run_id = %s",
            (run_id,),
        )
        evaluations["k"] = evaluations["k"].astype("int64")
        sections = [
            ("run", "Run summary", _section_run(run, conn)),
            ("profiles", "Profile distributions", _section_profiles(conn, min_users)),
            ("tags", "Top interest tags", _section_tags(conn, min_users)),
            ("models", "Model comparison", _section_models(evaluations, champion)),
            ("cold-start", "Cold start: new users", _section_cold_start(evaluations)),
            ("search", "Search ranking", _section_search(evaluations)),
            ("promotions", "Promotion targeting", _section_promotions(evaluations)),
            ("diversity", "Diversity before and after re-ranking", _section_diversity(evaluations, champion)),
            ("quality", "Data quality", _section_quality(conn, run_id)),
            ("online", "Online evaluation: the A/B test", online.section(conn, table)),
        ]
    nav = "".join(f'<a href="#{anchor}">{html.escape(title)}</a>' for anchor, title, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{content}</section>'
        for anchor, title, content in sections
    )
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>recsys report: {html.escape(run_id)}</title><style>{CSS}</style></head><body>"
        f"<h1>recsys report: run {html.escape(run_id)}</h1>"
        f'<p class="note">Champion: <strong>{html.escape(champion or "none")}</strong>. '
        f"Groups of fewer than {min_users} users are not shown ([privacy] min_segment_users).</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
    return run_id, document


def write_report(url: str, out: Path | None = None) -> Path:
    """Write the HTML report of the last run to ``out`` (default ``reports/report-<run_id>.html``); return the path."""
    run_id, document = render(url)
    out = Path(out) if out else REPORTS_DIR / f"report-{run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    log.debug("report of run %s written to %s", run_id, out)
    return out


def _dbt(args: list[str], env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).parent / "dbt"), *args]
    log.info("$ %s", " ".join(command))
    result = subprocess.run(command, env=env, cwd=DBT_PROJECT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed:\n{result.stdout}\n{result.stderr}")


def build_dbt_docs(url: str, target_dir: Path = DOCS_DIR) -> Path:
    """``dbt docs generate --static`` against the warehouse at ``url``; return the single-file ``static_index.html``.

    The models compile with the vars of the last run (``as_of``, ``run_id``) when there is one, else docs are
    built without compiling. The compiled SQL reads the pseudonymization key from ``keystore.pseudonym_key``, so
    the key is not in the docs: they can be shared.

    Raises
    ------
    RuntimeError
        dbt failed; the message holds its output.
    """
    run_vars: dict[str, str] = {}
    with connect(url) as conn:
        if _exists(conn, "recs.runs"):
            runs = fetch_frame(conn, "select count(*) as n from recs.runs")
            if runs["n"].iloc[0]:
                run = latest_run(conn)
                if pd.notna(run.get("data_interval_end")):
                    run_vars = {"as_of": pd.Timestamp(run["data_interval_end"]).isoformat(), "run_id": run["run_id"]}
    target_dir = Path(target_dir).resolve()
    common = [
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(target_dir / "logs"),
    ]
    env = {
        **os.environ,
        **dbt_env(url),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }
    if run_vars:
        _dbt(["docs", "generate", "--static", *common, "--vars", json.dumps(run_vars)], env)
    else:  # `docs generate --no-compile` reads the manifest a parse leaves in the target path
        _dbt(["parse", *common], env)
        _dbt(["docs", "generate", "--static", "--no-compile", *common], env)
    return target_dir / "static_index.html"
