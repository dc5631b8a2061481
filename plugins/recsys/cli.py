"""``recsys``: the command line of the platform."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from recsys.db.settings import check_environment
from recsys.dev.local import DEFAULT_SHOP


def _print(result: object) -> None:
    print(json.dumps(result, indent=2, default=str))


def cmd_simulate(args: argparse.Namespace) -> None:
    if args.shape == "invoices":
        from recsys.dev.simulate_invoices import simulate_invoices

        _print(simulate_invoices(Path(args.out), args.users, args.items, args.days, args.seed))
        return
    from recsys.dev.simulate import simulate

    chunking = {} if args.chunk_users is None else {"chunk_users": args.chunk_users}
    _print(
        simulate(
            Path(args.out),
            users=args.users,
            items=args.items,
            days=args.days,
            seed=args.seed,
            dirty=not args.clean,
            activity=args.activity,
            **chunking,
        )
    )


def cmd_import(args: argparse.Namespace) -> None:
    from recsys.ingest import importers

    if args.source == "mysql":
        from recsys.ingest.mysql_import import import_mysql

        _print(import_mysql(args.url, Path(args.out), chunk_rows=args.chunk_rows))
    elif args.source == "online-retail":
        _print(importers.import_online_retail(Path(args.path), Path(args.out), date_format=args.date_format))
    else:
        _print(
            importers.import_interactions(
                Path(args.path),
                Path(args.out),
                user_col=args.user_col,
                item_col=args.item_col,
                time_col=args.time_col,
                event_type_col=args.event_type_col,
                quantity_col=args.quantity_col,
                price_col=args.price_col,
                category_col=args.category_col,
                default_event_type=args.default_event_type,
                date_format=args.date_format,
            )
        )


def cmd_warehouse_url(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url

    print(warehouse_url())


def cmd_load(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import connect
    from recsys.ingest.load import load_landing, load_new_days

    if bool(args.batch_id) == args.all_days:
        sys.exit("give either --batch-id or --all-days")
    with connect() as conn:
        if args.all_days:
            loaded = load_new_days(conn, Path(args.landing_dir))
            print(f"loaded {len(loaded)} new day folder(s): {', '.join(loaded) or 'none'}")
        else:
            _print(load_landing(conn, Path(args.landing_dir), args.batch_id))


def cmd_export(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url
    from recsys.reporting.report import export_recommendations

    rows = export_recommendations(warehouse_url(), Path(args.out))
    print(f"wrote {rows} recommendations to {args.out}")


def cmd_explain(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url
    from recsys.reporting.report import explain_user

    print(explain_user(warehouse_url(), args.shop_user_id))


def cmd_search(args: argparse.Namespace) -> None:
    import pandas as pd

    from recsys.db.warehouse import warehouse_url
    from recsys.usecases.search import search

    results = search(warehouse_url(), args.user, args.query, n=args.n)
    if results.empty:
        print(f"no items match {args.query!r}")
        return
    results["score"] = results["score"].round(3)
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(results.to_string(index=False))


def cmd_diversity_sweep(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import connect
    from recsys.evaluation.selection import diversity_sweep

    columns = ["ndcg", "precision", "recall", "hit_rate", "diversity", "category_coverage", "novelty", "coverage"]
    with connect() as conn:
        table = diversity_sweep(conn, args.run_id, [float(value) for value in args.strengths.split(",")])
    print(table.reindex(columns=columns).round(4).to_string())


def cmd_summary(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url
    from recsys.reporting.report import print_summary

    print_summary(warehouse_url())


def cmd_report(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url
    from recsys.reporting.html_report import write_report

    print(f"wrote {write_report(warehouse_url(), Path(args.out) if args.out else None)}")


def cmd_docs(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import warehouse_url
    from recsys.reporting.html_report import DOCS_DIR, build_dbt_docs

    static = build_dbt_docs(warehouse_url(), Path(args.out) if args.out else DOCS_DIR)
    print(f"dbt docs: {static.parent / 'index.html'} (with manifest.json, catalog.json)")
    print(f"single file: {static}")


def cmd_erase_user(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import connect
    from recsys.dev.local import existing_pseudonym_key
    from recsys.orchestration.tasks import erase_and_forget

    if args.queue:
        from recsys.quality.erasure import request_erasure

        with connect() as conn:
            request_erasure(conn, args.shop_user_id)
        print("queued: the user_erasure DAG erases the user on its next run")
        return
    with connect() as conn:
        result = erase_and_forget(conn, args.shop_user_id, existing_pseudonym_key())
    print(f"erased: {result['total']} rows in {len(result['rows_deleted'])} tables; later loads will drop the user")
    if result["online_keys_deleted"] is not None:
        print(f"online store: {result['online_keys_deleted']} keys deleted")


def cmd_target_promotions(args: argparse.Namespace) -> None:
    from datetime import datetime

    from recsys.db.warehouse import connect
    from recsys.orchestration.tasks import run_id_for
    from recsys.usecases.promotions import target_promotions

    as_of = datetime.fromisoformat(args.as_of)
    if as_of.tzinfo is None:
        raise ValueError(f"--as-of needs a time zone, e.g. {args.as_of}+00:00")
    with connect() as conn:
        _print(target_promotions(conn, args.run_id or run_id_for(as_of), as_of))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from recsys.api.app import Settings, create_app
    from recsys.api.store import REDIS_TIMEOUT_SECONDS, Store
    from recsys.db.warehouse import LOCAL_DIR, warehouse_url
    from recsys.serving import online

    token = os.environ.get("RECSYS_API_TOKEN")
    if not token and not args.insecure_local:
        sys.exit("set RECSYS_API_TOKEN (clients send it as a bearer token), or run with --insecure-local")
    profile_token = os.environ.get("RECSYS_API_PROFILE_TOKEN") or None
    if profile_token and profile_token == token:
        sys.exit("RECSYS_API_PROFILE_TOKEN must differ from RECSYS_API_TOKEN (the profile is for fewer callers)")
    # a Redis that hangs times out quickly: the API then answers from the warehouse (recsys.api.store)
    timeouts = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS}
    store = Store(warehouse_url(), online.redis_client(**timeouts), prefix=args.redis_prefix)
    spool = Path(args.spool) if args.spool else LOCAL_DIR / "api_spool"
    settings = Settings(
        token=None if args.insecure_local else token,
        spool_dir=spool,
        profile_token=profile_token,
        requests_per_second=args.rate_limit,
        burst=args.burst,
        session_events=args.session_events,
        sessions=args.sessions,
    )
    if args.experiment:
        from recsys.api.experiments import Experiment

        if not args.challenger:
            sys.exit("--experiment needs --challenger: the model whose lists the challenger arm serves")

        settings.experiment = Experiment(args.experiment, args.challenger, args.challenger_share)
    app = create_app(store, settings)
    uvicorn.run(app, host="127.0.0.1" if args.insecure_local else args.host, port=args.port, log_level="warning")


def cmd_events_drain(args: argparse.Namespace) -> None:
    from recsys.api import impressions
    from recsys.api.events import drain
    from recsys.db.warehouse import connect

    with connect() as conn:
        counts = drain(Path(args.spool), Path(args.landing), conn)
    for day, day_counts in counts.items():
        print(f"{day}: " + ", ".join(f"{name} {value}" for name, value in day_counts.items()))
    for day, day_counts in impressions.drain(Path(args.spool), Path(args.landing)).items():
        print(f"{day}: impressions logged {day_counts['logged']}, landed {day_counts['landed']}")


def cmd_evaluate_online(args: argparse.Namespace) -> None:
    from recsys.db.warehouse import connect, warehouse_url
    from recsys.evaluation.online import evaluate_online
    from recsys.reporting.online import arm_comparison

    with connect(warehouse_url()) as conn:
        _print(evaluate_online(conn, args.run_id))
        print(arm_comparison(conn, args.run_id[0] if args.run_id else None, table="ml.model_evaluations").to_string())


def cmd_run(args: argparse.Namespace) -> None:
    from recsys.dev.local import main

    sys.exit(main(args.data))


def _add_ingest_parsers(commands) -> None:
    """``recsys import interactions|online-retail|mysql`` and ``recsys load``."""
    importer = commands.add_parser("import", help="convert a data set into the landing format")
    sources = importer.add_subparsers(dest="source", required=True)
    interactions = sources.add_parser("interactions", help="a generic interactions CSV")
    for name, default in [
        ("user-col", "user_id"),
        ("item-col", "item_id"),
        ("time-col", "timestamp"),
        ("event-type-col", None),
        ("quantity-col", None),
        ("price-col", None),
        ("category-col", None),
        ("default-event-type", "purchase"),
    ]:
        interactions.add_argument(f"--{name}", default=default)
    retail = sources.add_parser("online-retail", help="the UCI Online Retail layout")
    for sub in (interactions, retail):
        sub.add_argument("path")
        sub.add_argument("--out", required=True)
        sub.add_argument(
            "--date-format", help="strftime format of the dates, e.g. '%%d/%%m/%%Y %%H:%%M' (default: detected)"
        )
        sub.set_defaults(func=cmd_import)
    mysql = sources.add_parser("mysql", help="a shop's MySQL/MariaDB database (the schema: docs/data/importers.md)")
    mysql.add_argument(
        "--url", required=True, help="mysql://user[:password]@host[:port]/database (or the password in MYSQL_PASSWORD)"
    )
    mysql.add_argument("--out", required=True)
    mysql.add_argument("--chunk-rows", type=int, default=10_000, help="rows fetched per round trip")
    mysql.set_defaults(func=cmd_import)
    load = commands.add_parser("load", help="load a landing directory into raw as one batch")
    load.add_argument("landing_dir")
    load.add_argument("--batch-id", help="the batch to load: the folder <landing_dir>/<batch id>, else the directory")
    load.add_argument(
        "--all-days", action="store_true", help="load every <landing_dir>/<YYYY-MM-DD>/ not loaded yet, oldest first"
    )
    load.set_defaults(func=cmd_load)


def _add_serving_parsers(commands) -> None:
    """``recsys serve`` and ``recsys events-drain`` (the serving API, :mod:`recsys.api`)."""
    serve = commands.add_parser("serve", help="the serving API over the published run (docs/api.md)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--spool", help="where posted events are spooled (default .local/api_spool)")
    serve.add_argument("--insecure-local", action="store_true", help="no token; listen on 127.0.0.1 only")
    serve.add_argument("--rate-limit", type=float, default=50.0, help="requests per second per client (then 429)")
    serve.add_argument("--burst", type=int, default=100, help="requests a client may send at once")
    serve.add_argument("--session-events", type=int, default=50, help="events kept per shopper's live session")
    serve.add_argument("--sessions", type=int, default=100_000, help="live sessions kept (least recent out)")
    serve.add_argument("--redis-prefix", default="recsys", help="the online store's key prefix (push_online's)")
    serve.add_argument("--experiment", help="an A/B test's name: its arms are drawn by a hash of it and the shopper")
    serve.add_argument("--challenger", help="the A/B test's challenger model ([experiment] challenger of the run)")
    serve.add_argument("--challenger-share", type=float, default=0.5, help="the shoppers the challenger gets (0-1)")
    serve.set_defaults(func=cmd_serve)
    drain = commands.add_parser(
        "events-drain", help="write the API's spooled events and impressions as landing batches api-<day>"
    )
    drain.add_argument("--spool", required=True)
    drain.add_argument("--landing", required=True, help="the shop's landing directory")
    drain.set_defaults(func=cmd_events_drain)
    online = commands.add_parser(
        "evaluate-online", help="click-through and conversion of the served lists into ml.model_evaluations"
    )
    online.add_argument("--run-id", action="append", help="a run that served lists (repeatable; default every run)")
    online.set_defaults(func=cmd_evaluate_online)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write a simulated shop in the landing format")
    for name, default in DEFAULT_SHOP.items():  # the shop `make run` simulates
        simulate.add_argument(f"--{name}", type=int, default=default)
    simulate.add_argument("--clean", action="store_true", help="no dirty rows")
    simulate.add_argument("--activity", type=float, default=1.0, help="web: sessions per user, times this (default 1)")
    simulate.add_argument("--chunk-users", type=int, help="web: users simulated at a time (default 200,000)")
    simulate.add_argument(
        "--shape",
        choices=["web", "invoices"],
        default="web",
        help="web: a web shop with sessions and categories; invoices: a wholesale/retail invoice export, imported",
    )
    simulate.add_argument("--out", required=True)
    simulate.set_defaults(func=cmd_simulate)

    _add_ingest_parsers(commands)
    _add_serving_parsers(commands)

    url = commands.add_parser("warehouse-url", help="print the warehouse's postgresql:// URL (starts the embedded one)")
    url.set_defaults(func=cmd_warehouse_url)

    export = commands.add_parser("export", help="export published tables")
    export.add_argument("what", choices=["recommendations"])
    export.add_argument("--out", required=True)
    export.set_defaults(func=cmd_export)

    explain = commands.add_parser(
        "explain", help="print a user's profile, interest tags and recommendations with their reasons"
    )
    explain.add_argument("shop_user_id", help="the shop's own user id, as in users.csv")
    explain.set_defaults(func=cmd_explain)

    searching = commands.add_parser(
        "search", help="search the catalogue for a user: text matches re-ranked by their profile, with reasons"
    )
    searching.add_argument("query", help="free search text")
    searching.add_argument("--user", default=None, help="the shop's own user id (default: anonymous, text order)")
    searching.add_argument("-n", type=int, default=20, help="rows to print")
    searching.set_defaults(func=cmd_search)

    sweep = commands.add_parser(
        "diversity-sweep", help="the champion's test-week accuracy and diversity per re-rank strength"
    )
    sweep.add_argument("run_id", help="an evaluated run, e.g. run_20261101T000000")
    sweep.add_argument("--strengths", default="0,0.1,0.2,0.3,0.5,0.8")
    sweep.set_defaults(func=cmd_diversity_sweep)

    summary = commands.add_parser("summary", help="print what the last run built")
    summary.set_defaults(func=cmd_summary)

    report = commands.add_parser("report", help="write a self-contained HTML report of the last run")
    report.add_argument("--out", default=None, help="HTML file (default reports/report-<run_id>.html)")
    report.set_defaults(func=cmd_report)

    docs = commands.add_parser("docs", help="build the dbt docs (and one static HTML file) against the warehouse")
    docs.add_argument("--out", default=None, help="target directory (default dbt_project/target/docs)")
    docs.set_defaults(func=cmd_docs)

    erase = commands.add_parser(
        "erase-user", help="remove a user from every schema and keep them out of later loads (audited)"
    )
    erase.add_argument("shop_user_id", help="the shop's own user id, as in users.csv")
    erase.add_argument("--queue", action="store_true", help="queue it for the user_erasure DAG, not erase now")
    erase.set_defaults(func=cmd_erase_user)

    promotions = commands.add_parser(
        "target-promotions", help="evaluate promotion targeting and write the active promotions' targets to ml"
    )
    promotions.add_argument("--as-of", required=True, help="the data interval end, e.g. 2026-11-01T00:00:00+00:00")
    promotions.add_argument("--run-id", default=None, help="default: the DAG's run id of that interval end")
    promotions.set_defaults(func=cmd_target_promotions)

    run = commands.add_parser("run", help="run the main DAG once on a simulated shop or --data DIR")
    run.add_argument("--data", default=None)
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        check_environment()
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"recsys: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
