"""The case core on SQLite and PostgreSQL: creation, numbering, idempotency, workflow,
deadlines, repeats, and the timeline."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from case_bridge import (ActionIn, Case, CaseEvent, CaseInputError, CaseLink, HandlingUnit, IdempotencyConflict,
                         NewCase, OutboxItem, WorkflowError)
from hotline.accounts import SYSTEM
from tests.support.threads import run_concurrently


def new(**kw) -> NewCase:
    base = dict(description="小区门口垃圾堆了三天没人清", category_key="E0102", caller_phone="13800138000",
                address_text="福田区华强北路1002号", district_code="440304")
    base.update(kw)
    return NewCase(**base)


def create(db, core, actor, **kw):
    with db.session() as s:
        result = core.create_case(s, new(**kw), actor)
        return result.case.number, result


def act(db, core, number, action, actor, **params):
    with db.session() as s:
        case = core.apply_action(s, number, action, actor, ActionIn(**params))
        return case.state


def timeline(db, number):
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        return [(e.action, e.from_state, e.to_state, e.actor) for e in
                s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))]


def test_number_format_and_daily_sequence(db, core, people, clock):
    a, _ = create(db, core, people["agent1"])
    b, _ = create(db, core, people["agent1"])
    c, _ = create(db, core, people["agent1"], category_key="C0101", description="井盖没了")
    d, _ = create(db, core, people["agent1"], category_key=None, request_type="咨询", description="问一下垃圾分类时间")
    assert (a, b, c, d) == ("E0102202611230001", "E0102202611230002", "C0101202611230001", "Z0000202611230001")
    clock.t = clock.t.replace(hour=16, minute=30)  # 00:30 on the 24th in Shenzhen: a new local day
    assert create(db, core, people["agent1"])[0] == "E0102202611240001"


def test_numbers_unique_under_concurrent_creation(db, core, people):
    numbers = []

    def worker():
        for _ in range(10):
            numbers.append(create(db, core, people["agent1"])[0])

    run_concurrently(worker, threads=6)
    assert len(numbers) == 60 and len(set(numbers)) == 60
    assert sorted(int(n[-4:]) for n in numbers) == list(range(1, 61))


def test_idempotent_create_returns_the_existing_case(db, core, people):
    first, r1 = create(db, core, people["agent1"], idempotency_key="call-1700000000.42")
    again, r2 = create(db, core, people["agent1"], idempotency_key="call-1700000000.42")
    assert r1.created and not r2.created and first == again
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 1
        assert s.scalar(select(func.count()).select_from(OutboxItem)) == 1  # one receipt, not two


@pytest.mark.parametrize("change", [{"description": "另一处：路灯不亮"}, {"category_key": "C0101"},
                                    {"caller_phone": "13900139000"}])
def test_a_reused_key_with_a_different_request_is_refused_not_swallowed(db, core, people, change):
    first, _ = create(db, core, people["agent1"], idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict, match=first):
        create(db, core, people["agent1"], idempotency_key="k-1", **change)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 1


def test_concurrent_retries_with_one_key_make_one_case(db, core, people):
    results = []
    run_concurrently(lambda: results.append(create(db, core, people["agent1"], idempotency_key="sms-msgid-77")[0]),
                     threads=8)
    assert len(results) == 8 and len(set(results)) == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 1


def test_confident_placement_is_filed_and_dispatched_with_a_deadline(db, core, people):
    number, _ = create(db, core, people["agent1"], place_confirmed=True)
    assert [t[:3] for t in timeline(db, number)] == [
        ("create", None, "intake"), ("file", "intake", "filed"), ("dispatch", "filed", "dispatched")]
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        assert case.handling_unit_code == "440304" and case.limit_label == "4 工作时"
        # Monday 09:00 + 4 working hours (08:30-12:00, 13:30-18:00) = 14:30 local = 06:30 UTC
        assert case.due_at.strftime("%Y-%m-%d %H:%M") == "2026-11-23 06:30"
        texts = s.scalars(select(OutboxItem.payload).where(OutboxItem.case_id == case.id)).all()
        assert [t["template"] for t in texts] == ["receipt", "dispatched"]   # to the citizen


def test_unsure_placement_waits_for_the_dispatcher(db, core, people):
    number, _ = create(db, core, people["agent1"])
    with db.session() as s:
        assert [c.number for c in core.dispatcher_queue(s)] == [number]


def test_full_workflow_with_every_step_on_the_timeline(db, core, people, clock):
    n, _ = create(db, core, people["agent1"])
    assert act(db, core, n, "dispatch", people["disp1"], unit_code="440304") == "dispatched"
    assert act(db, core, n, "accept", people["futian1"]) == "in_progress"
    clock.advance(hours=1)
    assert act(db, core, n, "report_result", people["futian1"], note="已清运") == "reported"
    assert act(db, core, n, "reject_result", people["agent1"], note="现场仍有垃圾") == "reopened"
    assert act(db, core, n, "dispatch", people["disp1"]) == "dispatched"
    assert act(db, core, n, "accept", people["futian1"]) == "in_progress"
    assert act(db, core, n, "report_result", people["futian1"], note="已全部清运") == "reported"
    assert act(db, core, n, "verify", people["agent1"]) == "verified"
    assert act(db, core, n, "close", people["disp1"]) == "closed"
    assert act(db, core, n, "record_satisfaction", SYSTEM, answer="不满意") == "surveyed"
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == n))
        assert case.reopen_requested and case.state == "surveyed"  # a request, not a silent reopen
        assert case in core.dispatcher_queue(s)
    assert act(db, core, n, "reopen", people["disp1"], note="市民不满意，重办") == "reopened"
    steps = timeline(db, n)
    assert [s[0] for s in steps] == ["create", "file", "dispatch", "accept", "report_result", "reject_result",
                                     "dispatch", "accept", "report_result", "verify", "close",
                                     "record_satisfaction", "reopen"]
    assert steps[3][3] == "futian1" and steps[11][3] == "system"
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == n))
        assert case.rework_count == 2 and not case.reopen_requested
        rows = s.scalars(select(OutboxItem).where(OutboxItem.case_id == case.id).order_by(OutboxItem.id)).all()
        assert [(r.kind, r.payload.get("template")) for r in rows] == [
            ("sms", "receipt"), ("sms", "dispatched"), ("sms", "dispatched"), ("sms", "result"), ("survey_call", None)]


@pytest.mark.parametrize("action, actor, words, status", [
    ("accept", "agent1", "may not 签收", 403),
    ("close", "disp1", r"cannot 结案 \(close\) a case in state 派遣", 409),
    ("accept", "nanshan1", "not handled by your unit", 403),
    ("return", "futian1", "needs a note", 422),
    ("teleport", "disp1", "unknown action", 422),
])
def test_wrong_transitions_are_refused_and_change_nothing(db, core, people, action, actor, words, status):
    n, _ = create(db, core, people["agent1"], place_confirmed=True)
    before = timeline(db, n)
    with pytest.raises(WorkflowError, match=words) as info:
        act(db, core, n, action, people[actor])
    assert info.value.status == status
    assert timeline(db, n) == before


def test_return_goes_back_to_the_dispatcher_and_stops_the_clock(db, core, people):
    n, _ = create(db, core, people["agent1"], place_confirmed=True)
    assert act(db, core, n, "return", people["futian1"], note="不属于本区，应为南山区") == "returned"
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == n))
        assert case.due_at is None and case in core.dispatcher_queue(s)
    assert act(db, core, n, "dispatch", people["disp1"], unit_code="440305") == "dispatched"
    assert act(db, core, n, "accept", people["nanshan1"]) == "in_progress"


def test_deadline_lights_extension_and_suspension(db, core, people, clock):
    n, _ = create(db, core, people["agent1"], place_confirmed=True)  # 4 工作时 from Monday 09:00
    light = lambda: core.light(_get(db, n))  # noqa: E731
    clock.advance(hours=3)  # 12:00 → 3 of 4 working hours used
    assert light() == "green"
    clock.advance(hours=2)  # 14:00 → 3.5 h used = 87.5 %
    assert light() == "amber"
    act(db, core, n, "accept", people["futian1"])
    act(db, core, n, "request_extension", people["futian1"], note="需协调环卫车辆", minutes=240)
    assert _get(db, n).pending_extension_minutes == 240
    act(db, core, n, "approve_extension", people["disp1"])
    assert light() == "green"  # 3.5 of 8 h
    act(db, core, n, "suspend", people["disp1"], note="涉及产权纠纷，挂账")
    clock.advance(days=3)
    assert core.light(_get(db, n)) == "green"  # the clock stopped
    act(db, core, n, "resume", people["disp1"])
    case = _get(db, n)
    clock.advance(hours=5)  # Thursday 19:00: 3.5 h + 4 h of 8 h
    assert core.light(case) == "amber"
    clock.advance(hours=15)  # Friday 10:00: 3.5 + 4 + 1.5 h
    assert core.light(case) == "red"
    with pytest.raises(WorkflowError, match="no extension has been requested"):
        act(db, core, n, "approve_extension", people["disp1"])


def _get(db, number):
    with db.session() as s:
        return s.scalar(select(Case).where(Case.number == number))


def test_consultation_answered_on_the_call_is_closed_at_intake(db, core, people):
    n, _ = create(db, core, people["agent1"], category_key=None, request_type="咨询",
                  description="问大件垃圾怎么预约", answer="已告知拨打街道环卫所预约")
    assert [t[:3] for t in timeline(db, n)] == [("create", None, "intake"), ("answer", "intake", "closed")]


@pytest.mark.parametrize("kw, words", [
    (dict(category_key="E9999"), "unknown category 'E9999'"),
    (dict(caller_phone="1234"), "caller_phone"),
    (dict(description="很长" * 1500), "at most 2000 are kept"),
    (dict(district_code="110101"), "not a district this hotline serves"),
    (dict(category_key=None), "needs a CJ/T 214 category"),
    (dict(lat=22.5), "give both or neither"),
])
def test_bad_input_is_refused_and_nothing_is_written(db, core, people, kw, words):
    with pytest.raises(CaseInputError, match=words):
        create(db, core, people["agent1"], **kw)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0
        assert s.scalar(select(func.count()).select_from(CaseEvent)) == 0


def test_possible_repeats_are_flagged_not_merged(db, core, people, clock):
    first, _ = create(db, core, people["agent1"], lat=22.5400, lon=114.0800)
    _, near = create(db, core, people["agent1"], lat=22.5402, lon=114.0801)        # ~25 m away
    _, far = create(db, core, people["agent1"], lat=22.5500, lon=114.0800)         # ~1.1 km away
    _, other_kind = create(db, core, people["agent1"], lat=22.5400, lon=114.0800, category_key="E0505")
    _, grid = create(db, core, people["agent1"], grid_code="44030400100101", lat=None, lon=None)
    _, same_grid = create(db, core, people["agent1"], grid_code="44030400100101")
    clock.advance(hours=100)
    _, late = create(db, core, people["agent1"], lat=22.5400, lon=114.0800)       # outside the 72 h window
    assert near.possible_duplicates == [first]
    assert far.possible_duplicates == [] and other_kind.possible_duplicates == [] and late.possible_duplicates == []
    assert same_grid.possible_duplicates == [grid.case.number]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 7  # nothing merged
    act(db, core, near.case.number, "void", people["disp1"], note="重复发案", duplicate_of=first)
    with db.session() as s:
        link = s.scalar(select(CaseLink).where(CaseLink.case_id == near.case.id))
        assert link.status == "confirmed"


def test_district_sees_only_its_own_cases(db, core, people):
    mine, _ = create(db, core, people["agent1"], place_confirmed=True)
    theirs, _ = create(db, core, people["agent1"], place_confirmed=True, district_code="440305")
    with db.session() as s:
        assert [c.number for c in core.list_cases(s, people["futian1"])] == [mine]
        assert {c.number for c in core.list_cases(s, people["super1"])} == {mine, theirs}
        with pytest.raises(LookupError):
            core.get_case(s, theirs, people["futian1"])


def test_dapeng_streets_go_to_the_dapeng_centre(db, core, people):
    n, _ = create(db, core, people["agent1"], district_code="440307", street_code="440307010", place_confirmed=True)
    assert _get(db, n).handling_unit_code == "dapeng"
    n2, _ = create(db, core, people["agent1"], district_code="440307", street_code="440307014", place_confirmed=True)
    assert _get(db, n2).handling_unit_code == "440307"


def test_timeline_is_append_only_in_the_orm_and_in_the_database(db, core, people):
    n, _ = create(db, core, people["agent1"])
    with pytest.raises(PermissionError):
        with db.session() as s:
            event = s.scalar(select(CaseEvent).limit(1))
            event.note = "改写历史"
    for sql in ("UPDATE case_events SET note = 'x'", "DELETE FROM case_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.session() as s:
                s.execute(text(sql))
    assert len(timeline(db, n)) == 2


def test_overdue_cases_are_urged_once(db, core, people, clock, monkeypatch):
    from case_bridge import worker
    n, _ = create(db, core, people["agent1"], place_confirmed=True)
    case = _get(db, n)
    monkeypatch.setenv("HOTLINE_DATABASE_URL", db.url)
    worker.get_settings.cache_clear()
    worker._db.cache_clear()
    worker._core.cache_clear()
    with db.session() as s:  # move the deadline into the past
        s.execute(text("UPDATE cases SET due_at = :t WHERE id = :id"), {"t": (case.due_at - timedelta(days=30)).replace(tzinfo=None), "id": case.id})
        s.get(HandlingUnit, "440304").contact_phone = "+8613900000304"
    assert worker.urge_overdue() == 1
    assert worker.urge_overdue() == 0
    assert [t[0] for t in timeline(db, n)][-1] == "urge"
    assert _get(db, n).urged_count == 1
    with db.session() as s:   # the district centre's contact is texted too
        urges = [r.payload for r in s.scalars(select(OutboxItem).where(OutboxItem.case_id == case.id))
                 if r.payload.get("template") == "urge"]
    assert urges == [{"to": "+8613900000304", "template": "urge", "case_number": n, "essential": True}]
    worker._db.cache_clear()
    worker._core.cache_clear()


def test_number_pattern():
    assert re.fullmatch(r"[CEZ]\d{4}\d{8}\d{4,}", "E0102202611230001")
