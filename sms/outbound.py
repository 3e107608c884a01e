"""Outbound short messages (MT): outbox rows of kind "sms", sent part by part, confirmed by receipts.

A row is done only when the SMS centre acknowledged every part. Each acknowledged part is
written at once with the centre's message id, so a retry (after a lost link or a crash) sends
only the parts still unacknowledged, with the same concatenation reference. Receipts then mark
parts delivered; a message is delivered when all its parts are, failed when one part finally
fails (noted on the case's timeline).

Before sending: the number must be a mobile (12319, 95588, 106… are never texted); a number
that opted out gets only essential texts (replies to its own messages, receipts of its own
reports, results of its own cases); non-essential texts wait out the quiet hours.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from case_bridge import STATES, Case, CaseEvent, EffectError, HandlingUnit, PermanentEffectError, enqueue_effect
from hotline.db import Database, utcnow
from hotline.settings import Settings
from sms.connector import PermanentSendError, Receipt, SendError
from sms.models import SmsMessage, SmsOptOut, SmsPart
from sms.numbers import sms_target
from sms.segment import Segment, segments
from sms.templates import TemplateError, Templates, case_values

log = logging.getLogger(__name__)

# the statements of the hot path, built once (Core: no ORM unit of work per part)
_M, _P = SmsMessage.__table__, SmsPart.__table__
_MESSAGE_BY_KEY = select(_M.c.id, _M.c.text).where(_M.c.dedupe_key == bindparam("b_key"))
_PARTS_OF = select(_P.c.seq, _P.c.smsc_id).where(_P.c.message_id == bindparam("b_id"))
_NEW_MESSAGE, _NEW_PART = insert(_M), insert(_P)
_SUBMITTED = update(_M).where(_M.c.id == bindparam("b_id"), _M.c.status == "submitting").values(status="submitted")

ESSENTIAL = frozenset({"receipt", "result", "progress", "not_found", "opt_out", "report_ack"})
Submit = Callable[[str, Segment], str]   # (E.164, part) → the SMS centre's message id; blocking


@dataclass(frozen=True)
class Prepared:
    message_id: int
    to: str
    parts: list[Segment]
    sent: dict[int, str]     # seq → smsc id of parts already acknowledged


def concat_ref(message_id: int) -> int:
    """The 8-bit concatenation reference of a message: from its row id, so it is the same on every retry
    and two texts to one phone at the same moment (a receipt and a dispatch notice) never share one —
    ids 256 apart are messages far apart in time, long after a handset gave up on a partial one."""
    return message_id % 256


class Sender:
    """Performs "sms" outbox rows (a sync effect: it runs in an outbox worker thread)."""

    def __init__(self, settings: Settings, db: Database, templates: Templates, submit: Submit) -> None:
        self.settings = settings
        self.db = db
        self.templates = templates
        self.submit = submit

    def __call__(self, payload: dict[str, Any], key: str) -> dict[str, Any]:
        target = sms_target(str(payload.get("to") or ""), self.settings.phone_region)
        if not target.textable:
            raise PermanentEffectError(f"not texted: {payload.get('to')!r} is a {target.why}")
        template = str(payload.get("template") or "")
        essential = bool(payload.get("essential")) or template in ESSENTIAL
        later = None if essential else self.after_quiet_hours(utcnow())
        if not essential:
            with self.db.session() as s:
                if s.get(SmsOptOut, target.e164) is not None:
                    return {"skipped": "the number opted out of non-essential texts"}
                if later is not None:
                    enqueue_effect(s, "sms", payload, key=f"{key}@{later:%Y%m%d}", due_at=later,
                                   case_id=self._case_id(s, payload))
                    return {"deferred_to": later.isoformat()}
        rendered = self._render(payload, template)   # before the write transaction (SQLite: one writer)
        with self.db.engine.begin() as conn:   # Core on one connection: the hot path of every text
            prepared = self._prepare(conn, rendered, key, target.e164, template)
        sent = dict(prepared.sent)
        todo = [part for part in prepared.parts if part.seq not in sent]
        for i, part in enumerate(todo):
            try:
                smsc_id = self.submit(prepared.to, part)
            except PermanentSendError as exc:
                raise PermanentEffectError(str(exc)) from None
            except SendError as exc:
                raise EffectError(f"{exc} ({len(sent)}/{len(prepared.parts)} parts acknowledged)") from None
            sent[part.seq] = smsc_id
            with self.db.engine.begin() as conn:   # at once: a retry must not send this part again
                conn.execute(_NEW_PART, {"message_id": prepared.message_id, "seq": part.seq, "smsc_id": smsc_id,
                                         "status": "submitted", "error": "", "at": utcnow()})
                if i == len(todo) - 1:
                    conn.execute(_SUBMITTED, {"b_id": prepared.message_id})
        if not todo:
            with self.db.engine.begin() as conn:
                conn.execute(_SUBMITTED, {"b_id": prepared.message_id})
        return {"parts": len(prepared.parts), "smsc_ids": [sent[i] for i in sorted(sent)]}

    def after_quiet_hours(self, now: datetime) -> datetime | None:
        """The end of the quiet hours if `now` is inside them, else None."""
        zone = self.settings.zone
        local = now.astimezone(zone)
        start, end = self.settings.sms_quiet_start, self.settings.sms_quiet_end
        t = local.time()
        quiet = (start <= t or t < end) if start > end else (start <= t < end)
        if not quiet:
            return None
        day = local.date() if t < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, zone)

    def _prepare(self, conn: Connection, rendered: tuple[str, int | None], key: str, to: str,
                 template: str) -> Prepared:
        """The message row (created on the first attempt; a retry keeps the text it had) and its parts."""
        row = conn.execute(_MESSAGE_BY_KEY, {"b_key": f"out:{key}"}).first()
        if row is None:
            text, case_id = rendered
            count = len(segments(text, ref=0))
            message_id = conn.execute(_NEW_MESSAGE, {
                "direction": "out", "dedupe_key": f"out:{key}", "phone": to,
                "service_addr": self.settings.sms_source_addr[:21], "text": text, "at": utcnow(), "kind": template,
                "case_id": case_id, "work_item_id": None, "status": "submitting", "outbox_key": key,
                "parts": count, "data": {}}).inserted_primary_key[0]
            return Prepared(message_id, to, segments(text, ref=concat_ref(message_id)), {})
        parts = segments(row.text, ref=concat_ref(row.id))
        sent = {seq: smsc_id for seq, smsc_id in conn.execute(_PARTS_OF, {"b_id": row.id})}
        return Prepared(row.id, to, parts, sent)

    def _render(self, payload: dict[str, Any], template: str) -> tuple[str, int | None]:
        values: dict[str, Any] = {}
        case_id = None
        if payload.get("case_number"):
            with self.db.sessions() as s:   # a read: the case's values for the text
                case = s.scalar(select(Case).where(Case.number == payload["case_number"]))
                if case is None:
                    raise PermanentEffectError(f"no case {payload['case_number']} for the {template} text")
                unit = s.get(HandlingUnit, case.handling_unit_code) if case.handling_unit_code else None
                values = case_values(case, STATES, unit.name if unit else "", result=self._result(s, case))
                case_id = case.id
        values.update(payload.get("values") or {})
        try:
            return self.templates.render(template, **values).text, case_id
        except TemplateError as exc:
            raise PermanentEffectError(str(exc)) from None

    @staticmethod
    def _result(s: Session, case: Case) -> str:
        note = s.scalar(select(CaseEvent.note).where(CaseEvent.case_id == case.id, CaseEvent.action == "report_result")
                        .order_by(CaseEvent.id.desc()).limit(1))
        return note or ""

    @staticmethod
    def _case_id(s: Session, payload: dict[str, Any]) -> int | None:
        number = payload.get("case_number")
        return s.scalar(select(Case.id).where(Case.number == number)) if number else None


def record_receipt(db: Database, receipt: Receipt) -> str | None:
    """Mark the part; returns the message's new status when it changed (delivered / failed)."""
    with db.session() as s:
        part = s.scalar(select(SmsPart).where(SmsPart.smsc_id == receipt.smsc_id).with_for_update())
        if part is None:
            log.info("receipt for unknown message id %s (%s)", receipt.smsc_id, receipt.state)
            return None
        if not receipt.final:
            return None
        part.status = "delivered" if receipt.delivered else "failed"
        part.error = "" if receipt.delivered else f"{receipt.state} err:{receipt.error}"[:200]
        message = s.get(SmsMessage, part.message_id)
        statuses = [p.status for p in s.scalars(select(SmsPart).where(SmsPart.message_id == message.id))]
        if part.status == "failed" and message.status != "failed":
            message.status = "failed"
            if message.case_id is not None:
                s.add(CaseEvent(case_id=message.case_id, actor="system", actor_role="system", action="sms_undelivered",
                                note=f"短信未送达（{receipt.state}）：{message.text[:60]}",
                                data={"sms_id": message.id, "smsc_id": receipt.smsc_id, "error": part.error}))
            return "failed"
        if len(statuses) == message.parts and all(st == "delivered" for st in statuses) and message.status != "delivered":
            message.status = "delivered"
            return "delivered"
    return None

