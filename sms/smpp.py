"""The SMPP 3.4 connector, on smpp34 (its Rust core does the framing, the sequence window and
enquire_link; this module decides what to do with binds, parts, receipts and MO).

- Bind transceiver with system id / password from the settings; a refused bind is reported as
  what it is (wrong password, unknown system id), not as a timeout, and retried slowly.
- Re-bind with back-off after any loss; `status` says where the link is.
- A send window (`smpp_window` parts outstanding) and a per-connection rate cap
  (`smpp_rate_per_second`, 0 = none); ESME_RTHROTTLED backs off and retries the part.
- deliver_sm: receipts (esm_class 0x04) are parsed and handed on; MO is decoded (UCS-2, GSM-7
  default alphabet, Latin-1; an unknown coding is kept as hex with a note) and concatenated parts
  are joined before they are handed on.
"""
from __future__ import annotations

import asyncio
import logging
import random
import re
import struct
import time

import smpp34

from hotline import clock
from sms.connector import BindRefused, Inbound, InboundHandler, NotBound, PermanentSendError, Receipt, \
    ReceiptHandler, SendError
from sms.numbers import from_smsc, smpp_address
from sms.segment import Reassembler, Segment, decode_ucs2, parse_udh

log = logging.getLogger(__name__)

LIVENESS_SECONDS = 1.0
ESME_RTHROTTLED = 0x58
ESME_RMSGQFUL = 0x14
BIND_STATUS = {0x0D: "bind failed (ESME_RBINDFAIL)", 0x0E: "wrong password (ESME_RINVPASWD)",
               0x0F: "unknown system id (ESME_RINVSYSID)", 0x05: "already bound (ESME_RALYBND)"}
TRANSIENT = {ESME_RTHROTTLED, ESME_RMSGQFUL, 0x08}     # throttled, queue full, system error
RECEIPT_FIELD = re.compile(r"(\w+(?: \w+)?):(\S*)")
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


def decode_text(payload: bytes, data_coding: int) -> tuple[str, str | None]:
    """(text, note) of an MO payload; the note says when the coding was not understood."""
    if data_coding == 8:
        return decode_ucs2(payload), None
    if data_coding == 0:   # GSM-7 default alphabet, unpacked (one septet per octet) as SMPP carries it
        return "".join(GSM7_BASIC[b] if b < 128 else "\ufffd" for b in payload), None
    if data_coding in (1, 3):
        return payload.decode("latin-1"), None
    if data_coding == 15:  # GBK, as some Chinese aggregators send it
        return payload.decode("gbk", "replace"), None
    return payload.hex(), f"data_coding {data_coding} not understood; kept as hex"


def parse_receipt(text: str) -> tuple[str | None, str, str]:
    """(message id, stat, err) from the receipt text 'id:… sub:… dlvr:… … stat:DELIVRD err:000 text:…'."""
    fields = {k.lower(): v for k, v in RECEIPT_FIELD.findall(text)}
    return fields.get("id"), fields.get("stat", "UNKNOWN").upper(), fields.get("err", "")


class RateCap:
    """At most `rate` acquisitions a second (a token bucket of one second); 0 = unlimited."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class SmppConnector:
    def __init__(self, host: str, port: int, system_id: str, password: str, *, source_addr: str,
                 system_type: str = "", window: int = 10, rate: float = 0.0, reconnect_max: float = 30.0,
                 connect_timeout: float = 10.0, submit_timeout: float = 30.0) -> None:
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.source_addr = source_addr
        self.window = asyncio.Semaphore(window)
        self.window_size = window
        self.rate = RateCap(rate)
        self.reconnect_max = reconnect_max
        self.connect_timeout, self.submit_timeout = connect_timeout, submit_timeout
        self.status = "starting"
        self.last_error = ""
        self.binds = 0
        self.session: smpp34.Smsc | None = None
        self.client: smpp34.Client | None = None
        self._bound = asyncio.Event()
        self._stopping = False
        self._wake = asyncio.Event()   # set by stop(): ends a back-off wait at once
        self._inbound: list[InboundHandler] = []
        self._receipts: list[ReceiptHandler] = []
        self.reassembler = Reassembler()

    # ------------------------------------------------------------------------------ link
    def on_inbound(self, handler: InboundHandler) -> None:
        self._inbound.append(handler)

    def on_receipt(self, handler: ReceiptHandler) -> None:
        self._receipts.append(handler)

    async def run(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await self._bind()
                delay = 0.5
                await self._read()       # returns when the session ends
            except BindRefused as exc:
                self._set("bind_refused", str(exc))
                delay = self.reconnect_max
            except (OSError, asyncio.TimeoutError, smpp34.SmppError) as exc:
                self._set("unreachable", f"{type(exc).__name__}: {exc}")
            except Exception as exc:   # the link must outlive any surprise; say what it was
                log.exception("SMPP session failed")
                self._set("unreachable", f"{type(exc).__name__}: {exc}")
            finally:
                await self._drop()
            if self._stopping:
                break
            try:   # back off, but a stop ends the wait at once (a service manager will not wait 30 s)
                await asyncio.wait_for(self._wake.wait(), delay * (0.8 + 0.4 * random.random()))
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.reconnect_max)
        self._set("stopped", "")

    async def _bind(self) -> None:
        self.client = smpp34.Client(self.host, self.port, self.system_id, self.password, bind_type="TRX",
                                    system_type=self.system_type, window_size=self.window_size,
                                    inbound_capacity=10_000,   # smpp34 mis-frames its NAK when this fills
                                    connect_timeout_ms=int(self.connect_timeout * 1000))
        try:
            self.session = await asyncio.wait_for(self.client.connect(), self.connect_timeout + 5)
        except smpp34.SmppError as exc:
            status = _status_of(exc)
            if status is None and "timed out" in str(exc):
                # smpp34 1.5 reports a bind_resp with an error status (sent without a body, as the
                # spec says) as a timeout: ask the SMS centre ourselves what it says to this bind
                status = await probe_bind(self.host, self.port, self.system_id, self.password, self.system_type,
                                          self.connect_timeout)
            if status in BIND_STATUS:
                raise BindRefused(f"bind as {self.system_id!r} refused: {BIND_STATUS[status]}") from None
            if status is not None and status != 0:
                raise BindRefused(f"bind as {self.system_id!r} refused: command_status 0x{status:08X}") from None
            raise
        self.binds += 1
        self._bound.set()
        self._set("bound", "")

    async def _drop(self) -> None:
        self._bound.clear()
        self.session = None
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.stop()
            except (smpp34.SmppError, OSError, RuntimeError) as exc:
                log.debug("SMPP client stop: %s", exc)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        session = self.session
        if session is not None:
            try:
                await asyncio.wait_for(session.unbind(), 5)
            except (smpp34.SmppError, OSError, asyncio.TimeoutError, RuntimeError) as exc:
                log.debug("SMPP unbind: %s", exc)
        await self._drop()

    async def wait_bound(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._bound.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _set(self, status: str, error: str) -> None:
        if status != self.status or error != self.last_error:
            (log.info if status in ("bound", "stopped") else log.warning)(
                "SMPP %s:%s %s%s", self.host, self.port, status, f": {error}" if error else "")
        self.status, self.last_error = status, error

    # ------------------------------------------------------------------------------ MT
    async def submit(self, destination: str, part: Segment, *, receipt: bool = True) -> str:
        address = smpp_address(destination)
        for attempt in range(8):
            session = self.session
            if session is None or not self._bound.is_set():
                raise NotBound(f"not bound to the SMS centre ({self.status})")
            await self.rate.take()
            async with self.window:
                try:
                    resp = await asyncio.wait_for(session.submit_sm(
                        address.addr, part.short_message, source_addr=self.source_addr, dest_addr_ton=address.ton,
                        dest_addr_npi=address.npi, esm_class=part.esm_class, data_coding=8,
                        registered_delivery=1 if receipt else 0), self.submit_timeout)
                except (smpp34.SmppError, OSError, RuntimeError, asyncio.TimeoutError) as exc:
                    raise SendError(f"submit_sm to {address.addr} part {part.seq}/{part.total}: {exc}") from None
            if resp.is_success and resp.message_id:
                return resp.message_id
            status = resp.command_status
            if status in TRANSIENT:
                await asyncio.sleep(min(0.05 * 2 ** attempt, 2.0))   # throttled: back off, same part again
                continue
            raise PermanentSendError(f"submit_sm to {address.addr} refused: command_status 0x{status:08X}")
        raise SendError(f"submit_sm to {address.addr}: still throttled after 8 tries")

    # ------------------------------------------------------------------------------ MO and receipts
    async def _read(self) -> None:
        session, client = self.session, self.client
        while session is not None and client is not None and not self._stopping:
            pending = asyncio.ensure_future(session.next())
            while True:   # smpp34 1.5 can lose the Disconnected event (a garbled PDU): check the link too
                done, _ = await asyncio.wait({pending}, timeout=LIVENESS_SECONDS)
                if done:
                    break
                if not await client.is_alive():
                    pending.cancel()
                    self._set("unreachable", "the SMPP session died (no Disconnected event)")
                    return
            event = pending.result()
            if isinstance(event, smpp34.Disconnected):
                self._set("unreachable", "the SMS centre closed the session")
                return
            try:
                await self._deliver(event)
            except Exception:   # one bad deliver_sm must not end the session for the others
                log.exception("SMPP deliver_sm from %r not handled", getattr(event, "source_addr", "?"))

    async def _deliver(self, event: smpp34.DeliverSmEvent) -> None:
        now = clock.now()
        udh, payload = parse_udh(event.short_message, event.esm_class)
        if event.esm_class & 0x3C == 0x04:   # a delivery receipt
            text, _ = decode_text(payload, event.data_coding if event.data_coding != 8 else 8)
            smsc_id, stat, err = parse_receipt(text)
            tlv_id = next((t.as_string() for t in event.tlvs if t.tag == smpp34.TLV_RECEIPTED_MESSAGE_ID), None)
            smsc_id = (tlv_id or smsc_id or "").strip("\x00")
            if smsc_id:
                for handler in self._receipts:
                    await handler(Receipt(smsc_id, stat, err, now))
            return
        source = from_smsc(event.source_addr, event.source_addr_ton, event.source_addr_npi) or event.source_addr
        if udh is not None and event.data_coding == 8:
            whole = self.reassembler.add(source, udh.ref, udh.total, udh.seq, payload, now)
            note = None
        else:
            text, note = decode_text(payload, event.data_coding)
            whole = self.reassembler.add(source, udh.ref, udh.total, udh.seq, text, now) if udh else text
        for partial_source, partial in self.reassembler.expire(now):
            await self._hand_on(Inbound(partial_source, event.destination_addr, partial, None, 8, now))
        if whole is None:
            return
        if note:
            log.warning("SMPP MO from %s: %s", source, note)
        await self._hand_on(Inbound(source, event.destination_addr, whole, None, event.data_coding, now))

    async def _hand_on(self, message: Inbound) -> None:
        for handler in self._inbound:
            await handler(message)


async def probe_bind(host: str, port: int, system_id: str, password: str, system_type: str,
                     timeout: float) -> int | None:
    """One bind_transceiver of our own; the command_status of its response (None: no answer).
    A successful probe bind is unbound at once."""
    def cstr(value: str) -> bytes:
        return value.encode("ascii", "replace") + b"\0"
    body = cstr(system_id) + cstr(password) + cstr(system_type) + bytes([0x34, 0, 0]) + b"\0"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(struct.pack(">IIII", 16 + len(body), 0x00000009, 0, 1) + body)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(16), timeout)
        _, command_id, status, _ = struct.unpack(">IIII", header)
        if command_id != 0x80000009:
            return None
        if status == 0:
            writer.write(struct.pack(">IIII", 16, 0x00000006, 0, 2))   # unbind
            await writer.drain()
        return status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


def _status_of(exc: BaseException) -> int | None:
    m = re.search(r"0x([0-9A-Fa-f]{8})", str(exc))
    return int(m.group(1), 16) if m else None
