"""Tests of the fake SMSC (tests/support/smsc.py) with two independent SMPP clients and a raw socket.

* ``smpplib`` 2.2 — a classic synchronous client, run in a thread (``asyncio.to_thread``).
* ``smpp34`` 1.5 — the Rust-backed asyncio client the product's connector is built on. Several
  tests here pin down how it behaves (what it raises, what it returns) on a refused bind, a
  throttled submit, a dropped connection, an SMSC that goes silent: the connector relies on it.
* a raw asyncio socket with a hand-written header codec, for the malformed PDUs neither client can send.
"""
from __future__ import annotations

import asyncio
import struct
import time

import pytest
import smpp34
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm

from tests.support.smsc import (
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    BIND_TRANSMITTER,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESME_RALYBND,
    ESME_RBINDFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVDSTADR,
    ESME_RINVESMCLASS,
    ESME_RINVMSGLEN,
    ESME_RINVOPTPARSTREAM,
    ESME_RINVPARLEN,
    ESME_RINVPASWD,
    ESME_RINVSCHED,
    ESME_RINVSRCADR,
    ESME_RINVSYSID,
    ESME_ROK,
    ESME_RTHROTTLED,
    GENERIC_NACK,
    MESSAGE_STATES,
    QUERY_SM,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    UNBIND,
    UNBIND_RESP,
    Concat,
    FakeSMSC,
    concat_udh,
    gsm7_decode,
    gsm7_encode,
    parse_udh,
)

DEST = "13800138000"
LONG_CHINESE = ("您好，这里是12319城建服务热线。您于今日反映的福田区某小区路灯不亮的问题已受理，工单号为"
                "GD20261121-0042，我们将在三个工作日内安排维修人员上门处理，请保持电话畅通。感谢您的支持！🏮")


@pytest.fixture
async def fake():
    server = await FakeSMSC.start()
    yield server
    await server.stop()


@pytest.fixture
async def clients():
    """smpp34 clients made by a test; every one is stopped (``await client.stop()``) at teardown."""
    made: list[smpp34.Client] = []
    yield made
    for client in made:
        await client.stop()


async def bind34(fake: FakeSMSC, clients: list, *, system_id: str = "hotline", password: str = "secret",
                 **kwargs) -> smpp34.Smsc:
    client = smpp34.Client(fake.host, fake.port, system_id, password, **kwargs)
    clients.append(client)
    return await client.connect()


def smpplib_client(fake: FakeSMSC) -> smpplib.client.Client:
    client = smpplib.client.Client(fake.host, fake.port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    return client


def ucs2_parts(text: str, octets: int, ref: int) -> list[bytes]:
    """Concatenated UCS-2 parts cut every ``octets`` octets (may split a surrogate pair)."""
    data = text.encode("utf-16-be")
    chunks = [data[i:i + octets] for i in range(0, len(data), octets)]
    return [concat_udh(ref, len(chunks), n) + chunk for n, chunk in enumerate(chunks, start=1)]


# --- a raw ESME for the malformed cases -------------------------------------------------------------


def c_str(value: str) -> bytes:
    return value.encode("ascii") + b"\0"


def bind_body(system_id: str = "hotline", password: str = "secret") -> bytes:
    return c_str(system_id) + c_str(password) + c_str("") + bytes([0x34, 0, 0]) + c_str("")


def submit_body(dest: str = DEST, message: bytes = b"hello", *, source: str = "12319", esm_class: int = 0,
                data_coding: int = 0, schedule: str = "", tlvs: bytes = b"", sm_length: int | None = None) -> bytes:
    return (c_str("") + bytes([0, 0]) + c_str(source) + bytes([1, 1]) + c_str(dest)
            + bytes([esm_class, 0, 0]) + c_str(schedule) + c_str("") + bytes([0, 0, data_coding, 0])
            + bytes([len(message) if sm_length is None else sm_length]) + message + tlvs)


class RawESME:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seq = 0

    @classmethod
    async def connect(cls, fake: FakeSMSC) -> RawESME:
        return cls(*await asyncio.open_connection(fake.host, fake.port))

    async def send(self, command_id: int, body: bytes = b"", *, seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.writer.write(struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body)
        await self.writer.drain()
        return seq

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 2.0) -> tuple[int, int, int, bytes] | None:
        """(command_id, status, sequence, body), or None at EOF."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(16), timeout)
        except asyncio.IncompleteReadError:
            return None
        length, command_id, status, seq = struct.unpack(">IIII", head)
        body = await asyncio.wait_for(self.reader.readexactly(length - 16), timeout)
        return command_id, status, seq, body

    async def request(self, command_id: int, body: bytes = b"") -> tuple[int, int, int, bytes]:
        seq = await self.send(command_id, body)
        reply = await self.read()
        assert reply is not None and reply[2] == seq, reply
        return reply

    async def bind(self) -> None:
        command_id, status, _, body = await self.request(BIND_TRANSCEIVER, bind_body())
        assert (command_id, status) == (BIND_TRANSCEIVER_RESP, ESME_ROK)
        assert body.startswith(b"FAKESMSC\0")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw(fake):
    esmes: list[RawESME] = []

    async def connect() -> RawESME:
        esme = await RawESME.connect(fake)
        esmes.append(esme)
        return esme

    yield connect
    for esme in esmes:
        esme.close()


# --- life cycle ----------------------------------------------------------------------------------------


async def test_listens_on_an_ephemeral_port_and_async_with_stops_it():
    async with await FakeSMSC.start(port=0) as smsc:
        assert smsc.host == "127.0.0.1" and smsc.port > 0 and smsc.listening
        reader, writer = await asyncio.open_connection(smsc.host, smsc.port)
        await smsc.wait_for(lambda: smsc.connected == 1, what="a connection")
        assert smsc.connections == 1 and smsc.sessions_bound == 0
    assert not smsc.listening
    assert await reader.read() == b""  # stop() aborted the connection
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(smsc.host, smsc.port)


async def test_wait_for_times_out_with_a_summary(fake):
    with pytest.raises(TimeoutError, match=r"FakeSMSC: a submit not reached within 0.1 s; binds=\[\]"):
        await fake.wait_for(lambda: fake.submits, timeout=0.1, what="a submit")


# --- smpplib (synchronous, in a thread) ----------------------------------------------------------------


async def test_smpplib_long_chinese_message_is_reassembled_exactly(fake):
    def send() -> list:
        client = smpplib_client(fake)
        try:
            client.bind_transceiver(system_id="hotline", password="secret")
            parts, encoding, esm_class = smpplib.gsm.make_parts(LONG_CHINESE)
            assert (encoding, esm_class) == (smpplib.consts.SMPP_ENCODING_ISO10646, smpplib.consts.SMPP_GSMFEAT_UDHI)
            resps = []
            client.set_message_sent_handler(lambda pdu: resps.append(pdu))
            for part in parts:
                client.send_message(source_addr="12319", destination_addr=DEST, short_message=part,
                                    data_coding=encoding, esm_class=esm_class, registered_delivery=1)
                client.read_once()
            client.unbind()
            return resps
        finally:
            client.disconnect()

    resps = await asyncio.to_thread(send)
    assert fake.texts() == [(DEST, LONG_CHINESE)]
    assert fake.binds == [("hotline", "secret", "transceiver", ESME_ROK)]
    assert len(fake.submits) == len(resps) == 2
    ref = fake.submits[0].udh.ref  # smpplib picks a random 8-bit reference
    assert [s.udh for s in fake.submits] == [Concat(ref, 2, 1), Concat(ref, 2, 2)]
    for submit, resp in zip(fake.submits, resps):
        assert (submit.esm_class, submit.data_coding, submit.registered_delivery) == (0x40, 8, 1)
        assert submit.source_addr == "12319" and submit.destination_addr == DEST
        assert submit.udh_raw == submit.short_message[:6] and submit.text_part == submit.short_message[6:]
        assert resp.message_id.decode() == submit.message_id
    assert len({s.message_id for s in fake.submits}) == 2
    assert fake.unbinds == 1 and fake.sessions_bound == 0
    assert fake.delivered_count_by_text() == {LONG_CHINESE: 1}


@pytest.mark.parametrize(("system_id", "password", "refuse", "status"), [
    ("hotline", "wrong", False, ESME_RINVPASWD),
    ("other", "secret", False, ESME_RINVSYSID),
    ("hotline", "secret", True, ESME_RBINDFAIL),
])
async def test_smpplib_bind_refusals_carry_the_status(fake, system_id, password, refuse, status):
    fake.refuse_binds = refuse

    def bind() -> None:
        client = smpplib_client(fake)
        try:
            client.bind_transceiver(system_id=system_id, password=password)
        finally:
            client.disconnect()

    with pytest.raises(smpplib.exceptions.PDUError) as caught:
        await asyncio.to_thread(bind)
    assert caught.value.args[1] == status
    assert fake.binds == [(system_id, password, "transceiver", status)]
    assert fake.sessions_bound == 0


async def test_smpplib_decodes_the_fakes_mo_and_receipt(fake):
    received: list = []

    def listen() -> None:
        client = smpplib_client(fake)
        try:
            client.bind_receiver(system_id="hotline", password="secret")
            client.set_message_received_handler(lambda pdu: received.append(pdu))
            while len(received) < 2:
                client.read_once()
        finally:
            client.disconnect()

    async def push() -> None:
        await fake.wait_for(lambda: fake.sessions_bound, what="smpplib bound")
        await fake.send_mo(DEST, "路灯不亮 @ 福田", to="12319")
        await fake.send_receipt("5C0000FF", "UNDELIV", err="013", from_addr=DEST, to_addr="12319")

    await asyncio.gather(asyncio.to_thread(listen), push())
    mo, receipt = received
    assert (mo.source_addr, mo.destination_addr, mo.data_coding, mo.esm_class) == (DEST.encode(), b"12319", 8, 0)
    assert mo.short_message.decode("utf-16-be") == "路灯不亮 @ 福田"
    assert receipt.esm_class == 0x04 and receipt.data_coding == 0
    assert receipt.receipted_message_id == b"5C0000FF"
    assert receipt.message_state == MESSAGE_STATES["UNDELIV"] == 5
    assert receipt.short_message.startswith(b"id:5C0000FF sub:001 dlvr:000 submit date:")
    assert b" stat:UNDELIV err:013 text:" in receipt.short_message
    assert fake.binds[0].bind_type == "receiver"
    assert [(r.status, r.command_id) for r in fake.deliver_resps] == [(ESME_ROK, DELIVER_SM_RESP)] * 2


# --- smpp34 (the product's library) --------------------------------------------------------------------


async def test_smpp34_submits_concatenated_ucs2_and_gets_a_receipt(fake, clients):
    fake.auto_receipts = True
    smsc = await bind34(fake, clients)
    assert smsc.system_id == "hotline"  # smpp34 reports OUR system_id, not the SMSC's
    parts = ucs2_parts(LONG_CHINESE, 134, ref=42)
    resps = [await smsc.submit_sm(DEST, part, source_addr="12319", data_coding=8, esm_class=0x40,
                                  registered_delivery=1) for part in parts]
    assert all(r.is_success and r.command_status == 0 for r in resps)
    assert [r.message_id for r in resps] == [s.message_id for s in fake.submits]
    assert fake.texts() == [(DEST, LONG_CHINESE)]
    assert [s.udh for s in fake.submits] == [Concat(42, 2, 1), Concat(42, 2, 2)]
    # smpp34's defaults: source ton/npi 0/0, destination ton/npi 1/1
    assert [(s.source_addr_ton, s.source_addr_npi, s.dest_addr_ton, s.dest_addr_npi) for s in fake.submits] == \
        [(0, 0, 1, 1)] * 2

    receipts = [await asyncio.wait_for(smsc.next(), 3) for _ in parts]
    # smpp34 hands each inbound deliver_sm to its own tokio task: events may come out of wire order
    receipts.sort(key=lambda e: {t.tag: t.value for t in e.tlvs}[TLV_RECEIPTED_MESSAGE_ID])
    for event, resp in zip(receipts, resps):
        assert isinstance(event, smpp34.DeliverSmEvent)
        assert (event.esm_class, event.data_coding, event.source_addr, event.destination_addr) == (4, 0, DEST, "12319")
        tlvs = {t.tag: t for t in event.tlvs}
        assert tlvs[TLV_RECEIPTED_MESSAGE_ID].as_string() == resp.message_id
        assert tlvs[TLV_RECEIPTED_MESSAGE_ID].value == resp.message_id.encode() + b"\0"
        assert tlvs[TLV_MESSAGE_STATE].as_int() == 2
        assert event.short_message.decode().startswith(f"id:{resp.message_id} sub:001 dlvr:001 submit date:")
        assert event.short_message.endswith(b" stat:DELIVRD err:000 text:")
    # smpp34 hands the event to Python before its deliver_sm_resp is on the wire
    await fake.wait_for(lambda: len(fake.deliver_resps) == 2, what="both deliver_sm_resp")
    assert [r.status for r in fake.deliver_resps] == [ESME_ROK, ESME_ROK]


async def test_smpp34_receives_an_mo_in_ucs2_with_emoji(fake, clients):
    smsc = await bind34(fake, clients)
    text = "井盖丢了😡👉🏻快来修"
    seq = await fake.send_mo(DEST, text)
    event = await asyncio.wait_for(smsc.next(), 3)
    assert isinstance(event, smpp34.DeliverSmEvent)
    assert (event.source_addr, event.destination_addr, event.data_coding, event.esm_class) == (DEST, "12319", 8, 0)
    assert event.short_message == text.encode("utf-16-be")
    assert event.short_message.decode("utf-16-be") == text
    assert fake.deliver_resps[-1][:3] == (fake.sessions[0].id, seq, ESME_ROK)

    await fake.send_mo(DEST, "Hello @ 12319 {ok}", data_coding=0)
    event = await asyncio.wait_for(smsc.next(), 3)
    assert event.data_coding == 0 and event.short_message == b"Hello \x00 12319 \x1b(ok\x1b)"


async def test_smpp34_gets_a_5000_character_mo_as_75_parts(fake, clients):
    smsc = await bind34(fake, clients)
    text = "".join(chr(0x4E00 + (i * 37) % 20000) for i in range(5000))
    seqs = await fake.send_long_mo(DEST, text, ref=7)
    assert len(seqs) == 75 == -(-5000 // 67)
    pieces = {}
    for _ in range(75):
        event = await asyncio.wait_for(smsc.next(), 3)
        assert event.esm_class == 0x40 and event.data_coding == 8
        udh, concat, rest = parse_udh(event.short_message)
        assert udh == bytes([5, 0, 3, 7, 75, concat.seq])
        pieces[concat.seq] = rest
    assert sorted(pieces) == list(range(1, 76))
    assert all(len(pieces[n]) == 134 for n in range(1, 75)) and len(pieces[75]) == 2 * (5000 - 74 * 67)
    assert b"".join(pieces[n] for n in range(1, 76)).decode("utf-16-be") == text
    assert len(fake.deliver_resps) == 75 and {r.status for r in fake.deliver_resps} == {ESME_ROK}


async def test_emoji_survive_ucs2_both_ways_even_across_a_part_boundary(fake, clients):
    smsc = await bind34(fake, clients)
    text = "A" * 66 + "🚧" + "道路塌陷" + "👷‍♀️" * 40  # the 🚧 surrogate pair straddles octet 134
    parts = ucs2_parts(text, 134, ref=300 % 256)
    assert 0xD8 <= parts[0][-2] <= 0xDB  # part 1 really ends on a high surrogate
    for part in parts:
        assert (await smsc.submit_sm(DEST, part, data_coding=8, esm_class=0x40)).is_success
    assert fake.texts() == [(DEST, text)]
    assert fake.submits[0].text.endswith("\ud83d")  # the part alone holds half the pair

    await fake.send_long_mo(DEST, text, ref=9, ref16=True)
    seen = {}
    while len(seen) < len(parts):
        event = await asyncio.wait_for(smsc.next(), 3)
        _, concat, rest = parse_udh(event.short_message)
        assert concat.ref_bits == 16 and concat.ref == 9
        seen[concat.seq] = rest
    # the fake, like a handset, never ends a part on half a surrogate pair
    assert all(not 0xD8 <= seen[n][-2] <= 0xDB for n in seen)
    assert b"".join(seen[n] for n in sorted(seen)).decode("utf-16-be") == text


async def test_smpp34_bind_refused_is_only_a_timeout_and_the_client_is_single_use(fake, clients):
    """smpp34 1.5 discards the bind_resp status: a wrong password surfaces as ``SmppError("bind
    timed out")`` after ``connect_timeout_ms``, exactly like an SMSC that never answers. The status
    is only visible on the SMSC's side — the product has to find it out another way."""
    client = smpp34.Client(fake.host, fake.port, "hotline", "wrong", connect_timeout_ms=500)
    clients.append(client)
    started = time.monotonic()
    with pytest.raises(smpp34.SmppError) as caught:
        await client.connect()
    assert str(caught.value) == "bind timed out"
    assert 0.45 < time.monotonic() - started < 3
    assert fake.binds == [("hotline", "wrong", "transceiver", ESME_RINVPASWD)]
    assert not await client.is_alive()
    await fake.wait_for(lambda: fake.connected == 0, what="smpp34 to close the refused session")

    with pytest.raises(RuntimeError, match=r"^connect\(\) already called$"):
        await client.connect()  # a Client cannot be reused: make a new one

    fake.never_answer = True
    silent = smpp34.Client(fake.host, fake.port, "hotline", "secret", connect_timeout_ms=500)
    clients.append(silent)
    with pytest.raises(smpp34.SmppError, match=r"^bind timed out$"):
        await silent.connect()
    assert len(fake.binds) == 1 and fake.unanswered == 1  # never_answer records nothing
    fake.never_answer = False

    assert (await bind34(fake, clients)).system_id == "hotline"
    assert fake.binds[-1] == ("hotline", "secret", "transceiver", ESME_ROK) and fake.sessions_bound == 1


async def test_smpp34_connection_refused_names_the_cause():
    probe = await FakeSMSC.start()
    port = probe.port
    await probe.stop()
    client = smpp34.Client("127.0.0.1", port, "hotline", "secret", connect_timeout_ms=5000)
    started = time.monotonic()
    with pytest.raises(smpp34.SmppError, match=rf"^TCP connect to 127\.0\.0\.1:{port} failed: Connection refused"):
        await client.connect()
    assert time.monotonic() - started < 1
    await client.stop()


async def test_smpp34_throttled_submit_is_a_response_not_an_exception(fake, clients):
    smsc = await bind34(fake, clients)
    fake.throttle_next = 2
    first = await smsc.submit_sm(DEST, b"one")
    second = await smsc.submit_sm(DEST, b"two")
    third = await smsc.submit_sm(DEST, b"three")
    for resp in (first, second):
        assert isinstance(resp, smpp34.SubmitSmResp)
        assert (resp.command_status, resp.message_id, resp.is_success) == (ESME_RTHROTTLED, None, False)
        assert resp.command_status == smpp34.ESME_RTHROTTLED
    assert third.is_success and third.message_id == fake.submits[0].message_id
    assert [s.short_message for s in fake.submits] == [b"three"]
    assert [(s.short_message, s.status) for s in fake.rejected_submits] == [(b"one", 0x58), (b"two", 0x58)]
    assert fake.texts() == [(DEST, "three")]


async def test_smpp34_in_flight_submits_fail_with_rsyserr_when_the_connection_drops(fake, clients):
    smsc = await bind34(fake, clients)
    fake.drop_after_submits, fake.drop_before_resp = 2, True
    fake.reply_delay = 0.2  # keep the first response back so the other submits are in flight too
    results = await asyncio.gather(*(smsc.submit_sm(DEST, f"m{i}".encode()) for i in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, smpp34.SmppError) and str(r) == "ESME_RSYSERR (0x00000008)" for r in results), results
    # the SMSC accepted two of them, and the ESME cannot tell which (concurrent submit_sm calls
    # are separate tokio tasks: they reach the wire in no particular order)
    accepted = [s.short_message for s in fake.submits]
    assert len(accepted) == 2 and set(accepted) < {b"m0", b"m1", b"m2", b"m3"} and fake.drops == 1

    assert isinstance(await asyncio.wait_for(smsc.next(), 3), smpp34.Disconnected)
    clients[0]  # the Client is still there, but its session is over:
    assert not await clients[0].is_alive()
    started = time.monotonic()
    with pytest.raises(smpp34.SmppError, match=r"^ESME_RSYSERR \(0x00000008\)$"):
        await smsc.submit_sm(DEST, b"after")
    assert time.monotonic() - started < 1
    # a second next() after Disconnected never returns
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(smsc.next(), 0.3)


async def test_smpp34_drop_after_the_response_then_receipt_waits_for_the_rebind(fake, clients):
    fake.auto_receipts, fake.receipt_delay = True, 0.0
    fake.drop_after_submits = 1
    smsc = await bind34(fake, clients)
    resp = await smsc.submit_sm(DEST, b"kept", registered_delivery=1)
    assert resp.is_success and resp.message_id == fake.submits[0].message_id
    assert isinstance(await asyncio.wait_for(smsc.next(), 3), smpp34.Disconnected)
    fake.drop_after_submits = None

    again = await bind34(fake, clients)  # a new Client: the old one cannot connect() again
    receipt = await asyncio.wait_for(again.next(), 3)
    assert {t.tag: t.as_string() for t in receipt.tlvs}[TLV_RECEIPTED_MESSAGE_ID] == resp.message_id
    assert fake.connections == 2


async def test_smpp34_does_not_enforce_its_window(fake, clients):
    smsc = await bind34(fake, clients, window_size=2)
    fake.reply_delay = 1.5
    batch = asyncio.gather(*(smsc.submit_sm(DEST, f"w{i}".encode()) for i in range(8)))
    await fake.wait_for(lambda: len(fake.submits) == 8, timeout=1.2, what="8 submits before any response")
    assert not any(p.command == "submit_sm_resp" for p in fake.log)
    resps = await batch
    assert all(r.is_success for r in resps)


async def test_smpp34_stop_leaves_the_socket_open_and_a_later_submit_still_goes_out(fake, clients):
    """``Client.stop()`` ends the session task but not the TCP connection: the SMSC still sees a bound
    session, and a submit_sm made afterwards is written and ACCEPTED by the SMSC while the caller
    gets ``SmppError("ESME_RSYSERR (0x00000008)")``. Unbind first; never submit after stop()."""
    smsc = await bind34(fake, clients)
    assert await clients[0].is_alive() and fake.sessions_bound == 1
    await clients[0].stop()
    assert not await clients[0].is_alive()
    await asyncio.sleep(0.3)
    assert fake.connected == 1 and fake.sessions_bound == 1 and fake.unbinds == 0
    with pytest.raises(smpp34.SmppError, match=r"^ESME_RSYSERR \(0x00000008\)$"):
        await smsc.submit_sm(DEST, b"after stop")
    await fake.wait_for(lambda: fake.submits, what="the submit made after stop()")
    assert [s.short_message for s in fake.submits] == [b"after stop"]


async def test_smpp34_unbind_sends_unbind_and_the_smsc_closes(fake, clients):
    smsc = await bind34(fake, clients)
    await smsc.unbind()
    await fake.wait_for(lambda: fake.unbinds == 1 and fake.connected == 0, what="unbind")
    assert [p.command for p in fake.log] == ["bind_transceiver", "bind_transceiver_resp", "unbind", "unbind_resp"]
    assert not await clients[0].is_alive()
    assert isinstance(await asyncio.wait_for(smsc.next(), 3), smpp34.Disconnected)


async def test_smsc_initiated_unbind_and_enquire_link_reach_smpp34(fake, clients):
    smsc = await bind34(fake, clients)
    seq = await fake.send_enquire_link()
    assert ("in", "enquire_link_resp", seq) in [(p.direction, p.command, p.sequence) for p in fake.log]
    assert await fake.unbind_all() == 1
    # smpp34 1.5 drops the connection on an unbind without getting its unbind_resp out
    assert [p.command for p in fake.log][-1] == "unbind" and fake.connected == 0
    assert isinstance(await asyncio.wait_for(smsc.next(), 3), smpp34.Disconnected)
    assert not await clients[0].is_alive()


async def test_smpp34_answers_garbage_from_the_smsc(fake, clients):
    smsc = await bind34(fake, clients)
    await fake.send_raw(struct.pack(">IIII", 16, 0x00000777, 0, 66))  # unknown command_id
    await fake.wait_for(lambda: fake.generic_nacks_received, what="a generic_nack from smpp34")
    assert fake.generic_nacks_received == [(fake.sessions[0].id, 66, ESME_RINVCMDID)]
    # a deliver_sm cut short: smpp34 1.5 answers it with a submit_sm_resp (sic) carrying ESME_RINVPARLEN
    await fake.send_raw(struct.pack(">IIII", 17, DELIVER_SM, 0, 67) + b"\0")
    await fake.wait_for(lambda: fake.errors, what="smpp34's answer to a truncated deliver_sm")
    assert [(e.command_id, e.sequence, e.status) for e in fake.errors] == [(SUBMIT_SM_RESP, 67, ESME_RINVPARLEN)]
    assert await clients[0].is_alive()
    assert (await smsc.submit_sm(DEST, b"still up")).is_success
    # a command_length that breaks the framing: smpp34 gives up on the connection
    await fake.send_raw(struct.pack(">I", 8) + b"\0" * 12)
    assert isinstance(await asyncio.wait_for(smsc.next(), 3), smpp34.Disconnected)


async def test_smpp34_full_inbound_queue_breaks_its_framing_and_loses_disconnected(fake, clients):
    """With ``inbound_capacity`` events unread, smpp34 1.5 answers the next deliver_sm with
    ESME_RMSGQFUL in a deliver_sm_resp whose command_length says 16 while 17 octets go out (a stray
    NUL message_id). The SMSC's framing is lost on the following PDU and it drops the link — and the
    ``Disconnected`` sentinel cannot be queued either, so ``next()`` hangs although ``is_alive()``
    is False."""
    smsc = await bind34(fake, clients, inbound_capacity=1)
    await fake.send_mo(DEST, "one")
    await fake.send_mo(DEST, "two")
    assert [r.status for r in fake.deliver_resps] == [ESME_ROK, 0x14]  # ESME_RMSGQFUL
    with pytest.raises(ConnectionError, match="FakeSMSC: session 1 closed"):
        await fake.send_mo(DEST, "three")
    assert [(e.status, e.reason) for e in fake.errors] == \
        [(ESME_RINVCMDLEN, "command_length 0 outside 16..65536: framing lost")]
    await fake.wait_for(lambda: fake.connected == 0, what="the drop")
    assert (await asyncio.wait_for(smsc.next(), 3)).short_message.decode("utf-16-be") == "one"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(smsc.next(), 0.5)
    assert not await clients[0].is_alive()


async def test_smpp34_cannot_put_more_than_254_octets_in_short_message(fake, clients):
    smsc = await bind34(fake, clients)
    with pytest.raises(Exception, match="rust future panicked") as caught:
        await smsc.submit_sm(DEST, b"x" * 255)
    assert type(caught.value).__name__ == "RustPanic"
    assert not fake.submits and await clients[0].is_alive()
    payload = ("长" * 300).encode("utf-16-be")
    resp = await smsc.submit_sm(DEST, b"", data_coding=8, tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, payload)])
    assert resp.is_success and fake.texts() == [(DEST, "长" * 300)]


# --- the fake's own codec, by raw socket --------------------------------------------------------------


async def test_malformed_pdus_get_generic_nack_and_keep_the_session_when_framing_holds(fake, raw):
    esme = await raw()
    # a bind whose body stops inside system_id: no NUL
    seq = await esme.send(BIND_TRANSCEIVER, b"hotl")
    assert await esme.read() == (GENERIC_NACK, ESME_RINVCMDLEN, seq, b"")
    await esme.bind()
    # unknown command_id
    seq = await esme.send(0x00000777)
    assert await esme.read() == (GENERIC_NACK, ESME_RINVCMDID, seq, b"")
    # a real command the fake does not model
    assert await esme.request(QUERY_SM, c_str("5C000001") + bytes([0, 0]) + c_str("12319")) == \
        (GENERIC_NACK, ESME_RINVCMDID, esme.seq, b"")
    assert fake.unmodelled == ["query_sm"]
    # submit_sm whose sm_length runs past the end of the body
    seq = await esme.send(SUBMIT_SM, submit_body(message=b"abc", sm_length=10))
    assert await esme.read() == (GENERIC_NACK, ESME_RINVCMDLEN, seq, b"")
    # still bound and talking
    assert await esme.request(ENQUIRE_LINK) == (ENQUIRE_LINK_RESP, ESME_ROK, esme.seq, b"")
    reply = await esme.request(SUBMIT_SM, submit_body())
    assert reply[:2] == (SUBMIT_SM_RESP, ESME_ROK) and reply[3] == fake.submits[0].message_id.encode() + b"\0"
    assert fake.texts() == [(DEST, "hello")]
    assert [e.status for e in fake.errors] == [ESME_RINVCMDLEN, ESME_RINVCMDID, ESME_RINVCMDID, ESME_RINVCMDLEN]


@pytest.mark.parametrize("length", [8, 15, 64 * 1024 + 1])
async def test_a_command_length_that_breaks_framing_is_nacked_and_closed(fake, raw, length):
    esme = await raw()
    await esme.bind()
    await esme.send_bytes(struct.pack(">IIII", length, ENQUIRE_LINK, 0, 99))
    command_id, status, seq, body = await esme.read()
    assert (command_id, status, body) == (GENERIC_NACK, ESME_RINVCMDLEN, b"")
    assert seq == (99 if length > 64 * 1024 else 0)
    assert await esme.read() is None  # closed
    await fake.wait_for(lambda: fake.connected == 0, what="close")


@pytest.mark.parametrize(("body", "status"), [
    (submit_body(source="1" * 21), ESME_RINVSRCADR),
    (submit_body(dest="1" * 21), ESME_RINVDSTADR),
    (submit_body(dest=""), ESME_RINVDSTADR),
    (submit_body(schedule="2611211200"), ESME_RINVSCHED),
    (submit_body(tlvs=b"\x04\x24\x00"), ESME_RINVOPTPARSTREAM),
    (submit_body(tlvs=b"\x04\x24\x00\x09abc"), ESME_RINVOPTPARSTREAM),
    (submit_body(message=b"x" * 255), ESME_RINVMSGLEN),
    (submit_body(message=b"x", tlvs=b"\x04\x24\x00\x01y"), ESME_RINVMSGLEN),
    (submit_body(message=bytes([9, 0, 3, 1, 2, 1]) + b"hi", esm_class=0x40), ESME_RINVESMCLASS),
    (submit_body(message=bytes([5, 0, 3, 1, 2, 3]) + b"hi", esm_class=0x40), ESME_RINVESMCLASS),
])
async def test_submit_field_errors_get_a_bodyless_submit_sm_resp(fake, raw, body, status):
    esme = await raw()
    await esme.bind()
    assert await esme.request(SUBMIT_SM, body) == (SUBMIT_SM_RESP, status, esme.seq, b"")
    assert fake.submits == [] and fake.errors[0].status == status
    assert (await esme.request(SUBMIT_SM, submit_body()))[1] == ESME_ROK


async def test_bind_state_rules(fake, raw):
    esme = await raw()
    assert await esme.request(SUBMIT_SM, submit_body()) == (SUBMIT_SM_RESP, ESME_RINVBNDSTS, esme.seq, b"")
    assert (await esme.request(BIND_TRANSCEIVER, bind_body("x" * 16)))[:2] == (BIND_TRANSCEIVER_RESP, ESME_RINVSYSID)
    assert (await esme.request(BIND_TRANSCEIVER, bind_body(password="x" * 9)))[:2] == \
        (BIND_TRANSCEIVER_RESP, ESME_RINVPASWD)
    await esme.bind()
    assert (await esme.request(BIND_TRANSCEIVER, bind_body()))[:2] == (BIND_TRANSCEIVER_RESP, ESME_RALYBND)
    assert fake.sessions_bound == 1 and [b.status for b in fake.binds] == \
        [ESME_RINVSYSID, ESME_RINVPASWD, ESME_ROK, ESME_RALYBND]

    receiver = await raw()
    command_id, status, _, _ = await receiver.request(BIND_RECEIVER, bind_body())
    assert (command_id, status) == (BIND_RECEIVER | 0x80000000, ESME_ROK)
    assert (await receiver.request(SUBMIT_SM, submit_body()))[1] == ESME_RINVBNDSTS
    transmitter = await raw()
    assert (await transmitter.request(BIND_TRANSMITTER, bind_body()))[1] == ESME_ROK
    assert fake.sessions_bound == 3 and [s.bind_type for s in fake.sessions] == \
        ["transceiver", "receiver", "transmitter"]
    # an MO goes to the oldest session that can receive, never to the transmitter
    await fake.send_mo(DEST, "hi", wait=False)
    command_id, _, seq, body = await esme.read()
    assert command_id == DELIVER_SM and b"\0h\0i" in body
    await esme.send(DELIVER_SM_RESP, b"\0", seq=seq)
    await fake.wait_for(lambda: fake.deliver_resps, what="deliver_sm_resp")

    assert await transmitter.request(UNBIND) == (UNBIND_RESP, ESME_ROK, transmitter.seq, b"")
    assert await transmitter.read() is None
    await fake.wait_for(lambda: fake.sessions_bound == 2, what="unbind")


async def test_drop_after_a_delayed_response_sends_it_then_closes(fake, raw):
    fake.drop_after_submits, fake.reply_delay = 1, 0.1
    esme = await raw()
    await esme.bind()
    seq = await esme.send(SUBMIT_SM, submit_body())
    await esme.send(ENQUIRE_LINK)  # arrives on a doomed session: ignored
    command_id, status, resp_seq, body = await esme.read()
    assert (command_id, status, resp_seq, body) == (SUBMIT_SM_RESP, ESME_ROK, seq,
                                                    fake.submits[0].message_id.encode() + b"\0")
    assert await esme.read() is None
    assert fake.drops == 1 and fake.unanswered == 1 and fake.enquire_links == []


async def test_close_on_bind_failure(fake, raw):
    fake.close_on_bind_failure = True
    fake.refuse_binds = True
    esme = await raw()
    assert (await esme.request(BIND_TRANSMITTER, bind_body()))[:2] == (BIND_TRANSMITTER | 0x80000000, ESME_RBINDFAIL)
    assert await esme.read() is None


async def test_enquire_link_can_be_muted_and_never_answer_swallows_everything(fake, raw):
    esme = await raw()
    await esme.bind()
    fake.mute_enquire_link = True
    await esme.send(ENQUIRE_LINK)
    with pytest.raises(TimeoutError):
        await esme.read(timeout=0.3)
    assert len(fake.enquire_links) == 1
    fake.mute_enquire_link = False
    fake.never_answer = True
    await esme.send(SUBMIT_SM, submit_body())
    await esme.send(ENQUIRE_LINK)
    with pytest.raises(TimeoutError):
        await esme.read(timeout=0.3)
    assert fake.submits == [] and len(fake.enquire_links) == 1 and fake.unanswered == 2


async def test_deliver_sm_nacked_by_the_esme_is_recorded(fake, raw):
    esme = await raw()
    await esme.bind()
    sending = asyncio.create_task(fake.send_mo(DEST, payload=b"\x00A", data_coding=8))
    command_id, _, seq, _ = await esme.read()
    assert command_id == DELIVER_SM
    await esme.send(GENERIC_NACK, seq=seq)
    assert await sending == seq
    assert fake.deliver_resps == [(fake.sessions[0].id, seq, 0, GENERIC_NACK)]
    assert fake.generic_nacks_received == [(fake.sessions[0].id, seq, 0)]


async def test_an_mo_over_254_octets_goes_in_message_payload(fake, raw):
    esme = await raw()
    await esme.bind()
    sending = asyncio.create_task(fake.send_mo(DEST, "长" * 200))
    command_id, _, seq, body = await esme.read()
    assert command_id == DELIVER_SM
    sm_length_at = body.index(b"12319\0") + 6 + 3 + 2 + 4  # esm/pid/prio, two NULL times, rd/rep/dcs/dflt
    assert body[sm_length_at] == 0
    assert body[sm_length_at + 1:sm_length_at + 5] == struct.pack(">HH", 0x0424, 400)
    assert body[sm_length_at + 5:] == ("长" * 200).encode("utf-16-be")
    await esme.send(DELIVER_SM_RESP, b"\0", seq=seq)
    await sending


# --- reassembly semantics ---------------------------------------------------------------------------


async def test_texts_count_a_full_resend_twice_but_not_a_resent_part(fake, clients):
    smsc = await bind34(fake, clients)
    parts = ucs2_parts("这是一条很长的短信" * 10, 134, ref=5)
    assert len(parts) == 2
    for part in parts:
        await smsc.submit_sm(DEST, part, data_coding=8, esm_class=0x40)
    await smsc.submit_sm(DEST, parts[1], data_coding=8, esm_class=0x40)  # a retried part 2
    assert fake.delivered_count_by_text() == {"这是一条很长的短信" * 10: 1}
    await smsc.submit_sm(DEST, parts[0], data_coding=8, esm_class=0x40)  # completes a second copy
    assert fake.delivered_count_by_text() == {"这是一条很长的短信" * 10: 2}
    await smsc.submit_sm("13900139000", parts[0], data_coding=8, esm_class=0x40)  # other handset: incomplete
    assert [d for d, _ in fake.texts()] == [DEST, DEST]


async def test_texts_also_join_parts_concatenated_by_sar_tlvs(fake, clients):
    smsc = await bind34(fake, clients)
    halves = ["第二段", "第一段，"]
    for seq, half in ((2, halves[0]), (1, halves[1])):  # out of order on purpose
        tlvs = [smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, (0x0102).to_bytes(2, "big")),
                smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, b"\x02"),
                smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, bytes([seq]))]
        assert (await smsc.submit_sm(DEST, half.encode("utf-16-be"), data_coding=8, tlvs=tlvs)).is_success
    assert [s.sar for s in fake.submits] == [Concat(0x0102, 2, 2, 16), Concat(0x0102, 2, 1, 16)]
    assert fake.texts() == [(DEST, "第一段，第二段")]


async def test_texts_refuse_to_decode_broken_ucs2(fake, clients):
    smsc = await bind34(fake, clients)
    await smsc.submit_sm(DEST, b"\x00A\x00", data_coding=8)
    with pytest.raises(ValueError, match=r"message to 13800138000 in 1 part\(s\), data_coding 8, does not decode"):
        fake.texts()


def test_gsm7_and_udh_helpers():
    assert gsm7_encode("Hi @ $5_{x}") == b"Hi \x00 \x025\x11\x1b(x\x1b)"
    assert gsm7_decode(gsm7_encode("Ünicode? Nö: Üñ€ [ok]")) == "Ünicode? Nö: Üñ€ [ok]"
    with pytest.raises(ValueError, match="not in the GSM 7-bit default alphabet"):
        gsm7_encode("中")
    assert concat_udh(7, 3, 2) == bytes([5, 0, 0x03, 7, 3, 2])
    assert concat_udh(0x1234, 3, 2, ref16=True) == bytes([6, 8, 4, 0x12, 0x34, 3, 2])
    assert parse_udh(concat_udh(0x1234, 3, 2, ref16=True) + b"xy") == \
        (bytes([6, 8, 4, 0x12, 0x34, 3, 2]), Concat(0x1234, 3, 2, 16), b"xy")
    # other IEs (here a port address IE 0x05) are skipped
    assert parse_udh(bytes([11, 5, 4, 0, 1, 0, 2, 0, 3, 9, 2, 1]) + b"z")[1:] == (Concat(9, 2, 1), b"z")
