"""Inbound short messages (MO): stored once, then understood.

`receive(session, core, settings, mo)` is the one entry point, called with a complete
(reassembled) message. It stores the message unless it has been seen already — by the SMSC's
message id, or by the same text from the same number within `RESEND_WINDOW` (SMSCs that resend
give it a new id) — and classifies it, in this order:

1. opt-out (TD / 退订 / STOP) → the number gets no more non-essential texts;
2. an answer to a pending satisfaction survey (1/2/3, 满意/基本满意/不满意) → recorded on the case;
3. a progress query (查询 / CX, with a case number or alone for the latest case) → a reply;
4. anything else → a report: a work item for the agents, located by routing, with a suggested
   category; a burst from one number within `sms_flood_window_seconds` joins the same item.

Every reply is an outbox row (kind "sms"), written in the same transaction.
"""
from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from case_bridge import (ActionIn, Case, CaseCore, OutboxItem, WorkflowError, enqueue_effect, next_in_sequence,
                         placement_summary)
from hotline.accounts import SYSTEM
from hotline.db import conflict_insert
from hotline.settings import Settings
from sms.models import SmsMessage, SmsOptOut, SmsWorkItem
from sms.numbers import NPI_UNKNOWN, TON_UNKNOWN, from_smsc

log = logging.getLogger(__name__)

RESEND_WINDOW = timedelta(minutes=10)
MAX_TEXT = 5000            # longer MO is kept, cut here, and flagged
OPT_OUT = frozenset({"TD", "T", "退订", "STOP", "UNSUBSCRIBE", "取消订阅"})
SURVEY_ANSWERS = {"1": "满意", "2": "基本满意", "3": "不满意", "满意": "满意", "基本满意": "基本满意", "不满意": "不满意"}
PROGRESS = re.compile(r"^(?:查询|查|CX)\s*([A-Z]?\d{4,20})?$")


@dataclass(frozen=True)
class MO:
    """A complete inbound message as the connector hands it over."""
    source: str             # as the SMSC gave it
    text: str
    service_addr: str = "12319"
    smsc_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str               # duplicate | opt_out | survey_answer | progress | report | unusable | empty
    message_id: int | None = None
    case_number: str | None = None
    work_item: str | None = None


def canonical(text: str) -> str:
    """What the classifier compares: full-width folded, no spaces or trailing punctuation, upper case."""
    folded = unicodedata.normalize("NFKC", text).strip().upper()
    return re.sub(r"[\s。.!！?？,，、~～]+$", "", re.sub(r"\s+", " ", folded))


def receive(session: Session, core: CaseCore, settings: Settings, mo: MO) -> Outcome:
    source = (mo.source or "").replace("\x00", "")[:40]
    service_addr = (mo.service_addr or "").replace("\x00", "")[:21]
    phone = from_smsc(source, TON_UNKNOWN, NPI_UNKNOWN, settings.phone_region)   # None: not a citizen
    at = mo.at or core.now()
    text = (mo.text or "").replace("\x00", "")
    flags = {}
    if len(text) > MAX_TEXT:
        flags = {"truncated_from": len(text)}
        text = text[:MAX_TEXT]
    key = f"smsc:{mo.smsc_id}"[:160] if mo.smsc_id else "text:" + hashlib.sha256(
        f"{phone or source}|{text}|{at.replace(second=0, microsecond=0).isoformat()}".encode()).hexdigest()
    if phone is not None:
        _serialise(session, phone)   # one number's messages are taken one at a time (bursts, opt-outs)
    if session.scalar(select(SmsMessage.id).where(
            SmsMessage.direction == "in", SmsMessage.phone == (phone or source), SmsMessage.text == text,
            SmsMessage.at > at - RESEND_WINDOW).limit(1)) is not None:
        return Outcome("duplicate")   # the same text again, resent by the SMSC under a new id
    message_id = session.scalar(conflict_insert(session, SmsMessage).values(
        direction="in", dedupe_key=key, phone=phone or source, service_addr=service_addr, text=text, at=at,
        status="stored", parts=1, data=flags).on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(SmsMessage.id))
    if message_id is None:
        return Outcome("duplicate")   # this SMSC id was stored already (perhaps just now, by another worker)
    message = session.get(SmsMessage, message_id)
    if phone is None:   # not a number we can answer: kept for the agents, nothing sent
        message.kind = "unusable"
        log.warning("SMS from %r: not a citizen's number; stored as message %s", mo.source, message.id)
        return Outcome("unusable", message.id)
    words = canonical(text)
    solid = words.replace(" ", "")
    if not solid:
        message.kind = "empty"   # kept, nothing to answer or to work on
        return Outcome("empty", message.id)
    if solid in OPT_OUT:
        return _opt_out(session, message, phone, at)
    if solid in SURVEY_ANSWERS:
        outcome = _survey_answer(session, core, message, phone, SURVEY_ANSWERS[solid])
        if outcome is not None:
            return outcome
    query = PROGRESS.match(words)
    if query:
        return _progress(session, message, phone, query.group(1), at)
    return _report(session, core, settings, message, phone, at)


def _reply(session: Session, message: SmsMessage, template: str, values: dict, at: datetime,
           case_id: int | None = None) -> None:
    enqueue_effect(session, "sms", {"to": message.phone, "template": template, "values": values, "essential": True},
                   key=f"sms:reply:{message.id}", case_id=case_id, due_at=at)


def _opt_out(session: Session, message: SmsMessage, phone: str, at: datetime) -> Outcome:
    message.kind = "opt_out"
    session.execute(conflict_insert(session, SmsOptOut).values(phone=phone, at=at, via=message.text[:80])
                    .on_conflict_do_nothing(index_elements=["phone"]))
    _reply(session, message, "opt_out", {}, at)
    return Outcome("opt_out", message.id)


def _survey_answer(session: Session, core: CaseCore, message: SmsMessage, phone: str, answer: str) -> Outcome | None:
    """The caller's closed, unsurveyed case whose SMS survey went out; None if there is none."""
    asked = select(OutboxItem.case_id).where(OutboxItem.kind == "sms", OutboxItem.case_id.is_not(None),
                                             OutboxItem.idempotency_key.like("sms:survey:%"))
    case = session.scalar(select(Case).where(Case.caller_phone == phone, Case.state == "closed",
                                             Case.satisfaction.is_(None), Case.id.in_(asked))
                          .order_by(Case.closed_at.desc()).limit(1))
    if case is None:
        return None
    try:
        core.apply_action(session, case, "record_satisfaction", SYSTEM, ActionIn(answer=answer, note="短信回访"))
    except WorkflowError as exc:
        log.info("SMS survey answer for %s not recorded: %s", case.number, exc)
        return None
    message.kind, message.case_id = "survey_answer", case.id
    return Outcome("survey_answer", message.id, case.number)


def _progress(session: Session, message: SmsMessage, phone: str, asked: str | None, at: datetime) -> Outcome:
    message.kind = "progress"
    mine = select(Case).where(Case.caller_phone == phone).order_by(Case.id.desc())
    if asked:
        digits = re.sub(r"\D", "", asked)
        case = next((c for c in session.scalars(mine.limit(200)) if re.sub(r"\D", "", c.number) == digits), None)
    else:
        case = session.scalar(mine.limit(1))
    if case is None:   # not found, or not this number's: the same answer either way
        _reply(session, message, "not_found", {"asked": asked or ""}, at)
        return Outcome("progress", message.id)
    message.case_id = case.id
    enqueue_effect(session, "sms", {"to": phone, "template": "progress", "case_number": case.number, "essential": True},
                   key=f"sms:reply:{message.id}", case_id=case.id, due_at=at)
    return Outcome("progress", message.id, case.number)


def _report(session: Session, core: CaseCore, settings: Settings, message: SmsMessage, phone: str,
            at: datetime) -> Outcome:
    message.kind = "report"
    window = at - timedelta(seconds=settings.sms_flood_window_seconds)
    item = session.scalar(select(SmsWorkItem).where(SmsWorkItem.phone == phone, SmsWorkItem.state == "open",
                                                    SmsWorkItem.last_at >= window)
                          .order_by(SmsWorkItem.id.desc()).limit(1).with_for_update())
    if item is not None:   # a burst: one item, one receipt
        item.text = f"{item.text}\n{message.text}"[:20000]
        item.messages += 1
        item.last_at = at
    else:
        item = SmsWorkItem(reference=_reference(session, at, settings), phone=phone, text=message.text,
                           first_at=at, last_at=at, state="open")
        session.add(item)
        session.flush()
        _reply(session, message, "report_ack", {"reference": item.reference}, at)
    placement = core.router.locate(session, item.text)
    item.placement = placement_summary(placement) | {"confident": placement.confident(core.router.threshold)}
    suggested = core.catalogue.search(item.text, limit=1)
    item.category_key = suggested[0].key if suggested else None
    message.work_item_id = item.id
    return Outcome("report", message.id, work_item=item.reference)


def _serialise(session: Session, phone: str) -> None:
    """On PostgreSQL, a transaction-scoped lock per number: two messages of one burst arriving at
    once must not both open a work item. (SQLite writers take turns anyway.)"""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql("SELECT pg_advisory_xact_lock(hashtext(:phone))"), {"phone": phone})


def _reference(session: Session, at: datetime, settings: Settings) -> str:
    day = at.astimezone(settings.zone).strftime("%Y%m%d")
    return f"DX{day}{next_in_sequence(session, f'SMS-{day}'):04d}"
