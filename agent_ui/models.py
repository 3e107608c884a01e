"""The web part's tables: signed-in sessions, the sign-in record, agents' states, desk drafts."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hotline.db import Base, utcnow


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its sha256 is kept here."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    extension: Mapped[str | None] = mapped_column(String(16))   # the agent's phone for this session
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    client_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class SignInEvent(Base):
    """Every sign-in, failure, throttle, lock and sign-out: who, when, from where."""

    __tablename__ = "sign_in_events"
    __table_args__ = (Index("ix_sign_in_events_username_at", "username", "at"),
                      Index("ix_sign_in_events_client_at", "client_addr", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(String(64))          # as typed (cut to 64)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    client_addr: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(12))           # ok | failed | throttled | locked | signed_out
    detail: Mapped[str] = mapped_column(String(200), default="")


class AgentState(Base):
    """An agent's state on the desk from `started_at` to `ended_at` (None: now), for pause reports."""

    __tablename__ = "agent_states"
    __table_args__ = (Index("ix_agent_states_user_open", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    extension: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(12))             # ready | paused | wrapup | signed_out
    reason: Mapped[str] = mapped_column(String(40), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class DeskDraft(Base):
    """The unsaved new-case form of an agent, per call ("" when no call): kept on the server so a
    reload, a crashed browser or another machine finds it again."""

    __tablename__ = "desk_drafts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
