"""The FastAGI server against Asterisk 22's recorded side of FastAGI, over real sockets."""
from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ivr.agi import AGICall, AGIError, AGIHeaderError, AGIServer, CallerHungUp, parse_header, parse_reply
from ivr.agi_peer import AGIPeer
from tests.support.agi_replay import replay
from tests.support.transcripts import agi_sessions

RECORDED = ["agi_session_basic", "agi_session_extras", "agi_hangup_midway_stream", "agi_hangup_midway_wait",
            "agi_hangup_midway_idle", "agi_originated", "agi_originated_pjsip", "agi_utf8"]


async def serving(server: AGIServer):
    srv = await server.start("127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def probe_route(session, outcomes: list):
    """A route that sends exactly the recorded commands and notes how each ended."""
    async def probe(call: AGICall) -> None:
        outcomes.append(("env", dict(call.headers)))
        for command, _ in session.exchanges():
            try:
                reply = await call.send_command(command.decode("utf-8").rstrip("\n"))
                outcomes.append((reply.code, reply.result, reply.data, reply.endpos))
            except CallerHungUp:
                outcomes.append(("hangup",))
    return probe


async def replay_recording(name: str):
    """Replay the recorded session `name` into a probe route; (what the probe saw, replay result, server)."""
    session = agi_sessions(name)[0]
    outcomes: list = []
    server = AGIServer(header_timeout=2)
    server.add_route(session.env["agi_network_script"], probe_route(session, outcomes))
    srv, port = await serving(server)
    try:
        result = await replay(session, "127.0.0.1", port)
    finally:
        await server.close(srv)
    return outcomes, result, server


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_sessions_replay_byte_for_byte(name):
    session = agi_sessions(name)[0]
    outcomes, result, server = await replay_recording(name)
    assert result.mismatches == []
    assert len(result.commands) == len(session.exchanges())
    assert result.saw_half_close, "the script must half-close so Asterisk sends HANGUP and closes"
    assert outcomes[0][1]["agi_uniqueid"] == session.env["agi_uniqueid"]
    assert server.sessions == 1 and server.rejected == 0


async def test_replies_are_understood_as_asterisk_means_them():
    outcomes, _, _ = await replay_recording("agi_session_extras")
    replies = outcomes[1:]
    assert replies[6] == (200, "1", "PJSIP/sipp-00000000", None)          # GET VARIABLE CHANNEL
    assert replies[5] == (200, "0", None, None)                            # unset variable
    assert replies[10] == (200, "-1", None, 0)                             # missing prompt: not a hangup
    assert replies[12] == (200, "", "timeout", None)                       # GET DATA without keys
    assert replies[13][0] == 520 and "End of proper usage" in replies[13][2]  # usage text over 2 reads
    assert replies[18] == (200, "-2", None, None)                          # EXEC of an unknown app


@pytest.mark.parametrize("name,hangup_at", [("agi_hangup_midway_stream", 1), ("agi_hangup_midway_wait", 1),
                                            ("agi_hangup_midway_idle", 2)])
async def test_hangup_midway_is_seen_where_it_happened(name, hangup_at):
    outcomes, _, _ = await replay_recording(name)
    replies = outcomes[1:]
    # the first command that reports the hangup: the blocking one (-1 + HANGUP), or for an idle
    # hangup the next media command (511 on the dead channel)
    first = next(i for i, r in enumerate(replies) if r == ("hangup",))
    assert first == (hangup_at if name != "agi_hangup_midway_idle" else 2)
    assert replies[hangup_at - 1 if name == "agi_hangup_midway_idle" else 0][0] == 200
    # on the dead channel, variables still work; media commands are refused
    assert (200, "1", "13800138000", None) in replies


async def test_utf8_values_arrive_whole():
    outcomes, _, _ = await replay_recording("agi_utf8")
    assert outcomes[1] == (200, "1", "张三", None)
    assert outcomes[5] == (200, "1", "张三/市民反映占道经营", None)


async def test_plain_function_routes_work():  # panoramisk 1.4: AttributeError (asyncio.coroutine)
    seen = []
    server = AGIServer()
    server.add_route("inbound", lambda call: seen.append(call.caller))
    srv, port = await serving(server)
    try:
        result = await AGIPeer("127.0.0.1", port, "inbound", caller="13912345678").run()
    finally:
        await server.close(srv)
    assert seen == ["13912345678"]
    assert result.closed_by_server and result.exchanges == []


async def test_header_cut_short_is_dropped_alone_while_other_calls_go_on(caplog):
    """panoramisk 1.4 spins forever on this and freezes the event loop."""
    server = AGIServer(header_timeout=2)

    async def flow(call: AGICall) -> None:
        await call.answer()
        await call.set_variable("HOTLINE_INTENT", "report")
    server.add_route("inbound", flow)
    srv, port = await serving(server)
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"agi_network: yes\nagi_network_script: inbound\nagi_uniq")
        await w.drain()
        w.close()
        with caplog.at_level(logging.WARNING, "ivr.agi"):
            results = await asyncio.wait_for(asyncio.gather(*(
                AGIPeer("127.0.0.1", port, "inbound", uniqueid=f"ok.{n}").run() for n in range(5))), 5)
            for _ in range(50):
                if server.rejected:
                    break
                await asyncio.sleep(0.02)
    finally:
        await server.close(srv)
    assert all(r.variables["HOTLINE_INTENT"] == "report" for r in results)
    assert server.rejected == 1
    assert "connection closed inside the AGI environment" in caplog.text


@pytest.mark.parametrize("payload,why", [
    (b"agi_network: yes\n" + b"agi_x: " + b"y" * 20000, "larger than"),
    (b"GET / HTTP/1.1\nHost: x\n\n", "is not 'agi_name: value'"),
    (b"agi_network: yes\nagi_channel: x\n\n", "names no script"),
    (b"agi_network_script: inbound\nagi_callerid: \xff\xfe\n\n", "not UTF-8"),
])
async def test_bad_headers_are_refused_with_a_reason(payload, why, caplog):
    server = AGIServer(header_timeout=1)
    server.add_route("inbound", lambda call: None)
    srv, port = await serving(server)
    try:
        with caplog.at_level(logging.WARNING, "ivr.agi"):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(payload)
            await w.drain()
            assert await asyncio.wait_for(r.read(), 3) == b""  # the server closed it
            w.close()
    finally:
        await server.close(srv)
    assert server.rejected == 1
    assert why in caplog.text


async def test_silent_connection_times_out():
    server = AGIServer(header_timeout=0.3)
    srv, port = await serving(server)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"agi_network: yes\n")
        await w.drain()
        assert await asyncio.wait_for(r.read(), 3) == b""
        w.close()
    finally:
        await server.close(srv)
    assert server.rejected == 1


async def test_unknown_route_is_logged_and_the_call_goes_on_in_the_dialplan(caplog):
    server = AGIServer()
    server.add_route("inbound", lambda call: None)
    srv, port = await serving(server)
    try:
        with caplog.at_level(logging.ERROR, "ivr.agi"):
            result = await AGIPeer("127.0.0.1", port, "no-such-flow").run()
    finally:
        await server.close(srv)
    assert result.exchanges == [] and result.closed_by_server
    assert server.rejected == 1 and "no route 'no-such-flow'" in caplog.text


async def test_a_failing_flow_ends_only_its_own_call(caplog):
    server = AGIServer()

    async def broken(call: AGICall) -> None:
        await call.answer()
        raise RuntimeError("bug in a flow")

    async def good(call: AGICall) -> None:
        await call.set_variable("OK", "1")
    server.add_route("broken", broken)
    server.add_route("good", good)
    srv, port = await serving(server)
    try:
        bad, ok = await asyncio.gather(AGIPeer("127.0.0.1", port, "broken").run(),
                                       AGIPeer("127.0.0.1", port, "good").run())
    finally:
        await server.close(srv)
    assert bad.closed_by_server and bad.commands == ["ANSWER"]
    assert ok.variables["OK"] == "1"
    assert "bug in a flow" in caplog.text


async def test_command_timeout_ends_the_session():
    server = AGIServer()
    server.command_timeout = 0.3
    ended = []

    async def flow(call: AGICall) -> None:
        try:
            await call.answer()
        except AGIError as exc:
            ended.append(str(exc))
            raise
    server.add_route("inbound", flow)
    srv, port = await serving(server)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"agi_network_script: inbound\nagi_uniqueid: 1.1\n\n")
        await w.drain()
        assert await asyncio.wait_for(r.readline(), 2) == b"ANSWER\n"
        assert await asyncio.wait_for(r.read(), 3) == b""   # no reply from "Asterisk": session ends
        w.close()
    finally:
        await server.close(srv)
    assert ended and "no reply" in ended[0]


def test_set_variable_quotes_hostile_values():
    from ivr.agi import quote
    assert quote('a "b"\nSTREAM FILE x') == '"a \\"b\\" STREAM FILE x"'


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_header_reader_raises_only_its_own_error(block):
    try:
        headers = parse_header(block)
    except AGIHeaderError:
        return
    assert all(k.startswith("agi_") for k in headers)


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_reply_parser_raises_only_its_own_error(line):
    try:
        reply = parse_reply(line)
    except AGIError:
        return
    assert 0 <= reply.code <= 999
