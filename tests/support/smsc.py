"""A fake SMSC: the operator's SMS centre, speaking SMPP 3.4 over real TCP sockets on 127.0.0.1.

It is the test peer for the product's SMS connector (an ESME). The wire codec here is written from
the SMPP v3.4 specification with :mod:`struct` and shares no code with ``smpplib`` or ``smpp34``, so
a test fails when either side gets the codec wrong. smpp34's own ``Server`` cannot refuse a bind,
throttle, drop a connection mid-window or go silent; this one can.

Modelled (SMPP 3.4 section numbers in brackets):

* framing: a 16-octet header (command_length, command_id, command_status, sequence_number), big
  endian [3.2]. A command_length below 16 or above 64 KiB cannot be framed: the fake answers
  ``generic_nack`` / ``ESME_RINVCMDLEN`` and closes. A body shorter than its declared fields (a
  C-octet string with no NUL, a missing integer, sm_length past the end) gets ``generic_nack`` /
  ``ESME_RINVCMDLEN`` and the session goes on. An unknown command_id gets ``generic_nack`` /
  ``ESME_RINVCMDID`` [4.3]; so does a known request this fake does not model (query_sm, cancel_sm,
  replace_sm, submit_multi, data_sm, …), which is also listed in ``unmodelled``.
* bind_transmitter / bind_receiver / bind_transceiver [4.1]: the credentials given to :meth:`start`;
  wrong system_id → ``ESME_RINVSYSID`` (0x0F), wrong password → ``ESME_RINVPASWD`` (0x0E),
  ``refuse_binds`` → ``ESME_RBINDFAIL`` (0x0D), a second bind on a bound session →
  ``ESME_RALYBND`` (0x05). A successful response carries ``smsc_id`` and the
  ``sc_interface_version`` TLV (0x34); a failed one has no body. Max lengths incl. NUL: system_id 16,
  password 9, system_type 13, address_range 41.
* submit_sm [4.4]: every mandatory field and the TLVs are parsed and checked (service_type 6,
  source_addr / destination_addr 21, schedule_delivery_time / validity_period empty or 16 characters,
  sm_length ≤ 254, message_payload only with sm_length 0); a field error gets ``submit_sm_resp`` with
  the matching status (``ESME_RINVSRCADR``, ``ESME_RINVDSTADR``, ``ESME_RINVSCHED``, …) and a body-less
  response [4.4.2]. With the UDHI bit (esm_class 0x40) the user data header is parsed: concatenation
  with the 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference; a broken UDH gets ``ESME_RINVESMCLASS``.
  A submit_sm on an unbound or receiver-only session gets ``ESME_RINVBNDSTS``. Accepted messages get a
  unique message_id (upper-case hex that does not parse as a decimal number).
* deliver_sm from the SMSC [4.6]: mobile-originated messages (:meth:`send_mo`,
  :meth:`send_long_mo`) and delivery receipts (:meth:`send_receipt`, ``auto_receipts``) in the
  standard receipt format (appendix B) plus the ``receipted_message_id`` (0x001E) and
  ``message_state`` (0x0427) TLVs. A short_message over 254 octets goes in ``message_payload``.
* enquire_link [4.11] → enquire_link_resp; unbind [4.2] → unbind_resp, then the fake closes.
* Auto receipts are queued like a real SMSC's: if no receiver is bound when one is due, it waits
  (up to ``receipt_hold``) for the ESME to bind again.

Not modelled: outbind, data_sm, query/cancel/replace, submit_multi, alert_notification, TLS, the
SMSC's own enquire_link timer (use :meth:`send_enquire_link`), message validity or scheduling.
Receipts are only sent automatically for submits that asked for them (registered_delivery bit 0),
as a real SMSC does.

Ways to break things on purpose: ``refuse_binds``, ``close_on_bind_failure``, ``mute_enquire_link``,
``throttle_next`` (the next N submit_sm get ``ESME_RTHROTTLED`` and are not accepted),
``reply_delay`` (seconds before each submit_sm_resp; the session keeps reading meanwhile, so a
windowing client can pipeline), ``drop_after_submits`` / ``drop_before_resp`` (close the connection
abruptly after accepting the N-th submit, with or without its response — the knob stays set, so it
drops again after another N; set it to ``None`` to stop), ``never_answer`` (read everything, record
nothing, answer nothing), :meth:`send_raw`, :meth:`drop`, :meth:`unbind_all`.

Observations: ``submits`` (accepted :class:`Submit`), ``rejected_submits``, ``binds``
(:class:`Bind`: system_id, password, bind_type, status), ``connections`` (accepted so far),
``connected`` / ``sessions_bound`` (now), ``enquire_links``, ``deliver_resps``,
``generic_nacks_received``, ``errors`` (malformed PDUs, field errors, responses that answer no
request — with the status involved), ``unmodelled``, ``unbinds``, ``drops``, ``unanswered`` (PDUs
swallowed by ``never_answer`` or on a connection about to be dropped), ``log`` (every PDU in and
out), ``sessions`` (open connections); :meth:`messages`, :meth:`texts` and
:meth:`delivered_count_by_text` reassemble what was submitted; :meth:`wait_for` waits on any of it.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from tests.support.peer_server import PeerServer

# --- SMPP 3.4 constants ------------------------------------------------------------------------------

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_RECEIVER_RESP = 0x80000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSMITTER_RESP = 0x80000002
QUERY_SM = 0x00000003
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
REPLACE_SM = 0x00000007
CANCEL_SM = 0x00000008
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
SUBMIT_MULTI = 0x00000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103

COMMAND_NAMES = {
    GENERIC_NACK: "generic_nack", BIND_RECEIVER: "bind_receiver", BIND_RECEIVER_RESP: "bind_receiver_resp",
    BIND_TRANSMITTER: "bind_transmitter", BIND_TRANSMITTER_RESP: "bind_transmitter_resp", QUERY_SM: "query_sm",
    0x80000003: "query_sm_resp", SUBMIT_SM: "submit_sm", SUBMIT_SM_RESP: "submit_sm_resp", DELIVER_SM: "deliver_sm",
    DELIVER_SM_RESP: "deliver_sm_resp", UNBIND: "unbind", UNBIND_RESP: "unbind_resp", REPLACE_SM: "replace_sm",
    0x80000007: "replace_sm_resp", CANCEL_SM: "cancel_sm", 0x80000008: "cancel_sm_resp",
    BIND_TRANSCEIVER: "bind_transceiver", BIND_TRANSCEIVER_RESP: "bind_transceiver_resp", OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link", ENQUIRE_LINK_RESP: "enquire_link_resp", SUBMIT_MULTI: "submit_multi",
    0x80000021: "submit_multi_resp", ALERT_NOTIFICATION: "alert_notification", DATA_SM: "data_sm",
    0x80000103: "data_sm_resp",
}
_UNMODELLED_REQUESTS = frozenset({QUERY_SM, REPLACE_SM, CANCEL_SM, OUTBIND, SUBMIT_MULTI, ALERT_NOTIFICATION,
                                  DATA_SM})

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVMSGID = 0x0C
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVSERTYP = 0x15
ESME_RINVESMCLASS = 0x43
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RINVPARLEN = 0xC2
ESME_RUNKNOWNERR = 0xFF

STATUS_NAMES = {value: name for name, value in globals().items() if name.startswith("ESME_R")}

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_SC_INTERFACE_VERSION = 0x0210
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

# message_state values [5.2.28], keyed by the receipt's stat: word [appendix B]
MESSAGE_STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6,
                  "UNKNOWN": 7, "REJECTD": 8}

ESM_CLASS_RECEIPT = 0x04
ESM_CLASS_UDHI = 0x40

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU_LEN = 64 * 1024
MAX_SHORT_MESSAGE = 254

BIND_TYPES = {BIND_TRANSCEIVER: "transceiver", BIND_TRANSMITTER: "transmitter", BIND_RECEIVER: "receiver"}


def command_name(command_id: int) -> str:
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08X}")


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"0x{status:08X}")


# --- codec ---------------------------------------------------------------------------------------------


class PduError(Exception):
    """A PDU the fake cannot accept. ``generic`` → answered with generic_nack (the body cannot be
    parsed); otherwise with the command's own response carrying ``status``."""

    def __init__(self, status: int, reason: str, *, generic: bool = False) -> None:
        super().__init__(f"{status_name(status)}: {reason}")
        self.status = status
        self.reason = reason
        self.generic = generic


def encode_pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """One complete PDU: the 16-octet header, then ``body``."""
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a PDU's first 16 octets."""
    return HEADER.unpack_from(data, 0)


def cstring(value: str | bytes, max_len: int, name: str = "field") -> bytes:
    """A C-octet string: the ASCII octets and a NUL; ``max_len`` counts the NUL, as the spec does."""
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if b"\0" in raw:
        raise ValueError(f"{name} {value!r} contains a NUL")
    if len(raw) + 1 > max_len:
        raise ValueError(f"{name} {value!r} is {len(raw)} octets; the limit is {max_len - 1} plus the NUL")
    return raw + b"\0"


def encode_tlvs(tlvs: Mapping[int, bytes] | Iterable[tuple[int, bytes]]) -> bytes:
    pairs = tlvs.items() if isinstance(tlvs, Mapping) else tlvs
    out = b""
    for tag, value in pairs:
        if len(value) > 0xFFFF:
            raise ValueError(f"TLV 0x{tag:04X} value is {len(value)} octets")
        out += struct.pack(">HH", tag, len(value)) + value
    return out


class BodyReader:
    """Reads a PDU body field by field; running out of octets is a ``generic`` :class:`PduError`."""

    def __init__(self, body: bytes, command: str) -> None:
        self.body = body
        self.pos = 0
        self.command = command

    @property
    def remaining(self) -> int:
        return len(self.body) - self.pos

    def u8(self, name: str) -> int:
        if self.remaining < 1:
            raise PduError(ESME_RINVCMDLEN, f"{self.command} body ends before {name}", generic=True)
        value = self.body[self.pos]
        self.pos += 1
        return value

    def cstring(self, name: str, max_len: int, too_long: int) -> str:
        end = self.body.find(b"\0", self.pos)
        if end < 0:
            raise PduError(ESME_RINVCMDLEN, f"{self.command} {name}: no NUL before the end of the body", generic=True)
        raw = self.body[self.pos:end]
        self.pos = end + 1
        if len(raw) + 1 > max_len:
            raise PduError(too_long, f"{self.command} {name} {raw!r} is {len(raw)} octets, limit {max_len - 1} + NUL")
        return raw.decode("latin-1")

    def octets(self, n: int, name: str) -> bytes:
        if self.remaining < n:
            raise PduError(ESME_RINVCMDLEN, f"{self.command} {name}: {n} octets declared, {self.remaining} left",
                           generic=True)
        value = self.body[self.pos:self.pos + n]
        self.pos += n
        return value

    def tlvs(self) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        while self.remaining:
            if self.remaining < 4:
                raise PduError(ESME_RINVOPTPARSTREAM, f"{self.command}: {self.remaining} stray octets after the TLVs")
            tag, length = struct.unpack_from(">HH", self.body, self.pos)
            self.pos += 4
            if self.remaining < length:
                raise PduError(ESME_RINVOPTPARSTREAM,
                               f"{self.command}: TLV 0x{tag:04X} declares {length} octets, {self.remaining} left")
            out[tag] = self.body[self.pos:self.pos + length]
            self.pos += length
        return out


# GSM 03.38 default alphabet, unpacked (one septet per octet), and its extension table behind ESC.
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
                  0x40: "|", 0x65: "€"}
assert len(GSM7_BASIC) == 128
_GSM7_ENCODE = {ch: bytes([i]) for i, ch in enumerate(GSM7_BASIC) if i != 0x1B}
_GSM7_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in GSM7_EXTENSION.items()})


def gsm7_encode(text: str) -> bytes:
    """GSM 03.38 default alphabet, unpacked. For letters, digits, space and most ASCII punctuation the
    octets equal ASCII; ``@``, ``$``, ``_`` and the ``{}[]~|^\\`` escapes do not."""
    try:
        return b"".join(_GSM7_ENCODE[ch] for ch in text)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not in the GSM 7-bit default alphabet") from None


def gsm7_decode(data: bytes) -> str:
    out = []
    it = iter(data)
    for octet in it:
        if octet > 0x7F:
            raise ValueError(f"octet 0x{octet:02X} is not a GSM 7-bit septet")
        if octet == 0x1B:
            code = next(it, None)
            if code not in GSM7_EXTENSION:
                raise ValueError(f"ESC followed by {code!r} is not in the GSM 7-bit extension table")
            out.append(GSM7_EXTENSION[code])
        else:
            out.append(GSM7_BASIC[octet])
    return "".join(out)


def encode_text(text: str, data_coding: int) -> bytes:
    """short_message octets for ``text``: 0 → GSM-7 unpacked, 1 → IA5/ASCII, 3 → Latin-1, 8 → UCS-2
    (UTF-16-BE, so characters outside the BMP become surrogate pairs)."""
    if data_coding == 0:
        return gsm7_encode(text)
    if data_coding == 1:
        return text.encode("ascii")
    if data_coding == 3:
        return text.encode("latin-1")
    if data_coding == 8:
        return text.encode("utf-16-be")
    raise ValueError(f"data_coding {data_coding} is not a text coding this fake encodes; pass payload=")


def decode_text(data: bytes, data_coding: int, errors: str = "strict") -> str:
    """The inverse of :func:`encode_text`."""
    if data_coding == 0:
        return gsm7_decode(data)
    if data_coding == 1:
        return data.decode("ascii", errors)
    if data_coding == 3:
        return data.decode("latin-1")
    if data_coding == 8:
        return data.decode("utf-16-be", errors)
    raise ValueError(f"data_coding {data_coding} is not a text coding")


@dataclass(frozen=True)
class Concat:
    """A concatenation information element of a user data header (3GPP TS 23.040 9.2.3.24.1 / .8)."""

    ref: int
    total: int
    seq: int
    ref_bits: int = 8


def concat_udh(ref: int, total: int, seq: int, *, ref16: bool = False) -> bytes:
    """A complete UDH (with its UDHL octet) holding one concatenation IE."""
    if not 1 <= seq <= total <= 255:
        raise ValueError(f"concat part {seq} of {total}")
    if ref16:
        return bytes([6, 0x08, 4]) + struct.pack(">H", ref) + bytes([total, seq])
    return bytes([5, 0x00, 3, ref & 0xFF, total, seq])


def parse_udh(user_data: bytes) -> tuple[bytes, Concat | None, bytes]:
    """(UDH incl. UDHL, concat IE or None, text after the UDH); a broken UDH raises ValueError."""
    if not user_data:
        raise ValueError("UDHI set but the user data is empty")
    udhl = user_data[0]
    if 1 + udhl > len(user_data):
        raise ValueError(f"UDHL {udhl} runs past the {len(user_data)} octets of user data")
    header, rest = user_data[1:1 + udhl], user_data[1 + udhl:]
    concat = None
    pos = 0
    while pos < len(header):
        if pos + 2 > len(header):
            raise ValueError(f"UDH information element at {pos} is cut off")
        iei, iel = header[pos], header[pos + 1]
        value = header[pos + 2:pos + 2 + iel]
        if len(value) != iel:
            raise ValueError(f"UDH IE 0x{iei:02X} declares {iel} octets, {len(value)} left")
        if iei == 0x00:
            if iel != 3:
                raise ValueError(f"8-bit concat IE with length {iel}")
            concat = Concat(value[0], value[1], value[2], 8)
        elif iei == 0x08:
            if iel != 4:
                raise ValueError(f"16-bit concat IE with length {iel}")
            concat = Concat(struct.unpack(">H", value[:2])[0], value[2], value[3], 16)
        pos += 2 + iel
    if concat is not None and not 1 <= concat.seq <= concat.total:
        raise ValueError(f"concat part {concat.seq} of {concat.total}")
    return user_data[:1 + udhl], concat, rest


# --- records -------------------------------------------------------------------------------------------


@dataclass
class Submit:
    """One submit_sm as the fake parsed it."""

    session: int
    sequence: int
    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    tlvs: dict[int, bytes]
    udh: Concat | None
    text_part: bytes
    message_id: str | None = None
    status: int = ESME_ROK
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    replace_if_present_flag: int = 0
    sm_default_msg_id: int = 0
    udh_raw: bytes = b""
    received_at: float = 0.0

    @property
    def user_data(self) -> bytes:
        """short_message, or the message_payload TLV when sm_length is 0."""
        return self.short_message or self.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")

    @property
    def sar(self) -> Concat | None:
        """Concatenation by the sar_* TLVs (instead of a UDH), if present."""
        ref = self.tlvs.get(TLV_SAR_MSG_REF_NUM, b"")
        total = self.tlvs.get(TLV_SAR_TOTAL_SEGMENTS, b"")
        seq = self.tlvs.get(TLV_SAR_SEGMENT_SEQNUM, b"")
        if len(ref) == 2 and len(total) == 1 and len(seq) == 1:
            return Concat(int.from_bytes(ref, "big"), total[0], seq[0], 16)
        return None

    @property
    def text(self) -> str:
        """This part's text alone (a surrogate pair split between parts shows as a lone surrogate)."""
        return decode_text(self.text_part, self.data_coding, "surrogatepass")


class Bind(NamedTuple):
    system_id: str
    password: str
    bind_type: str  # "transceiver" | "transmitter" | "receiver"
    status: int


class DeliverResp(NamedTuple):
    session: int
    sequence: int
    status: int
    command_id: int  # DELIVER_SM_RESP, or GENERIC_NACK when the ESME nacked the deliver_sm


class GenericNack(NamedTuple):
    session: int
    sequence: int
    status: int


class EnquireLink(NamedTuple):
    session: int
    sequence: int
    at: float  # loop.time()


class ErrorRecord(NamedTuple):
    session: int
    command_id: int
    sequence: int
    status: int
    reason: str


class LoggedPdu(NamedTuple):
    direction: str  # "in" (from the ESME) | "out"
    session: int
    command_id: int
    status: int
    sequence: int
    length: int
    at: float

    @property
    def command(self) -> str:
        return command_name(self.command_id)


@dataclass(eq=False)
class Session:
    """One accepted connection."""

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bind_type: str | None = None
    system_id: str | None = None
    open: bool = True
    closing: bool = False  # doomed by drop_after_submits: what still arrives is read and ignored
    pending: dict[int, tuple[int, asyncio.Future]] = field(default_factory=dict)  # seq → (command_id, future)
    _seq: int = 0

    @property
    def bound(self) -> bool:
        return self.open and self.bind_type is not None

    @property
    def can_receive(self) -> bool:
        return self.bound and self.bind_type in ("transceiver", "receiver")

    @property
    def can_transmit(self) -> bool:
        return self.bound and self.bind_type in ("transceiver", "transmitter")

    def next_sequence(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq


# --- the SMSC ------------------------------------------------------------------------------------------


class FakeSMSC(PeerServer):
    """The operator's SMSC on 127.0.0.1; create it with :meth:`start` (port 0 = ephemeral).

    ``system_id`` / ``password`` are the credentials it accepts; ``smsc_id`` is the system_id it
    answers a bind with. Knobs (plain attributes, read when a PDU is handled; see the module
    docstring): ``refuse_binds``, ``close_on_bind_failure``, ``mute_enquire_link``, ``reply_delay``,
    ``throttle_next``, ``drop_after_submits``, ``drop_before_resp``, ``never_answer``,
    ``auto_receipts`` (+ ``auto_receipt_stat`` = "DELIVRD", ``receipt_delay`` = 0.05 s,
    ``receipt_hold`` = 30 s to wait for a receiver to bind), ``deliver_timeout`` (5 s for a
    deliver_sm_resp before :meth:`send_mo` raises ``TimeoutError``).
    """

    _label = "FakeSMSC"

    def __init__(self, system_id: str = "hotline", password: str = "secret", *, host: str = "127.0.0.1",
                 port: int = 0, smsc_id: str = "FAKESMSC") -> None:
        super().__init__(host=host, port=port)
        self.system_id = system_id
        self.password = password
        self.smsc_id = smsc_id
        # knobs
        self.refuse_binds = False
        self.close_on_bind_failure = False
        self.mute_enquire_link = False
        self.reply_delay = 0.0
        self.throttle_next = 0
        self.drop_after_submits: int | None = None
        self.drop_before_resp = False
        self.never_answer = False
        self.auto_receipts = False
        self.auto_receipt_stat = "DELIVRD"
        self.receipt_delay = 0.05
        self.receipt_hold = 30.0
        self.deliver_timeout = 5.0
        # observations
        self.submits: list[Submit] = []
        self.rejected_submits: list[Submit] = []
        self.binds: list[Bind] = []
        self.connections = 0
        self.enquire_links: list[EnquireLink] = []
        self.deliver_resps: list[DeliverResp] = []
        self.generic_nacks_received: list[GenericNack] = []
        self.errors: list[ErrorRecord] = []
        self.unmodelled: list[str] = []
        self.unbinds = 0
        self.drops = 0
        self.unanswered = 0
        self.log: list[LoggedPdu] = []
        self._sessions: dict[int, Session] = {}
        self._session_ids = itertools.count(1)
        self._message_ids = itertools.count(0x5C000001)
        self._accepted_since_drop = 0

    # --- life cycle ------------------------------------------------------------------------------

    @classmethod
    async def start(cls, system_id: str = "hotline", password: str = "secret", *, port: int = 0,
                    host: str = "127.0.0.1", smsc_id: str = "FAKESMSC") -> FakeSMSC:
        """Create the fake and start listening; ``.port`` is then the real port."""
        fake = cls(system_id, password, host=host, port=port, smsc_id=smsc_id)
        await fake._listen()
        return fake

    def _open_writers(self) -> list[asyncio.StreamWriter]:
        return [session.writer for session in self._sessions.values()]

    @property
    def sessions(self) -> list[Session]:
        """Open connections, oldest first."""
        return sorted(self._sessions.values(), key=lambda s: s.id)

    @property
    def connected(self) -> int:
        return len(self._sessions)

    @property
    def sessions_bound(self) -> int:
        return sum(1 for s in self._sessions.values() if s.bound)

    # --- waiting ---------------------------------------------------------------------------------

    def summary(self) -> str:
        tail = ", ".join(f"{p.direction}:{p.command}" + (f"/{status_name(p.status)}" if p.status else "")
                         for p in self.log[-12:])
        return (f"binds={[(b.system_id, b.bind_type, status_name(b.status)) for b in self.binds]} "
                f"bound={self.sessions_bound} submits={len(self.submits)} rejected={len(self.rejected_submits)} "
                f"deliver_resps={len(self.deliver_resps)} errors={[e.reason for e in self.errors]} last PDUs: {tail}")

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is truthy; re-checked on every PDU, connect and close."""
        await self._wait(predicate, timeout, what, self.summary)

    # --- writing ---------------------------------------------------------------------------------

    def _write(self, session: Session, pdu: bytes) -> bool:
        """Write one whole PDU (one write() call, so PDUs never interleave)."""
        if not session.open or session.writer.is_closing():
            return False
        length, command_id, status, sequence = decode_header(pdu)
        self.log.append(LoggedPdu("out", session.id, command_id, status, sequence, length,
                                  asyncio.get_running_loop().time()))
        session.writer.write(pdu)
        return True

    async def _flush(self, session: Session, limit: float = 1.0) -> None:
        """Wait until the transport has handed everything written so far to the kernel."""
        with contextlib.suppress(ConnectionError):
            await session.writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while session.writer.transport.get_write_buffer_size() and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def _abort(self, session: Session, *, reset: bool = False) -> None:
        sock = session.writer.get_extra_info("socket")
        if reset and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        session.writer.transport.abort()

    async def drop(self, *, reset: bool = False) -> int:
        """Abort every connection (``reset=True``: TCP RST instead of FIN); keep listening."""
        sessions = list(self._sessions.values())
        for session in sessions:
            self._abort(session, reset=reset)
        return len(sessions)

    def _receiver(self, session: int | Session | None = None, *, prefer: int | None = None) -> Session:
        if isinstance(session, Session):
            return session
        if session is not None:
            found = self._sessions.get(session)
            if found is None or not found.open:
                raise RuntimeError(f"FakeSMSC: session {session} is not open")
            return found
        receivers = [s for s in self.sessions if s.can_receive]
        if not receivers:
            raise RuntimeError(f"FakeSMSC: no ESME is bound as receiver or transceiver; {self.summary()}")
        for s in receivers:
            if s.id == prefer:
                return s
        return receivers[0]

    async def _request(self, session: Session, command_id: int, body: bytes, timeout: float | None) -> int:
        """Send a request PDU and wait for its response; returns the response's command_status."""
        seq = session.next_sequence()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        session.pending[seq] = (command_id, fut)
        if not self._write(session, encode_pdu(command_id, ESME_ROK, seq, body)):
            session.pending.pop(seq, None)
            raise ConnectionError(f"FakeSMSC: session {session.id} is closed")
        try:
            await asyncio.wait_for(fut, self.deliver_timeout if timeout is None else timeout)
        except TimeoutError:
            raise TimeoutError(f"FakeSMSC: no response to {command_name(command_id)} seq {seq} on session "
                               f"{session.id}; {self.summary()}") from None
        finally:
            session.pending.pop(seq, None)
        return seq

    # --- outbound: deliver_sm ----------------------------------------------------------------------

    @staticmethod
    def _deliver_body(source_addr: str, destination_addr: str, user_data: bytes, *, esm_class: int,
                      data_coding: int, tlvs: Mapping[int, bytes] | None = None, registered_delivery: int = 0) -> bytes:
        tlv_map = dict(tlvs or {})
        if len(user_data) > MAX_SHORT_MESSAGE:
            tlv_map[TLV_MESSAGE_PAYLOAD] = user_data
            user_data = b""
        return (cstring("", 6, "service_type")
                + bytes([0, 1]) + cstring(source_addr, 21, "source_addr")
                + bytes([0, 1]) + cstring(destination_addr, 21, "destination_addr")
                + bytes([esm_class, 0, 0])  # esm_class, protocol_id, priority_flag
                + b"\0" + b"\0"  # schedule_delivery_time, validity_period: NULL in deliver_sm
                + bytes([registered_delivery, 0, data_coding, 0, len(user_data)]) + user_data
                + encode_tlvs(tlv_map))

    async def send_deliver_sm(self, source_addr: str, destination_addr: str, user_data: bytes, *, esm_class: int = 0,
                              data_coding: int = 0, tlvs: Mapping[int, bytes] | None = None,
                              session: int | Session | None = None, wait: bool = True,
                              timeout: float | None = None) -> int:
        """One deliver_sm with exactly these octets; returns its sequence number. With ``wait`` it
        waits for the deliver_sm_resp (recorded in ``deliver_resps``)."""
        target = self._receiver(session)
        body = self._deliver_body(source_addr, destination_addr, user_data, esm_class=esm_class,
                                  data_coding=data_coding, tlvs=tlvs)
        if not wait:
            seq = target.next_sequence()
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it
            target.pending[seq] = (DELIVER_SM, fut)
            self._write(target, encode_pdu(DELIVER_SM, ESME_ROK, seq, body))
            return seq
        return await self._request(target, DELIVER_SM, body, timeout)

    async def send_mo(self, source_addr: str, text: str | None = None, *, payload: bytes | None = None,
                      data_coding: int = 8, esm_class: int = 0, udh: bytes | None = None, to: str = "12319",
                      message_id: str | None = None, tlvs: Mapping[int, bytes] | None = None,
                      session: int | Session | None = None, wait: bool = True, timeout: float | None = None) -> int:
        """A mobile-originated message from ``source_addr`` to ``to``.

        ``text`` is encoded per ``data_coding`` (8 → UTF-16-BE, 0 → GSM-7 unpacked, 1 → ASCII,
        3 → Latin-1); ``payload`` gives the octets instead. ``udh`` is a complete user data header
        (with its UDHL octet, e.g. :func:`concat_udh`) put in front and sets the UDHI bit.
        ``message_id`` adds a receipted_message_id TLV. Over 254 octets the user data goes in the
        message_payload TLV. Returns the deliver_sm's sequence number after its deliver_sm_resp.
        """
        if (text is None) == (payload is None):
            raise ValueError("give exactly one of text= and payload=")
        data = payload if payload is not None else encode_text(text, data_coding)
        if udh is not None:
            if not udh or udh[0] != len(udh) - 1:
                raise ValueError(f"udh {udh.hex()} must start with its UDHL octet")
            data = udh + data
            esm_class |= ESM_CLASS_UDHI
        extra = dict(tlvs or {})
        if message_id is not None:
            extra[TLV_RECEIPTED_MESSAGE_ID] = cstring(message_id, 65, "message_id")
        return await self.send_deliver_sm(source_addr, to, data, esm_class=esm_class, data_coding=data_coding,
                                          tlvs=extra, session=session, wait=wait, timeout=timeout)

    async def send_long_mo(self, source_addr: str, text: str, *, parts_of: int = 67, ref: int = 7,
                           to: str = "12319", ref16: bool = False, split_surrogates: bool = False,
                           session: int | Session | None = None) -> list[int]:
        """``text`` as concatenated UCS-2 parts of ``parts_of`` UTF-16 code units each (67 fits 140
        octets with the 6-octet UDH), esm_class 0x40, an 8-bit concat UDH with reference ``ref``
        (``ref16=True``: the 16-bit IE). Like a handset, it does not cut a surrogate pair in two
        unless ``split_surrogates``. Returns the sequence numbers, one per part, in order."""
        units = text.encode("utf-16-be")
        chunks: list[bytes] = []
        pos = 0
        while pos < len(units):
            end = min(pos + 2 * parts_of, len(units))
            if not split_surrogates and end < len(units) and 0xD8 <= units[end - 2] <= 0xDB:
                end -= 2  # the part would end on a high surrogate
            chunks.append(units[pos:end])
            pos = end
        if len(chunks) > 255:
            raise ValueError(f"{len(chunks)} parts; concatenation allows 255")
        seqs = []
        for number, chunk in enumerate(chunks, start=1):
            udh = concat_udh(ref, len(chunks), number, ref16=ref16)
            seqs.append(await self.send_mo(source_addr, payload=chunk, data_coding=8, udh=udh, to=to,
                                           session=session))
        return seqs

    def _submit_by_id(self, message_id: str) -> Submit | None:
        return next((s for s in self.submits if s.message_id == message_id), None)

    @staticmethod
    def receipt_text(message_id: str, stat: str, err: str, submit_date: datetime, done_date: datetime,
                     text: str = "") -> str:
        dlvr = "001" if stat == "DELIVRD" else "000"
        return (f"id:{message_id} sub:001 dlvr:{dlvr} submit date:{submit_date:%y%m%d%H%M} "
                f"done date:{done_date:%y%m%d%H%M} stat:{stat} err:{err} text:{text[:20]}")

    async def send_receipt(self, message_id: str, stat: str = "DELIVRD", *, err: str = "000",
                           to_addr: str | None = None, from_addr: str | None = None, text: str = "",
                           session: int | Session | None = None, timeout: float | None = None) -> int:
        """A delivery receipt (deliver_sm, esm_class 0x04, data_coding 0) for ``message_id``.

        ``from_addr`` is the receipt's source_addr (the handset the message went to) and ``to_addr``
        its destination_addr (the original sender); both default to the recorded submit's
        addresses (else ``13800138000`` / ``12319``). TLVs: receipted_message_id and message_state
        (:data:`MESSAGE_STATES`). Returns the sequence number after the deliver_sm_resp.
        """
        if stat not in MESSAGE_STATES:
            raise ValueError(f"stat {stat!r}: one of {', '.join(MESSAGE_STATES)}")
        submit = self._submit_by_id(message_id)
        from_addr = from_addr or (submit.destination_addr if submit else "13800138000")
        to_addr = to_addr or (submit.source_addr if submit and submit.source_addr else "12319")
        submitted = datetime.fromtimestamp(submit.received_at) if submit else datetime.now()
        body_text = self.receipt_text(message_id, stat, err, submitted, datetime.now(), text)
        tlvs = {TLV_RECEIPTED_MESSAGE_ID: cstring(message_id, 65, "message_id"),
                TLV_MESSAGE_STATE: bytes([MESSAGE_STATES[stat]])}
        target = self._receiver(session, prefer=submit.session if submit else None)
        return await self.send_deliver_sm(from_addr, to_addr, body_text.encode("ascii"), esm_class=ESM_CLASS_RECEIPT,
                                          data_coding=0, tlvs=tlvs, session=target, timeout=timeout)

    async def send_raw(self, data: bytes, *, session: int | Session | None = None) -> int:
        """Write ``data`` as it is (garbage, broken PDUs) to the bound ESME (or ``session``)."""
        if session is not None:
            target = self._receiver(session)
        else:
            target = next((s for s in self.sessions if s.can_receive), None) or next(
                (s for s in self.sessions if s.bound), None)
        if target is None:
            raise RuntimeError(f"FakeSMSC: no bound ESME to send raw bytes to; {self.summary()}")
        target.writer.write(data)
        await self._flush(target)
        return len(data)

    async def send_enquire_link(self, *, session: int | Session | None = None, timeout: float = 5.0) -> int:
        """An SMSC-side enquire_link; returns its sequence number once the ESME answered."""
        target = session if isinstance(session, Session) else (
            self._sessions[session] if session is not None else next(s for s in self.sessions if s.bound))
        return await self._request(target, ENQUIRE_LINK, b"", timeout)

    async def unbind_all(self, *, timeout: float = 2.0) -> int:
        """SMSC-initiated unbind of every bound session: unbind, wait for unbind_resp, close."""
        sessions = [s for s in self.sessions if s.bound]
        for session in sessions:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await self._request(session, UNBIND, b"", timeout)
            session.writer.close()
        return len(sessions)

    # --- the session ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track_current_task()
        session = Session(next(self._session_ids), reader, writer)
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sessions[session.id] = session
        self._notify()
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                while True:
                    if not await self._read_one(session):
                        break
        finally:
            session.open = False
            self._sessions.pop(session.id, None)
            for _, fut in session.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"FakeSMSC: session {session.id} closed"))
            if not writer.is_closing():
                writer.close()
            self._notify()

    async def _read_one(self, session: Session) -> bool:
        """Read and handle one PDU; False ends the session."""
        loop = asyncio.get_running_loop()
        head = await session.reader.readexactly(4)
        (length,) = struct.unpack(">I", head)
        if length < HEADER_LEN or length > MAX_PDU_LEN:
            sequence = 0
            if length > MAX_PDU_LEN:
                with contextlib.suppress(asyncio.IncompleteReadError):
                    sequence = struct.unpack(">III", await session.reader.readexactly(12))[2]
            self.errors.append(ErrorRecord(session.id, 0, sequence, ESME_RINVCMDLEN,
                                         f"command_length {length} outside 16..{MAX_PDU_LEN}: framing lost"))
            if not self.never_answer:
                self._write(session, encode_pdu(GENERIC_NACK, ESME_RINVCMDLEN, sequence))
                await self._flush(session)
            self._notify()
            return False
        rest = await session.reader.readexactly(length - 4)
        command_id, status, sequence = struct.unpack_from(">III", rest, 0)
        body = rest[12:]
        if self.never_answer or session.closing:
            self.unanswered += 1
            return True
        self.log.append(LoggedPdu("in", session.id, command_id, status, sequence, length, loop.time()))
        try:
            return await self._dispatch(session, command_id, status, sequence, body)
        finally:
            self._notify()

    def _nack(self, session: Session, sequence: int, status: int, command_id: int, reason: str) -> None:
        self.errors.append(ErrorRecord(session.id, command_id, sequence, status, reason))
        self._write(session, encode_pdu(GENERIC_NACK, status, sequence))

    async def _dispatch(self, session: Session, command_id: int, status: int, sequence: int, body: bytes) -> bool:
        if command_id & 0x80000000:
            return self._on_response(session, command_id, status, sequence, body)
        try:
            if command_id in BIND_TYPES:
                return await self._on_bind(session, command_id, sequence, body)
            if command_id == SUBMIT_SM:
                return await self._on_submit(session, sequence, body)
            if command_id == ENQUIRE_LINK:
                self.enquire_links.append(EnquireLink(session.id, sequence, asyncio.get_running_loop().time()))
                if not self.mute_enquire_link:
                    self._write(session, encode_pdu(ENQUIRE_LINK_RESP, ESME_ROK, sequence))
                return True
            if command_id == UNBIND:
                if session.bound:
                    self.unbinds += 1
                session.bind_type = None
                self._write(session, encode_pdu(UNBIND_RESP, ESME_ROK, sequence))
                await self._flush(session)
                return False
        except PduError as exc:
            if exc.generic:
                self._nack(session, sequence, exc.status, command_id, exc.reason)
                return True
            raise
        if command_id in _UNMODELLED_REQUESTS:
            self.unmodelled.append(command_name(command_id))
        self._nack(session, sequence, ESME_RINVCMDID, command_id, f"command_id {command_name(command_id)} not handled")
        return True

    def _on_response(self, session: Session, command_id: int, status: int, sequence: int, body: bytes) -> bool:
        if command_id == GENERIC_NACK:
            self.generic_nacks_received.append(GenericNack(session.id, sequence, status))
        request, fut = session.pending.pop(sequence, (None, None))
        if request is None and command_id != GENERIC_NACK:
            self.errors.append(ErrorRecord(session.id, command_id, sequence, status,
                                           f"{command_name(command_id)} seq {sequence} answers no request of ours"))
        elif request is not None and command_id not in (GENERIC_NACK, request | 0x80000000):
            self.errors.append(ErrorRecord(session.id, command_id, sequence, status,
                                           f"{command_name(command_id)} answers {command_name(request)}"))
        if request == DELIVER_SM:
            self.deliver_resps.append(DeliverResp(session.id, sequence, status, command_id))
        if fut is not None and not fut.done():
            fut.set_result(status)
        if command_id == UNBIND_RESP:
            session.bind_type = None
            return False
        return True

    async def _on_bind(self, session: Session, command_id: int, sequence: int, body: bytes) -> bool:
        resp_id = command_id | 0x80000000
        bind_type = BIND_TYPES[command_id]
        reader = BodyReader(body, command_name(command_id))
        try:
            system_id = reader.cstring("system_id", 16, ESME_RINVSYSID)
            password = reader.cstring("password", 9, ESME_RINVPASWD)
            reader.cstring("system_type", 13, ESME_RINVSYSTYP)
            reader.u8("interface_version")
            reader.u8("addr_ton")
            reader.u8("addr_npi")
            reader.cstring("address_range", 41, ESME_RINVPARLEN)
        except PduError as exc:
            if exc.generic:
                raise
            self.errors.append(ErrorRecord(session.id, command_id, sequence, exc.status, exc.reason))
            self.binds.append(Bind("", "", bind_type, exc.status))
            self._write(session, encode_pdu(resp_id, exc.status, sequence))
            return not self.close_on_bind_failure
        if session.bound:
            status = ESME_RALYBND
        elif self.refuse_binds:
            status = ESME_RBINDFAIL
        elif system_id != self.system_id:
            status = ESME_RINVSYSID
        elif password != self.password:
            status = ESME_RINVPASWD
        else:
            status = ESME_ROK
        self.binds.append(Bind(system_id, password, bind_type, status))
        if status != ESME_ROK:
            self._write(session, encode_pdu(resp_id, status, sequence))
            if self.close_on_bind_failure and not session.bound:
                await self._flush(session)
                return False
            return True
        session.bind_type, session.system_id = bind_type, system_id
        self._write(session, encode_pdu(resp_id, ESME_ROK, sequence, cstring(self.smsc_id, 16, "smsc_id")
                                        + encode_tlvs({TLV_SC_INTERFACE_VERSION: b"\x34"})))
        return True

    def _parse_submit(self, session: Session, sequence: int, body: bytes) -> Submit:
        r = BodyReader(body, "submit_sm")
        service_type = r.cstring("service_type", 6, ESME_RINVSERTYP)
        source_ton, source_npi = r.u8("source_addr_ton"), r.u8("source_addr_npi")
        source_addr = r.cstring("source_addr", 21, ESME_RINVSRCADR)
        dest_ton, dest_npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
        destination_addr = r.cstring("destination_addr", 21, ESME_RINVDSTADR)
        esm_class, protocol_id, priority_flag = r.u8("esm_class"), r.u8("protocol_id"), r.u8("priority_flag")
        schedule = r.cstring("schedule_delivery_time", 17, ESME_RINVSCHED)
        validity = r.cstring("validity_period", 17, ESME_RINVEXPIRY)
        registered_delivery, replace_flag = r.u8("registered_delivery"), r.u8("replace_if_present_flag")
        data_coding, default_msg_id = r.u8("data_coding"), r.u8("sm_default_msg_id")
        sm_length = r.u8("sm_length")
        short_message = r.octets(sm_length, "short_message")
        tlvs = r.tlvs()
        if len(schedule) not in (0, 16):
            raise PduError(ESME_RINVSCHED, f"schedule_delivery_time {schedule!r} is neither empty nor 16 characters")
        if len(validity) not in (0, 16):
            raise PduError(ESME_RINVEXPIRY, f"validity_period {validity!r} is neither empty nor 16 characters")
        if not destination_addr:
            raise PduError(ESME_RINVDSTADR, "destination_addr is empty")
        if sm_length > MAX_SHORT_MESSAGE:
            raise PduError(ESME_RINVMSGLEN, f"sm_length {sm_length} > {MAX_SHORT_MESSAGE}")
        if sm_length and TLV_MESSAGE_PAYLOAD in tlvs:
            raise PduError(ESME_RINVMSGLEN, "both short_message and message_payload carry the message")
        submit = Submit(session.id, sequence, source_addr, destination_addr, esm_class, data_coding,
                        registered_delivery, short_message, tlvs, None, b"", service_type=service_type,
                        source_addr_ton=source_ton, source_addr_npi=source_npi, dest_addr_ton=dest_ton,
                        dest_addr_npi=dest_npi, protocol_id=protocol_id, priority_flag=priority_flag,
                        schedule_delivery_time=schedule, validity_period=validity, replace_if_present_flag=replace_flag,
                        sm_default_msg_id=default_msg_id, received_at=time.time())
        user_data = submit.user_data
        if esm_class & ESM_CLASS_UDHI:
            try:
                submit.udh_raw, submit.udh, submit.text_part = parse_udh(user_data)
            except ValueError as exc:
                raise PduError(ESME_RINVESMCLASS, f"UDHI set but the UDH is broken: {exc}") from None
        else:
            submit.text_part = user_data
        return submit

    async def _on_submit(self, session: Session, sequence: int, body: bytes) -> bool:
        try:
            submit = self._parse_submit(session, sequence, body)
        except PduError as exc:
            if exc.generic:
                raise
            self.errors.append(ErrorRecord(session.id, SUBMIT_SM, sequence, exc.status, exc.reason))
            self._write(session, encode_pdu(SUBMIT_SM_RESP, exc.status, sequence))
            return True
        if not session.can_transmit:
            submit.status = ESME_RINVBNDSTS
        elif self.throttle_next > 0:
            self.throttle_next -= 1
            submit.status = ESME_RTHROTTLED
        if submit.status != ESME_ROK:
            self.rejected_submits.append(submit)
            await self._reply_submit(session, submit, close=False)
            return True
        submit.message_id = f"{next(self._message_ids):X}"
        self.submits.append(submit)
        drop = False
        if self.drop_after_submits is not None:
            self._accepted_since_drop += 1
            if self._accepted_since_drop >= self.drop_after_submits:
                self._accepted_since_drop = 0
                self.drops += 1
                drop = True
        if self.auto_receipts and submit.registered_delivery & 0x01:
            self._spawn(self._auto_receipt(submit))
        if drop and self.drop_before_resp:
            self._abort(session)
            return False
        await self._reply_submit(session, submit, close=drop)
        if drop and self.reply_delay > 0:
            session.closing = True  # the delayed reply closes the connection once it is out
            return True
        return not drop

    async def _reply_submit(self, session: Session, submit: Submit, *, close: bool) -> None:
        def pdu() -> bytes:
            if submit.status != ESME_ROK:  # no body on an error [4.4.2]
                return encode_pdu(SUBMIT_SM_RESP, submit.status, submit.sequence)
            return encode_pdu(SUBMIT_SM_RESP, ESME_ROK, submit.sequence, cstring(submit.message_id, 65, "message_id"))

        async def later() -> None:
            await asyncio.sleep(self.reply_delay)
            self._write(session, pdu())
            if close:
                await self._flush(session)
                self._abort(session)

        if self.reply_delay > 0:
            self._spawn(later())
            return
        self._write(session, pdu())
        if close:
            await self._flush(session)
            self._abort(session)

    async def _auto_receipt(self, submit: Submit) -> None:
        await asyncio.sleep(self.receipt_delay)
        with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
            await self.wait_for(lambda: any(s.can_receive for s in self.sessions), self.receipt_hold,
                                f"a receiver to take the receipt for {submit.message_id}")
            await self.send_receipt(submit.message_id, self.auto_receipt_stat)

    # --- reassembly ---------------------------------------------------------------------------------

    def messages(self) -> list[tuple[str, list[Submit]]]:
        """Accepted submits grouped into whole messages, in order of completion.

        A part without concatenation info is a message by itself. Concatenated parts are grouped by
        (destination, reference, total); a part goes to the oldest open group of its key that lacks
        its number, so a resent part after a lost submit_sm_resp does not make a second message, but
        a full resend does. Incomplete groups are left out.
        """
        done: list[tuple[str, list[Submit]]] = []
        open_groups: dict[tuple, list[dict[int, Submit]]] = {}
        for submit in self.submits:
            concat = submit.udh or submit.sar
            if concat is None:
                done.append((submit.destination_addr, [submit]))
                continue
            key = (submit.destination_addr, concat.ref_bits, concat.ref, concat.total)
            groups = open_groups.setdefault(key, [])
            group = next((g for g in groups if concat.seq not in g), None)
            if group is None:
                group = {}
                groups.append(group)
            group[concat.seq] = submit
            if len(group) == concat.total:
                groups.remove(group)
                done.append((submit.destination_addr, [group[n] for n in range(1, concat.total + 1)]))
        return done

    def texts(self) -> list[tuple[str, str]]:
        """(destination, text) of every complete submitted message; the parts' octets are joined
        before decoding, so a surrogate pair split across two UCS-2 parts still decodes."""
        out = []
        for destination, parts in self.messages():
            data = b"".join(p.text_part for p in parts)
            try:
                out.append((destination, decode_text(data, parts[0].data_coding)))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"FakeSMSC: message to {destination} in {len(parts)} part(s), data_coding "
                                 f"{parts[0].data_coding}, does not decode: {exc}") from None
        return out

    def delivered_count_by_text(self) -> Counter[str]:
        """How many times each complete message text was submitted (duplicates show as counts > 1)."""
        return Counter(text for _, text in self.texts())
