"""Inbound short messages (MO) on SQLite and PostgreSQL: stored once, then understood as an
opt-out, a survey answer, a progress query or a report (a burst of which is one work item)."""
from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import func, select

from case_bridge import Case, CaseEvent, outbox
from case_bridge.models import OutboxItem
from sms.inbound import MAX_TEXT, MO, Outcome, canonical, receive
from sms.models import SmsMessage, SmsOptOut, SmsWorkItem
from tests.support.cases import CALLER, closed_case, new_case

PHONE = "+8613800138000"          # CALLER ("13800138000") in E.164
OTHER = "13900139000"
OTHER_PHONE = "+8613900139000"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)   # 09:00 in Shenzhen, the `clock` fixture's start
KINDS = {"duplicate", "opt_out", "survey_answer", "progress", "report", "unusable", "empty"}


def rx(db, core, settings, text, source=CALLER, at=T0, smsc_id=None, service_addr="12319"):
    """One MO, received in its own transaction, as the connector would hand it over."""
    with db.session() as s:
        return receive(s, core, settings, MO(source=source, text=text, service_addr=service_addr,
                                             smsc_id=smsc_id, at=at))


def messages(db) -> list[SmsMessage]:
    with db.session() as s:
        return list(s.scalars(select(SmsMessage).order_by(SmsMessage.id)))


def replies(db, template: str | None = None) -> list[OutboxItem]:
    """The texts `receive` queued in answer to MOs (not the case core's receipts and results)."""
    with db.session() as s:
        rows = list(s.scalars(select(OutboxItem).where(OutboxItem.kind == "sms",
                                                       OutboxItem.idempotency_key.like("sms:reply:%"))
                              .order_by(OutboxItem.id)))
    return [r for r in rows if template is None or r.payload.get("template") == template]


def work_items(db) -> list[SmsWorkItem]:
    with db.session() as s:
        return list(s.scalars(select(SmsWorkItem).order_by(SmsWorkItem.id)))


def case_row(db, number: str) -> Case:
    with db.session() as s:
        return s.scalar(select(Case).where(Case.number == number))


# ------------------------------------------------------------------ stored once

def test_the_same_smsc_id_twice_is_stored_once(db, core, settings, people):
    first = rx(db, core, settings, "华强北路井盖丢失", smsc_id="a1b2c3")
    second = rx(db, core, settings, "华强北路井盖丢失", smsc_id="a1b2c3", at=T0 + timedelta(seconds=5))
    assert first.kind == "report" and first.message_id is not None
    assert second.kind == "duplicate" and second.message_id is None
    stored = messages(db)
    assert [(m.id, m.dedupe_key, m.direction) for m in stored] == [(first.message_id, "smsc:a1b2c3", "in")]
    assert len(replies(db, "report_ack")) == 1
    assert work_items(db)[0].messages == 1


def test_the_same_smsc_id_is_a_duplicate_even_with_another_text(db, core, settings, people):
    rx(db, core, settings, "第一条", smsc_id="id-1")
    assert rx(db, core, settings, "完全不同的内容", smsc_id="id-1", at=T0 + timedelta(hours=3)).kind == "duplicate"
    assert [m.text for m in messages(db)] == ["第一条"]


def test_the_same_text_from_the_same_number_under_a_new_id_within_ten_minutes_is_a_resend(db, core, settings, people):
    assert rx(db, core, settings, "路灯不亮了", smsc_id="first").kind == "report"
    again = rx(db, core, settings, "路灯不亮了", smsc_id="second", at=T0 + timedelta(minutes=9, seconds=59))
    assert again.kind == "duplicate"
    # and without any SMSC id, in the same minute (the content key)
    assert rx(db, core, settings, "路灯不亮了", at=T0 + timedelta(seconds=20)).kind == "duplicate"
    assert len(messages(db)) == 1
    assert work_items(db)[0].messages == 1 and len(replies(db)) == 1


def test_the_same_text_after_ten_minutes_is_stored_again(db, core, settings, people):
    rx(db, core, settings, "路灯不亮了", smsc_id="first")
    later = rx(db, core, settings, "路灯不亮了", smsc_id="second", at=T0 + timedelta(minutes=10, seconds=1))
    assert later.kind == "report" and later.message_id is not None
    stored = messages(db)
    assert [m.text for m in stored] == ["路灯不亮了", "路灯不亮了"]
    assert [m.dedupe_key for m in stored] == ["smsc:first", "smsc:second"]


def test_the_same_text_from_another_number_is_stored(db, core, settings, people):
    rx(db, core, settings, "路灯不亮了", smsc_id="x1")
    other = rx(db, core, settings, "路灯不亮了", source=OTHER, smsc_id="x2", at=T0 + timedelta(seconds=10))
    assert other.kind == "report"
    assert sorted(m.phone for m in messages(db)) == [PHONE, OTHER_PHONE]
    assert sorted(w.phone for w in work_items(db)) == [PHONE, OTHER_PHONE]


def test_a_resend_from_another_spelling_of_the_same_number_is_still_a_resend(db, core, settings, people):
    rx(db, core, settings, "垃圾没人清", source="13800138000", smsc_id="s1")
    assert rx(db, core, settings, "垃圾没人清", source="+8613800138000", smsc_id="s2",
              at=T0 + timedelta(minutes=2)).kind == "duplicate"
    assert len(messages(db)) == 1


# ------------------------------------------------------------------ sources

def test_the_spellings_of_a_number_are_one_e164_phone(db, core, settings, people):
    for i, source in enumerate(["8613800138000", "+8613800138000", "13800138000", "+86 138-0013-8000"]):
        outcome = rx(db, core, settings, f"第{i}条反映", source=source, at=T0 + timedelta(seconds=i))
        assert outcome.kind == "report"
    assert {m.phone for m in messages(db)} == {PHONE}
    items = work_items(db)
    assert len(items) == 1 and items[0].phone == PHONE and items[0].messages == 4   # one citizen, one burst
    assert [r.payload["to"] for r in replies(db)] == [PHONE]


@pytest.mark.parametrize("source", ["12319", "95588", "10657123456", "1069012345678", "garbage", "", "+", "1"])
def test_a_service_number_or_garbage_is_stored_as_unusable_and_never_answered(db, core, settings, people, source):
    outcome = rx(db, core, settings, "TD", source=source, smsc_id="u1")
    assert outcome.kind == "unusable" and outcome.message_id is not None
    [stored] = messages(db)
    assert (stored.id, stored.kind, stored.text, stored.phone) == (outcome.message_id, "unusable", "TD", source)
    assert stored.work_item_id is None and stored.case_id is None
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxItem)) == 0
        assert s.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    assert work_items(db) == []


def test_a_long_garbage_source_is_cut_to_the_column(db, core, settings, people):
    source = "x" * 300
    outcome = rx(db, core, settings, "你好", source=source, service_addr="9" * 50)
    assert outcome.kind == "unusable"
    [stored] = messages(db)
    assert stored.phone == "x" * 40 and stored.service_addr == "9" * 21


def test_a_nul_in_the_source_or_service_address_is_stored_not_raised(db, core, settings, people):
    outcome = rx(db, core, settings, "你好", source="ab\x00c", service_addr="12319\x00")
    assert outcome.kind == "unusable"
    [stored] = messages(db)
    assert (stored.phone, stored.service_addr, stored.text) == ("abc", "12319", "你好")


# ------------------------------------------------------------------ opt-out

@pytest.mark.parametrize("text", ["TD", "td", "ＴＤ", "ｔｄ", " td ", "退订", "STOP", "stop", "TD。", "退订！"])
def test_opt_out_words(db, core, settings, people, text):
    outcome = rx(db, core, settings, text)
    assert outcome.kind == "opt_out"
    with db.session() as s:
        [opt] = s.scalars(select(SmsOptOut)).all()
    assert (opt.phone, opt.at, opt.via) == (PHONE, T0, text)
    [stored] = messages(db)
    assert stored.kind == "opt_out" and stored.id == outcome.message_id
    [reply] = replies(db)
    assert reply.payload == {"to": PHONE, "template": "opt_out", "values": {}, "essential": True}
    assert reply.idempotency_key == f"sms:reply:{outcome.message_id}" and reply.due_at == T0
    assert work_items(db) == []


def test_spaced_full_width_td_opts_out(db, core, settings, people):
    outcome = rx(db, core, settings, "Ｔ Ｄ")
    assert outcome.kind == "opt_out"
    with db.session() as s:
        assert s.scalar(select(SmsOptOut.phone)) == PHONE


def test_opting_out_twice_keeps_one_row_and_the_first_time(db, core, settings, people):
    first = rx(db, core, settings, "TD", smsc_id="o1")
    second = rx(db, core, settings, "TD", smsc_id="o2", at=T0 + timedelta(minutes=30))   # not a resend
    third = rx(db, core, settings, "退订", smsc_id="o3", at=T0 + timedelta(minutes=31))
    assert [first.kind, second.kind, third.kind] == ["opt_out"] * 3
    with db.session() as s:
        assert s.execute(select(SmsOptOut.phone, SmsOptOut.at)).all() == [(PHONE, T0)]
    sent = replies(db, "opt_out")
    assert sorted(r.idempotency_key for r in sent) == sorted(f"sms:reply:{o.message_id}" for o in (first, second, third))
    # a resend of TD within ten minutes is stored once and answered once
    assert rx(db, core, settings, "TD", smsc_id="o4", at=T0 + timedelta(minutes=35)).kind == "duplicate"
    assert len(replies(db, "opt_out")) == 3


# ------------------------------------------------------------------ survey by SMS

def ask_by_sms(db, number: str) -> int:
    """What ivr/survey_call.py's `_by_sms` does: the SMS survey row for the closed case."""
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        outbox.enqueue(s, "sms", {"to": case.caller_phone, "template": "survey", "case_number": case.number},
                       key=f"sms:survey:{case.id}", case_id=case.id)
        return case.id


@pytest.fixture
def asked(db, core, people) -> str:
    number = closed_case(db, core, people)
    ask_by_sms(db, number)
    return number


@pytest.mark.parametrize("text, answer", [("1", "满意"), ("2", "基本满意"), ("3", "不满意"), ("满意", "满意"),
                                          ("基本满意", "基本满意"), ("不满意", "不满意"), ("１", "满意"),
                                          (" 2。", "基本满意")])
def test_a_survey_answer_by_sms_is_recorded_on_the_case(db, core, settings, asked, text, answer):
    outcome = rx(db, core, settings, text)
    assert (outcome.kind, outcome.case_number) == ("survey_answer", asked)
    case = case_row(db, asked)
    assert case.state == "surveyed" and case.satisfaction == answer
    assert case.reopen_requested is (answer == "不满意")     # a request for the dispatcher, never a silent reopen
    [stored] = messages(db)
    assert (stored.kind, stored.case_id, stored.work_item_id) == ("survey_answer", case.id, None)
    with db.session() as s:
        [event] = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                    CaseEvent.action == "record_satisfaction")).all()
        assert s.scalar(select(func.count()).select_from(CaseEvent).where(
            CaseEvent.case_id == case.id, CaseEvent.action == "reopen")) == 0
    assert (event.actor_role, event.from_state, event.to_state, event.note) == ("system", "closed", "surveyed", "短信回访")
    assert event.data["answer"] == answer
    assert work_items(db) == []


def test_the_survey_is_answered_once(db, core, settings, asked):
    assert rx(db, core, settings, "3").kind == "survey_answer"
    later = rx(db, core, settings, "1", at=T0 + timedelta(minutes=1))
    assert later.kind == "report"                            # nothing pending any more
    case = case_row(db, asked)
    assert (case.state, case.satisfaction, case.reopen_requested) == ("surveyed", "不满意", True)


def test_a_1_without_a_pending_survey_is_a_report(db, core, settings, people):
    number = closed_case(db, core, people)                   # closed, but the SMS survey never went out
    outcome = rx(db, core, settings, "1")
    assert outcome.kind == "report" and outcome.work_item is not None
    case = case_row(db, number)
    assert case.state == "closed" and case.satisfaction is None
    assert [(m.kind, m.case_id) for m in messages(db)] == [("report", None)]
    assert len(work_items(db)) == 1 and len(replies(db, "report_ack")) == 1


def test_a_1_from_a_number_with_no_case_at_all_is_a_report(db, core, settings, people):
    assert rx(db, core, settings, "满意", source=OTHER).kind == "report"
    assert [w.text for w in work_items(db)] == ["满意"]


def test_another_citizens_1_does_not_answer_this_citizens_survey(db, core, settings, asked):
    outcome = rx(db, core, settings, "1", source=OTHER)
    assert outcome.kind == "report" and outcome.case_number is None
    case = case_row(db, asked)
    assert case.state == "closed" and case.satisfaction is None and case.reopen_requested is False
    # the citizen who was asked can still answer
    assert rx(db, core, settings, "2", at=T0 + timedelta(minutes=1)).kind == "survey_answer"
    assert case_row(db, asked).satisfaction == "基本满意"


def test_the_latest_closed_case_with_a_pending_survey_is_the_one_answered(db, core, settings, people, clock):
    older = closed_case(db, core, people)
    clock.advance(hours=2)
    newer = closed_case(db, core, people)
    ask_by_sms(db, older)
    ask_by_sms(db, newer)
    assert rx(db, core, settings, "1").case_number == newer
    assert rx(db, core, settings, "3", at=T0 + timedelta(minutes=1)).case_number == older
    assert (case_row(db, newer).satisfaction, case_row(db, older).satisfaction) == ("满意", "不满意")


# ------------------------------------------------------------------ progress

def test_query_alone_answers_with_the_latest_case_of_that_number(db, core, settings, people, clock):
    new_case(db, core)
    clock.advance(minutes=5)
    latest = new_case(db, core)
    new_case(db, core, caller=OTHER)                         # someone else's, newer still
    outcome = rx(db, core, settings, "查询")
    assert (outcome.kind, outcome.case_number) == ("progress", latest)
    [reply] = replies(db)
    assert reply.payload["template"] == "progress" and reply.payload["case_number"] == latest
    assert reply.payload["to"] == PHONE and reply.case_id == case_row(db, latest).id
    [stored] = messages(db)
    assert (stored.kind, stored.case_id) == ("progress", reply.case_id)
    assert work_items(db) == []


def test_query_with_a_number_answers_with_that_case(db, core, settings, people, clock):
    older = new_case(db, core)
    clock.advance(minutes=5)
    newer = new_case(db, core)
    assert rx(db, core, settings, f"查询 {older}").case_number == older
    assert rx(db, core, settings, f"查询{newer.lower()}", at=T0 + timedelta(seconds=1)).case_number == newer
    digits = re.sub(r"\D", "", older)
    assert rx(db, core, settings, f"cx {digits}", at=T0 + timedelta(seconds=2)).case_number == older
    assert rx(db, core, settings, f"CX{digits}", at=T0 + timedelta(seconds=3)).case_number == older
    assert [r.payload["case_number"] for r in replies(db, "progress")] == [older, newer, older, older]
    assert not replies(db, "not_found")


def test_query_alone_with_no_case_is_not_found(db, core, settings, people):
    outcome = rx(db, core, settings, "查询")
    assert (outcome.kind, outcome.case_number) == ("progress", None)
    [reply] = replies(db)
    assert reply.payload == {"to": PHONE, "template": "not_found", "values": {"asked": ""}, "essential": True}


def test_another_numbers_case_and_a_missing_case_get_the_same_not_found(db, core, settings, people):
    mine = new_case(db, core)
    theirs = new_case(db, core, caller=OTHER)
    missing = re.sub(r"\d{5}$", "99999", theirs)
    assert case_row(db, missing) is None
    a = rx(db, core, settings, f"查询 {theirs}")
    b = rx(db, core, settings, f"查询 {missing}", at=T0 + timedelta(seconds=1))
    assert a.kind == b.kind == "progress"
    assert a.case_number is None and b.case_number is None
    found, absent = replies(db)
    assert found.payload["template"] == absent.payload["template"] == "not_found"
    assert set(found.payload) == set(absent.payload) and set(found.payload["values"]) == set(absent.payload["values"])
    assert found.payload["values"] == {"asked": theirs} and absent.payload["values"] == {"asked": missing}
    assert found.case_id is None and absent.case_id is None  # nothing ties the reply to their case
    assert "case_number" not in found.payload
    assert [(m.kind, m.case_id) for m in messages(db)] == [("progress", None), ("progress", None)]
    assert case_row(db, mine).state == case_row(db, theirs).state  # nobody's case was touched


# ------------------------------------------------------------------ reports

def test_a_report_becomes_a_placed_and_categorised_work_item_with_one_receipt(db, core, settings, people):
    outcome = rx(db, core, settings, "福田区华强北路1002号门口井盖丢失了，很危险")
    assert outcome.kind == "report" and outcome.work_item == "DX202611230001"
    [item] = work_items(db)
    assert (item.reference, item.phone, item.state, item.messages) == ("DX202611230001", PHONE, "open", 1)
    assert item.first_at == item.last_at == T0
    assert item.placement["district_code"] == "440304" and "confident" in item.placement
    assert item.category_key is not None and "井盖" in core.catalogue.get(item.category_key).name
    [stored] = messages(db)
    assert (stored.kind, stored.work_item_id, stored.case_id) == ("report", item.id, None)
    [ack] = replies(db)
    assert ack.payload == {"to": PHONE, "template": "report_ack", "values": {"reference": "DX202611230001"},
                           "essential": True}
    assert ack.idempotency_key == f"sms:reply:{stored.id}"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0   # an agent makes the case, not the SMS


def test_references_count_per_local_day(db, core, settings, people):
    assert rx(db, core, settings, "井盖丢失").work_item == "DX202611230001"
    assert rx(db, core, settings, "路灯坏了", source=OTHER).work_item == "DX202611230002"
    # 17:30 UTC is 01:30 on the 24th in Shenzhen: a new local day, a new sequence
    night = T0.replace(hour=17, minute=30)
    assert rx(db, core, settings, "垃圾没清", source="13700137000", at=night).work_item == "DX202611240001"


def test_a_burst_from_one_number_is_one_work_item_and_one_receipt(db, core, settings, people):
    outcomes = [rx(db, core, settings, f"第{i}条：福田区华强北路井盖丢失", at=T0 + timedelta(seconds=10 * i),
                   smsc_id=f"b{i}") for i in range(50)]
    assert {o.kind for o in outcomes} == {"report"}
    assert {o.work_item for o in outcomes} == {"DX202611230001"}
    [item] = work_items(db)
    assert item.messages == 50 and item.first_at == T0 and item.last_at == T0 + timedelta(seconds=490)
    assert item.text.split("\n") == [f"第{i}条：福田区华强北路井盖丢失" for i in range(50)]
    assert len(replies(db)) == 1 and len(replies(db, "report_ack")) == 1
    assert {m.work_item_id for m in messages(db)} == {item.id} and len(messages(db)) == 50


def test_after_the_flood_window_a_new_item_and_a_new_receipt(db, core, settings, people):
    window = timedelta(seconds=settings.sms_flood_window_seconds)
    first = rx(db, core, settings, "井盖丢失")
    same = rx(db, core, settings, "还在那里", at=T0 + window)                       # at the edge: still the burst
    later = rx(db, core, settings, "又坏了一个", at=T0 + 2 * window + timedelta(seconds=1))
    assert first.work_item == same.work_item != later.work_item
    assert [(w.reference, w.messages) for w in work_items(db)] == [(first.work_item, 2), (later.work_item, 1)]
    assert [r.payload["values"]["reference"] for r in replies(db, "report_ack")] == [first.work_item, later.work_item]


def test_two_numbers_are_two_items(db, core, settings, people):
    a = rx(db, core, settings, "井盖丢失")
    b = rx(db, core, settings, "井盖丢失", source=OTHER, at=T0 + timedelta(seconds=1))
    assert a.work_item != b.work_item
    assert sorted((w.phone, w.messages) for w in work_items(db)) == [(PHONE, 1), (OTHER_PHONE, 1)]
    assert sorted(r.payload["to"] for r in replies(db, "report_ack")) == [PHONE, OTHER_PHONE]


def test_a_query_or_opt_out_inside_a_burst_does_not_join_the_item(db, core, settings, people):
    rx(db, core, settings, "井盖丢失")
    assert rx(db, core, settings, "查询", at=T0 + timedelta(seconds=1)).kind == "progress"
    assert rx(db, core, settings, "TD", at=T0 + timedelta(seconds=2)).kind == "opt_out"
    assert rx(db, core, settings, "在华强北路", at=T0 + timedelta(seconds=3)).kind == "report"
    [item] = work_items(db)
    assert item.messages == 2 and item.text == "井盖丢失\n在华强北路"


# ------------------------------------------------------------------ two at once

def overlapping(db, core, settings, first: MO, second: MO) -> tuple[Outcome, Outcome | BaseException]:
    """`second` is received in another connection while `first`'s transaction is still open, as two
    connector threads (or two SMPP binds) would; returns both outcomes, or the second one's exception."""
    done: list = []
    started = threading.Event()

    def other() -> None:
        started.set()
        try:
            with db.session() as s:
                done.append(receive(s, core, settings, second))
        except BaseException as exc:  # reported to the test below
            done.append(exc)

    with db.session() as s:
        a = receive(s, core, settings, first)
        thread = threading.Thread(target=other)
        thread.start()
        started.wait()
        # give the second a moment to reach its lock before the first commits; a plain sleep, not a
        # timed join: a timed lock wait misbehaves when the wall clock is moved (faketime)
        time.sleep(0.3)
    thread.join()   # a hang is pytest-timeout's to report
    assert len(done) == 1
    return a, done[0]



def test_two_messages_of_a_burst_at_once_are_still_one_item(db, core, settings, people, request):
    a, b = overlapping(db, core, settings, MO(CALLER, "井盖丢失", smsc_id="c1", at=T0),
                       MO(CALLER, "在华强北路", smsc_id="c2", at=T0 + timedelta(seconds=1)))
    assert not isinstance(b, BaseException), b
    assert a.kind == b.kind == "report" and a.work_item == b.work_item
    assert [w.messages for w in work_items(db)] == [2]
    assert len(replies(db, "report_ack")) == 1


def test_two_opt_outs_at_once_do_not_raise(db, core, settings, people, request):
    a, b = overlapping(db, core, settings, MO(CALLER, "TD", smsc_id="t1", at=T0),
                       MO(CALLER, "退订", smsc_id="t2", at=T0 + timedelta(seconds=1)))
    assert not isinstance(b, BaseException), b
    assert a.kind == b.kind == "opt_out"
    with db.session() as s:
        assert s.scalars(select(SmsOptOut.phone)).all() == [PHONE]
    assert len(replies(db, "opt_out")) == 2


def test_the_same_mo_delivered_twice_at_once_is_a_duplicate_not_an_error(db, core, settings, people, request):
    mo = MO(CALLER, "井盖丢失", smsc_id="same", at=T0)
    a, b = overlapping(db, core, settings, mo, mo)
    assert not isinstance(b, BaseException), b
    assert (a.kind, b.kind) == ("report", "duplicate")
    assert len(messages(db)) == 1 and len(replies(db)) == 1


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("text, stored_text, truncated_from", [
    ("井" * 5000, "井" * 5000, None),
    ("盖" * 6000, "盖" * MAX_TEXT, 6000),
    ("😀🚧 井盖没了 𠀀𝔘", "😀🚧 井盖没了 𠀀𝔘", None),
    ("井盖\x00丢失\x00", "井盖丢失", None),
    ("", "", None),
    (" \t\n\u3000 ", " \t\n\u3000 ", None),
    ("\x07\x1b[31m红\x7f\u200b\ufeff", "\x07\x1b[31m红\x7f\u200b\ufeff", None),
], ids=["5000-chars", "6000-chars", "emoji-astral", "nul", "empty", "whitespace", "control"])
def test_bad_input_is_stored_and_never_raises(db, core, settings, people, text, stored_text, truncated_from):
    outcome = rx(db, core, settings, text)
    assert outcome.kind in KINDS - {"duplicate", "unusable"} and outcome.message_id is not None
    [stored] = messages(db)
    assert stored.id == outcome.message_id and stored.text == stored_text and stored.phone == PHONE
    if truncated_from is None:
        assert "truncated_from" not in stored.data
    else:
        assert stored.data["truncated_from"] == truncated_from
    assert all(len(w.text) <= MAX_TEXT for w in work_items(db))
    if not stored_text.strip():   # nothing to answer or to work on: kept, no item, no reply
        assert outcome.kind == "empty" and work_items(db) == [] and replies(db) == []


def test_a_long_message_resent_is_still_a_duplicate(db, core, settings, people):
    text = "长" * 6000
    rx(db, core, settings, text, smsc_id="l1")
    assert rx(db, core, settings, text, smsc_id="l2", at=T0 + timedelta(minutes=1)).kind == "duplicate"
    assert len(messages(db)) == 1


def test_a_none_text_is_stored_as_empty(db, core, settings, people):
    outcome = rx(db, core, settings, None)
    assert outcome.kind == "empty" and outcome.message_id is not None
    assert [m.text for m in messages(db)] == [""]


# ------------------------------------------------------------------ fuzz

NUMBERS = st.sampled_from(["13800138000", "+8613800138000", "8613800138000", "13900139000", "12319", "10657123456"])
SOURCES = st.one_of(NUMBERS, st.text(max_size=60))
PREFIXES = st.sampled_from(["", "查询", "CX", "cx ", "TD", "1", "满意", "退订", "查询 E0102"])
TEXTS = st.one_of(st.text(max_size=300), st.builds(lambda p, t: p + t, PREFIXES, st.text(max_size=30)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=SOURCES, text=TEXTS, offset=st.integers(min_value=0, max_value=3 * 24 * 3600),
       smsc_id=st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=1, max_size=20)))
def test_receive_never_raises(db, core, settings, people, source, text, offset, smsc_id):
    with db.session() as s:
        outcome = receive(s, core, settings, MO(source=source, text=text, smsc_id=smsc_id,
                                                at=T0 + timedelta(seconds=offset)))
    assert outcome.kind in KINDS
    if outcome.kind != "duplicate":
        with db.session() as s:
            stored = s.get(SmsMessage, outcome.message_id)
            assert stored is not None and stored.kind == outcome.kind
            assert "\x00" not in stored.text and len(stored.text) <= MAX_TEXT


@hsettings(max_examples=500, deadline=None)
@given(st.text())
def test_canonical_never_raises(text):
    words = canonical(text)
    assert isinstance(words, str)
    assert words == words.strip()
    assert not re.search(r"\s\s", words)
