"""The satisfaction callback effect (outbox kind "survey_call"), run by the Celery worker.

One outbox row is one attempt. The worker logs in to AMI, Originates the citizen's number
into the `hotline-survey` context (whose dialplan runs our FastAGI `survey` flow, which
records the answer on the case) and waits for the OriginateResponse. Not answered → the
next attempt is a new row, due inside calling hours; after `survey_call_attempts`
unanswered attempts the survey goes by SMS instead.

Never twice: before dialling, the attempt is written on the case timeline ("dialling"). If a
worker dies after dialling, the row is claimed again, finds that mark without an outcome,
and does not dial again: the attempt counts as unanswered and the next one is scheduled.
"""
from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from case_bridge import outbox
from case_bridge.models import Case, CaseEvent
from case_bridge.outbox import EffectError, register_effect
from case_bridge.service import next_callback_time
from hotline.db import Database, utcnow
from hotline.settings import Settings, get_settings
from ivr.ami import AMIClient, AMIError

log = logging.getLogger(__name__)

RETRY_AFTER_MINUTES = 120
SURVEY_STATES = ("closed",)


@register_effect("survey_call")
def survey_call(payload: dict[str, Any], key: str) -> dict[str, Any]:
    settings = get_settings()
    return SurveyCaller(settings, _database(settings.database_url)).attempt(payload, key)


@lru_cache(maxsize=2)
def _database(url: str) -> Database:
    """One engine (and pool) per worker process, not one per callback."""
    return Database(url)


class SurveyCaller:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def attempt(self, payload: dict[str, Any], key: str) -> dict[str, Any]:
        number, to = payload.get("case_number"), payload.get("to")
        attempt = int(payload.get("attempt", 1))
        with self.db.session() as s:
            case = s.scalar(select(Case).where(Case.number == number))
            if case is None or case.state not in SURVEY_STATES or case.satisfaction:
                return {"skipped": case.state if case else "no such case"}
            marks = self._marks(s, case.id, key)
            if "dialling" in marks and not marks.keys() - {"dialling"}:
                # a previous run dialled and died before learning the outcome
                self._mark(s, case.id, key, attempt, "unknown", "上次回访呼叫结果未知（进程中断），不重复拨打")
                return self._next(s, case, payload, attempt, "unknown")
            if marks.keys() - {"dialling"}:
                return {"already": sorted(marks)}
            if self.settings.survey_channel == "sms" or not to or not str(to).startswith("+86"):
                return self._by_sms(s, case, "survey_channel" if to else "no number")
            case_id = case.id
        result = asyncio.run(self._originate(case_id, attempt, str(to), str(number), key))
        with self.db.session() as s:
            outcome = result.get("outcome", "failed")
            self._mark(s, case_id, key, attempt, outcome, f"第 {attempt} 次电话回访：{OUTCOME_NOTES.get(outcome, outcome)}")
            if outcome == "answered":
                return result
            case = s.get(Case, case_id)
            return {**result, **self._next(s, case, payload, attempt, outcome)}

    async def _originate(self, case_id: int, attempt: int, to: str, number: str, key: str) -> dict[str, Any]:
        s = self.settings
        client = AMIClient(s.ami_host, s.ami_port, s.ami_username, s.ami_secret,
                           reconnect_max=s.ami_reconnect_max_seconds)
        try:
            await client.connect_once(resync=False)
        except (OSError, asyncio.TimeoutError, AMIError) as exc:
            raise EffectError(f"AMI unreachable, nothing dialled: {exc}") from None
        try:
            with self.db.session() as session:  # committed before the number is dialled
                self._mark(session, case_id, key, attempt, "dialling", f"第 {attempt} 次电话回访拨出")
            dial = s.survey_dial.format(number=to.removeprefix("+86"))
            result = await client.originate(dial, "hotline-survey", "s",
                                            caller_id=f'"12319热线回访" <{s.service_number}>',
                                            variables={"HOTLINE_CASE": number, "HOTLINE_SURVEY_KEY": key},
                                            ring_seconds=s.survey_ring_seconds)
            return {"outcome": result.outcome, "reason": result.reason, "uniqueid": result.uniqueid}
        except AMIError as exc:  # dialled but the link dropped: the outcome is unknown
            log.warning("survey %s: %s", key, exc)
            return {"outcome": "unknown", "error": str(exc)}
        finally:
            await client.stop()

    def _next(self, s, case: Case, payload: dict[str, Any], attempt: int, outcome: str) -> dict[str, Any]:
        if attempt >= self.settings.survey_call_attempts:
            return self._by_sms(s, case, f"{attempt} attempts unanswered")
        due = next_callback_time(self.settings, utcnow(), RETRY_AFTER_MINUTES)
        outbox.enqueue(s, "survey_call", {**payload, "attempt": attempt + 1},
                       key=f"survey:{case.id}:attempt{attempt + 1}", case_id=case.id, due_at=due)
        return {"next_attempt": attempt + 1, "due_at": due.isoformat()}

    def _by_sms(self, s, case: Case, why: str) -> dict[str, Any]:
        if case.caller_phone:
            outbox.enqueue(s, "sms", {"to": case.caller_phone, "template": "survey", "case_number": case.number},
                           key=f"sms:survey:{case.id}", case_id=case.id, due_at=utcnow())
        return {"fallback": "sms", "why": why}

    def _marks(self, s, case_id: int, key: str) -> dict[str, CaseEvent]:
        events = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == "survey_call"))
        return {e.data.get("outcome"): e for e in events if e.data.get("key") == key}

    def _mark(self, s, case_id: int, key: str, attempt: int, outcome: str, note: str) -> None:
        s.add(CaseEvent(case_id=case_id, actor="system", actor_role="system", action="survey_call", note=note,
                        data={"key": key, "attempt": attempt, "outcome": outcome}))


OUTCOME_NOTES = {"answered": "已接通", "no_answer": "无人接听", "busy": "占线", "failed": "呼叫失败",
                 "unknown": "结果未知"}
