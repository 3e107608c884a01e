"""The AMI client against the fake Asterisk (recorded Asterisk 22 behaviour), over real sockets."""
from __future__ import annotations

import asyncio
import wave
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from sqlalchemy import select

from hotline.bus import InProcessBus
from ivr.ami import AMIClient, AMIDisconnected, AMINotConnected, AMIProtocol, parse_message
from ivr.models import Call
from ivr.recorder import CallRecorder
from tests.support.waiting import until
from tests.support import transcripts
from tests.support.fake_ami import FakeAMI, replay_plan


class Collected:
    def __init__(self, bus: InProcessBus) -> None:
        self.notices: list[tuple[str, dict]] = []
        bus.subscribe("*", self.on)

    async def on(self, event) -> None:
        self.notices.append((event.topic, event.data))

    def topics(self) -> list[str]:
        return [t for t, _ in self.notices]

    def of(self, topic: str) -> list[dict]:
        return [d for t, d in self.notices if t == topic]




@pytest.fixture
async def pbx():
    fake = await FakeAMI.start(auth_delay=0.2)
    fake.queues = {"city": {"members": [
        {"Interface": "PJSIP/1001", "Name": "1001", "Status": "1", "Paused": "1", "PausedReason": "培训"},
        {"Interface": "PJSIP/1002", "Name": "1002", "Status": "2", "InCall": "1"}]}}
    yield fake
    await fake.stop()


@pytest.fixture
async def link(pbx):
    """A running client (the `run` loop) with a bus recording every notice."""
    bus = InProcessBus()
    seen = Collected(bus)
    client = AMIClient("127.0.0.1", pbx.port, "hotline", "hotline-secret", bus=bus, ping_seconds=30,
                       reconnect_max=0.2)
    task = asyncio.create_task(client.run())
    await until(lambda: client.status == "connected", what="login")
    client.seen = seen
    yield client
    await client.stop()
    await asyncio.wait_for(task, 5)


async def test_login_then_resync_from_queue_status_and_channels(pbx, link):
    members = link.state.queues["city"].members
    assert members["PJSIP/1001"].paused and members["PJSIP/1001"].paused_reason == "培训"
    assert members["PJSIP/1002"].status == "in_use" and members["PJSIP/1002"].in_call
    assert [a["Action"] for a in pbx.actions][:3] == ["Login", "QueueStatus", "CoreShowChannels"]
    await until(lambda: "pbx.resync" in link.seen.topics())
    assert ("pbx.status", {"status": "connected", "error": ""}) in link.seen.notices


async def test_a_wrong_secret_is_reported_as_such():
    fake = await FakeAMI.start(secret="right", auth_delay=0.1)
    client = AMIClient("127.0.0.1", fake.port, "hotline", "wrong", reconnect_max=5)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status == "auth_failed", what="auth failure")
        assert "refused" in client.last_error and "Authentication failed" in client.last_error
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)
        await fake.stop()


async def test_pbx_away_is_reported_unreachable_and_retried():
    fake = await FakeAMI.start()
    port = fake.port
    await fake.stop()
    client = AMIClient("127.0.0.1", port, "hotline", "hotline-secret", reconnect_max=0.1)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status == "unreachable", what="unreachable")
        assert "Connect" in client.last_error or "refused" in client.last_error.lower()
        back = await FakeAMI.start(port=port)
        try:
            await until(lambda: client.status == "connected", what="reconnect")
        finally:
            await client.stop()
            await back.stop()
    finally:
        await asyncio.wait_for(task, 5)


async def test_utf8_split_across_reads_arrives_whole():  # panoramisk 1.4: 张三 → 三
    fake = await FakeAMI.start(split=5)   # 5-byte writes: many 3-byte characters straddle two reads
    fake.split_pause = 0.0002
    names: list[str] = []
    client = AMIClient("127.0.0.1", fake.port, "hotline", "hotline-secret")
    client.register_event("UserEvent", lambda manager, event: names.append(event.get("Name", "")))
    client.register_event("*", lambda manager, event: names.append(event.get("CallerIDName", "")))
    try:
        await client.connect_once()
        await fake.play("ami_utf8")
        expected = [transcripts.parse_message(m) for m in transcripts.events_from("ami_utf8")]
        await until(lambda: "张三" in names and len([n for n in names if n == "张三"]) >=
                    len([e for e in expected if e.get("CallerIDName") == "张三"]), what="UTF-8 names")
        assert not [n for n in names if n and "\ufffd" in n]
        assert "三" not in names
    finally:
        await client.stop()
        await fake.stop()


async def test_an_answered_queue_call_becomes_a_call_record(pbx, link, db, settings, tmp_path):
    spool = tmp_path / "spool/monitor"   # the recording's <prefix>/var/spool/asterisk/monitor
    wav = spool / "2026/11/21/1795240746.0.wav"
    wav.parent.mkdir(parents=True)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000 * 3)
    settings.asterisk_spool_dir = spool
    recorder = CallRecorder(settings, db)
    recorder.attach(link.bus)
    for _, piece in replay_plan("ami_queue_answered"):
        await pbx.push(piece.replace(b"<prefix>/var/spool/asterisk/monitor", str(spool).encode()))
    await until(lambda: link.seen.of("call.ended") and recorded(db, "1795240746.0").recording_seconds,
                what="call end and its recording")
    connect = link.seen.of("call.agent_connect")[0]
    assert (connect["agent"], connect["wait_seconds"], connect["caller"]) == ("1001", 2.0, "13800138000")
    ended = link.seen.of("call.ended")[0]
    assert ended["outcome"] == "answered" and ended["hangup_cause"] == 16 and ended["talk_seconds"] == 6.0
    with db.session() as s:
        call = s.scalar(select(Call).where(Call.uniqueid == "1795240746.0"))
        assert (call.outcome, call.queue, call.agent, call.caller) == ("answered", "hotline-12319", "1001",
                                                                      "+8613800138000")
        assert call.recording_path == "2026/11/21/1795240746.0.wav"
        assert call.recording_bytes == wav.stat().st_size and call.recording_seconds == 3.0
        assert call.answered_at is not None and call.ended_at > call.answered_at


def recorded(db, uniqueid: str) -> Call:
    with db.session() as s:
        return s.scalar(select(Call).where(Call.uniqueid == uniqueid)) or Call(uniqueid=uniqueid)


async def test_a_recording_still_being_written_gets_its_duration_when_mixmonitor_is_done(pbx, link, db, settings,
                                                                                       tmp_path):
    spool = tmp_path / "spool/monitor"
    wav = spool / "2026/11/21/1795240746.0.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"\x00" * 163840)     # MixMonitor has written audio but not yet its header
    settings.asterisk_spool_dir = spool
    recorder = CallRecorder(settings, db, settle_delays=(0.1,) * 100)
    recorder.attach(link.bus)
    for _, piece in replay_plan("ami_queue_answered"):
        await pbx.push(piece.replace(b"<prefix>/var/spool/asterisk/monitor", str(spool).encode()))
    await until(lambda: link.seen.of("call.ended") and recorded(db, "1795240746.0").recording_path, what="call end")
    await asyncio.sleep(0.5)     # the file is still being written: nothing is read from it yet
    early = recorded(db, "1795240746.0")
    assert early.recording_path == "2026/11/21/1795240746.0.wav" and early.recording_seconds is None
    assert early.recording_bytes is None
    with wave.open(str(wav), "wb") as w:   # … and MixMonitor closes it, slowly
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000 * 5)
    await until(lambda: recorded(db, "1795240746.0").recording_seconds, what="the recording's duration")
    done = recorded(db, "1795240746.0")
    assert done.recording_seconds == 5.0 and done.recording_bytes == wav.stat().st_size
    await recorder.stop()


async def test_an_abandoned_call(pbx, link):
    await pbx.play("ami_queue_abandoned")
    await until(lambda: link.seen.of("call.ended"), what="call end")
    ended = link.seen.of("call.ended")[0]
    assert ended["outcome"] == "abandoned" and ended["answered_at"] is None
    assert link.seen.of("call.abandoned")[0]["wait_seconds"] > 0
    assert [d["ring_seconds"] for d in link.seen.of("call.agent_no_answer")][0] == 6.0  # ms on the wire


async def test_a_failing_handler_does_not_cost_the_other_events(pbx, link):
    got: list[str] = []

    def broken(manager, event):
        raise RuntimeError("listener bug")
    link.register_event("Newchannel", broken)
    link.register_event("*", lambda m, e: got.append(e.get("Event")))
    played = sum(p.count(b"\r\n\r\n") for _, p in replay_plan("ami_queue_answered"))
    await pbx.play("ami_queue_answered")
    await until(lambda: len(got) >= played, what="all events")
    assert len(got) == played and link.handler_errors >= 1
    assert link.connects == 1 and link.status == "connected"


async def test_event_names_are_case_sensitive_and_garbage_is_skipped(pbx, link):
    before = link.state.unknown_events
    await pbx.push(b"Event: newchannel\r\nChannel: PJSIP/x-1\r\nUniqueid: 9.1\r\nLinkedid: 9.1\r\n\r\n"
                   b"no colon here at all\r\n\r\n"
                   b"Event: Newchannel\r\nChannel: PJSIP/y-2\r\nUniqueid: 9.2\r\nLinkedid: 9.2\r\n"
                   b"Weird header without space:x\r\n\r\n")
    await until(lambda: "9.2" in link.state.calls, what="the good event")
    assert "9.1" not in link.state.calls and link.state.unknown_events == before + 1
    assert link.status == "connected"


async def test_originate_is_correlated_by_action_id(pbx, link):
    pbx.originate_outcome = ["noanswer", "answered", "busy"]
    pbx.originate_delay = 0.1
    results = await asyncio.gather(*(link.originate(f"PJSIP/1380013800{n}@trunk", "hotline-survey", ring_seconds=5,
                                                    action_id=f"survey-{n}") for n in range(3)))
    assert [r.action_id for r in results] == ["survey-0", "survey-1", "survey-2"]
    assert sorted(r.outcome for r in results) == ["answered", "failed", "no_answer"]
    sent = [a for a in pbx.actions if a["Action"] == "Originate"][0]
    assert sent["Async"] == "true" and sent["Context"] == "hotline-survey"


async def test_an_originate_in_flight_when_the_link_drops_is_never_replayed(pbx, link):
    pbx.originate_delay = 2.0
    pending = asyncio.create_task(link.originate("PJSIP/13800138000@trunk", "hotline-survey", ring_seconds=5))
    await pbx.wait_action("Originate")
    await pbx.drop()
    with pytest.raises(AMIDisconnected):
        await pending
    with pytest.raises(AMINotConnected):  # while down: refused at once, not queued
        await link.originate("PJSIP/13900139000@trunk", "hotline-survey")
    await until(lambda: link.connects == 2 and link.status == "connected", what="reconnect")
    await asyncio.sleep(0.3)
    assert len([a for a in pbx.actions if a["Action"] == "Originate"]) == 1


async def test_agent_state_wishes_made_while_down_are_applied_after_reconnect(pbx, link):
    await pbx.stop()
    await until(lambda: link.status == "unreachable", what="down")
    for paused in (True, False, True):
        with pytest.raises(AMINotConnected):
            await link.queue_pause("PJSIP/1001", paused, reason="午休", queue="city")
    await pbx._listen()
    await until(lambda: link.status == "connected", what="reconnect")
    pauses = [a for a in pbx.actions if a["Action"] == "QueuePause"]
    assert len(pauses) == 1 and pauses[0]["Paused"] == "true" and pauses[0]["Reason"] == "午休"


async def test_resync_after_restart_and_dead_link_detection(pbx):
    client = AMIClient("127.0.0.1", pbx.port, "hotline", "hotline-secret", bus=InProcessBus(), ping_seconds=0.2,
                       ping_timeout=0.2, reconnect_max=0.2)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status == "connected", what="login")
        await pbx.restart(0.3)
        await until(lambda: client.connects == 2 and client.status == "connected", what="restart")
        pbx.mute_pings = True
        await until(lambda: "Ping" in client.last_error or client.connects >= 3, what="dead link", timeout=5)
        pbx.mute_pings = False
        await until(lambda: client.connects >= 3 and client.status == "connected", what="reconnect")
        assert len([a for a in pbx.actions if a["Action"] == "QueueStatus"]) >= 3  # a resync per login
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_calls_that_ended_while_disconnected_are_closed_at_resync(pbx, link):
    await pbx.push(b"Event: Newchannel\r\nChannel: PJSIP/trunk-1\r\nUniqueid: 7.1\r\nLinkedid: 7.1\r\n"
                   b"CallerIDNum: 13800138000\r\n\r\n")
    await until(lambda: "7.1" in link.state.calls, what="call")
    await pbx.drop()
    await until(lambda: link.connects == 2 and link.status == "connected", what="reconnect")
    await until(lambda: link.seen.of("call.ended"), what="end")
    assert link.seen.of("call.ended")[0]["outcome"] == "lost_track" and "7.1" not in link.state.calls


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        self.written = data


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_ami_framer_takes_any_bytes(chunks):
    received: list = []

    class Client:
        banner = None

        def received(self, messages):
            received.extend(messages)
    proto = AMIProtocol(Client())
    proto.connection_made(_Transport())
    proto.data_received(b"Asterisk Call Manager/11.0.0\r\n")
    for chunk in chunks:
        proto.data_received(chunk)
    assert all(m.get("Event") is not None or m.get("Response") is not None for m in received)


@hsettings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_message_parser(raw):
    message = parse_message(raw)
    assert message is None or "event" in message or "response" in message


async def test_the_api_reports_the_pbx_link_and_the_queues(settings, db, people, pbx):
    import httpx

    from agent_ui import create_app
    from ivr import Telephony
    settings.ami_port, settings.ami_secret, settings.agi_port = pbx.port, "hotline-secret", 0
    bus = InProcessBus()
    service = Telephony(settings, db, bus)
    await service.start()
    app = create_app(settings, db=db, bus=bus)
    app.state.telephony = service
    try:
        await until(lambda: service.ami.status == "connected", what="AMI")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            body = (await http.get("/api/v1/telephony", headers=people.auth("super1"))).json()
            refused = await http.get("/api/v1/telephony", headers=people.auth("futian1"))
    finally:
        await service.stop()
    assert body["ami"]["status"] == "connected" and body["agi"]["sessions"] == 0
    assert {m["interface"] for m in body["wallboard"]["queues"]["city"]["members"]} == {"PJSIP/1001", "PJSIP/1002"}
    assert refused.status_code == 403


async def test_a_live_caller_is_transferred_to_a_district_queue(settings, db, pbx):
    from ivr import Telephony
    from ivr.ami import AMIError
    settings.ami_port, settings.ami_secret, settings.agi_port = pbx.port, "hotline-secret", 0
    pbx.add_channel("PJSIP/trunk-00000007", Uniqueid="5.7", Linkedid="5.7", CallerIDNum="13800138000")
    service = Telephony(settings, db, InProcessBus())
    await service.start()
    try:
        await until(lambda: service.ami.status == "connected" and "5.7" in service.ami.state.calls, what="resync")
        assert await service.transfer_to_district("5.7", "440304") == "district-440304"
        with pytest.raises(AMIError, match="no live call"):
            await service.transfer_to_district("9.9", "440304")
    finally:
        await service.stop()
    redirect = [a for a in pbx.actions if a["Action"] == "Redirect"][0]
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == ("PJSIP/trunk-00000007",
                                                                            "hotline-transfer", "district-440304")


CHANNEL_HEADERS = (b"Channel: PJSIP/trunk-00000009\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
                   b"CallerIDNum: 13800138000\r\nCallerIDName: \xe5\xbc\xa0\xe4\xb8\x89\r\nContext: hotline-voicemail\r\n"
                   b"Exten: s\r\nPriority: 7\r\nUniqueid: 8.1\r\nLinkedid: 8.1\r\n")


@pytest.mark.parametrize("repeated_uniqueid", [False, True])
async def test_a_voicemail_as_the_real_pbx_reports_it(pbx, link, db, settings, tmp_path, repeated_uniqueid):
    """A dialplan UserEvent carries the channel's own headers; an extra Uniqueid makes a list."""
    settings.asterisk_spool_dir = tmp_path / "spool"
    recorder = CallRecorder(settings, db)
    recorder.attach(link.bus)
    file = f"{tmp_path}/spool/voicemail/2026/11/21/8.1.wav".encode()
    await pbx.push(b"Event: Newchannel\r\n" + CHANNEL_HEADERS + b"\r\n")
    await pbx.push(b"Event: UserEvent\r\nPrivilege: user,all\r\n" + CHANNEL_HEADERS + b"UserEvent: HotlineVoicemail\r\n"
                   + (b"Uniqueid: 8.1\r\n" if repeated_uniqueid else b"") + b"Caller: 13800138000\r\nFile: " + file
                   + b"\r\nStatus: SILENCE\r\n\r\n")
    await pbx.push(b"Event: Hangup\r\n" + CHANNEL_HEADERS + b"Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n")
    await until(lambda: link.seen.of("call.ended") and recorder.written >= 3, what="call end")
    assert link.seen.of("call.voicemail")[0]["uniqueid"] == "8.1"
    assert link.handler_errors == 0
    with db.session() as s:
        call = s.scalar(select(Call).where(Call.uniqueid == "8.1"))
        assert call.outcome == "voicemail" and call.ivr["voicemail"] == "voicemail/2026/11/21/8.1.wav"


async def test_a_redirect_out_of_the_queue_is_a_transfer_not_an_abandon(pbx, link):
    await pbx.push(b"Event: Newchannel\r\n" + CHANNEL_HEADERS + b"\r\n")
    await pbx.push(b"Event: QueueCallerJoin\r\n" + CHANNEL_HEADERS + b"Queue: city\r\nPosition: 1\r\nCount: 1\r\n\r\n")
    moved = CHANNEL_HEADERS.replace(b"Context: hotline-voicemail", b"Context: hotline-transfer").replace(
        b"Priority: 7", b"Priority: 1")   # what the real PBX sends when a Redirect takes the caller out
    await pbx.push(b"Event: QueueCallerAbandon\r\n" + moved + b"Queue: city\r\nPosition: 1\r\nOriginalPosition: 1\r\n"
                   b"HoldTime: 16\r\n\r\n")
    await until(lambda: link.seen.of("call.transferred"), what="transfer")
    assert link.state.queues["city"].abandoned == 0 and link.seen.of("call.abandoned") == []
    assert link.state.calls["8.1"].outcome == "transferred"
    # then the caller gives up waiting in the district queue: that is an abandon
    await pbx.push(b"Event: QueueCallerJoin\r\n" + moved + b"Queue: district-440304\r\nPosition: 1\r\nCount: 1\r\n\r\n")
    gave_up = moved.replace(b"Priority: 1", b"Priority: 3")
    await pbx.push(b"Event: QueueCallerAbandon\r\n" + gave_up + b"Queue: district-440304\r\nPosition: 1\r\n"
                   b"OriginalPosition: 1\r\nHoldTime: 5\r\n\r\n")
    await until(lambda: link.seen.of("call.abandoned"), what="abandon")
    assert link.state.calls["8.1"].outcome == "abandoned" and link.state.queues["district-440304"].abandoned == 1


async def test_a_lost_link_shows_as_reconnecting_then_connected(pbx, link):
    await pbx.drop()
    await until(lambda: link.connects == 2 and link.status == "connected", what="reconnect")
    statuses = [d["status"] for d in link.seen.of("pbx.status")]
    assert statuses == ["connected", "reconnecting", "connected"]


# --- resync: the lists are older than the events that arrive while they are fetched ------------------

def ended_calls(link, uniqueid: str) -> list[dict]:
    return [d for d in link.seen.of("call.ended") if d["uniqueid"] == uniqueid]


async def test_queue_events_sent_while_the_lists_are_answered_survive_the_resync(pbx, link):
    waiting = pbx.add_channel("PJSIP/trunk-00000010", Uniqueid="6.1", CallerIDNum="13800138001",
                              Context="hotline-inbound", Application="Queue", ApplicationData="city")
    answered = pbx.add_channel("PJSIP/trunk-00000011", Uniqueid="6.2", CallerIDNum="13800138002",
                               Context="hotline-inbound", Application="Queue", ApplicationData="city")
    during = {  # what happens while the client, reconnected, is being answered each list
        "QueueStatus": ("QueueCallerJoin", waiting, [("Queue", "city"), ("Position", "1"), ("Count", "1")]),
        "CoreShowChannels": ("AgentConnect", answered, [
            ("DestChannel", "PJSIP/1001-00000012"), ("DestUniqueid", "6.3"), ("DestLinkedid", "6.2"),
            ("Queue", "city"), ("Interface", "PJSIP/1001"), ("MemberName", "1001"), ("HoldTime", "4"),
            ("RingTime", "2")]),
    }

    async def events_inside_the_list(action_name: str) -> None:
        if action_name in during:
            name, channel, extra = during.pop(action_name)
            await pbx.send_event(name, [*pbx.channel_headers(channel), *extra], privilege="agent,all")
    pbx.before_list_complete = events_inside_the_list
    await pbx.drop()
    await until(lambda: link.connects == 2 and link.status == "connected", what="reconnect and resync")
    assert not during
    assert link.state.queues["city"].waiting == {"6.1": 1} and link.state.calls["6.1"].queue == "city"
    call = link.state.calls["6.2"]
    assert (call.agent, call.outcome, call.wait_seconds) == ("1001", "answered", 4.0) and call.answered_at


async def test_a_hangup_sent_inside_the_channel_list_leaves_no_ghost_call(pbx, link):
    channel = pbx.add_channel("PJSIP/trunk-00000013", Uniqueid="6.4", CallerIDNum="13800138004",
                              Context="hotline-inbound", Application="AGI")

    async def hang_up_after_being_listed(action_name: str) -> None:
        if action_name == "CoreShowChannels" and channel in pbx.channels:
            pbx.channels.remove(channel)
            await pbx.send_event("Hangup", [*pbx.channel_headers(channel), ("Cause", "16"),
                                            ("Cause-txt", "Normal Clearing")])
    pbx.before_list_complete = hang_up_after_being_listed
    await pbx.drop()
    await until(lambda: link.connects == 2 and link.status == "connected", what="reconnect and resync")
    assert "6.4" not in link.state.calls and "PJSIP/trunk-00000013" not in link.state.channels
    await until(lambda: ended_calls(link, "6.4"), what="the call's end")
    (ended,) = ended_calls(link, "6.4")
    assert (ended["outcome"], ended["hangup_cause"]) == ("ivr", 16)


async def test_a_channel_still_listed_after_its_hangup_is_not_resurrected(pbx, link):
    stale = pbx.add_channel("PJSIP/trunk-00000014", Uniqueid="6.5", CallerIDNum="13800138005",
                            Context="hotline-inbound")   # the fake's list keeps it: a list older than the Hangup
    await pbx.send_event("Newchannel", pbx.channel_headers(stale))
    await pbx.send_event("Hangup", [*pbx.channel_headers(stale), ("Cause", "16"), ("Cause-txt", "Normal Clearing")])
    await until(lambda: ended_calls(link, "6.5"), what="the hang-up")
    await pbx.drop()
    await until(lambda: link.connects == 2 and len(link.seen.of("pbx.resync")) == 2, what="reconnect and resync")
    assert "6.5" not in link.state.calls and "PJSIP/trunk-00000014" not in link.state.channels
    assert [d["uniqueid"] for d in link.seen.of("call.started")].count("6.5") == 1


def test_hang_up_tombstones_are_bounded_in_time_and_in_number():
    from ivr.ami_state import CallCentreState, TOMBSTONE_LIMIT, TOMBSTONE_SECONDS
    now = [1000.0]
    state = CallCentreState(clock=lambda: now[0])

    def channel(uid: str) -> dict[str, str]:
        return {"Channel": f"PJSIP/trunk-{uid}", "Uniqueid": uid, "Linkedid": uid}

    def listed_after_resync(*uids: str) -> set[str]:
        state.begin_resync()
        state.end_resync([{"Event": "CoreShowChannel", **channel(uid)} for uid in uids])
        return set(state.calls)

    state.apply({"Event": "Newchannel", **channel("1.1")})
    state.apply({"Event": "Hangup", **channel("1.1")})
    now[0] += TOMBSTONE_SECONDS
    assert listed_after_resync("1.1") == set()          # hung up: a list still showing it is older
    now[0] += 1
    assert listed_after_resync("1.1") == {"1.1"}        # long ago: the list is believed
    for n in range(TOMBSTONE_LIMIT + 1):
        state.apply({"Event": "Hangup", **channel(f"2.{n}")})
    assert listed_after_resync("2.0", "2.1") == {"2.0"}  # the oldest tombstone made room


def test_the_recording_path_is_named_as_the_dialplan_names_it():
    from zoneinfo import ZoneInfo

    from asterisk_conf import render
    from ivr.ami_state import RECORDED_CONTEXTS, recording_path_for
    template = (Path(render.__file__).parent / "templates/extensions.conf.j2").read_text()
    # recording_path_for follows these two lines; change them together
    assert "Set(HOTLINE_REC=${STRFTIME(${EPOCH},{{ timezone }},%Y/%m/%d)}/${UNIQUEID}.wav)" in template
    assert "MixMonitor({{ spool_dir }}/${HOTLINE_REC})" in template
    assert RECORDED_CONTEXTS == {render.INBOUND_CONTEXT, render.TRANSFER_CONTEXT, render.VOICEMAIL_CONTEXT}
    started = datetime(2026, 11, 21, 16, 1, tzinfo=timezone.utc)   # 00:01 on the 22nd in Shenzhen
    assert recording_path_for("1795276860.3", started, ZoneInfo("Asia/Shanghai")) == "2026/11/22/1795276860.3.wav"
    assert recording_path_for("1795276860.3", started, timezone.utc) == "2026/11/21/1795276860.3.wav"


async def test_a_call_whose_recording_varset_was_missed_still_has_its_recording(pbx, db, settings, clock, tmp_path):
    from zoneinfo import ZoneInfo

    from ivr.ami_state import CallCentreState
    clock.set(datetime(2026, 11, 21, 16, 5, tzinfo=timezone.utc))      # 00:05 on the 22nd in Shenzhen
    settings.asterisk_spool_dir = tmp_path / "spool"
    # up for 10 minutes when we connect: started 23:55 on the 21st in Shenzhen
    pbx.add_channel("PJSIP/trunk-00000020", Uniqueid="1795276500.20", Linkedid="1795276500.20",
                    CallerIDNum="13800138020", Context="hotline-inbound", Application="Queue", Duration="00:10:00")
    pbx.add_channel("PJSIP/13800138021@trunk-00000021", Uniqueid="1795276700.21", Linkedid="1795276700.21",
                    CallerIDNum="13800138021", Context="hotline-survey", Application="AGI")   # not recorded
    bus = InProcessBus()
    seen = Collected(bus)
    recorder = CallRecorder(settings, db, settle_delays=(0.05,))
    recorder.attach(bus)
    client = AMIClient("127.0.0.1", pbx.port, "hotline", "hotline-secret", bus=bus, reconnect_max=0.2,
                       state=CallCentreState(zone=ZoneInfo("Asia/Shanghai")))
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status == "connected", what="login")
        # seen starting (00:01 on the 22nd in Shenzhen); its VarSet MIXMONITOR_FILENAME goes by while we are away
        late = pbx.add_channel("PJSIP/trunk-00000022", Uniqueid="1795276860.22", Linkedid="1795276860.22",
                               CallerIDNum="13800138022", Context="hotline-inbound", Application="AGI")
        await pbx.push(b"Event: Newchannel\r\nPrivilege: call,all\r\nTimestamp: 1795276860.101\r\n"
                       + b"".join(f"{k}: {v}\r\n".encode() for k, v in pbx.channel_headers(late)) + b"\r\n")
        await until(lambda: "1795276860.22" in client.state.calls, what="the late call")
        await pbx.drop()
        await until(lambda: client.connects == 2 and client.status == "connected", what="reconnect")
        for channel in list(pbx.channels):
            await pbx.send_event("Hangup", [*pbx.channel_headers(channel), ("Cause", "16"),
                                            ("Cause-txt", "Normal Clearing")])
        await until(lambda: len(seen.of("call.ended")) == 3 and recorder.written >= 6, what="the three ends")
        ended = {d["uniqueid"]: d for d in seen.of("call.ended")}
        assert ended["1795276500.20"]["recording_path"] == "2026/11/21/1795276500.20.wav"
        assert ended["1795276500.20"]["started_at"] == "2026-11-21T15:55:00+00:00"
        assert ended["1795276860.22"]["recording_path"] == "2026/11/22/1795276860.22.wav"
        assert ended["1795276700.21"]["recording_path"] is None
        await until(lambda: recorded(db, "1795276860.22").recording_path, what="the call record")
        assert recorded(db, "1795276500.20").recording_path == "2026/11/21/1795276500.20.wav"
        assert recorded(db, "1795276860.22").recording_path == "2026/11/22/1795276860.22.wav"
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)
        await recorder.stop()
