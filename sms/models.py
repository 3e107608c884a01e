"""Tables of the SMS channel: messages, their parts, opt-outs and the agents' work items."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hotline.db import Base, utcnow


class SmsMessage(Base):
    """One short message, in (MO, from a citizen) or out (MT, from the outbox), stored once."""

    __tablename__ = "sms_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))           # in | out
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)  # SMSC id, or content + time
    phone: Mapped[str] = mapped_column(String(40), index=True)  # the citizen: E.164 when a number
    service_addr: Mapped[str] = mapped_column(String(21))       # our number (12319 / 106…)
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str | None] = mapped_column(String(16))        # survey_answer | progress | opt_out | report | …
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    work_item_id: Mapped[int | None] = mapped_column(ForeignKey("sms_work_items.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="stored")   # out: submitted | delivered | failed
    outbox_key: Mapped[str | None] = mapped_column(String(160), index=True)
    parts: Mapped[int] = mapped_column(default=1)
    data: Mapped[dict] = mapped_column(default=dict)


class SmsPart(Base):
    """One submitted part of an outbound message; the SMSC's message id correlates its receipt."""

    __tablename__ = "sms_parts"
    __table_args__ = (UniqueConstraint("message_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("sms_messages.id"), index=True)
    seq: Mapped[int]
    smsc_id: Mapped[str | None] = mapped_column(String(65), index=True)
    status: Mapped[str] = mapped_column(String(12), default="submitted")  # submitted | delivered | failed
    error: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsOptOut(Base):
    """A number that asked for no non-essential texts (TD / 退订 / STOP)."""

    __tablename__ = "sms_opt_outs"

    phone: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    via: Mapped[str] = mapped_column(String(80), default="")


class SmsWorkItem(Base):
    """A report by SMS waiting for an agent: a burst from one number is one item."""

    __tablename__ = "sms_work_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(24), unique=True)   # told to the citizen
    phone: Mapped[str] = mapped_column(String(40), index=True)
    text: Mapped[str] = mapped_column(Text)
    messages: Mapped[int] = mapped_column(default=1)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(10), default="open", index=True)  # open | converted | merged
    placement: Mapped[dict] = mapped_column(default=dict)
    category_key: Mapped[str | None] = mapped_column(String(5))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    handled_by: Mapped[str | None] = mapped_column(String(64))   # who made it a case, merged or answered it
    handled_at: Mapped[datetime | None]
    replies: Mapped[int] = mapped_column(default=0)               # texts an agent sent back
