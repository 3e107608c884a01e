"""The SMS channel end to end: our SMPP connector and service against the fake SMSC, over real sockets."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from case_bridge import outbox, seed_units
from case_bridge.models import Case, CaseEvent, OutboxItem
from hotline.bus import InProcessBus
from sms.models import SmsMessage, SmsPart, SmsWorkItem
from sms.service import SmsService
from tests.support.waiting import until
from tests.support.smsc import FakeSMSC

LONG = "您反映的华强北路井盖缺失问题已由福田区城市管理局处置完毕，现场已更换新的井盖并设置警示标志。" * 3




def db_count(db, stmt) -> int:
    with db.session() as s:
        return s.scalar(stmt)


@pytest.fixture
async def smsc():
    fake = await FakeSMSC.start(system_id="hotline", password="secret")
    yield fake
    await fake.stop()


@pytest.fixture
async def channel(settings, db, core, smsc):
    settings.smpp_port, settings.smpp_password = smsc.port, "secret"
    settings.sms_quiet_start, settings.sms_quiet_end = settings.sms_quiet_end, settings.sms_quiet_end  # never quiet
    settings.smpp_rate_per_second = 0
    with db.session() as s:
        seed_units(s)
    bus = InProcessBus()
    service = SmsService(settings, db, core, bus)
    await service.start()
    await until(lambda: service.connector.status == "bound", what="bind")
    yield service
    await service.stop()


def enqueue_text(db, template: str, to: str = "+8613800138000", key: str = "t1", **values) -> None:
    with db.session() as s:
        outbox.enqueue(s, "sms", {"to": to, "template": template, "values": values, "essential": True}, key=key)


async def test_a_long_chinese_text_goes_out_in_parts_and_receipts_aggregate(channel, smsc, db):
    smsc.auto_receipts = True
    enqueue_text(db, "result", number="E0102202611230001", result=LONG)
    await until(lambda: db_count(db, select(func.count()).select_from(SmsMessage)
                                 .where(SmsMessage.status == "delivered")) == 1, what="delivered")
    # the receipts may arrive before the sender has written its row done
    await until(lambda: db_count(db, select(func.count()).select_from(OutboxItem)
                                 .where(OutboxItem.kind == "sms", OutboxItem.status == "done")) == 1, what="row done")
    (destination, text), = smsc.texts()
    assert destination == "13800138000" and "【12319城建热线】" in text and "E0102202611230001" in text
    with db.session() as s:
        message = s.scalar(select(SmsMessage))
        parts = s.scalars(select(SmsPart).where(SmsPart.message_id == message.id)).all()
        row = s.scalar(select(OutboxItem).where(OutboxItem.kind == "sms"))
    assert message.parts == len(parts) == len(smsc.submits) >= 2
    assert {p.status for p in parts} == {"delivered"} and row.status == "done"
    assert all(sub.data_coding == 8 and sub.udh is not None for sub in smsc.submits)


async def test_a_report_by_sms_gets_a_receipt_and_a_work_item(channel, smsc, db):
    await smsc.send_mo("8613800138000", "福田区华强北路有个井盖丢了，很危险")
    await until(lambda: len(smsc.submits) == 1, what="receipt")
    with db.session() as s:
        item = s.scalar(select(SmsWorkItem))
    assert item.placement["district_code"] == "440304" and item.category_key
    (_, text), = smsc.texts()
    assert item.reference in text


async def test_a_concatenated_mo_is_joined_before_it_is_classified(channel, smsc, db):
    await smsc.send_long_mo("8613800138000", "龙岗区布吉街道" + "垃圾堆积很久没人清理" * 20)
    await until(lambda: db_count(db, select(func.count()).select_from(SmsWorkItem)) == 1, what="item")
    with db.session() as s:
        item = s.scalar(select(SmsWorkItem))
    assert item.text.startswith("龙岗区布吉街道") and len(item.text) == 7 + 200 and item.messages == 1


async def test_an_sms_survey_answer_is_recorded(channel, smsc, db, core, people):
    from tests.support.cases import closed_case
    number = closed_case(db, core, people)
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
        outbox.enqueue(s, "sms", {"to": "+8613800138000", "template": "survey", "case_number": number},
                       key=f"sms:survey:{case_id}", case_id=case_id)
    await until(lambda: any("满意" in t for _, t in smsc.texts()), what="survey text")
    await smsc.send_mo("8613800138000", "3")
    await until(lambda: db_count(db, select(func.count()).select_from(Case).where(Case.satisfaction == "不满意")) == 1,
                what="answer")
    with db.session() as s:
        assert s.scalar(select(Case.reopen_requested).where(Case.id == case_id)) is True


async def test_throttling_is_waited_out_and_nothing_is_lost(channel, smsc, db):
    smsc.throttle_next = 3
    enqueue_text(db, "opt_out")
    await until(lambda: len(smsc.submits) == 1, what="submit after throttling")
    assert len(smsc.rejected_submits) == 3


async def test_a_lost_link_mid_message_resends_only_the_unacknowledged_parts(channel, smsc, db):
    smsc.drop_after_submits = 1       # the SMSC closes right after acknowledging part 1
    enqueue_text(db, "result", number="E0102202611230001", result=LONG)
    await until(lambda: smsc.drops >= 1, what="drop")
    smsc.drop_after_submits = None
    await until(lambda: channel.connector.status == "bound" and channel.connector.binds >= 2, what="re-bind")
    with db.session() as s:   # the row backs off after the failure; make it due now
        row = s.scalar(select(OutboxItem).where(OutboxItem.kind == "sms"))
        row.available_at = row.due_at
    await until(lambda: db_count(db, select(func.count()).select_from(SmsMessage)
                                 .where(SmsMessage.status == "submitted")) == 1, what="all parts", timeout=15)
    seqs = sorted(sub.udh.seq for sub in smsc.submits)
    assert seqs == list(range(1, seqs[-1] + 1))          # every part exactly once
    (_, text), = smsc.texts()
    assert LONG[:40] in text


@pytest.mark.parametrize("system_id, password, never_answer, status, words", [
    ("hotline", "wrong", False, "bind_refused", "wrong password"),
    ("nobody", "secret", False, "bind_refused", "unknown system id"),
    ("hotline", "secret", True, "unreachable", "timed out"),
])
async def test_a_refused_bind_says_why_and_a_silent_smsc_is_a_timeout(settings, db, core, smsc, system_id, password,
                                                                       never_answer, status, words):
    smsc.never_answer = never_answer
    settings.smpp_port, settings.smpp_system_id, settings.smpp_password = smsc.port, system_id, password
    service = SmsService(settings, db, core)
    service.connector.connect_timeout = 1.0
    await service.start()
    try:
        await until(lambda: service.connector.status == status, what=status)
        assert words in service.connector.last_error
    finally:
        await service.stop()


async def test_service_numbers_and_landlines_are_never_texted(channel, smsc, db):
    enqueue_text(db, "opt_out", to="12319", key="a")
    enqueue_text(db, "opt_out", to="075583001234", key="b")
    await until(lambda: db_count(db, select(func.count()).select_from(OutboxItem)
                                 .where(OutboxItem.status == "failed")) == 2, what="both refused")
    assert smsc.submits == []


async def test_a_final_failure_receipt_is_noted_on_the_case(channel, smsc, db, core, people):
    from tests.support.cases import new_case
    number = new_case(db, core)
    smsc.auto_receipts, smsc.auto_receipt_stat = True, "UNDELIV"
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
    # the case texts the citizen twice (the receipt, and the dispatch notice): each failure is noted once
    await until(lambda: db_count(db, select(func.count()).select_from(CaseEvent)
                                 .where(CaseEvent.case_id == case_id, CaseEvent.action == "sms_undelivered")) == 2,
                what="two undelivered notes")
    with db.session() as s:
        notes = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id,
                                                  CaseEvent.action == "sms_undelivered")).all()
        messages = s.scalars(select(SmsMessage).where(SmsMessage.case_id == case_id,
                                                      SmsMessage.direction == "out")).all()
        parts = s.scalars(select(SmsPart).where(SmsPart.message_id.in_([m.id for m in messages]))).all()
    assert sorted(n.data["sms_id"] for n in notes) == sorted(m.id for m in messages) and len(messages) == 2
    assert all("UNDELIV" in n.note for n in notes)
    assert all(m.status == "failed" for m in messages) and parts and all(p.status == "failed" for p in parts)
    assert all("UNDELIV" in p.error for p in parts)


async def test_the_api_shows_the_link_and_the_work_list(channel, smsc, db, settings, people):
    import httpx

    from agent_ui import create_app
    app = create_app(settings, db=db)
    app.state.sms = channel
    await smsc.send_mo("8613900139000", "南山区科技园路边垃圾没人清")
    await until(lambda: db_count(db, select(func.count()).select_from(SmsWorkItem)) == 1, what="item")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        status = (await http.get("/api/v1/sms/status", headers=people.auth("agent1"))).json()
        inbox = (await http.get("/api/v1/sms/inbox", headers=people.auth("agent1"))).json()
        made = await http.post(f"/api/v1/sms/inbox/{inbox[0]['id']}/case", headers=people.auth("agent1"),
                               json={"description": inbox[0]["text"], "category_key": inbox[0]["suggested_category"]
                                     or "E0102", "address_text": "南山区科技园"})
        again = await http.post(f"/api/v1/sms/inbox/{inbox[0]['id']}/case", headers=people.auth("agent1"),
                                json={"description": "x", "category_key": "E0102"})
        district = await http.get("/api/v1/sms/inbox", headers=people.auth("futian1"))
    assert status["status"] == "bound" and status["received"] == 1
    assert inbox[0]["placement"]["district_code"] == "440305" and inbox[0]["phone"] == "+8613900139000"
    assert made.status_code == 201 and made.json()["channel"] == "sms"
    assert made.json()["caller_phone"] == "+8613900139000"
    assert again.status_code == 404 and district.status_code == 403


async def test_opt_outs_and_quiet_hours_hold_back_non_essential_texts(channel, smsc, db, settings):
    from datetime import datetime, time, timezone

    from sms.models import SmsOptOut
    with db.session() as s:
        s.add(SmsOptOut(phone="+8613800138000", via="TD"))
        outbox.enqueue(s, "sms", {"to": "+8613800138000", "template": "survey", "values": {"number": "E1"}},
                       key="survey-opted-out")
        outbox.enqueue(s, "sms", {"to": "+8613800138000", "template": "opt_out", "values": {}}, key="essential")
    await until(lambda: db_count(db, select(func.count()).select_from(OutboxItem)
                                 .where(OutboxItem.status == "done")) == 2, what="both rows done")
    with db.session() as s:
        skipped = s.scalar(select(OutboxItem.result).where(OutboxItem.idempotency_key == "survey-opted-out"))
    assert "opted out" in skipped["skipped"] and len(smsc.submits) == 1   # only the essential one went
    settings.sms_quiet_start, settings.sms_quiet_end = time(21, 0), time(8, 0)
    at_night = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)           # 23:00 in Shenzhen
    assert channel.sender.after_quiet_hours(at_night) == datetime(2026, 11, 24, 8, 0, tzinfo=settings.zone)
    assert channel.sender.after_quiet_hours(datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)) is None  # 12:00


async def test_a_work_item_merged_into_an_open_case(channel, smsc, db, core, people):
    from sms import inbox
    from tests.support.cases import new_case
    number = new_case(db, core)
    await smsc.send_mo("8613700137000", "华强北路井盖还没修好")
    await until(lambda: db_count(db, select(func.count()).select_from(SmsWorkItem)) == 1, what="item")
    with db.session() as s:
        item_id = s.scalar(select(SmsWorkItem.id))
        inbox.merge(s, core, item_id, number, people["agent1"])
    with db.session() as s:
        item = s.get(SmsWorkItem, item_id)
        note = s.scalar(select(CaseEvent).where(CaseEvent.action == "sms_merged"))
        assert item.state == "merged" and note.case_id == item.case_id and "井盖还没修好" in note.note
        assert inbox.open_items(s) == []


@pytest.mark.parametrize("finished", ["closed", "void"])
async def test_a_work_item_cannot_join_a_closed_or_void_case(channel, smsc, db, core, people, finished):
    from case_bridge import ActionIn, WorkflowError
    from sms import inbox
    from tests.support.cases import closed_case, new_case
    if finished == "closed":
        number = closed_case(db, core, people)
    else:
        number = new_case(db, core)
        with db.session() as s:
            core.apply_action(s, number, "void", people["disp1"], ActionIn(note="重复"))
    await smsc.send_mo("8613700137000", "华强北路井盖还没修好")
    await until(lambda: db_count(db, select(func.count()).select_from(SmsWorkItem)) == 1, what="item")
    with db.session() as s:
        item_id = s.scalar(select(SmsWorkItem.id))
    with pytest.raises(WorkflowError, match="not open") as refused, db.session() as s:
        inbox.merge(s, core, item_id, number, people["agent1"])
    assert refused.value.status == 409
    with db.session() as s:
        assert s.get(SmsWorkItem, item_id).state == "open"
        assert s.scalar(select(CaseEvent).where(CaseEvent.action == "sms_merged")) is None


async def test_garbled_pdus_and_odd_codings_lose_nothing(channel, smsc, db):
    # an unknown command, then a PDU too short to be one: the session goes on (or is bound again)
    await smsc.send_raw(b"\x00\x00\x00\x10\x00\x00\x07\x77\x00\x00\x00\x00\x00\x00\x00\x63")
    await smsc.send_raw(b"\x00\x00\x00\x09\x00\x00\x00\x05\x00")
    for source, data, coding in (("8613800138000", "井盖".encode("utf-16-be") + b"\x4e", 8),   # odd UCS-2
                                 ("8613800138001", b"\x01\x02\xff", 0xF6)):                 # binary SIM data
        for _ in range(50):   # smpp34 may drop the link over the garbage: deliver once it is bound again
            await asyncio.sleep(0.1)
            if channel.connector.status != "bound" or smsc.sessions_bound != 1:
                continue
            try:
                await smsc.send_deliver_sm(source, "12319", data, data_coding=coding)
                break
            except ConnectionError:
                continue
    await until(lambda: db_count(db, select(func.count()).select_from(SmsMessage)
                                 .where(SmsMessage.direction == "in")) == 2, what="both stored")
    with db.session() as s:
        texts = dict(s.execute(select(SmsMessage.phone, SmsMessage.text).where(SmsMessage.direction == "in")).all())
    assert texts["+8613800138000"].startswith("井盖") and texts["+8613800138001"] == "0102ff"


async def test_two_long_texts_to_one_phone_at_once_never_share_a_concatenation_reference(channel, smsc, db):
    smsc.auto_receipts = True
    # two keys whose 8-bit hashes collide (the old reference was sha256(key) % 256: 16 for both)
    enqueue_text(db, "result", key="sms:receipt:7", number="E0102202611230001", result=LONG)
    enqueue_text(db, "result", key="sms:dispatched:7:809", number="E0102202611230002", result=LONG)
    await until(lambda: db_count(db, select(func.count()).select_from(SmsMessage)
                                 .where(SmsMessage.status == "delivered")) == 2, what="both delivered")
    refs: dict[int, set[int]] = {}
    for sub in smsc.submits:
        assert sub.udh is not None and sub.udh.ref_bits == 8
        refs.setdefault(sub.udh.ref, set()).add(sub.udh.total)
    assert len(refs) == 2, refs      # one reference per message, so the handset cannot stitch them together
