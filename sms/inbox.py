"""The agents' SMS work list: reports by SMS waiting to become a case or to join an open one."""
from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from case_bridge import Case, CaseCore, NewCase, enqueue_effect
from hotline.accounts import Actor
from hotline.db import utcnow
from sms.models import SmsMessage, SmsWorkItem


class WorkItemError(LookupError):
    """No such open work item."""


def open_items(session: Session, limit: int = 200) -> list[dict[str, Any]]:
    items = session.scalars(select(SmsWorkItem).where(SmsWorkItem.state == "open")
                            .order_by(SmsWorkItem.first_at).limit(limit))
    return [item_out(i) for i in items]


def recent_items(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Items already handled, newest first, each saying by whom (with the case it became or joined)."""
    rows = session.execute(select(SmsWorkItem, Case.number).outerjoin(Case, Case.id == SmsWorkItem.case_id)
                           .where(SmsWorkItem.state != "open").order_by(SmsWorkItem.id.desc()).limit(limit))
    return [{**item_out(i), "case_number": number} for i, number in rows]


def item_out(item: SmsWorkItem) -> dict[str, Any]:
    return {"id": item.id, "reference": item.reference, "phone": item.phone, "text": item.text,
            "messages": item.messages, "first_at": item.first_at.isoformat(), "last_at": item.last_at.isoformat(),
            "state": item.state, "placement": item.placement, "suggested_category": item.category_key,
            "handled_by": item.handled_by, "handled_at": item.handled_at.isoformat() if item.handled_at else None,
            "replies": item.replies}


def reply(session: Session, item_id: int, text: str, actor: Actor) -> str:
    """Text the sender back (through the outbox, once per distinct text: a double click sends one).
    The item stays open: answering is not handling the report. Returns the outbox key."""
    item = _open_item(session, item_id)
    text = text.strip()
    if not text:
        raise ValueError("the reply is empty")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    key = f"sms:reply:{item.reference}:{digest}"
    enqueue_effect(session, "sms", {"to": item.phone, "template": "reply", "values": {"text": text},
                                    "essential": True}, key=key)
    item.replies += 1
    item.handled_by, item.handled_at = actor.username, utcnow()
    return key


def messages_of_case(session: Session, case_id: int) -> list[dict[str, Any]]:
    """The SMS thread of a case: texts in and out, oldest first."""
    rows = session.scalars(select(SmsMessage).where(SmsMessage.case_id == case_id).order_by(SmsMessage.at, SmsMessage.id))
    return [{"direction": m.direction, "phone": m.phone, "text": m.text, "at": m.at, "kind": m.kind,
             "status": m.status} for m in rows]


def _open_item(session: Session, item_id: int) -> SmsWorkItem:
    item = session.scalar(select(SmsWorkItem).where(SmsWorkItem.id == item_id).with_for_update())
    if item is None or item.state != "open":
        raise WorkItemError(f"no open SMS work item {item_id}")
    return item


def convert(session: Session, core: CaseCore, item_id: int, actor: Actor, data: NewCase) -> Case:
    """Make the item a case (channel sms; the item's reference is the idempotency key)."""
    item = _open_item(session, item_id)
    fields = data.model_dump()
    fields.update(channel="sms", caller_phone=item.phone, idempotency_key=f"sms:{item.reference}",
                  description=data.description or item.text[:2000])
    case = core.create_case(session, NewCase(**fields), actor).case
    _close_item(session, item, "converted", case, actor)
    return case


def merge(session: Session, core: CaseCore, item_id: int, case_number: str, actor: Actor) -> Case:
    """The item reports a case that is already open: it joins that case's timeline."""
    item = _open_item(session, item_id)
    case = core.case_to_join(session, case_number, actor, "an SMS report")
    core.add_note(session, case, actor, "sms_merged", f"短信 {item.reference}: {item.text[:500]}",
                  {"work_item": item.reference, "phone": item.phone})
    _close_item(session, item, "merged", case, actor)
    return case


def _close_item(session: Session, item: SmsWorkItem, state: str, case: Case, actor: Actor) -> None:
    item.state, item.case_id = state, case.id
    item.handled_by, item.handled_at = actor.username, utcnow()
    session.execute(update(SmsMessage).where(SmsMessage.work_item_id == item.id).values(case_id=case.id))
