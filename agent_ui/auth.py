"""Who is calling the JSON API: `Authorization: Bearer <api key>` → the key's user as an Actor.

Valid keys are remembered for KEY_CACHE_SECONDS, so most requests need no database
round trip; a revoked key or disabled user stops working within that time. (Browser
sign-in with sessions, CSRF and throttling arrives with the agent desk.)
"""
from __future__ import annotations

import hashlib
import time

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from hotline.accounts import Actor, actor_for_api_key

KEY_CACHE_SECONDS = 30.0
_MAX_CACHED = 10_000
_cache: dict[str, tuple[Actor, float]] = {}


def _lookup(request: Request, key: str) -> Actor | None:
    with request.app.state.db.read_session() as session:  # does not queue behind writers
        return actor_for_api_key(session, key)


async def api_actor(request: Request) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise HTTPException(401, "sign in: send Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"})
    digest = hashlib.sha256(f"{id(request.app)}:{key}".encode()).hexdigest()
    hit = _cache.get(digest)
    if hit and hit[1] > time.monotonic():
        return hit[0]
    actor = await run_in_threadpool(_lookup, request, key)
    if actor is None:  # failures are not cached: random keys must not fill memory
        raise HTTPException(401, "the api key is not valid (revoked, or its user is disabled)",
                            headers={"WWW-Authenticate": "Bearer"})
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()
    _cache[digest] = (actor, time.monotonic() + KEY_CACHE_SECONDS)
    return actor
