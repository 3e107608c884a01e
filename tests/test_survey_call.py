"""The satisfaction-callback effect: AMI Originate through the fake Asterisk, attempts, SMS fallback,
and never dialling twice after a crash."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from case_bridge.models import Case, CaseEvent, OutboxItem
from case_bridge.outbox import EffectError
from ivr.survey_call import SurveyCaller
from tests.support.cases import closed_case
from tests.support.fake_ami import FakeAMI


@pytest.fixture
async def pbx():
    fake = await FakeAMI.start(auth_delay=0.1)
    fake.originate_delay = 0.05
    yield fake
    await fake.stop()


@pytest.fixture
def survey(settings, db, core, people, pbx):
    settings.ami_port, settings.ami_secret = pbx.port, "hotline-secret"
    number = closed_case(db, core, people)
    with db.session() as s:
        row = s.scalar(select(OutboxItem).where(OutboxItem.kind == "survey_call"))
        payload, key = dict(row.payload), row.idempotency_key
    return SurveyCaller(settings, db), payload, key, number


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
    assert sorted(sent["Variable"]) == sorted([f"HOTLINE_CASE={number}", f"HOTLINE_SURVEY_KEY={key}"])
    assert [m["outcome"] for m in timeline(db, number)] == ["dialling", "answered"]


async def test_unanswered_attempts_are_rescheduled_then_the_survey_goes_by_sms(survey, pbx, db, settings):
    caller, payload, key, number = survey
    settings.survey_call_attempts = 2
    pbx.originate_outcome = ["noanswer", "busy"]
    first = await asyncio.to_thread(caller.attempt, payload, key)
    assert first["outcome"] == "no_answer" and first["next_attempt"] == 2
    with db.session() as s:
        retry = s.scalar(select(OutboxItem).where(OutboxItem.idempotency_key.like("survey:%:attempt2")))
        retry_payload, retry_key = dict(retry.payload), retry.idempotency_key
    second = await asyncio.to_thread(caller.attempt, retry_payload, retry_key)
    assert second["fallback"] == "sms"
    with db.session() as s:
        sms = s.scalar(select(OutboxItem).where(OutboxItem.kind == "sms", OutboxItem.payload["template"].as_string()
                                                == "survey"))
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
