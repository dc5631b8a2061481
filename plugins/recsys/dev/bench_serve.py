"""``make bench-serve``: latency and throughput of the serving API on loopback, one row per endpoint.

``python -m recsys.dev.bench_serve --users 1000000`` writes a published run of that many shoppers (20 items
each, contract-shaped rows generated in SQL; the content does not matter for serving) into a new database
of the warehouse server (the embedded one, or ``WAREHOUSE_URL``'s), pushes it into the Redis online store
(``REDIS_URL``, default ``redis://127.0.0.1:6379/13``) under a key prefix of its own (both are deleted
afterwards, so runs side by side do not collide), starts ``recsys serve`` with uvicorn in a subprocess, and
drives it with ``--clients`` threads at a target of ``--rate`` requests per second for ``--requests``
requests per endpoint (or until ``--time-limit`` seconds): random known shoppers, items and event batches.
It prints per endpoint the requests, errors, throughput and p50/p95/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psycopg2

from recsys.db.warehouse import create_database, warehouse_url
from recsys.serving import online, publish

ITEMS_PER_USER = 20
RUN = "run_bench_serve"
ENDPOINTS = ("recommendations", "similar", "events")


def publish_run(url: str, users: int, items: int) -> None:
    """A published run of ``users`` shoppers with 20 items each, written in SQL (``generate_series``)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            drop schema if exists recs_build cascade; create schema recs_build; create schema if not exists identity;
            create schema if not exists analytics;
            create table identity.user_id_map as
                select 'p' || n as user_id, 'U' || n as shop_user_id, 'p' || n as account_user_id
                from generate_series(1, %(users)s) as n;
            create table analytics.dim_items as
                select 'I' || n as item_id, 'cat' || (n %% 20) as category from generate_series(1, %(items)s) as n;
            create table analytics.user_profiles (user_id text, rfm_segment text, spending_power text,
                lifecycle_stage text, top_categories text);
            create table recs_build.runs as select %(run)s as run_id, true as is_published, 'cat1' as
                repeat_purchase_categories, 'item_knn' as champion_model;
            create table recs_build.user_recommendations as
                select 'p' || n as user_id, 'for_you' as placement, rank as item_rank,
                    'I' || (1 + (n * 7 + rank * 13) %% %(items)s) as item_id,
                    1.0 / rank as score, 'item_knn' as model_name, 'popular' as reason_code,
                    'Popular with shoppers' as reason_text, %(run)s as run_id
                from generate_series(1, %(users)s) as n, generate_series(1, 20) as rank;
            create table recs_build.similar_items as
                select 'I' || n as item_id, rank as item_rank, 'I' || (1 + (n + rank) %% %(items)s) as similar_item_id,
                    1.0 / rank as score, %(run)s as run_id
                from generate_series(1, %(items)s) as n, generate_series(1, 20) as rank;
            create table recs_build.cold_start_recommendations as
                select 'all' as segment_key, rank as item_rank, 'I' || rank as item_id, 1.0 / rank as score,
                    %(run)s as run_id from generate_series(1, 20) as rank;
            create table recs_build.promotion_targets (user_id text, run_id text);
            create table recs_build.model_evaluations (run_id text);
            create table recs_build.model_search (run_id text);
            create index on identity.user_id_map (shop_user_id);
            create index on recs_build.user_recommendations (user_id, placement, item_rank);
            create index on recs_build.similar_items (item_id, item_rank);
            create index on analytics.dim_items (item_id);
            """,
            {"users": users, "items": items, "run": RUN},
        )
    with psycopg2.connect(url) as conn:
        publish.swap_recs(conn, RUN)


def _drop(server, name: str) -> None:
    """Drop the benchmark's database ``name`` on the warehouse server."""
    admin = psycopg2.connect(urlunsplit(server._replace(path="/postgres")))
    admin.autocommit = True
    admin.cursor().execute(f'drop database if exists "{name}" with (force)')
    admin.close()


def _batches(keys, size: int):
    batch = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def drive(base: str, token: str, endpoint: str, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Send ``args.requests`` requests to one endpoint from ``args.clients`` threads at ``args.rate`` per second."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    users = rng.integers(1, args.users + 1, args.requests)
    items = rng.integers(1, args.items + 1, args.requests)
    deadline = time.monotonic() + args.time_limit
    interval = args.clients / args.rate

    def request(http: httpx.Client, n: int) -> httpx.Response:
        if endpoint == "recommendations":
            return http.get(f"/v1/users/U{users[n]}/recommendations?n=20")
        if endpoint == "similar":
            return http.get(f"/v1/items/I{items[n]}/similar?n=10")
        event = {"user_id": f"U{users[n]}", "event_type": "view", "item_id": f"I{items[n]}"}
        return http.post("/v1/events", json={"events": [event]})

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for n in range(offset, args.requests, args.clients):
                started = time.perf_counter()
                if time.monotonic() > deadline:
                    return
                response = request(http, n)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors[0] += response.status_code != 200
                time.sleep(max(0.0, interval - elapsed))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "endpoint": endpoint,
        "requests": len(ms),
        "errors": errors[0],
        "per_second": len(ms) / wall,
        **{f"p{q}": float(np.percentile(ms, q)) if len(ms) else float("nan") for q in (50, 95, 99)},
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="bench_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=6_000, help="requests per endpoint")
    parser.add_argument("--rate", type=float, default=200.0, help="target requests per second")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per endpoint at most")
    args = parser.parse_args(argv)
    server = urlsplit(warehouse_url())
    name = f"recsys_bench_serve_{os.getpid()}"  # runs side by side on one server or Redis do not collide
    url = urlunsplit(server._replace(path=f"/{name}"))
    _drop(server, name)
    create_database(url)
    publish_run(url, args.users, args.items)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    client = online.redis_client(redis_url)
    prefix = f"bench{os.getpid()}"
    with psycopg2.connect(url) as conn:
        online.push_online(conn, client, RUN, prefix=prefix)
    token, port = "bench-serve-token", _free_port()
    env = {**os.environ, "WAREHOUSE_URL": url, "REDIS_URL": redis_url, "RECSYS_API_TOKEN": token}
    env.pop("RECSYS_PSEUDONYM_KEY", None)
    spool = tempfile.TemporaryDirectory(prefix="recsys-bench-serve-")
    command = [sys.executable, "-m", "recsys.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    limits = ["--rate-limit", str(args.rate * 10), "--burst", str(args.requests)]  # measure serving, not the limiter
    limits += ["--redis-prefix", prefix]
    process = subprocess.Popen([*command, "--spool", spool.name, *limits], env=env)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/v1/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        rng = np.random.default_rng(0)
        rows = [drive(base, token, endpoint, args, rng) for endpoint in ENDPOINTS]
    finally:
        process.terminate()
        process.wait(timeout=30)
        for keys in _batches(client.scan_iter(match=f"{prefix}:*", count=1_000), 1_000):
            client.delete(*keys)
        spool.cleanup()
        _drop(server, name)
    print(f"serving API on loopback: {args.users:,} users in Redis, {args.clients} clients, target {args.rate:g}/s")
    print(f"{'endpoint':<16}{'requests':>9}{'errors':>8}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
    for row in rows:
        print(
            f"{row['endpoint']:<16}{row['requests']:>9}{row['errors']:>8}{row['per_second']:>8.1f}"
            f"{row['p50']:>8.2f}{row['p95']:>8.2f}{row['p99']:>8.2f}"
        )
    return rows


if __name__ == "__main__":
    main()
