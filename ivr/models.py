"""Tables of telephony: the call records (the cases table is the case core's; calls name a case by id)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hotline.db import Base, utcnow


class Call(Base):
    """One telephone call (inbound to 12319 or an outbound satisfaction callback), keyed by
    Asterisk's uniqueid. The cases reported on it carry that uniqueid (`Case.call_uniqueid`;
    `case_id` is the first of them, or the case a callback is about). A voicemail left on it is
    a work item for the agents (`message_state` open → converted | merged | dismissed)."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(8), default="in")   # in | survey
    channel: Mapped[str | None] = mapped_column(String(128))
    caller: Mapped[str | None] = mapped_column(String(40), index=True)  # E.164 when it is a number
    caller_name: Mapped[str | None] = mapped_column(String(80))
    dialled: Mapped[str | None] = mapped_column(String(40))
    intent: Mapped[str | None] = mapped_column(String(12))    # report | progress | consult | agent | done
    asked_case: Mapped[str | None] = mapped_column(String(24))
    district_code: Mapped[str | None] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(64))    # the member interface that answered
    started_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    wait_seconds: Mapped[float | None]
    talk_seconds: Mapped[float | None]
    hangup_cause: Mapped[int | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # answered | abandoned | ivr | voicemail | failed
    recording_path: Mapped[str | None] = mapped_column(String(300))
    recording_bytes: Mapped[int | None]
    recording_seconds: Mapped[float | None]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    ivr: Mapped[dict] = mapped_column(default=dict)           # keys pressed and what they meant
    message_state: Mapped[str | None] = mapped_column(String(10), index=True)
    message_note: Mapped[str | None] = mapped_column(String(200))
    message_handled_by: Mapped[str | None] = mapped_column(String(64))
    message_handled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
