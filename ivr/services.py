"""What the call flows may ask of the rest of the product, and nothing more.

Database work runs in a worker thread (`asyncio.to_thread`) so one slow query never holds up
the other calls on the event loop. A caller learns about a case only when the case was
reported from their own number; any other number hears "not found", never "not yours".
"""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from case_bridge import OPEN_STATES, ActionIn, Case, CaseCore, WorkflowError
from hotline.accounts import SYSTEM
from hotline.bus import EventBus
from hotline.db import Database, utcnow
from hotline.phone import InvalidPhoneNumber, normalise
from hotline.settings import Settings
from ivr import survey_keys
from ivr.call_types import CallNotes, CaseBrief
from ivr.calls import record_call
from ivr.ami_state import known

if TYPE_CHECKING:
    from ivr.agi import AGICall
    from ivr.prompts import Catalogue

log = logging.getLogger(__name__)


class IVRServices:
    def __init__(self, settings: Settings, db: Database, core: CaseCore, bus: EventBus | None = None,
                 catalogue: "Catalogue | None" = None) -> None:
        self.settings = settings
        self.db = db
        self.core = core
        self.bus = bus
        self.catalogue = catalogue
        self.menu_timeout = settings.ivr_menu_timeout_seconds
        self.city_queue = settings.city_queue
        self.district_menu = list(settings.ivr_district_menu)
        self.missing_prompts: set[str] = set()   # prompts Asterisk could not play, each logged once

    # ------------------------------------------------------------------ prompts and routing
    def prompt(self, prompt_id: str) -> str:
        """The path (without extension) Asterisk plays for a catalogue prompt."""
        if self.catalogue is not None and prompt_id not in self.catalogue:
            raise KeyError(f"prompt {prompt_id!r} is not in the prompt catalogue")
        return os.path.abspath(self.settings.prompts_dir / prompt_id)  # Asterisk resolves relative paths elsewhere

    def prompt_ready(self, prompt_id: str) -> bool:
        """False for a prompt Asterisk could not play, until its file is there again (a rebuild)."""
        if prompt_id not in self.missing_prompts:
            return True
        if os.path.exists(self.prompt(prompt_id) + ".wav"):
            self.missing_prompts.discard(prompt_id)
            log.info("prompt %s is there again", prompt_id)
            return True
        return False

    def prompt_failed(self, prompt_id: str) -> None:
        if prompt_id not in self.missing_prompts:
            self.missing_prompts.add(prompt_id)
            log.warning("prompt %s could not be played (%s.wav missing?): callers' keys are still read; "
                        "run `hotline prompts build`", prompt_id, self.prompt(prompt_id))

    def district_queue(self, district_code: str) -> str:
        target = self.core.router.rules.route(district_code).transfer_target or ""
        kind, _, name = target.partition(":")
        return name if kind == "queue" and name else self.city_queue

    def caller_number(self, raw: str) -> str | None:
        """E.164 of a caller we can look cases up for; None for anonymous or unusable numbers."""
        if not raw or raw.lower() in ("unknown", "anonymous", "<unknown>"):
            return None
        try:
            number = normalise(raw, self.settings.phone_region)
        except InvalidPhoneNumber:
            return None
        return None if number.is_service else number.e164

    # ------------------------------------------------------------------------ call record
    async def call_started(self, call: "AGICall", caller: str | None, direction: str) -> None:
        fields = dict(direction=direction, channel=call.headers.get("agi_channel"),
                      caller=caller or known(call.caller[:40]),
                      # a survey leg shows our own outgoing caller ID, not the citizen's
                      caller_name=known(call.caller_name[:80]) if direction != "survey" else None,
                      dialled=known(call.headers.get("agi_dnid")), started_at=utcnow())
        await asyncio.to_thread(self._record, call.uniqueid, None, fields)
        await self._publish("call.ivr_started", {"uniqueid": call.uniqueid, "caller": caller, "direction": direction})

    async def call_notes(self, uniqueid: str, notes: CallNotes) -> None:
        fields = dict(intent=notes.intent, queue=notes.queue, district_code=notes.district_code,
                      asked_case=notes.asked_case)
        try:
            await asyncio.to_thread(self._record, uniqueid, notes.ivr(), fields)
        except Exception:  # the call goes on even if the record cannot be written now
            log.exception("call %s: IVR notes not saved", uniqueid)
            return
        await self._publish("call.ivr_done", {"uniqueid": uniqueid, **fields, "ivr": notes.ivr()})

    def _record(self, uniqueid: str, ivr: dict[str, Any] | None, fields: dict[str, Any]) -> None:
        with self.db.session() as s:
            record_call(s, uniqueid, ivr=ivr, **fields)

    def agents_on_duty(self, now: datetime | None = None) -> bool:
        start, end = self.settings.agent_hours_start, self.settings.agent_hours_end
        if start is None or end is None:
            return True
        local = (now or utcnow()).astimezone(self.settings.zone).time()
        return start <= local < end if start < end else (local >= start or local < end)  # may span midnight

    async def _publish(self, topic: str, data: dict[str, Any]) -> None:
        if self.bus is not None:
            await self.bus.publish(topic, data)

    # ------------------------------------------------------------------------------ cases
    async def has_open_cases(self, caller: str) -> bool:
        return await asyncio.to_thread(self._has_open, caller)

    def _has_open(self, caller: str) -> bool:
        with self.db.read_session() as s:   # during a live call: never queued behind writers
            return s.scalar(select(Case.id).where(Case.caller_phone == caller, Case.state.in_(OPEN_STATES))
                            .limit(1)) is not None

    async def find_case(self, caller: str | None, digits: str | None) -> CaseBrief | None:
        """The caller's case with these digits, or their latest case when digits is None."""
        if caller is None:
            return None
        return await asyncio.to_thread(self._find, caller, digits)

    def _find(self, caller: str, digits: str | None) -> CaseBrief | None:
        with self.db.read_session() as s:
            rows = s.execute(select(Case.number, Case.state).where(Case.caller_phone == caller)
                             .order_by(Case.id.desc()).limit(200)).all()
        briefs = [CaseBrief(n, st) for n, st in rows]
        if digits is None:
            return briefs[0] if briefs else None
        return next((b for b in briefs if b.digits == digits), None)

    async def redeem_survey(self, number: str | None, key: str | None, uniqueid: str) -> CaseBrief | None:
        """The case a callback is about, if the call carries that callback's single-use key
        (`ivr.survey_keys`); the call is then recorded with the citizen and the case."""
        if not number or not key:
            return None
        return await asyncio.to_thread(self._redeem_survey, number, key, uniqueid)

    def _redeem_survey(self, number: str, key: str, uniqueid: str) -> CaseBrief | None:
        with self.db.session() as s:
            case = survey_keys.redeem(s, number, key, uniqueid)
            if case is None:
                return None
            record_call(s, uniqueid, case_id=case.id, caller=case.caller_phone, dialled=case.caller_phone)
            return CaseBrief(case.number, case.state)

    async def record_satisfaction(self, number: str, answer: str, uniqueid: str) -> bool:
        recorded = await asyncio.to_thread(self._satisfaction, number, answer, uniqueid)
        if recorded:
            await self._publish("case.surveyed", {"number": number, "answer": answer, "channel": "call"})
        return recorded

    def _satisfaction(self, number: str, answer: str, uniqueid: str) -> bool:
        with self.db.session() as s:
            try:
                self.core.apply_action(s, number, "record_satisfaction", SYSTEM,
                                       ActionIn(answer=answer, note=f"电话回访 {uniqueid}"))
            except WorkflowError as exc:  # already surveyed (a repeated callback): the first answer stands
                log.info("survey of %s not recorded: %s", number, exc)
                return False
        return True
