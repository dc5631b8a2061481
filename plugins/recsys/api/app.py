"""The serving API (FastAPI): the published run, adjusted to the shopper's live session.

==============================================  ==============================================================
endpoint                                        answer
==============================================  ==============================================================
``GET /v1/healthz``                             ``{"status": "ok", "run_id"}``
``GET /v1/users/{shop_user_id}/recommendations``  the published list after the live session
                                                (:func:`recsys.api.events.apply_session`); a shopper without
                                                one gets the cold-start list (``buy_again``: an empty one);
                                                ``?placement=`` for_you (default; ``home`` is an alias),
                                                discover or buy_again (:mod:`recsys.serving.placements`),
                                                another name 422; ``?n=`` 1-100 (default 20);
                                                what was shown is logged under the answer's ``request_id``
                                                (:mod:`recsys.api.impressions`), the list is the shopper's
                                                A/B arm's (:mod:`recsys.api.experiments`)
``GET /v1/items/{item_id}/similar``             the published similar items; ``?n=`` 1-100 (default 10)
``GET /v1/search?q=&user=``                     personalized search (:func:`recsys.usecases.search.search`)
``POST /v1/events``                             a batch of shopper events: spooled durably, then reflected
                                                in the shopper's next request; an ``event_id`` seen before
                                                is a duplicate, accepted once
``GET /v1/users/{shop_user_id}/profile``        the shopper's profile and the reasons of their published list;
                                                only with ``RECSYS_API_PROFILE_TOKEN`` (else 404)
==============================================  ==============================================================

Every request needs ``Authorization: Bearer <RECSYS_API_TOKEN>`` (the profile: ``Bearer
<RECSYS_API_PROFILE_TOKEN>``, a token of its own; the ordinary one gets 403 there) unless the server runs with
``--insecure-local`` (then it listens on 127.0.0.1 only). Ids are checked (1-128 characters, no spaces, no
control characters; queries: no control characters) and a client over its rate limit gets 429. An erased
shopper gets 404 (checked in the warehouse, which holds the key: :meth:`recsys.api.store.Store.erased`) and a
batch of events with one of theirs is refused, nothing of it spooled. The live sessions keep the last
``session_events`` events of at most ``sessions`` shoppers (:class:`recsys.api.events.Sessions`).
"""

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsys.api import experiments
from recsys.api.events import ID_PATTERN, TEXT_PATTERN, EventBatch, Sessions, Spool, apply_session
from recsys.api.impressions import ImpressionLog
from recsys.api.store import Store
from recsys.serving import placements

#: items similar to each recently viewed item that move up in the shopper's list
SIMILAR_PER_VIEW = 20
#: the session's viewed or carted items looked at
RECENT_VIEWS = 5


@dataclass
class Settings:
    """How the API runs: ``token`` None only for ``--insecure-local``; ``profile_token`` None: no profile endpoint."""

    token: str | None
    spool_dir: Path
    requests_per_second: float = 50.0
    burst: int = 100
    session_events: int = 50
    sessions: int = 100_000
    profile_token: str | None = None
    experiment: experiments.Experiment | None = None  # an A/B test of a challenger (recsys.api.experiments)


@dataclass
class _Bucket:
    tokens: float
    at: float = field(default_factory=time.monotonic)


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        with self._lock:
            bucket = self._buckets.setdefault(client, _Bucket(float(self.burst)))
            now = time.monotonic()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True


def create_app(store: Store, settings: Settings) -> FastAPI:
    """The API over ``store`` (see the module docstring)."""
    app = FastAPI(title="recsys serving API", version="1")
    sessions, spool = Sessions(settings.session_events, settings.sessions), Spool(settings.spool_dir)
    impressions = ImpressionLog(settings.spool_dir, settings.experiment)
    limiter = RateLimiter(settings.requests_per_second, settings.burst)
    bearer = HTTPBearer(auto_error=False)

    def client(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if settings.token is not None:
            given = credentials.credentials if credentials else ""
            if not secrets.compare_digest(given.encode(), settings.token.encode()):
                raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        name = settings.token or (request.client.host if request.client else "local")
        if not limiter.allow(name):
            raise HTTPException(429, "too many requests")
        return name

    def person(shop_user_id: str) -> str | None:
        return shopper(store, shop_user_id)

    @app.get("/v1/healthz")
    def healthz() -> dict:
        return {"status": "ok", "run_id": store.run()["run_id"]}

    @app.get("/v1/users/{shop_user_id}/recommendations", dependencies=[Depends(client)])
    def recommendations(
        shop_user_id: str = PathParam(pattern=ID_PATTERN),
        n: int = Query(20, ge=1, le=100),
        placement: str = Query(placements.DEFAULT, pattern=ID_PATTERN),
    ) -> dict:
        placement = shelf(placement)
        user_id = person(shop_user_id)
        served = experiments.serve(store, settings.experiment, user_id, placement)  # the arm of an A/B test
        items, source = listed(store, served, placement)
        session = sessions.recent(user_id or f"shop:{shop_user_id}")
        if session:
            items = after_session(store, items, session, placement)
        request_id = impressions.record(shop_user_id, items[:n], served, source, placement) if user_id else None
        answer = {"user_id": shop_user_id, "placement": placement, "source": source, "items": items[:n]}
        return {**answer, "request_id": request_id}

    @app.get("/v1/items/{item_id}/similar", dependencies=[Depends(client)])
    def similar(item_id: str = PathParam(pattern=ID_PATTERN), n: int = Query(10, ge=1, le=100)) -> dict:
        items = store.similar(item_id)
        if items is None:
            raise HTTPException(404, "no similar items for this item")
        return {"item_id": item_id, "items": items[:n]}

    @app.get("/v1/search", dependencies=[Depends(client)])
    def search(
        q: str = Query(min_length=1, max_length=200, pattern=TEXT_PATTERN),
        user: str | None = Query(None, pattern=ID_PATTERN),
        n: int = Query(20, ge=1, le=100),
    ) -> dict:
        from recsys.usecases import search as search_module

        if user is not None:
            erased, user_id = store.lookup(user)
            if erased or user_id is None:
                user = None  # unknown or erased: an anonymous search
        with store.connection() as conn:
            found = search_module.search(conn, user, q, n=n)
        return {"query": q, "items": found[["item_id", "score", "reason"]].to_dict("records")}

    @app.post("/v1/events", dependencies=[Depends(client)])
    def events(batch: EventBatch) -> dict:
        if store.erased([event.user_id for event in batch.events]):
            raise HTTPException(404, "no such user")  # the whole batch is refused: nothing of it is spooled
        accepted, duplicates = spool.append(batch.events)
        for event in accepted:
            sessions.add(store.person(event.user_id) or f"shop:{event.user_id}", event)
        return {"accepted": len(accepted), "duplicates": len(duplicates), "duplicate_event_ids": duplicates}

    app.include_router(profile_router(store, settings, limiter))
    return app


def after_session(store: Store, items: list[dict], session: list, placement: str) -> list[dict]:
    """``items`` after the shopper's live ``session`` (:func:`recsys.api.events.apply_session`).

    ``discover`` shows only items never bought: a purchase in the session leaves it whatever its category.
    """
    viewed = [event.item_id for event in session if event.event_type in ("view", "cart") and event.item_id]
    similar = {
        item["item_id"] for seen in viewed[-RECENT_VIEWS:] for item in (store.similar(seen) or [])[:SIMILAR_PER_VIEW]
    }
    bought = [event.item_id for event in session if event.event_type == "purchase" and event.item_id]
    repeat = set() if placement == placements.DISCOVER else store.run()["repeat_purchase_categories"]
    return apply_session(items, session, store.categories(bought), repeat, similar)


def listed(store: Store, served: experiments.Served, placement: str) -> tuple[list[dict], str]:
    """The list to answer with and its ``source``: the shopper's, else the cold-start list (``buy_again``: none)."""
    if served.items:
        return served.items, "personalized"
    if placement == placements.BUY_AGAIN:
        return [], "none"  # nothing bought yet: no shelf, rather than items never bought
    return store.cold_start(), "cold_start"


def shelf(name: str) -> str:
    """The placement a request names (:func:`recsys.serving.placements.resolve`); 422 with the valid names."""
    try:
        return placements.resolve(name)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


def shopper(store: Store, shop_user_id: str) -> str | None:
    """The pseudonymous ``user_id`` of a shop user id (``None``: unknown); 404 for an erased shopper."""
    erased, user_id = store.lookup(shop_user_id)
    if erased:
        raise HTTPException(404, "no such user")
    return user_id


def profile_router(store: Store, settings: Settings, limiter: RateLimiter) -> APIRouter:
    """``GET /v1/users/{shop_user_id}/profile``: only with ``settings.profile_token``, which only it accepts."""
    router = APIRouter()
    bearer = HTTPBearer(auto_error=False)

    def profile_client(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if not settings.profile_token:
            raise HTTPException(404, "Not Found")  # as if there were no such endpoint
        given = (credentials.credentials if credentials else "").encode()
        if not secrets.compare_digest(given, settings.profile_token.encode()):
            if settings.token is not None and secrets.compare_digest(given, settings.token.encode()):
                raise HTTPException(403, "the profile needs the profile token")
            raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        if not limiter.allow(settings.profile_token):
            raise HTTPException(429, "too many requests")
        return settings.profile_token

    @router.get("/v1/users/{shop_user_id}/profile", dependencies=[Depends(profile_client)])
    def profile(shop_user_id: str = PathParam(pattern=ID_PATTERN)) -> dict:
        user_id = shopper(store, shop_user_id)
        found = store.profile(user_id) if user_id else None
        if found is None:
            raise HTTPException(404, "no such user")
        reasons = [
            {key: item[key] for key in ("item_id", "reason_code", "reason_text")}
            for item in store.recommendations(user_id) or []
        ]
        return {
            "user_id": shop_user_id,
            "profile": found,
            "interest_tags": store.interest_tags(user_id),
            "recommendations": reasons,
        }

    return router
