"""The landing format: the one documented way data enters the platform.

A landing directory holds one CSV file per entity (UTF-8, comma separated,
a header row, RFC 4180 quoting) and an optional ``manifest.json`` with
``{"format_version": 1}``. The simulator writes it, the importers convert
into it, and a shop's own export produces it. Only ``users``, ``items`` and
``events`` are required; the other files are optional.

Timestamps are ISO 8601; a value without an offset is read as UTC. A value is
at most :data:`MAX_VALUE_CHARS` characters and holds no NUL character
(Postgres text cannot store one). Booleans
are ``true/false``, ``t/f``, ``1/0`` or ``yes/no`` in any case. Column order
does not matter; unknown columns are ignored (and reported in the load
audit); a missing required column is an error for the whole file.

This module is the single source of truth for the format: the loader
creates the ``raw`` tables from it and the table of docs/data/landing-format.md is generated from
:func:`format_markdown`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1

#: the longest value a landing file may hold, in characters; a longer one is rejected
MAX_VALUE_CHARS = 65_536

#: the batch (and folder) of a day's events posted to the serving API: ``api-<YYYY-MM-DD>``
API_BATCH_PREFIX = "api-"

#: event types the platform understands (after trimming and lower-casing)
#: ``click``: a shopper opened an item of a served list; it carries the list's ``request_id`` (the serving API)
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase", "search", "click")

#: kinds of a ``social_edges`` row: ``follow`` (from follows to), ``friend`` (mutual, one row per pair is
#: enough), ``referral`` (from invited to, who signed up through the invitation), ``share`` (from shared
#: ``item_id`` with to)
SOCIAL_EDGE_KINDS = ("follow", "friend", "referral", "share")


class LandingError(ValueError):
    """A landing file that cannot be loaded at all (missing, empty, wrong header)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # text | timestamp | numeric | integer | boolean
    required: bool = False
    description: str = ""
    pii: bool = False


@dataclass(frozen=True)
class LandingFile:
    name: str
    required: bool
    description: str
    columns: tuple[Column, ...]
    #: a snapshot's key (users, items, promotions are delivered whole, again and again): a row identical to the
    #: key's latest stored version is counted ``rows_unchanged`` and not stored again (:mod:`recsys.ingest.snapshots`)
    snapshot_key: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


C = Column

FILES: dict[str, LandingFile] = {
    spec.name: spec
    for spec in (
        LandingFile(
            "users",
            True,
            "One row per registered user (a later batch may repeat a user; the latest wins).",
            (
                C("user_id", "text", True, "the shop's own user id"),
                C("signup_at", "timestamp", True, "registration time"),
                C("birth_year", "integer", description="year of birth"),
                C("gender", "text", description="free text, normalized to female/male/other/unknown"),
                C("region", "text", description="region or province"),
                C("platform", "text", description="signup platform: web, app or mini_program"),
                C("signup_channel", "text", description="acquisition channel, e.g. organic, ads, referral"),
                C("email", "text", description="e-mail address", pii=True),
                C("phone", "text", description="phone number", pii=True),
                C("is_personalization_allowed", "boolean", description="false if the user opted out; default true"),
            ),
            snapshot_key="user_id",
        ),
        LandingFile(
            "items",
            True,
            "One row per catalogue item (latest batch wins).",
            (
                C("item_id", "text", True, "the shop's own item id"),
                C("name", "text", description="display name"),
                C("category_path", "text", description="category tree, levels separated by ' > '"),
                C("brand", "text"),
                C("price", "numeric", description="current list price"),
                C("stock_quantity", "integer", description="units in stock; <= 0 means out of stock"),
                C("created_at", "timestamp", description="when the item was listed"),
                C(
                    "description",
                    "text",
                    description="free-text description; with the name, the category path and the brand it becomes "
                    "the item's content vector, which reaches items nobody has bought yet",
                ),
            ),
            snapshot_key="item_id",
        ),
        LandingFile(
            "events",
            True,
            "Behaviour: one row per event.",
            (
                C("event_id", "text", description="the shop's event id, if it has one"),
                C("user_id", "text", True),
                C("item_id", "text", description="required for every type but search"),
                C("event_type", "text", True, "view, cart, remove_from_cart, purchase, search or click"),
                C("event_at", "timestamp", True),
                C("session_id", "text"),
                C("platform", "text", description="web, app or mini_program"),
                C("query", "text", description="search text, for search events"),
                C("quantity", "integer", description="units, for cart and purchase events"),
                C("price", "numeric", description="unit price seen or paid"),
                C(
                    "device_id",
                    "text",
                    description="the device or browser id the event came from; links a person's accounts",
                    pii=True,
                ),
                C("request_id", "text", description="the serving API's list the event came from (click events)"),
            ),
        ),
        LandingFile(
            "orders",
            False,
            "One row per order.",
            (
                C("order_id", "text", True),
                C("user_id", "text", True),
                C("ordered_at", "timestamp", True),
                C("status", "text", description="completed (default), cancelled or returned"),
                C("platform", "text"),
                C("promotion_id", "text", description="promotion applied to the order, if any"),
            ),
        ),
        LandingFile(
            "order_lines",
            False,
            "One row per item in an order.",
            (
                C("order_id", "text", True),
                C("item_id", "text", True),
                C("quantity", "integer", True),
                C("unit_price", "numeric", True, "price paid per unit, after discounts"),
                C("discount_amount", "numeric", description="discount on the line, total"),
            ),
        ),
        LandingFile(
            "reviews",
            False,
            "Ratings and reviews.",
            (
                C("review_id", "text"),
                C("user_id", "text", True),
                C("item_id", "text", True),
                C("rating", "integer", True, "1 to 5"),
                C("reviewed_at", "timestamp", True),
                C("review_text", "text"),
            ),
        ),
        LandingFile(
            "promotions",
            False,
            "Promotions and coupon campaigns.",
            (
                C("promotion_id", "text", True),
                C("name", "text"),
                C("promotion_type", "text", description="e.g. percent_off, amount_off, free_shipping"),
                C("discount_value", "numeric"),
                C("category", "text", description="top-level category targeted, empty for all"),
                C("starts_at", "timestamp", True),
                C("ends_at", "timestamp", True),
            ),
            snapshot_key="promotion_id",
        ),
        LandingFile(
            "redemptions",
            False,
            "Coupon or promotion redemptions.",
            (
                C("promotion_id", "text", True),
                C("user_id", "text", True),
                C("order_id", "text"),
                C("redeemed_at", "timestamp", True),
            ),
        ),
        LandingFile(
            "social_edges",
            False,
            "Social data: one row per edge between two users (a later batch may repeat an edge).",
            (
                C("from_user_id", "text", True, "the shop's user id of the follower, friend, referrer or sharer"),
                C(
                    "to_user_id",
                    "text",
                    True,
                    "the shop's user id of the followed user, friend, referred user or the recipient of a share",
                ),
                C("kind", "text", True, "follow, friend, referral or share"),
                C("created_at", "timestamp", True, "when the edge was made (a referral: the referred user's signup)"),
                C("item_id", "text", description="the item shared; required for share, empty for the other kinds"),
            ),
        ),
    )
}

#: files only the serving API writes, into its ``api-<YYYY-MM-DD>`` batches (:mod:`recsys.api.impressions`)
API_FILES: dict[str, LandingFile] = {
    "impressions": LandingFile(
        "impressions",
        False,
        "What the serving API showed: one row per item of a served list (request x position).",
        (
            C("request_id", "text", True, "the response's id, sent back with the click events"),
            C("user_id", "text", True, "the shop's own user id the list was served to"),
            C("item_id", "text", True),
            C("position", "integer", True, "1 = the first item shown"),
            C("shown_at", "timestamp", True),
            C("run_id", "text", description="the published run that served the list"),
            C("model_name", "text", description="the model whose list was served (cold_start for a new shopper)"),
            C("arm", "text", description="champion or challenger in an A/B test; empty outside one"),
            C("experiment", "text", description="the A/B test's name"),
            C("challenger_share", "numeric", description="the share of shoppers the test gives the challenger"),
            C(
                "placement",
                "text",
                description=(
                    "which list was shown: for_you, discover or buy_again (the API's placements;"
                    " older files: the slot id, e.g. home)"
                ),
            ),
        ),
    ),
}

#: every landing file the loader knows: the shop's, then the serving API's
ALL_FILES: dict[str, LandingFile] = {**FILES, **API_FILES}

#: the planted truth of a simulated shop; never loaded into the warehouse
TRUTH_FILE = "truth/user_truth.csv"

#: the planted persons of a simulated shop (account -> person); never loaded into the warehouse
PERSONS_TRUTH_FILE = "truth/persons.csv"


def write_manifest(directory: Path, rows: dict[str, int] | None = None, **extra: object) -> None:
    """Write ``manifest.json`` with the format version into a landing directory; write it last.

    ``rows`` (data rows per landing file, by table name) lets the loader refuse a file that lost rows on the
    way (:func:`recsys.ingest.load.load_landing`).
    """
    manifest = {"format_version": FORMAT_VERSION, **extra, **({"rows": rows} if rows is not None else {})}
    (Path(directory) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def output_directory(out_dir: Path | str) -> Iterator[Path]:
    """A temporary sibling folder to write an import into, swapped in for ``out_dir`` when the import succeeds.

    A failed import leaves ``out_dir`` as it was. ``out_dir`` is replaced whole, so it must be missing, empty
    or an earlier import's output (with ``import_report.json``).

    Raises
    ------
    ValueError
        ``out_dir`` holds something else.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "import_report.json").exists():
        raise ValueError(
            f"{out_dir}: not empty and not an earlier import's output; the import replaces its output folder"
            " whole, so choose a new --out folder"
        )
    partial, old = (out_dir.with_name(f".{out_dir.name}.{suffix}") for suffix in ("partial", "old"))
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    partial.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(directory: Path) -> dict:
    """Read ``manifest.json``; a directory without one is format version 1.

    Raises
    ------
    ValueError
        If the manifest names a format version this code does not read.
    """
    path = Path(directory) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"format_version": 1}
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: landing format version {manifest.get('format_version')!r} is not supported "
            f"(this platform reads version {FORMAT_VERSION})"
        )
    return manifest


def format_markdown() -> str:
    """The landing format as Markdown tables, for docs/data/landing-format.md."""
    lines = []
    for spec in ALL_FILES.values():
        snapshot = (
            f" A snapshot: a row equal in every column to the latest stored row of its `{spec.snapshot_key}` is"
            " counted as unchanged and not stored again."
            if spec.snapshot_key
            else ""
        )
        lines.append(
            f"**`{spec.filename}`** ({'required' if spec.required else 'optional'}): {spec.description}{snapshot}\n"
        )
        lines.append("| column | type | required | notes |")
        lines.append("|---|---|---|---|")
        for column in spec.columns:
            notes = column.description + (" (PII)" if column.pii else "")
            lines.append(f"| {column.name} | {column.type} | {'yes' if column.required else ''} | {notes} |")
        lines.append("")
    return "\n".join(lines)
