"""Who is calling the JSON API: `Authorization: Bearer <api key>` → the key's user as an Actor.

(Browser sign-in with sessions, CSRF and throttling arrives with the agent desk.)
"""
from __future__ import annotations

from fastapi import HTTPException, Request

from hotline.accounts import Actor, actor_for_api_key


def api_actor(request: Request) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "sign in: send Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"})
    with request.app.state.db.session() as session:
        actor = actor_for_api_key(session, key.strip())
    if actor is None:
        raise HTTPException(401, "the api key is not valid (revoked, or its user is disabled)",
                            headers={"WWW-Authenticate": "Bearer"})
    return actor


def require_role(actor: Actor, *roles: str) -> None:
    if actor.role not in roles:
        raise HTTPException(403, f"this needs the role {' or '.join(roles)}; you are {actor.role}")
