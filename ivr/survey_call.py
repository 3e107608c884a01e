"""The satisfaction callback effect (outbox kind "survey_call"), run by the Celery worker.

One outbox row is one attempt. The worker Originates the citizen's number into the
`hotline-survey` context (whose dialplan runs our FastAGI `survey` flow, which records the
answer on the case) over the process's one AMI link (`CallbackLink`), with a single-use
key (`ivr.survey_keys`), and waits for the OriginateResponse. Every attempt schedules the
next one (a new row, due in a free callback slot inside calling hours): one the citizen
answered without pressing a key counts like one not answered, and the next row finds the
case surveyed and does nothing if they did answer. After `survey_call_attempts` attempts the
survey goes by SMS instead.

Never twice: before dialling, the attempt is written on the case timeline ("dialling"). If a
worker dies after dialling, the row is claimed again, finds that mark without an outcome,
and does not dial again: the attempt counts as unanswered and the next one is scheduled.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from functools import lru_cache
from typing import Any, Awaitable, Callable, TypeVar

from sqlalchemy import select

from case_bridge import Case, CaseEvent, EffectError, callback_slot, enqueue_effect, register_effect
from hotline.db import Database, utcnow
from hotline.settings import Settings, get_settings
from ivr import survey_keys
from ivr.ami import AMIClient, AMIError

log = logging.getLogger(__name__)

RETRY_AFTER_MINUTES = 120
SURVEY_STATES = ("closed",)


@register_effect("survey_call")
def survey_call(payload: dict[str, Any], key: str) -> dict[str, Any]:
    settings = get_settings()
    return SurveyCaller(settings, _database(settings.database_url), _link(settings)).attempt(payload, key)


@lru_cache(maxsize=2)
def _database(url: str) -> Database:
    """One engine (and pool) per worker process, not one per callback."""
    return Database(url)


_links: dict[tuple, "CallbackLink"] = {}
_links_guard = threading.Lock()


def _link(settings: Settings) -> "CallbackLink":
    """The worker process's one callback link to the PBX the settings name."""
    key = (settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret)
    with _links_guard:
        if key not in _links:
            _links[key] = CallbackLink(settings)
        return _links[key]


T = TypeVar("T")


class CallbackLink:
    """One AMI login per worker process for every callback, instead of a login per call.

    The link lives on its own event-loop thread so effects (plain functions, run by Celery's
    threads or processes) can share it; it is opened on first use and again after it dropped.
    An Originate is never replayed on a new link: a dropped link is an unknown outcome."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AMIClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard = threading.Lock()
        self._connecting: asyncio.Lock | None = None
        self.logins = 0

    def run(self, work: Callable[[AMIClient], Awaitable[T]], timeout: float) -> T:
        """Run `work(client)` on the link's loop and wait for it (at most `timeout` seconds)."""
        future = asyncio.run_coroutine_threadsafe(self._with_client(work), self._ensure_loop())
        return future.result(timeout)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ami-callbacks", daemon=True).start()
                self._loop = loop
            return self._loop

    async def _with_client(self, work: Callable[[AMIClient], Awaitable[T]]) -> T:
        return await work(await self._connected())

    @property
    def connected(self) -> bool:
        client = self._client
        return bool(client is not None and client.authenticated and client.protocol is not None
                    and not client.protocol.closed)

    async def _connected(self) -> AMIClient:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:   # one login even when several callbacks start at once
            client = self._client
            if self.connected:
                return client
            if client is not None:
                await client.stop()
            client = AMIClient.from_settings(self.settings)
            try:
                await client.connect_once(resync=False)
            except (OSError, asyncio.TimeoutError, AMIError) as exc:
                await client.stop()
                self._client = None
                raise EffectError(f"AMI unreachable, nothing dialled: {exc}") from None
            self._client, self.logins = client, self.logins + 1
            return client

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.stop(), loop).result(5)
            self._client = None
        loop.call_soon_threadsafe(loop.stop)


class SurveyCaller:
    def __init__(self, settings: Settings, db: Database, link: CallbackLink | None = None) -> None:
        self.settings = settings
        self.db = db
        self.link = link or _link(settings)

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
            if attempt > self.settings.survey_call_attempts:   # the last call was answered, no key pressed
                return self._by_sms(s, case, f"{attempt - 1} calls without an answer")
            case_id = case.id
        ring = self.settings.survey_ring_seconds
        result = self.link.run(lambda client: self._originate(client, case_id, attempt, str(to), str(number), key),
                               timeout=ring + 60)
        with self.db.session() as s:
            outcome = result.get("outcome", "failed")
            self._mark(s, case_id, key, attempt, outcome, f"第 {attempt} 次电话回访：{OUTCOME_NOTES.get(outcome, outcome)}")
            case = s.get(Case, case_id)
            return {**result, **self._next(s, case, payload, attempt, outcome)}

    async def _originate(self, client: AMIClient, case_id: int, attempt: int, to: str, number: str,
                         key: str) -> dict[str, Any]:
        s = self.settings
        with self.db.session() as session:  # committed before the number is dialled
            token = survey_keys.issue(session, case_id, key, attempt, f"第 {attempt} 次电话回访拨出")
        dial = s.survey_dial.format(number=to.removeprefix("+86"))
        try:
            result = await client.originate(dial, "hotline-survey", "s",
                                            caller_id=f'"12319热线回访" <{s.service_number}>',
                                            variables={"HOTLINE_CASE": number, "HOTLINE_SURVEY_KEY": token},
                                            ring_seconds=s.survey_ring_seconds)
        except AMIError as exc:  # sent, but the link dropped: the outcome is unknown
            log.warning("survey %s: %s", key, exc)
            return {"outcome": "unknown", "error": str(exc)}
        return {"outcome": result.outcome, "reason": result.reason, "uniqueid": result.uniqueid}

    def _next(self, s, case: Case, payload: dict[str, Any], attempt: int, outcome: str) -> dict[str, Any]:
        """The next attempt, in a free callback slot; after an answered last call, a last look
        (an SMS if no key was pressed), after an unanswered last call the SMS at once."""
        if attempt >= self.settings.survey_call_attempts and outcome != "answered":
            return self._by_sms(s, case, f"{attempt} attempts unanswered")
        due = callback_slot(s, self.settings, utcnow(), RETRY_AFTER_MINUTES)
        enqueue_effect(s, "survey_call", {**payload, "attempt": attempt + 1},
                       key=f"survey:{case.id}:attempt{attempt + 1}", case_id=case.id, due_at=due)
        return {"next_attempt": attempt + 1, "due_at": due.isoformat()}

    def _by_sms(self, s, case: Case, why: str) -> dict[str, Any]:
        if case.caller_phone:
            enqueue_effect(s, "sms", {"to": case.caller_phone, "template": "survey", "case_number": case.number},
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
