"""Who may do what, and which cases they may see: one module for every entry point (the JSON API,
Open311, the pages, the IVR), so no door is checked differently from another.

`require(actor, permission)` refuses with `Forbidden` (HTTP 403). `scope(actor)` is the WHERE
clause of the cases an actor may see: a district user its own unit's cases, an Open311 client
the cases its key submitted, everyone else all of them. A case outside the scope is answered
exactly like a case that does not exist.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, and_, select, true

from case_bridge.models import Case, CaseEvent
from hotline.accounts import Actor

STAFF = frozenset({"agent", "dispatcher", "supervisor", "admin"})

# permission → the roles that have it (admin is not a super-user of the workflow: it runs the house)
PERMISSIONS: dict[str, frozenset[str]] = {
    "case.create": frozenset({"agent", "dispatcher", "supervisor", "client", "system"}),
    "case.read": frozenset({*STAFF, "district", "client", "public", "system"}),
    "case.link": frozenset({"agent", "dispatcher", "supervisor"}),
    "place.locate": frozenset({"agent", "dispatcher", "supervisor", "admin"}),
    "kpi.read": frozenset({"supervisor", "admin", "dispatcher"}),
    "telephony.read": STAFF,
    "call.control": frozenset({"agent", "dispatcher", "supervisor"}),   # transfer a live caller
    "agent.pause": frozenset({"agent", "supervisor"}),                  # 示忙 / 示闲 (an agent's seat, or any)
    "sms.read": STAFF,
    "sms.work": frozenset({"agent", "dispatcher", "supervisor"}),
    "voicemail.read": frozenset({"agent", "dispatcher", "supervisor"}),   # hears the caller's voice
    "voicemail.work": frozenset({"agent", "dispatcher", "supervisor"}),
    "survey.answer": frozenset({"system"}),   # only the IVR's survey flow, with the callback's key
}


class Forbidden(PermissionError):
    """The actor's role does not allow this; the message says which roles do."""

    status = 403


def allowed(actor: Actor, permission: str) -> bool:
    try:
        return actor.role in PERMISSIONS[permission]
    except KeyError:
        raise ValueError(f"unknown permission {permission!r}") from None


def require(actor: Actor, permission: str) -> None:
    if not allowed(actor, permission):
        roles = " or ".join(sorted(PERMISSIONS[permission] - {"system", "public"}))
        raise Forbidden(f"this needs the role {roles}; you are {actor.role}")


def submitted_by(actor: Actor) -> ColumnElement[bool]:
    """Cases whose creation this actor recorded (its timeline's first row)."""
    created = select(CaseEvent.case_id).where(CaseEvent.action == "create", CaseEvent.actor_id == actor.user_id)
    return Case.id.in_(created)


def scope(actor: Actor) -> ColumnElement[bool]:
    """The WHERE clause of the cases this actor may see."""
    if actor.role == "district":
        return and_(Case.handling_unit_code.is_not(None), Case.handling_unit_code == actor.unit_code)
    if actor.role == "client":
        return submitted_by(actor) if actor.user_id is not None else Case.id.is_(None)
    if actor.role in PERMISSIONS["case.read"]:
        return true()
    return Case.id.is_(None)   # a role that reads no case sees none
