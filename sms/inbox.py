"""The agents' SMS work list: reports by SMS waiting to become a case or to join an open one."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from case_bridge import Case, CaseCore, NewCase
from hotline.accounts import Actor
from sms.models import SmsMessage, SmsWorkItem


class WorkItemError(LookupError):
    """No such open work item."""


def open_items(session: Session, limit: int = 200) -> list[dict[str, Any]]:
    items = session.scalars(select(SmsWorkItem).where(SmsWorkItem.state == "open")
                            .order_by(SmsWorkItem.first_at).limit(limit))
    return [item_out(i) for i in items]


def item_out(item: SmsWorkItem) -> dict[str, Any]:
    return {"id": item.id, "reference": item.reference, "phone": item.phone, "text": item.text,
            "messages": item.messages, "first_at": item.first_at.isoformat(), "last_at": item.last_at.isoformat(),
            "state": item.state, "placement": item.placement, "suggested_category": item.category_key}


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
    _close_item(session, item, "converted", case)
    return case


def merge(session: Session, core: CaseCore, item_id: int, case_number: str, actor: Actor) -> Case:
    """The item reports a case that is already open: it joins that case's timeline."""
    item = _open_item(session, item_id)
    case = core.case_to_join(session, case_number, actor, "an SMS report")
    core.add_note(session, case, actor, "sms_merged", f"短信 {item.reference}: {item.text[:500]}",
                  {"work_item": item.reference, "phone": item.phone})
    _close_item(session, item, "merged", case)
    return case


def _close_item(session: Session, item: SmsWorkItem, state: str, case: Case) -> None:
    item.state, item.case_id = state, case.id
    session.execute(update(SmsMessage).where(SmsMessage.work_item_id == item.id).values(case_id=case.id))
