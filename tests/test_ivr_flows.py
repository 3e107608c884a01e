"""The inbound and survey call flows, driven over a real socket by the Asterisk-side peer."""
from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import PurePath

import pytest
from sqlalchemy import select

from case_bridge import Case, NewCase, seed_units
from case_bridge.models import CaseEvent
from ivr import flows
from ivr.agi import AGIServer
from ivr.agi_peer import AGIPeer
from ivr.models import Call
from ivr.prompts import load_catalogue
from ivr.services import IVRServices
from tests.support.cases import CALLER, callback_key, closed_case, new_case


@contextlib.asynccontextmanager
async def serving_flows(settings, db, core):
    """Our FastAGI server with the product's flows (built from `settings` as they are now), on an
    ephemeral port; yields a call() helper that plays one call into it."""
    with db.session() as s:
        seed_units(s)
    svc = IVRServices(settings, db, core, catalogue=load_catalogue())
    server = AGIServer()
    for name in flows.AGI_ROUTES:
        server.add_route(name, functools.partial(getattr(flows, name), svc=svc))
    srv = await server.start("127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    counter = iter(range(1, 10_000))

    async def call(keys=(), script="inbound", caller=CALLER, **kw):
        kw.setdefault("uniqueid", f"1795240673.{next(counter)}")
        return await AGIPeer("127.0.0.1", port, script, caller=caller, keys=list(keys), **kw).run()
    call.server = server
    call.svc = svc
    try:
        yield call
    finally:
        await server.close(srv)


@pytest.fixture
async def line(settings, db, core):
    async with serving_flows(settings, db, core) as call:
        yield call


def prompts(result) -> list[str]:
    return [PurePath(p).name for p in result.played]


def stored_call(db, uniqueid) -> Call:
    with db.session() as s:
        call = s.scalar(select(Call).where(Call.uniqueid == uniqueid))
        s.expunge(call)
        return call


async def test_report_goes_to_the_city_queue_and_is_recorded(line, db):
    result = await line(["1"], uniqueid="u-report")
    assert result.variables["HOTLINE_INTENT"] == "report"
    assert result.variables["HOTLINE_QUEUE"] == "city"
    assert prompts(result)[:3] == ["recording_notice", "welcome", "menu"] and prompts(result)[-1] == "transfer_agent"
    call = stored_call(db, "u-report")
    assert (call.intent, call.queue, call.caller, call.direction) == ("report", "city", "+8613800138000", "in")
    assert call.ivr["keys"] == ["menu:1"]


@pytest.mark.parametrize("keys,intent", [(["3"], "consult"), (["0"], "agent"), ([], "agent"),
                                         (["9", "*", "7"], "agent"), (["9", "2", "#"], "progress_then_done")])
async def test_menu_choices_silence_and_wrong_keys(line, keys, intent):
    result = await line(keys)
    if intent == "progress_then_done":
        assert prompts(result).count("invalid") == 1 and "progress_enter" in prompts(result)
        assert result.variables["HOTLINE_INTENT"] == "done"
    else:
        assert result.variables["HOTLINE_INTENT"] == intent
    if keys == ["9", "*", "7"]:
        assert prompts(result).count("menu") == 3 and prompts(result).count("invalid") == 2


async def test_progress_by_case_digits_reads_the_state(line, db, core):
    number = new_case(db, core)
    result = await line(["2", number[1:] + "#", ""], uniqueid="u-progress")
    played = prompts(result)
    assert "open_cases" in played                       # told before the menu
    assert played[played.index("case_number") + 1:][:len(number) - 1] == [f"digit_{d}" for d in number[1:]]
    with db.session() as s:
        state = s.scalar(select(Case.state).where(Case.number == number))
    assert f"state_{state}" in played
    assert result.variables["HOTLINE_INTENT"] == "done" and result.variables["HOTLINE_CASE"] == number
    assert stored_call(db, "u-progress").asked_case == number


async def test_hash_hears_the_latest_case_and_zero_reaches_an_agent(line, db, core):
    new_case(db, core)
    latest = new_case(db, core)
    result = await line(["2", "#", "0"])
    assert result.variables["HOTLINE_CASE"] == latest
    assert result.variables["HOTLINE_INTENT"] == "agent" and result.variables["HOTLINE_QUEUE"] == "city"


async def test_someone_elses_case_sounds_exactly_like_no_such_case(line, db, core):
    theirs = new_case(db, core, caller="13900139000")
    other = await line(["2", theirs[1:] + "#", ""])
    missing = await line(["2", "9" * 16 + "#", ""])
    assert prompts(other) == prompts(missing)
    assert "progress_not_found" in prompts(other)
    assert not [p for p in prompts(other) if p.startswith(("state_", "digit_"))]
    assert other.variables["HOTLINE_CASE"] == ""


async def test_no_cases_and_anonymous_callers(line):
    none = await line(["2", "#", ""])
    assert "progress_none" in prompts(none)
    anonymous = await line(["2", "#", ""], caller="anonymous")
    assert "progress_none" in prompts(anonymous) and "open_cases" not in prompts(anonymous)


async def test_district_choice_by_key(settings, db, core):
    settings.ivr_district_menu = ["440303", "440304", "440305"]
    async with serving_flows(settings, db, core) as call:
        chosen = await call(["1", "2"], uniqueid="u-d")
        unsure = await call(["1", "#"], uniqueid="u-d2")
    assert chosen.variables["HOTLINE_QUEUE"] == "district-440304"
    assert chosen.variables["HOTLINE_DISTRICT"] == "440304"
    assert ["district_440303", "press", "digit_1"] == prompts(chosen)[prompts(chosen).index("district_menu") + 1:][:3]
    assert unsure.variables["HOTLINE_QUEUE"] == "city" and unsure.variables["HOTLINE_DISTRICT"] == ""
    assert stored_call(db, "u-d").district_code == "440304"


@pytest.mark.parametrize("idle", [False, True])
async def test_a_caller_hanging_up_midway_keeps_what_was_learned(line, db, idle):
    result = await line(["2"], uniqueid="u-hang", hangup_after=4, hangup_while_idle=idle)
    assert result.hung_up
    assert "HOTLINE_INTENT" not in result.variables       # the flow stopped at the hangup
    call = stored_call(db, "u-hang")
    assert call.intent == "progress" and call.ivr["keys"] == ["menu:2"]
    again = await line(["1"])                              # the server is fine
    assert again.variables["HOTLINE_INTENT"] == "report"
    assert line.server.sessions == 2


async def test_the_cases_reported_on_a_call_are_linked_to_it(line, db, core):
    from ivr.calls import calls_of_case
    await line(["1"], uniqueid="1795240999.7")
    with db.session() as s:     # one caller, two problems, one call
        first = core.create_case(s, NewCase(description="占道经营", caller_phone=CALLER, channel="phone",
                                            category_key="E0101", call_uniqueid="1795240999.7")).case
        second = core.create_case(s, NewCase(description="井盖缺失", caller_phone=CALLER, channel="phone",
                                             category_key="C0102", call_uniqueid="1795240999.7")).case
        assert first.number != second.number
        linked = [[c.uniqueid for c in calls_of_case(s, case.id)] for case in (first, second)]
    assert linked == [["1795240999.7"], ["1795240999.7"]]


@pytest.fixture
def closeable(db, core, people):
    """Cases go through the workflow with seeded units and users."""
    return lambda caller=CALLER: closed_case(db, core, people, caller)


def survey_vars(db, number, key=None):
    return {"HOTLINE_CASE": number, "HOTLINE_SURVEY_KEY": key or callback_key(db, number)}


@pytest.mark.parametrize("keys,answer,reopen", [(["1"], "满意", False), (["3"], "不满意", True),
                                                (["7", "2"], "基本满意", False), (["", "2"], "基本满意", False)])
async def test_survey_records_the_answer(line, db, closeable, keys, answer, reopen):
    number = closeable()
    result = await line(keys, script="survey", variables=survey_vars(db, number), uniqueid="s-1")
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        assert (case.satisfaction, case.reopen_requested, case.state) == (answer, reopen, "surveyed")
    assert prompts(result)[-1] == ("survey_reopen" if reopen else "survey_thanks")
    assert prompts(result)[:2] == ["survey_intro", "case_number"]
    assert stored_call(db, "s-1").direction == "survey"


@pytest.mark.parametrize("keys,hangup_after", [(["8", "9"], None), ([], None), (["1"], 3)])
async def test_survey_without_a_valid_answer_records_nothing(line, db, closeable, keys, hangup_after):
    number = closeable()
    result = await line(keys, script="survey", variables=survey_vars(db, number), hangup_after=hangup_after)
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        assert case.satisfaction is None and case.state == "closed"
    if hangup_after is None:
        assert prompts(result).count("survey_question") == 2   # asked once more, then goodbye
        assert prompts(result)[-1] == "goodbye"


async def test_survey_for_a_case_not_awaiting_one(line, db, core):
    number = new_case(db, core)
    result = await line(["1"], script="survey", variables=survey_vars(db, number))
    assert prompts(result) == ["goodbye"]
    with db.session() as s:
        assert s.scalar(select(Case.satisfaction).where(Case.number == number)) is None
        assert not s.scalars(select(CaseEvent).where(CaseEvent.action == "record_satisfaction")).all()


def answered(db, number) -> str | None:
    with db.session() as s:
        return s.scalar(select(Case.satisfaction).where(Case.number == number))


@pytest.mark.parametrize("key", ["", "guessed", "survey:1:attempt1"])
async def test_a_survey_answer_needs_the_key_of_a_callback_we_placed(line, db, closeable, key):
    number = closeable()
    callback_key(db, number)                       # a callback is pending, but this call does not carry its key
    result = await line(["1"], script="survey", variables={"HOTLINE_CASE": number, "HOTLINE_SURVEY_KEY": key})
    assert prompts(result) == ["goodbye"] and answered(db, number) is None


async def test_a_callback_key_is_good_once_for_its_case_and_only_while_it_is_the_latest(line, db, closeable,
                                                                                      clock):
    first, other = closeable(), closeable("13900139000")
    old = callback_key(db, first)
    latest = callback_key(db, first, attempt=2)
    assert prompts(await line(["1"], script="survey", variables=survey_vars(db, first, old)))[-1] == "goodbye"
    assert prompts(await line(["1"], script="survey", variables=survey_vars(db, other, latest)))[-1] == "goodbye"
    assert answered(db, first) is None and answered(db, other) is None
    clock.advance(hours=2)                             # the key's callback is long over
    assert prompts(await line(["1"], script="survey", variables=survey_vars(db, first, latest)))[-1] == "goodbye"
    fresh = callback_key(db, first, attempt=3)
    await line([""], script="survey", variables=survey_vars(db, first, fresh), hangup_after=3)   # picked up, hung up
    again = await line(["1"], script="survey", variables=survey_vars(db, first, fresh))
    assert prompts(again) == ["goodbye"] and answered(db, first) is None   # redeemed once already


async def test_the_survey_key_is_not_kept_in_the_call_record(line, db, closeable):
    number = closeable()
    key = callback_key(db, number)
    await line(["1"], script="survey", variables=survey_vars(db, number, key), uniqueid="s-secret")
    assert key not in str(stored_call(db, "s-secret").ivr) and answered(db, number) == "满意"


async def test_outside_agent_hours_callers_are_offered_a_message(settings, db, core):
    from datetime import timedelta
    later = core.now().astimezone(settings.zone) + timedelta(hours=2)   # agents come in two hours from now
    settings.agent_hours_start, settings.agent_hours_end = later.time(), (later + timedelta(hours=1)).time()
    async with serving_flows(settings, db, core) as call:
        closed = await call(["1"], uniqueid="u-closed")
        progress = await call(["2", "#", ""], uniqueid="u-done")
    assert closed.variables["HOTLINE_INTENT"] == "closed" and closed.variables["HOTLINE_QUEUE"] == ""
    assert "transfer_agent" not in prompts(closed)
    assert progress.variables["HOTLINE_INTENT"] == "done"     # the progress query still works
    assert stored_call(db, "u-closed").queue is None and stored_call(db, "u-done").queue is None


async def test_a_survey_call_is_recorded_with_the_citizen_and_the_case(line, db, closeable):
    number = closeable()
    await line(["1"], script="survey", variables=survey_vars(db, number), caller="12319", uniqueid="s-link")
    call = stored_call(db, "s-link")
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
    assert (call.caller, call.case_id, call.direction) == ("+8613800138000", case_id, "survey")


def test_agent_hours_may_span_midnight(settings, db, core):
    from datetime import datetime, time, timezone
    settings.agent_hours_start, settings.agent_hours_end = time(22, 0), time(6, 0)
    svc = IVRServices(settings, db, core)
    at = lambda h: datetime(2026, 11, 23, h, 0, tzinfo=settings.zone).astimezone(timezone.utc)  # noqa: E731
    assert [svc.agents_on_duty(at(h)) for h in (21, 22, 23, 0, 5, 6, 12)] == [False, True, True, True, True,
                                                                             False, False]


# ------------------------------------------------------------------ keys are heard early, prompts may be missing

def stream_commands(result) -> list[str]:
    return [c for c in result.commands if c.startswith(("STREAM FILE", "GET DATA", "WAIT FOR DIGIT"))]


async def test_a_key_during_the_welcome_chooses_from_the_menu(line, db):
    result = await line([], presses={"welcome": "2"}, uniqueid="u-early")
    assert result.variables["HOTLINE_INTENT"] in ("done", "agent")
    played = prompts(result)
    assert played[:2] == ["recording_notice", "welcome"] and "menu" not in played   # the menu is not read out
    assert "progress_enter" in played
    assert stored_call(db, "u-early").ivr["keys"][0] == "menu:2(early)"
    # the recording notice is never interruptible; every prompt after it is
    notice = next(c for c in result.commands if "recording_notice" in c)
    welcome = next(c for c in result.commands if c.endswith('welcome "0123456789*#"'))
    assert notice.endswith('""') and welcome


async def test_a_caller_with_an_open_case_is_heard_during_the_notice(line, db, core):
    new_case(db, core)     # the caller has an open case: they hear so, and may press 2 at once
    result = await line(["#", ""], presses={"open_cases": "2"}, uniqueid="u-open")
    assert prompts(result)[:3] == ["recording_notice", "welcome", "open_cases"] and "menu" not in prompts(result)
    assert stored_call(db, "u-open").asked_case is not None


async def test_missing_prompt_files_still_take_the_callers_keys(line, db, settings):
    # no prompt was built: Asterisk answers result=-1 at once, as a real one does for a missing file
    result = await line(["1"], check_files=True, uniqueid="u-missing")
    assert result.variables["HOTLINE_INTENT"] == "report" and result.variables["HOTLINE_QUEUE"] == "city"
    assert any(c.startswith("WAIT FOR DIGIT") for c in result.commands)
    assert stored_call(db, "u-missing").ivr["keys"] == ["menu:1"]
    # a second call does not even try the files it knows are missing, and still reads the key
    again = await line(["3"], check_files=True, uniqueid="u-missing-2")
    assert again.variables["HOTLINE_INTENT"] == "consult"
    assert not any(c.startswith("GET DATA") for c in again.commands)
    assert line.svc.missing_prompts >= {"welcome", "menu"}


async def test_a_progress_query_with_missing_prompts_reads_the_case_digits(line, db, core):
    number = new_case(db, core)
    digits = "".join(ch for ch in number if ch.isdigit())
    result = await line(["2", digits + "#", ""], check_files=True, uniqueid="u-missing-progress")
    assert result.variables["HOTLINE_CASE"] == number and result.variables["HOTLINE_INTENT"] == "done"


@pytest.mark.parametrize("permit,served", [(["10.9.9.9/32"], False), (["127.0.0.0/8"], True)])
async def test_only_permitted_addresses_may_open_a_fastagi_session(settings, db, core, closeable, permit, served):
    from ivr.runtime import build_agi_server
    number = closeable()
    settings.agi_permit = permit
    agi = build_agi_server(settings, db, core)
    server = await agi.start("127.0.0.1", 0)
    try:
        peer = AGIPeer("127.0.0.1", server.sockets[0].getsockname()[1], "survey", keys=["3"],
                       variables=survey_vars(db, number), uniqueid="u-permit")
        try:
            commands = len((await asyncio.wait_for(peer.run(), 30)).exchanges)
        except ConnectionError:    # closed before the environment was read: Asterisk sees a failed AGI
            commands = 0
    finally:
        await agi.close(server)
    assert (commands > 0) is served and agi.rejected == (0 if served else 1)
    assert answered(db, number) == ("不满意" if served else None)
