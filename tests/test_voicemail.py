"""Voicemails as the agents' work items: reported by the PBX over AMI, listed, heard, made a case,
joined to an open case or dismissed with a reason — and only by the roles that work the list."""
from __future__ import annotations

import asyncio
import wave

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_ui import create_app
from case_bridge.models import Case
from hotline.bus import InProcessBus
from ivr.ami import AMIClient
from ivr.models import Call
from ivr.recorder import CallRecorder
from tests.support.cases import closed_case, new_case
from tests.support.fake_ami import FakeAMI
from tests.support.waiting import until


def channel(uid: str) -> bytes:
    return (b"Channel: PJSIP/trunk-0000000" + uid[-1].encode() + b"\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
            b"CallerIDNum: 13800138000\r\nCallerIDName: \xe5\xbc\xa0\xe4\xb8\x89\r\nContext: hotline-voicemail\r\n"
            b"Exten: s\r\nPriority: 7\r\nUniqueid: " + uid.encode() + b"\r\nLinkedid: " + uid.encode() + b"\r\n")


@pytest.fixture
async def left(settings, db, tmp_path):
    """Leaves messages the way the real PBX reports them (Newchannel, UserEvent HotlineVoicemail, Hangup)."""
    settings.asterisk_spool_dir = tmp_path / "spool"
    pbx = await FakeAMI.start(auth_delay=0.1)
    bus = InProcessBus()
    client = AMIClient("127.0.0.1", pbx.port, "hotline", "hotline-secret", bus=bus, ping_seconds=30, reconnect_max=0.2)
    recorder = CallRecorder(settings, db)
    recorder.attach(bus)
    task = asyncio.create_task(client.run())
    await until(lambda: client.status == "connected", what="login")

    async def leave(uid: str, seconds: float = 2.0) -> None:
        path = settings.asterisk_spool_dir / "voicemail" / "2026" / "11" / "23" / f"{uid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(b"\x00\x00" * int(8000 * seconds))
        written = recorder.written
        await pbx.push(b"Event: Newchannel\r\n" + channel(uid) + b"\r\n")
        await pbx.push(b"Event: UserEvent\r\nPrivilege: user,all\r\n" + channel(uid) + b"UserEvent: HotlineVoicemail\r\n"
                       b"Caller: 13800138000\r\nFile: " + str(path).encode() + b"\r\nStatus: SILENCE\r\n\r\n")
        await pbx.push(b"Event: Hangup\r\n" + channel(uid) + b"Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n")
        await until(lambda: recorder.written >= written + 3, what=f"voicemail {uid} recorded")

    yield leave
    await client.stop()
    await asyncio.wait_for(task, 5)
    await recorder.stop()
    await pbx.stop()


@pytest.fixture
def api(settings, db, people, core):
    return TestClient(create_app(settings, db, InProcessBus(), core=core))


async def test_a_message_is_a_work_item_an_agent_hears_and_makes_a_case_of(left, api, people, db):
    await left("9.1", seconds=2.0)
    listed = api.get("/api/v1/voicemail", headers=people.auth("agent1"))
    assert listed.status_code == 200
    [item] = listed.json()
    assert (item["uniqueid"], item["caller"], item["state"]) == ("9.1", "+8613800138000", "open")
    assert item["seconds"] == pytest.approx(2.0)
    audio = api.get("/api/v1/voicemail/9.1/audio", headers=people.auth("agent1"))
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    made = api.post("/api/v1/voicemail/9.1/case", headers=people.auth("agent1"),
                    json={"description": "留言：华强北路井盖丢失", "category_key": "C0102", "address_text": "福田区华强北路"})
    assert made.status_code == 201, made.text
    case = made.json()
    assert case["channel"] == "phone" and case["caller_phone"] == "+8613800138000"
    assert api.get("/api/v1/voicemail", headers=people.auth("agent1")).json() == []
    again = api.post("/api/v1/voicemail/9.1/case", headers=people.auth("disp1"), json={"description": "x"})
    assert again.status_code == 404                  # worked once, by one agent
    with db.session() as s:
        call = s.scalar(select(Call).where(Call.uniqueid == "9.1"))
        made_case = s.scalar(select(Case).where(Case.number == case["number"]))
        assert (call.message_state, call.message_handled_by) == ("converted", "agent1")
        assert made_case.call_uniqueid == "9.1" and call.case_id == made_case.id


@pytest.mark.parametrize("who", ["futian1", "admin1"])
async def test_only_the_roles_that_work_the_list_see_or_hear_messages(left, api, people, who):
    await left("9.2")
    assert api.get("/api/v1/voicemail", headers=people.auth(who)).status_code == 403
    assert api.get("/api/v1/voicemail/9.2/audio", headers=people.auth(who)).status_code == 403
    assert api.get("/api/v1/voicemail/9.2/audio").status_code == 401
    assert api.get("/api/v1/voicemail/..%2F..%2Fetc%2Fpasswd/audio", headers=people.auth("agent1")).status_code in (
        404, 422)
    assert api.get("/api/v1/voicemail/9.9/audio", headers=people.auth("agent1")).status_code == 404


async def test_a_message_joins_an_open_case_or_is_dismissed_with_a_reason(left, api, people, db, core):
    await left("9.3")
    await left("9.4")
    await left("9.5")
    closed = closed_case(db, core, people)
    refused = api.post(f"/api/v1/voicemail/9.3/merge/{closed}", headers=people.auth("agent1"))
    assert refused.status_code == 409
    open_case = new_case(db, core)
    joined = api.post(f"/api/v1/voicemail/9.3/merge/{open_case}", headers=people.auth("agent1"))
    assert joined.status_code == 200 and joined.json()["timeline"][-1]["action"] == "voicemail_merged"
    assert api.post("/api/v1/voicemail/9.4/dismiss", headers=people.auth("agent1"),
                    json={"reason": ""}).status_code == 422
    assert api.post("/api/v1/voicemail/9.4/dismiss", headers=people.auth("agent1"),
                    json={"reason": "空白留言"}).status_code == 204
    assert [m["uniqueid"] for m in api.get("/api/v1/voicemail", headers=people.auth("agent1")).json()] == ["9.5"]
    with db.session() as s:
        states = dict(s.execute(select(Call.uniqueid, Call.message_note).where(Call.uniqueid.in_(["9.3", "9.4"]))).all())
    assert states == {"9.3": f"并入 {open_case}", "9.4": "空白留言"}
