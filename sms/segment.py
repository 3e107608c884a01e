"""UCS-2 (UTF-16-BE) segmentation for SMPP 3.4, and reassembly of concatenated MO messages.

Outbound (MT): a text of at most 70 UTF-16 code units goes as one part without a user data
header; a longer one is cut into parts of at most 67 code units, each behind the 6-byte
concatenation header ``05 00 03 <ref> <total> <seq>`` (IEI 0x00, 8-bit reference), and sent
with ``esm_class`` 0x40 (UDHI). A character outside the BMP (an emoji) is a surrogate pair,
two code units, and is never cut in two: that part then holds 66 units. At most 255 parts.

Inbound (MO): `parse_udh` splits a ``short_message`` into its concatenation info (IEI 0x00,
8-bit reference, or 0x08, 16-bit reference; other elements are skipped) and the payload;
`decode_ucs2` never raises; `Reassembler` joins the parts of one message from one sender,
in any order, ignoring repeats, and hands back what never completed once it times out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

SINGLE_UNITS = 70          # code units in a message without UDH (140 octets)
PART_UNITS = 67            # code units per part behind the 6-byte concatenation UDH (134 octets)
MAX_PARTS = 255
ESM_UDHI = 0x40            # esm_class bit: short_message starts with a user data header
IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08


class SegmentError(ValueError):
    """The text cannot be sent as one concatenated message (too long, or a bad reference)."""


@dataclass(frozen=True)
class Segment:
    """One submit_sm worth of a message."""

    udh: bytes          # b"" for a single-part message
    payload: bytes      # the UCS-2 bytes of this part
    esm_class: int      # 0x40 when a UDH is present, else 0
    seq: int            # 1-based
    total: int

    @property
    def short_message(self) -> bytes:
        return self.udh + self.payload


@dataclass(frozen=True)
class UdhInfo:
    """The concatenation element of a user data header."""

    ref: int
    total: int
    seq: int
    ref_bits: int       # 8 (IEI 0x00) or 16 (IEI 0x08)


def _clean(text: str) -> str:
    """Join surrogate halves that form a pair; lone surrogates become U+FFFD."""
    return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


def encode_ucs2(text: str) -> bytes:
    """UTF-16-BE bytes of the text; characters outside the BMP become surrogate pairs.

    A lone surrogate in the text (not a character any phone can show) is sent as U+FFFD.
    """
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError:
        return _clean(text).encode("utf-16-be")


def _is_high(data: bytes, unit: int) -> bool:
    return 0xD8 <= data[2 * unit] <= 0xDB


def _cuts(data: bytes) -> list[tuple[int, int]]:
    """(start, end) code-unit ranges of the parts of an encoded text."""
    units = len(data) // 2
    if units <= SINGLE_UNITS:
        return [(0, units)]
    cuts = []
    start = 0
    while start < units:
        end = min(start + PART_UNITS, units)
        if end < units and _is_high(data, end - 1):  # the pair's low half is the next unit
            end -= 1
        cuts.append((start, end))
        start = end
    return cuts


def count_parts(text: str) -> int:
    """How many parts `segments` would make of the text (without building them)."""
    return len(_cuts(encode_ucs2(text)))


def segments(text: str, *, ref: int) -> list[Segment]:
    """Cut a text into SMPP parts; `ref` (0–255) is the concatenation reference of this message.

    Raises SegmentError beyond 255 parts or for a reference outside 0–255.
    """
    if not 0 <= ref <= 255:
        raise SegmentError(f"concatenation reference {ref} is outside 0–255 (8-bit reference)")
    data = encode_ucs2(text)
    cuts = _cuts(data)
    total = len(cuts)
    if total > MAX_PARTS:
        raise SegmentError(f"text of {len(data) // 2} UCS-2 code units needs {total} parts; "
                           f"at most {MAX_PARTS} parts ({MAX_PARTS * PART_UNITS} code units) can be concatenated")
    if total == 1:
        return [Segment(b"", data, 0, 1, 1)]
    return [Segment(bytes((5, IEI_CONCAT_8, 3, ref, total, seq)), data[2 * start:2 * end], ESM_UDHI, seq, total)
            for seq, (start, end) in enumerate(cuts, start=1)]


def decode_ucs2(payload: bytes) -> str:
    """Text of a UCS-2 / UTF-16-BE payload; a trailing odd byte or a lone surrogate becomes U+FFFD."""
    return bytes(payload).decode("utf-16-be", "replace")


def parse_udh(short_message: bytes, esm_class: int) -> tuple[UdhInfo | None, bytes]:
    """Split a short_message into its concatenation info (or None) and its payload. Never raises.

    Without the UDHI bit the whole short_message is the payload. A header whose length runs
    past the message is not a header: the whole short_message is handed back as payload, so
    nothing is lost. Elements other than 0x00 / 0x08 (ports, national language shifts …)
    are skipped; a truncated element ends the header walk.
    """
    data = bytes(short_message)
    if not esm_class & ESM_UDHI or not data:
        return None, data
    udhl = data[0]
    if 1 + udhl > len(data):
        return None, data
    header, payload = data[1:1 + udhl], data[1 + udhl:]
    info = None
    i = 0
    while i + 2 <= len(header):
        iei, length = header[i], header[i + 1]
        value = header[i + 2:i + 2 + length]
        if len(value) < length:
            break
        if iei == IEI_CONCAT_8 and length == 3:
            info = UdhInfo(value[0], value[1], value[2], 8)
        elif iei == IEI_CONCAT_16 and length == 4:
            info = UdhInfo((value[0] << 8) | value[1], value[2], value[3], 16)
        i += 2 + length
    return info, payload


def _seconds(delta: timedelta | float) -> float:
    return delta.total_seconds() if isinstance(delta, timedelta) else float(delta)


Part = str | bytes


@dataclass
class _Pending:
    started: datetime | float
    total: int
    parts: dict[int, Part] = field(default_factory=dict)


def _join(parts: list[Part]) -> str:
    """Text of the parts in order. UCS-2 payloads given as bytes are joined before decoding, so
    a surrogate pair that a phone cut across two parts survives."""
    if all(isinstance(p, bytes) for p in parts) and all(len(p) % 2 == 0 for p in parts):
        return decode_ucs2(b"".join(parts))  # type: ignore[arg-type]
    return "".join(decode_ucs2(p) if isinstance(p, bytes) else p for p in parts)


class Reassembler:
    """Joins the parts of concatenated MO messages; one instance per connection, not thread-safe.

    A message is keyed by (source, ref, total). `now` is a datetime or a number of seconds
    (the same kind on every call); `timeout` a timedelta or seconds. Parts may be text or the
    raw UCS-2 payload bytes.
    """

    GAP = "[…]"  # stands for a part that never arrived, in the partial texts `expire` hands back

    def __init__(self, timeout: timedelta | float = timedelta(minutes=10)) -> None:
        self.timeout = _seconds(timeout)
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        # messages completed within the timeout: a part redelivered afterwards (the SMSC did not
        # see our deliver_sm_resp) is recognised by its content and not taken for a new message
        self._done: dict[tuple[str, int, int], tuple[datetime | float, dict[int, Part]]] = {}
        self._strays: list[tuple[str, str]] = []  # parts that clashed with a different part of the same seq

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._pending)

    def add(self, source: str, ref: int, total: int, seq: int, text: Part,
            now: datetime | float) -> str | None:
        """Take one part; return the whole text when this part completes a message, else None.

        total 0, seq 0 or seq > total cannot be a valid part: the text is a message of its own
        and is returned at once, as is a 1-part message. A repeated part is ignored; a different
        part under a number already taken is kept apart for `expire`.
        """
        if total <= 1 or seq < 1 or seq > total:
            return _join([text])
        key = (source, ref, total)
        done = self._done.get(key)
        if done is not None and done[1].get(seq) == text:
            return None  # a redelivery of a part of a message already handed back
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(now, total)
        if seq in pending.parts:
            if pending.parts[seq] != text:  # another message under the same reference: keep it apart
                self._strays.append((source, _join([text])))
            return None
        pending.parts[seq] = text
        if len(pending.parts) < total:
            return None
        del self._pending[key]
        self._done[key] = (now, pending.parts)
        return _join([pending.parts[i] for i in range(1, total + 1)])

    def expire(self, now: datetime | float) -> list[tuple[str, str]]:
        """Hand back (source, partial text) of every message older than the timeout and forget it.

        The parts that arrived are joined in order, with `GAP` where parts are missing. A part
        that clashed with a different one of the same number (two messages under one reference)
        is handed back on its own at the next call.
        """
        out, self._strays = self._strays, []
        for key, pending in list(self._pending.items()):
            if _seconds(now - pending.started) >= self.timeout:
                del self._pending[key]
                text = "".join(_join([pending.parts[i]]) if i in pending.parts else self.GAP
                               for i in range(1, pending.total + 1))
                out.append((key[0], text))
        for key, (at, _) in list(self._done.items()):
            if _seconds(now - at) >= self.timeout:
                del self._done[key]
        return out
