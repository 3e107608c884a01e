"""Tests of the fake AMI server (tests/support/fake_ami.py) and the transcript reader.

The client here is a bare asyncio stream, not the product's AMI client: it sends the exact bytes
the recorded client sent to the real Asterisk 22.10.1 (tests/fixtures/asterisk22/) and checks that
the fake answers with the bytes Asterisk answered — exactly where nothing varies, and after blanking
clock- and session-dependent values (Timestamp, LoginTime, SessionID, …) where something does.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import ClassVar

import pytest

from tests.support import transcripts
from tests.support.fake_ami import FakeAMI, replay_plan

RECORDED_MEMBER = {  # the agent as ami_actions' QueueStatus c-8 reported it
    "Interface": "PJSIP/agent1001", "Name": "1001", "StateInterface": "PJSIP/agent1001", "Membership": "dynamic",
    "Penalty": "0", "CallsTaken": "0", "LastCall": "0", "LastPause": "0", "LoginTime": "1795240778",
    "InCall": "0", "Status": "1", "Paused": "0", "PausedReason": "", "Wrapuptime": "0",
}
RECORDED_CHANNEL = {  # the live call of ami_actions (CoreShowChannels c-15)
    "Channel": "PJSIP/sipp-00000000", "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "13800138000",
    "CallerIDName": "Hotline Caller", "Context": "from-sipp", "Exten": "12340", "Priority": "3",
    "Uniqueid": "1795240779.0", "Linkedid": "1795240779.0", "Application": "Wait", "ApplicationData": "60",
}
VOLATILE = ("Timestamp", "EventTV", "SessionTV", "SessionID", "LocalAddress", "RemoteAddress", "Uptime",
            "LastReload", "LoginTime", "LastPause", "Uniqueid")


@pytest.fixture
async def fake():
    server = await FakeAMI.start(auth_delay=0.3)
    yield server
    await server.stop()
    while Client.opened:
        Client.opened.pop().close()


# --- helpers -----------------------------------------------------------------------------------------


def normalise(message: bytes) -> bytes:
    """Blank the values that depend on the clock or the session; and the channel sequence suffix."""
    text = message.decode("utf-8")
    for key in VOLATILE:
        text = re.sub(rf"(?m)^{key}: .*\r$", f"{key}: *\r", text)
    text = re.sub(r"(?m)^(Channel: \S+?)-[0-9a-f]{8}(;\d)?\r$", r"\1-N\2\r", text)
    return text.encode("utf-8")


def recorded_action(name: str, action_id: str, conn: int = 1) -> bytes:
    """The exact bytes the recorded client sent for the action with this ActionID."""
    sent = b"".join(r.data for r in transcripts.outbound_chunks(name, conn))
    messages, _ = transcripts.split_messages(sent)
    (message,) = [m for m in messages if transcripts.parse_message(m).get("ActionID") == action_id]
    return message


def recorded_replies(name: str, action_id: str, conn: int = 1) -> list[bytes]:
    """Every message Asterisk sent carrying this ActionID (the reply, list items, OriginateResponse)."""
    return [m for m in transcripts.events_from(name, conn) if transcripts.parse_message(m).get("ActionID") == action_id]


class Client:
    """A bare AMI client on asyncio streams. Every client is closed when its test's fake stops."""

    opened: ClassVar[list[Client]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Client.opened.append(self)

    @classmethod
    async def connect(cls, fake: FakeAMI, *, banner: bool = True) -> Client:
        client = cls(*await asyncio.open_connection(fake.host, fake.port))
        if banner:
            assert await client.read_until(b"\r\n") == b"Asterisk Call Manager/11.0.0\r\n"
        return client

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def read_until(self, separator: bytes = b"\r\n\r\n", timeout: float = 3.0) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(separator), timeout)

    async def messages(self, count: int, timeout: float = 3.0) -> list[bytes]:
        return [await self.read_until(timeout=timeout) for _ in range(count)]

    async def quiet_for(self, seconds: float) -> bool:
        """True if nothing arrives (and the connection stays open) for ``seconds``."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected silence, got {data!r}")

    async def eof(self, timeout: float = 3.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def login(self) -> list[bytes]:
        await self.send(recorded_action("ami_actions", "c-1"))
        return await self.messages(3)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


# --- the transcripts themselves ------------------------------------------------------------------


def test_transcript_records_and_streams():
    records = transcripts.load("ami_actions")
    assert records[0].dir == "open" and records[0].conn == 1
    marks = [r for r in records if r.dir == "mark"]
    assert marks[0].mark == "Ping" and marks[0].conn is None and marks[0].data == b""
    stream = transcripts.inbound_stream("ami_actions")
    assert stream.startswith(b"Asterisk Call Manager/11.0.0\r\n")
    messages = transcripts.events_from("ami_actions")
    assert b"".join(messages) == stream[len(b"Asterisk Call Manager/11.0.0\r\n"):]
    assert all(m.endswith(b"\r\n\r\n") and m.count(b"\r\n\r\n") == 1 for m in messages)
    assert transcripts.parse_message(recorded_action("ami_actions", "c-30"))["Variable"] == [
        "HOTLINE_CASE=SZ-LG-20251121-0001", "SURVEY_TRY=1"]
    assert "张三" in transcripts.inbound_stream("ami_utf8").decode("utf-8")


def test_agi_sessions_split_environment_lines_and_final_hangup():
    (session,) = transcripts.agi_sessions("agi_session_basic")
    assert len(session.env_chunks) == 2 and b"".join(session.env_chunks) == session.env_block
    assert session.env_block.endswith(b"agi_arg_1: arg1\n\n")
    assert session.env["agi_network_script"] == "inbound" and session.env["agi_accountcode"] == ""
    assert session.args == ("arg1",)
    assert session.exchanges()[0] == (b"ANSWER\n", [b"200 result=0\n"])
    assert session.exchanges()[-1] == (b"FOO BAR\n", [b"510 Invalid or unknown command\n"])
    assert session.final_lines() == [b"HANGUP\n"]
    (stream,) = transcripts.agi_sessions("agi_hangup_midway_stream")
    assert (b'STREAM FILE tt-monkeys ""\n', [b"200 result=-1 endpos=24160\n", b"HANGUP\n"]) in stream.exchanges()
    (utf8,) = transcripts.agi_sessions("agi_utf8")
    assert utf8.exchanges()[0][1] == ["200 result=1 (张三)\n".encode()]


# --- connection, login, logoff --------------------------------------------------------------------


async def test_banner_is_one_line_with_no_blank_line(fake):
    client = await Client.connect(fake, banner=False)
    first = await asyncio.wait_for(client.reader.read(4096), 2)
    assert first == transcripts.inbound_chunks("ami_actions")[0].data == b"Asterisk Call Manager/11.0.0\r\n"
    assert await client.quiet_for(0.2)
    assert fake.connections == 1 and fake.connected == 1
    client.close()


async def test_login_reply_fully_booted_and_successful_auth_arrive_in_one_read(fake):
    client = await Client.connect(fake)
    await client.send(recorded_action("ami_actions", "c-1"))
    data = await asyncio.wait_for(client.reader.read(65536), 2)
    got, rest = transcripts.split_messages(data)
    assert rest == b"" and len(got) == 3
    recorded = transcripts.events_from("ami_actions")[:3]
    assert got[0] == recorded[0] == b"Response: Success\r\nActionID: c-1\r\nMessage: Authentication accepted\r\n\r\n"
    assert got[1].startswith(b"Event: FullyBooted\r\n") and b"Timestamp" not in got[1]
    assert [normalise(m) for m in got] == [normalise(m) for m in recorded]
    assert transcripts.parse_message(got[2])["AccountID"] == "hotline"
    assert fake.logins == 1
    assert (await fake.wait_action("login"))["Secret"] == "hotline-secret"
    client.close()


async def test_wrong_secret_is_refused_late_and_the_connection_closed(fake):
    client = await Client.connect(fake)
    started = time.monotonic()
    await client.send(recorded_action("ami_actions", "bad-1", conn=2))
    reply = await client.read_until()
    assert time.monotonic() - started >= fake.auth_delay - 0.01
    assert reply == transcripts.events_from("ami_actions", conn=2)[0]
    assert reply == b"Response: Error\r\nActionID: bad-1\r\nMessage: Authentication failed\r\n\r\n"
    assert await client.eof()
    assert fake.logins == 0 and fake.errors[-1][1] == "Authentication failed"


async def test_actions_before_login_are_denied_and_the_connection_stays_open(fake):
    client = await Client.connect(fake)
    recorded = transcripts.events_from("ami_actions", conn=3)
    for action_id, expected in (("nologin-1", recorded[0]), ("nologin-2", recorded[1])):
        await client.send(recorded_action("ami_actions", action_id, conn=3))
        assert await client.read_until() == expected
    assert b"Message: Permission denied" in recorded[0]
    assert await client.quiet_for(0.1)
    # an unknown user is refused like a wrong secret, then the connection is closed
    await client.send(recorded_action("ami_actions", "nologin-3", conn=3))
    assert await client.read_until() == recorded[2]
    assert await client.eof()
    # and the same fake still lets the right user in, on a new connection
    again = await Client.connect(fake)
    assert (await again.login())[0].startswith(b"Response: Success\r\n")
    again.close()


async def test_logoff_says_goodbye_then_closes(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-41"))
    assert await client.read_until() == recorded_replies("ami_actions", "c-41")[0]
    assert await client.eof()


async def test_ping_with_and_without_actionid(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-2"))
    assert normalise(await client.read_until()) == normalise(recorded_replies("ami_actions", "c-2")[0])
    await client.send(b"Action: Ping\r\n\r\n")
    without = transcripts.events_from("ami_actions")[4]
    assert without.startswith(b"Response: Success\r\nPing: Pong\r\n")
    assert normalise(await client.read_until()) == normalise(without)
    client.close()


async def test_mute_pings_leaves_ping_unanswered_but_other_actions_work(fake):
    client = await Client.connect(fake)
    await client.login()
    fake.mute_pings = True
    await client.send(recorded_action("ami_actions", "c-2"))
    await fake.wait_action("Ping")
    assert await client.quiet_for(0.3)
    await client.send(recorded_action("ami_actions", "c-3"))
    assert (await client.read_until()).startswith(b"Response: Success\r\nActionID: c-3\r\n")
    client.close()


async def test_unknown_action_gets_the_recorded_error_and_a_security_event(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-40"))
    reply, event = await client.messages(2)
    assert reply == recorded_replies("ami_actions", "c-40")[0]
    assert reply == (b"Response: Error\r\nActionID: c-40\r\nMessage: Invalid/unknown command: FooBar. "
                     b"Use Action: ListCommands to show available commands.\r\n\r\n")
    assert transcripts.parse_message(event)["Event"] == "RequestBadFormat"
    assert transcripts.parse_message(event)["RequestType"] == "Action: FooBar"
    client.close()


async def test_unmodelled_real_action_fails_loudly(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(b"Action: Hangup\r\nActionID: h-1\r\nChannel: PJSIP/sipp-00000000\r\n\r\n")
    assert await client.read_until() == (b"Response: Error\r\nActionID: h-1\r\n"
                                         b"Message: FakeAMI does not model action Hangup\r\n\r\n")
    assert fake.unmodelled == ["Hangup"]
    client.close()


# --- queues ----------------------------------------------------------------------------------------


async def test_queuestatus_is_a_list_framed_by_actionid(fake):
    client = await Client.connect(fake)
    await client.login()
    # empty queue, no Queue filter: reply, QueueParams, Complete with ListItems 1 — byte for byte
    await client.send(recorded_action("ami_actions", "c-3"))
    assert await client.messages(3) == recorded_replies("ami_actions", "c-3")
    # one member, generated from fake.queues: byte for byte what Asterisk sent
    fake.queues = {"hotline-12319": {"members": [dict(RECORDED_MEMBER)]}}
    await client.send(recorded_action("ami_actions", "c-8"))
    got = await client.messages(4)
    assert got == recorded_replies("ami_actions", "c-8")
    parsed = [transcripts.parse_message(m) for m in got]
    assert [p.get("Event") for p in parsed] == [None, "QueueParams", "QueueMember", "QueueStatusComplete"]
    assert all(p["ActionID"] == "c-8" for p in parsed)
    assert list(parsed[1])[-1] == "ActionID" and list(parsed[3])[1] == "ActionID"
    assert parsed[0]["EventList"] == "start" and parsed[3]["EventList"] == "Complete"
    assert parsed[3]["ListItems"] == "2"
    # without an ActionID the list carries none at all
    await client.send(b"Action: QueueStatus\r\nQueue: hotline-12319\r\n\r\n")
    assert all(b"ActionID" not in m for m in await client.messages(4))
    client.close()


async def test_queue_add_pause_remove_replies_events_and_state(fake):
    client = await Client.connect(fake)
    await client.login()
    recorded = transcripts.events_from("ami_actions")

    def after(action_id: str, count: int) -> list[bytes]:
        start = recorded.index(recorded_replies("ami_actions", action_id)[0])
        return recorded[start:start + count]

    await client.send(recorded_action("ami_actions", "c-5"))
    got = await client.messages(4)
    assert got[0] == b"Response: Success\r\nActionID: c-5\r\nMessage: Added interface to queue\r\n\r\n"
    assert [normalise(m) for m in got] == [normalise(m) for m in after("c-5", 4)]
    assert fake.queues["hotline-12319"]["members"][0]["Interface"] == "PJSIP/agent1001"
    for action_id in ("c-6", "c-7"):  # already there; no such queue
        await client.send(recorded_action("ami_actions", action_id))
        assert await client.read_until() == recorded_replies("ami_actions", action_id)[0]
    await client.send(recorded_action("ami_actions", "c-9"))  # pause, Reason: 培训
    got = await client.messages(4)
    assert [normalise(m) for m in got] == [normalise(m) for m in after("c-9", 4)]
    assert transcripts.parse_message(got[3])["PausedReason"] == "培训"
    await client.send(recorded_action("ami_actions", "c-10"))
    expected = [normalise(m) for m in recorded_replies("ami_actions", "c-10")]
    assert [normalise(m) for m in await client.messages(4)] == expected
    await client.send(recorded_action("ami_actions", "c-11"))  # unpause clears the reason
    got = await client.messages(4)
    assert [normalise(m) for m in got] == [normalise(m) for m in after("c-11", 4)]
    await client.send(recorded_action("ami_actions", "c-13"))
    got = await client.messages(3)
    assert [normalise(m) for m in got] == [normalise(m) for m in after("c-13", 3)]
    assert fake.queues["hotline-12319"]["members"] == []
    await client.send(recorded_action("ami_actions", "c-14"))
    assert await client.read_until() == (b"Response: Error\r\nActionID: c-14\r\n"
                                         b"Message: Unable to remove interface: Not there\r\n\r\n")
    assert [message for _, message in fake.errors] == [
        "Unable to add interface: Already there", "Unable to add interface to queue: No such queue",
        "Unable to remove interface: Not there"]
    client.close()


# --- channels, variables, commands ----------------------------------------------------------------


async def test_channels_variables_redirect_and_commands_match_the_recording(fake):
    fake.channels = [dict(RECORDED_CHANNEL)]
    fake.variables = {"PJSIP/sipp-00000000": {"HOTLINE_CASE": "SZ-LG-20251121-0001"}}
    fake.commands["queue show hotline-12319"] = [
        ("hotline-12319 has 0 calls (max unlimited) in 'ringall' strategy (0s holdtime, 0s talktime), "
         "W:0, C:0, A:0, SL:0.0%, SL2:0.0% within 0s"),
        "   No Members", "   No Callers", ""]
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-15"))
    assert await client.messages(3) == recorded_replies("ami_actions", "c-15")
    for action_id in ("c-18", "c-19", "c-20", "c-21", "c-22", "c-23", "c-24", "c-25", "c-28", "c-29",
                      "c-37", "c-38", "c-39"):
        await client.send(recorded_action("ami_actions", action_id))
        expected = recorded_replies("ami_actions", action_id)[0]
        got = await client.read_until()
        while got.startswith(b"Event: "):  # VarSet events of Setvar; checked below
            assert transcripts.parse_message(got)["Event"] == "VarSet"
            got = await client.read_until()
        assert got == expected, action_id
    assert fake.global_variables == {"HOTLINE_GLOBAL": "g1"}
    assert fake.channels[0]["Context"] == "redirect-test"
    client.close()


async def test_setvar_event_for_a_global_variable(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-24"))
    reply, event = await client.messages(2)
    assert reply == recorded_replies("ami_actions", "c-24")[0]
    recorded = transcripts.events_from("ami_actions")
    expected_event = recorded[recorded.index(recorded_replies("ami_actions", "c-24")[0]) + 1]
    assert normalise(event) == normalise(expected_event)
    assert b"Channel: none\r\nUniqueid: none\r\n" in event
    client.close()


# --- Originate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action_id, outcome", [
    ("c-30", "answered"), ("c-31", "answered"), ("c-32", "failed"), ("c-34", "noanswer"), ("c-35", "noanswer"),
    ("c-36", "busy"),
])
async def test_async_originate_reply_then_originate_response_event(fake, action_id, outcome):
    fake.originate_outcome = outcome
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", action_id))
    recorded_reply, recorded_event = recorded_replies("ami_actions", action_id)
    assert await client.read_until() == recorded_reply  # Success / Originate successfully queued
    event = await client.read_until()
    assert normalise(event) == normalise(recorded_event)
    parsed = transcripts.parse_message(event)
    assert parsed["Event"] == "OriginateResponse" and parsed["ActionID"] == action_id
    assert parsed["Reason"] == {"answered": "4", "noanswer": "3", "busy": "0", "failed": "0"}[outcome]
    if outcome == "answered":
        assert parsed["Response"] == "Success" and parsed["Uniqueid"] != "<unknown>"
    else:
        assert parsed["Response"] == "Failure" and parsed["Uniqueid"] == "<unknown>"
        assert parsed["Channel"] == transcripts.parse_message(recorded_action("ami_actions", action_id))["Channel"]
    originate = await fake.wait_action("Originate")
    assert originate["ActionID"] == action_id
    client.close()


async def test_originate_outcome_delay_and_variables(fake):
    fake.originate_outcome = ["noanswer", "answered"]
    fake.originate_delay = 0.3
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-30"))
    assert (await client.read_until()).endswith(b"Message: Originate successfully queued\r\n\r\n")
    assert await client.quiet_for(0.15)
    first = transcripts.parse_message(await client.read_until())
    assert (first["Response"], first["Reason"]) == ("Failure", "3")
    await client.send(recorded_action("ami_actions", "c-30").replace(b"c-30", b"c-30b"))
    await client.read_until()
    second = transcripts.parse_message(await client.read_until())
    assert (second["ActionID"], second["Response"], second["Reason"]) == ("c-30b", "Success", "4")
    assert second["CallerIDName"] == "Hotline Survey" and second["CallerIDNum"] == "12319"
    action = await fake.wait_action("originate", count=2)
    assert action["Variable"] == ["HOTLINE_CASE=SZ-LG-20251121-0001", "SURVEY_TRY=1"]
    with pytest.raises(ValueError):
        fake.originate_outcome = "congested"
    client.close()


async def test_synchronous_originate_failure_is_an_error_reply_without_event(fake):
    fake.originate_outcome = "failed"
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_actions", "c-33"))
    assert await client.read_until() == recorded_replies("ami_actions", "c-33")[0]
    assert recorded_replies("ami_actions", "c-33")[0].endswith(b"Message: Originate failed\r\n\r\n")
    assert await client.quiet_for(fake.originate_delay + 0.2)
    client.close()


# --- breaking things -------------------------------------------------------------------------------


async def test_split_one_byte_sends_utf8_across_reads_and_bytes_equal_the_recording(fake):
    fake.add_channel("PJSIP/sipp-00000000", CallerIDNum="13800138000", CallerIDName="张三")
    client = await Client.connect(fake)
    await client.login()
    fake.split = 1
    before = len(fake.sent)
    await client.send(recorded_action("ami_utf8", "c-5"))  # Getvar CALLERID(name)
    expected = recorded_replies("ami_utf8", "c-5")[0]
    assert "Value: 张三".encode() in expected
    reads = []
    while sum(map(len, reads)) < len(expected):
        reads.append(await asyncio.wait_for(client.reader.read(65536), 2))
    assert b"".join(reads) == expected
    assert len(reads) > len(expected) // 2  # bytes really arrived in many reads
    undecodable = 0
    for chunk in reads:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= 1  # a character of 张三 was cut between two reads
    assert [data for _, data in fake.sent[before:]] == [bytes([b]) for b in expected]
    # Setvar/Getvar 龙岗区 (a reply the real Asterisk delivered in two reads), written byte-wise
    fake.split = "bytewise"
    await client.send(recorded_action("ami_utf8", "c-3"))
    reply, varset = await client.messages(2)
    assert reply == recorded_replies("ami_utf8", "c-3")[0]
    assert transcripts.parse_message(varset)["Value"] == "龙岗区"
    await client.send(recorded_action("ami_utf8", "c-4"))
    assert await client.read_until() == recorded_replies("ami_utf8", "c-4")[0]
    assert fake.variables["PJSIP/sipp-00000000"] == {"HOTLINE_DISTRICT": "龙岗区"}
    client.close()


async def test_push_writes_raw_bytes_to_logged_in_clients_only(fake):
    logged_in = await Client.connect(fake)
    await logged_in.login()
    anonymous = await Client.connect(fake)
    assert await fake.push(b"garbage without framing\r\nEvent: Half") == 1
    assert await asyncio.wait_for(logged_in.reader.readexactly(36), 2) == b"garbage without framing\r\nEvent: Half"
    assert await anonymous.quiet_for(0.1)
    logged_in.close()
    anonymous.close()


async def test_drop_aborts_connections_and_keeps_listening(fake):
    client = await Client.connect(fake)
    await client.login()
    assert await fake.drop() == 1
    with contextlib.suppress(ConnectionResetError):   # a FIN or, racing it, a reset: both end the session
        assert await client.eof()
    await fake.wait_until(lambda: fake.connected == 0)
    again = await Client.connect(fake)
    await again.login()
    assert fake.connections == 2 and fake.logins == 2
    again.close()


async def test_restart_sends_shutdown_refuses_while_down_then_listens_on_the_same_port(fake):
    port = fake.port
    client = await Client.connect(fake)
    await client.login()
    restarting = asyncio.create_task(fake.restart(0.6))
    shutdown = await client.read_until()
    recorded = next(m for m in transcripts.events_from("ami_restart") if m.startswith(b"Event: Shutdown"))
    assert normalise(shutdown) == normalise(recorded)
    assert b"Restart: True\r\n" in shutdown
    assert await client.eof()
    await fake.wait_until(lambda: not fake.listening)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(fake.host, port)
    assert not restarting.done()
    await asyncio.wait_for(restarting, 3)
    assert fake.port == port and fake.restarts == 1
    again = await Client.connect(fake)
    assert (await again.login())[0] == b"Response: Success\r\nActionID: c-1\r\nMessage: Authentication accepted\r\n\r\n"
    assert fake.logins == 2
    again.close()


async def test_restart_reset_window_resets_new_connections_without_banner(fake):
    restarting = asyncio.create_task(fake.restart(0.2, restart=False, reset_window=0.5))
    await asyncio.sleep(0.1)
    client = await Client.connect(fake, banner=False)  # accepted at the TCP level …
    try:
        data = await asyncio.wait_for(client.reader.read(100), 2)
    except ConnectionResetError:
        data = None
    assert data in (None, b"")  # … then reset, with no banner
    assert fake.connections == 1 and fake.logins == 0
    await asyncio.wait_for(restarting, 3)
    client = await Client.connect(fake)
    assert fake.connections == 2
    client.close()


# --- replaying recorded events ----------------------------------------------------------------------


async def test_play_sends_the_recorded_events_in_order_with_the_recorded_boundaries(fake):
    client = await Client.connect(fake)
    await client.login()
    own_ids = transcripts.action_ids("ami_queue_answered")
    expected = [m for m in transcripts.events_from("ami_queue_answered")
                if m.startswith(b"Event: ")
                and transcripts.parse_message(m).get("Event") not in ("FullyBooted", "SuccessfulAuth")
                and transcripts.parse_message(m).get("ActionID") not in own_ids]
    all_events = [m for m in transcripts.events_from("ami_queue_answered") if m.startswith(b"Event: ")]
    # the only recorded events left out are the FullyBooted and SuccessfulAuth of the recorded login
    assert len(all_events) - len(expected) == 2
    played_before = len(fake.sent)
    sent = await fake.play("ami_queue_answered")
    assert sent == expected
    got = await client.messages(len(expected))
    assert got == expected
    assert await client.quiet_for(0.1)
    names = [transcripts.parse_message(m)["Event"] for m in got]
    assert names.index("QueueCallerLeave") < names.index("AgentConnect") < names.index("AgentComplete")
    assert names.count("QueueMemberAdded") == 1 and names.count("QueueMemberRemoved") == 1
    # one write per recorded read, holding what is left of that read
    writes = [data for _, data in fake.sent[played_before:]]
    assert writes == [chunk for _, chunk in replay_plan("ami_queue_answered")]
    recorded_reads = transcripts.inbound_chunks("ami_queue_answered")
    event_only_reads = [r.data for r in recorded_reads if r.data.startswith(b"Event: ")
                        and b"Event: FullyBooted" not in r.data and b"Event: SuccessfulAuth" not in r.data]
    assert all(read in writes for read in event_only_reads)  # reads holding only events go out unchanged
    client.close()


async def test_play_keeps_a_message_split_across_two_reads_split(fake):
    # ami_restart conn 6: the Ping reply came in two reads; neither half is played. PeerStatus and
    # Shutdown are; the FullyBooted of that (booting) login is not, like every login's FullyBooted.
    plan = replay_plan("ami_restart", conn=6)
    messages, rest = transcripts.split_messages(b"".join(chunk for _, chunk in plan))
    assert rest == b"" and [transcripts.parse_message(m)["Event"] for m in messages] == ["PeerStatus", "Shutdown"]
    assert not any(b"Pong" in chunk for _, chunk in plan)
    client = await Client.connect(fake)
    await client.login()
    fake.split = 7
    assert await fake.play("ami_restart", conn=6) == messages
    assert await client.messages(2) == messages
    client.close()


async def test_userevent_action_reply_and_event_carry_raw_utf8(fake):
    client = await Client.connect(fake)
    await client.login()
    await client.send(recorded_action("ami_utf8", "c-2"))
    reply, event = await client.messages(2)
    recorded_reply, recorded_event = recorded_replies("ami_utf8", "c-2")
    assert reply == recorded_reply == b"Response: Success\r\nActionID: c-2\r\nMessage: Event Sent\r\n\r\n"
    assert normalise(event) == normalise(recorded_event)
    assert transcripts.parse_message(event)["Body"] == "你好，世界：市民反映占道经营"


async def test_events_off_session_gets_replies_but_no_events_and_lf_only_framing_is_accepted(fake):
    quiet = await Client.connect(fake)
    await quiet.send(b"Action: Login\nActionID: q-1\nUsername: hotline\nSecret: hotline-secret\nEvents: off\n\n")
    assert await quiet.read_until() == b"Response: Success\r\nActionID: q-1\r\nMessage: Authentication accepted\r\n\r\n"
    assert await quiet.quiet_for(0.1)  # no FullyBooted, no SuccessfulAuth
    await fake.send_event("UserEvent", {"UserEvent": "Ping"}, privilege="user,all")
    await quiet.send(b"Action: Login\r\nActionID: q-2\r\nUsername: hotline\r\nSecret: hotline-secret\r\n\r\n")
    assert await quiet.read_until() == b"Response: Success\r\nActionID: q-2\r\nMessage: Already authenticated\r\n\r\n"
    await quiet.send(recorded_action("ami_actions", "c-4"))  # QueueSummary, a list reply: still delivered
    assert await quiet.messages(3) == recorded_replies("ami_actions", "c-4")
    assert fake.logins == 1


async def test_before_list_complete_puts_events_inside_the_lists(fake):
    fake.channels = [dict(RECORDED_CHANNEL)]
    client = await Client.connect(fake)
    await client.login()

    async def hang_up(action_name: str) -> None:
        channel = fake.channels.pop()
        await fake.send_event(f"Hangup-{action_name}", fake.channel_headers(channel))
        fake.channels.append(channel)
    fake.before_list_complete = hang_up
    await client.send(recorded_action("ami_actions", "c-3"))   # QueueStatus
    names = [transcripts.parse_message(m).get("Event") for m in await client.messages(4)]
    assert names == [None, "QueueParams", "Hangup-QueueStatus", "QueueStatusComplete"]
    await client.send(recorded_action("ami_actions", "c-15"))  # CoreShowChannels
    got = await client.messages(4)
    assert [transcripts.parse_message(m).get("Event") for m in got] == [
        None, "CoreShowChannel", "Hangup-CoreShowChannels", "CoreShowChannelsComplete"]
    # the list itself is still what Asterisk sent, byte for byte
    assert [got[0], got[1], got[3]] == recorded_replies("ami_actions", "c-15")
    assert b"Uniqueid: 1795240779.0\r\n" in got[2] and b"ActionID" not in got[2]
    client.close()
