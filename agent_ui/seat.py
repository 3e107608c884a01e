"""An agent's seat: 就绪 / 小休 (with a reason) / 话后处理 / 签出, sent to the PBX through
telephony's public face and recorded with start and end (pause time by reason is reported from
`agent_states`). After a call the seat goes to 话后处理 by itself (paused with that reason) and
back to 就绪 after `queue_wrapup_seconds`, or sooner when the agent says so.

If the PBX link is down a change is still recorded and the AMI client keeps the wish, applied
when the link is back; the desk says so."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from agent_ui.models import AgentState, WebSession
from hotline import clock
from hotline.accounts import User

log = logging.getLogger(__name__)

STATE_LABELS = {"ready": "就绪", "paused": "小休", "wrapup": "话后处理", "signed_out": "签出"}
WRAPUP_REASON = "话后处理"


class SeatError(Exception):
    """The PBX refused the change; the message says why."""


@dataclass(frozen=True)
class SeatState:
    state: str
    reason: str
    since: datetime
    pbx_applied: bool = True      # False: kept until the PBX link is back

    @property
    def label(self) -> str:
        return STATE_LABELS.get(self.state, self.state) + (f"（{self.reason}）" if self.state == "paused" else "")


class Seats:
    def __init__(self, db, settings, telephony_of) -> None:
        self.db = db
        self.settings = settings
        self._telephony_of = telephony_of   # () → the process's Telephony or None (read late: set after start)
        self._wrapups: dict[int, asyncio.Task] = {}
        self.on_change = None                # async (user_id, SeatState) → None: the live pages

    # ------------------------------------------------------------------ reading
    def current(self, user_id: int) -> SeatState:
        with self.db.read_session() as s:
            row = s.scalar(select(AgentState).where(AgentState.user_id == user_id, AgentState.ended_at.is_(None))
                           .order_by(AgentState.id.desc()).limit(1))
        if row is None:
            return SeatState("signed_out", "", clock.now())
        return SeatState(row.state, row.reason, row.started_at)

    def user_on_extension(self, extension: str) -> int | None:
        """The agent signed in to this phone now (a live session)."""
        idle = clock.now() - timedelta(minutes=self.settings.session_idle_minutes)
        with self.db.read_session() as s:
            return s.scalar(select(WebSession.user_id).join(User, User.id == WebSession.user_id)
                            .where(WebSession.extension == extension, WebSession.last_seen_at >= idle,
                                   User.role == "agent").order_by(WebSession.last_seen_at.desc()).limit(1))

    # ------------------------------------------------------------------ changing
    async def change(self, user_id: int, extension: str, state: str, reason: str = "") -> SeatState:
        if state not in STATE_LABELS:
            raise SeatError(f"unknown state {state!r}")
        if state == "paused" and reason not in self.settings.pause_reasons:
            raise SeatError("请选择小休原因：" + "、".join(self.settings.pause_reasons))
        if state != "paused":
            reason = WRAPUP_REASON if state == "wrapup" else ""
        self._cancel_wrapup(user_id)
        applied = await self._tell_pbx(extension, state, reason)
        seat = await asyncio.to_thread(self._record, user_id, extension, state, reason)
        seat = SeatState(seat.state, seat.reason, seat.since, applied)
        if state == "wrapup":
            self._wrapups[user_id] = asyncio.create_task(self._end_wrapup_later(user_id, extension))
        if self.on_change is not None:
            await self.on_change(user_id, seat)
        return seat

    async def _tell_pbx(self, extension: str, state: str, reason: str) -> bool:
        telephony = self._telephony_of()
        if telephony is None or telephony.ami is None:
            return False
        try:
            if state == "ready":
                return await telephony.agent_ready(extension)
            if state in ("paused", "wrapup"):
                return await telephony.agent_pause(extension, reason)
            return await telephony.agent_sign_out(extension)
        except Exception as exc:   # an AMI error reply: the PBX said no
            raise SeatError(f"交换机拒绝了此操作：{exc}") from None

    def _record(self, user_id: int, extension: str, state: str, reason: str) -> SeatState:
        now = clock.now()
        with self.db.session() as s:
            s.execute(update(AgentState).where(AgentState.user_id == user_id, AgentState.ended_at.is_(None))
                      .values(ended_at=now))
            if state != "signed_out":
                s.add(AgentState(user_id=user_id, extension=extension, state=state, reason=reason, started_at=now))
        return SeatState(state, reason, now)

    # ------------------------------------------------------------------ wrap-up
    async def call_completed(self, extension: str) -> None:
        """A call on this phone ended: its agent goes to 话后处理 (unless paused or signed out)."""
        user_id = await asyncio.to_thread(self.user_on_extension, extension)
        if user_id is None:
            return
        current = await asyncio.to_thread(self.current, user_id)
        if current.state != "ready":
            return
        try:
            await self.change(user_id, extension, "wrapup")
        except SeatError as exc:
            log.warning("wrap-up of %s not started: %s", extension, exc)

    async def _end_wrapup_later(self, user_id: int, extension: str) -> None:
        # sleep-polled in short steps: a long timed wait does not end under a frozen test clock
        deadline = asyncio.get_running_loop().time() + self.settings.queue_wrapup_seconds
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(min(0.5, max(0.0, deadline - asyncio.get_running_loop().time())))
        self._wrapups.pop(user_id, None)
        if (await asyncio.to_thread(self.current, user_id)).state == "wrapup":
            try:
                await self.change(user_id, extension, "ready")
            except SeatError as exc:
                log.warning("wrap-up of %s not ended: %s", extension, exc)

    def _cancel_wrapup(self, user_id: int) -> None:
        task = self._wrapups.pop(user_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def stop(self) -> None:
        for task in list(self._wrapups.values()):
            task.cancel()
        self._wrapups.clear()
