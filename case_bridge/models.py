"""Tables of the case core. The timeline (`case_events`) is append-only: the ORM refuses
updates and deletes, and the migration adds database triggers that refuse them too."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotline.db import Base, utcnow


class HandlingUnit(Base):
    """Who handles cases: a district centre (区级平台) or a city department."""

    __tablename__ = "handling_units"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="district_centre")  # | "department"
    district_code: Mapped[str | None] = mapped_column(String(6))
    street_codes: Mapped[list] = mapped_column(default=list)  # a unit covering only some 街道 of a district
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    queue: Mapped[str | None] = mapped_column(String(64))  # call-transfer target
    active: Mapped[bool] = mapped_column(default=True)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_state_unit", "state", "handling_unit_code"),
        Index("ix_cases_category_created", "category_key", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)  # 案卷号, e.g. E01022026112100001
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # of the request the key was first used for
    call_uniqueid: Mapped[str | None] = mapped_column(String(64), index=True)  # the call it was reported on
    channel: Mapped[str] = mapped_column(String(10))        # phone | sms | web | open311
    request_type: Mapped[str] = mapped_column(String(4))    # 投诉 咨询 建议 求助 表扬
    urgency: Mapped[str] = mapped_column(String(4), default="一般")
    category_key: Mapped[str | None] = mapped_column(String(5))
    description: Mapped[str] = mapped_column(Text)
    caller_phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    caller_name: Mapped[str | None] = mapped_column(String(50))
    address_text: Mapped[str] = mapped_column(String(300), default="")

    # placement (filled by routing, or by a person)
    district_code: Mapped[str | None] = mapped_column(String(6), index=True)
    street_code: Mapped[str | None] = mapped_column(String(9))
    community_code: Mapped[str | None] = mapped_column(String(12))
    grid_code: Mapped[str | None] = mapped_column(String(14))
    lon: Mapped[float | None]  # GCJ-02
    lat: Mapped[float | None]
    placement_confidence: Mapped[float | None]

    handling_unit_code: Mapped[str | None] = mapped_column(ForeignKey("handling_units.code"))
    state: Mapped[str] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    filed_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    # deadline clock (see deadlines.Clock); starts at dispatch
    limit_minutes: Mapped[int | None]
    limit_basis: Mapped[str | None] = mapped_column(String(8))
    limit_label: Mapped[str | None] = mapped_column(String(20))
    clock_started_at: Mapped[datetime | None]
    extension_minutes: Mapped[int] = mapped_column(default=0)
    suspended_minutes: Mapped[float] = mapped_column(default=0.0)
    suspended_since: Mapped[datetime | None]
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    urged_count: Mapped[int] = mapped_column(default=0)

    rework_count: Mapped[int] = mapped_column(default=0)
    satisfaction: Mapped[str | None] = mapped_column(String(6))  # 满意 基本满意 不满意
    reopen_requested: Mapped[bool] = mapped_column(default=False)
    pending_extension_minutes: Mapped[int | None]

    events: Mapped[list["CaseEvent"]] = relationship(back_populates="case", order_by="CaseEvent.id", viewonly=True)
    unit: Mapped[HandlingUnit | None] = relationship()


class CaseEvent(Base):
    """One row of a case's timeline: who did what, when, from which state to which, and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str | None] = mapped_column(String(12))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(default=dict)

    case: Mapped[Case] = relationship(back_populates="events")


@event.listens_for(CaseEvent, "before_update")
@event.listens_for(CaseEvent, "before_delete")
def _timeline_is_append_only(mapper, connection, target) -> None:
    raise PermissionError("the case timeline is append-only: events are never updated or deleted")


class CaseLink(Base):
    """A relation between two cases; possible repeats (重复发案) are suggested, then confirmed or dismissed."""

    __tablename__ = "case_links"
    __table_args__ = (UniqueConstraint("case_id", "other_case_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)        # the newer case
    other_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)  # the open one it may repeat
    kind: Mapped[str] = mapped_column(String(20), default="possible_duplicate")
    status: Mapped[str] = mapped_column(String(12), default="suggested")  # suggested | confirmed | dismissed
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CaseCounter(Base):
    """Daily sequence per case-number prefix, so numbers are unique under concurrent creation."""

    __tablename__ = "case_counters"

    key: Mapped[str] = mapped_column(String(20), primary_key=True)  # "E0102-20261121"
    value: Mapped[int] = mapped_column(default=0)


class OutboxItem(Base):
    """An outside effect, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_claim", "status", "available_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # webhook | sms | survey_call | …
    payload: Mapped[dict] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | running | done | failed
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)  # next try
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]


class AddressEvidence(Base):
    """A placement a person confirmed (the agent or dispatcher chose the district, or the
    district accepted the case): the router learns these addresses. Append-only."""

    __tablename__ = "address_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    address_text: Mapped[str] = mapped_column(String(300))
    district_code: Mapped[str] = mapped_column(String(6))
    street_code: Mapped[str | None] = mapped_column(String(9))
    community_code: Mapped[str | None] = mapped_column(String(12))
    lon: Mapped[float | None]
    lat: Mapped[float | None]
    source: Mapped[str] = mapped_column(String(20))   # agent | dispatcher | district_accept
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
