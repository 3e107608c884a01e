"""The satisfaction-callback effect: AMI Originate through the fake Asterisk, attempts, SMS fallback,
and never dialling twice after a crash."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from case_bridge.models import Case, CaseEvent, OutboxItem
from case_bridge.outbox import EffectError
from ivr import survey_keys
from ivr.survey_call import CallbackLink, SurveyCaller
from tests.support.cases import closed_case
from tests.support.fake_ami import FakeAMI


@pytest.fixture
async def pbx():
    fake = await FakeAMI.start(auth_delay=0.1)
    fake.originate_delay = 0.05
    yield fake
    await fake.stop()


@pytest.fixture
def link(settings, pbx):
    settings.ami_port, settings.ami_secret = pbx.port, "hotline-secret"
    shared = CallbackLink(settings)
    yield shared
    shared.close()


@pytest.fixture
def survey(settings, db, core, people, pbx, link):
    number = closed_case(db, core, people)
    with db.session() as s:
        row = s.scalar(select(OutboxItem).where(OutboxItem.kind == "survey_call"))
        payload, key = dict(row.payload), row.idempotency_key
    return SurveyCaller(settings, db, link), payload, key, number


def next_row(db, attempt: int) -> tuple[dict, str]:
    with db.session() as s:
        row = s.scalar(select(OutboxItem).where(OutboxItem.idempotency_key.like(f"survey:%:attempt{attempt}")))
        return dict(row.payload), row.idempotency_key


def survey_sms(db) -> OutboxItem | None:
    with db.session() as s:
        return s.scalar(select(OutboxItem).where(OutboxItem.kind == "sms", OutboxItem.payload["template"].as_string()
                                                 == "survey"))


def timeline(db, number) -> list[dict]:
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
        return [e.data for e in s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id,
                                                                  CaseEvent.action == "survey_call"))]


def originates(pbx) -> list[dict]:
    return [a for a in pbx.actions if a["Action"] == "Originate"]


async def test_an_answered_callback_dials_the_citizen_into_the_survey_flow(survey, pbx, db):
    caller, payload, key, number = survey
    result = await asyncio.to_thread(caller.attempt, payload, key)
    assert result["outcome"] == "answered"
    sent = originates(pbx)[0]
    assert sent["Channel"] == "PJSIP/13800138000@trunk" and sent["Context"] == "hotline-survey"
    variables = dict(v.split("=", 1) for v in sent["Variable"])
    assert variables["HOTLINE_CASE"] == number
    token = variables["HOTLINE_SURVEY_KEY"]        # a fresh single-use key, not the guessable outbox key
    assert token != key and len(token) >= 20
    marks = timeline(db, number)
    assert [m["outcome"] for m in marks] == ["dialling", "answered"]
    assert marks[0]["key_sha256"] == survey_keys.digest(token) and token not in str(marks)


async def test_an_answered_call_without_a_key_pressed_counts_as_an_attempt(survey, pbx, db, settings):
    caller, payload, key, number = survey
    settings.survey_call_attempts = 2
    first = await asyncio.to_thread(caller.attempt, payload, key)   # picked up, no key: nothing recorded
    assert first["outcome"] == "answered" and first["next_attempt"] == 2
    second = await asyncio.to_thread(caller.attempt, *next_row(db, 2))
    assert second["outcome"] == "answered" and second["next_attempt"] == 3 and survey_sms(db) is None
    last_look = await asyncio.to_thread(caller.attempt, *next_row(db, 3))
    assert last_look["fallback"] == "sms" and survey_sms(db) is not None
    assert len(originates(pbx)) == 2                  # the last look dials nobody


async def test_a_callback_answered_with_a_key_is_not_repeated(survey, pbx, db, settings):
    caller, payload, key, number = survey
    await asyncio.to_thread(caller.attempt, payload, key)
    with db.session() as s:     # the survey flow recorded the answer during the call
        s.scalar(select(Case).where(Case.number == number)).satisfaction = "满意"
    assert "skipped" in await asyncio.to_thread(caller.attempt, *next_row(db, 2))
    assert len(originates(pbx)) == 1 and survey_sms(db) is None


async def test_callbacks_share_one_ami_login(settings, db, core, people, pbx, link):
    numbers = [closed_case(db, core, people, caller) for caller in ("13800138000", "13900139000", "13700137000")]
    with db.session() as s:
        rows = [(dict(r.payload), r.idempotency_key) for r in s.scalars(
            select(OutboxItem).where(OutboxItem.kind == "survey_call").order_by(OutboxItem.id))]
    caller = SurveyCaller(settings, db, link)
    results = await asyncio.gather(*(asyncio.to_thread(caller.attempt, p, k) for p, k in rows))
    assert [r["outcome"] for r in results] == ["answered"] * 3 and len(numbers) == 3
    assert pbx.logins == 1 and link.logins == 1 and len(originates(pbx)) == 3
    await pbx.drop()                                  # the link drops: the next callback logs in again
    for _ in range(200):
        if not link.connected:
            break
        await asyncio.sleep(0.05)
    payload, key = next_row(db, 2)
    assert (await asyncio.to_thread(caller.attempt, payload, key))["outcome"] == "answered"
    assert pbx.logins == 2


def test_callbacks_are_spread_over_slots_the_trunk_can_carry(settings, db, clock):
    from datetime import datetime, timedelta
    from case_bridge import outbox
    from case_bridge.service import callback_slot
    settings.survey_max_concurrent_calls, settings.survey_ring_seconds = 2, 30   # a slot is 2 minutes
    night = datetime(2026, 11, 23, 23, 0, tzinfo=settings.zone)
    starts = []
    with db.session() as s:
        for n in range(5):
            due = callback_slot(s, settings, night)
            outbox.enqueue(s, "survey_call", {"n": n}, key=f"survey:spread:{n}", due_at=due)
            starts.append(due.astimezone(settings.zone).strftime("%H:%M"))
    opening = settings.callback_hours_start.strftime("%H:%M")
    assert starts[:2] == [opening] * 2 and starts[2] == starts[3] != opening and starts[4] > starts[3]
    first = datetime.combine(night.date() + timedelta(days=1), settings.callback_hours_start, settings.zone)
    assert [(datetime.strptime(x, "%H:%M") - datetime.strptime(opening, "%H:%M")).seconds // 60
            for x in starts] == [0, 0, 2, 2, 4] and first.tzinfo is not None


async def test_unanswered_attempts_are_rescheduled_then_the_survey_goes_by_sms(survey, pbx, db, settings):
    caller, payload, key, number = survey
    settings.survey_call_attempts = 2
    pbx.originate_outcome = ["noanswer", "busy"]
    first = await asyncio.to_thread(caller.attempt, payload, key)
    assert first["outcome"] == "no_answer" and first["next_attempt"] == 2
    second = await asyncio.to_thread(caller.attempt, *next_row(db, 2))
    assert second["fallback"] == "sms"
    sms = survey_sms(db)
    assert sms is not None and sms.payload["to"] == "+8613800138000"
    assert len(originates(pbx)) == 2


async def test_a_rerun_after_a_crash_mid_call_does_not_dial_again(survey, pbx, db):
    caller, payload, key, number = survey
    pbx.originate_delay = 5
    pending = asyncio.create_task(asyncio.to_thread(caller.attempt, payload, key))
    await pbx.wait_action("Originate")
    await pbx.drop()                     # the worker loses the PBX mid-call: outcome unknown
    result = await pending
    assert result["outcome"] == "unknown"
    rerun = await asyncio.to_thread(caller.attempt, payload, key)   # the row is claimed again
    assert "already" in rerun
    assert len(originates(pbx)) == 1


async def test_a_dialling_mark_without_outcome_is_not_dialled_again(survey, pbx, db):
    caller, payload, key, number = survey
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
        s.add(CaseEvent(case_id=case_id, actor="system", actor_role="system", action="survey_call", note="",
                        data={"key": key, "attempt": 1, "outcome": "dialling"}))
    result = await asyncio.to_thread(caller.attempt, payload, key)
    assert result["next_attempt"] == 2 and originates(pbx) == []
    assert [m["outcome"] for m in timeline(db, number)] == ["dialling", "unknown"]


async def test_pbx_unreachable_dials_nothing_and_is_retried(survey, pbx, db):
    caller, payload, key, number = survey
    await pbx.stop()
    with pytest.raises(EffectError, match="nothing dialled"):
        await asyncio.to_thread(caller.attempt, payload, key)
    assert timeline(db, number) == []     # nothing was dialled: the retry may dial


async def test_sms_preference_and_already_surveyed_cases(survey, pbx, db, settings):
    caller, payload, key, number = survey
    settings.survey_channel = "sms"
    assert (await asyncio.to_thread(caller.attempt, payload, key))["fallback"] == "sms"
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        case.satisfaction = "满意"
    settings.survey_channel = "call"
    assert "skipped" in await asyncio.to_thread(caller.attempt, payload, key)
    assert originates(pbx) == []
