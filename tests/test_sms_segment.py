"""UCS-2 segmentation for SMPP, the UDH parser and the MO reassembler."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms.segment import (
    ESM_UDHI,
    Reassembler,
    Segment,
    SegmentError,
    UdhInfo,
    count_parts,
    decode_ucs2,
    encode_ucs2,
    parse_udh,
    segments,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EMOJI = "\U0001F600"  # 😀, a surrogate pair in UTF-16


def units(payload: bytes) -> int:
    return len(payload) // 2


def reassemble(parts: list[Segment], order=None, source: str = "+8613800138000") -> str | None:
    """Through the inbound path: parse_udh → decode_ucs2 → Reassembler."""
    r = Reassembler()
    out = None
    for seg in (order or parts):
        info, payload = parse_udh(seg.short_message, seg.esm_class)
        text = decode_ucs2(payload)
        if info is None:
            return text
        got = r.add(source, info.ref, info.total, info.seq, text, T0)
        if got is not None:
            assert out is None, "a message completed twice"
            out = got
    assert len(r) == 0
    return out


# ---------------------------------------------------------------- encoding
def test_encode_ucs2_is_utf16_be_with_surrogate_pairs():
    assert encode_ucs2("A城") == b"\x00A\x57\xce"
    assert encode_ucs2(EMOJI) == b"\xd8\x3d\xde\x00"
    assert units(encode_ucs2("城建" + EMOJI)) == 4


def test_encode_ucs2_lone_surrogate_becomes_replacement_character():
    assert encode_ucs2("a\ud800b") == "a\ufffdb".encode("utf-16-be")
    # two halves that form a pair are the character they stand for
    assert encode_ucs2("\ud83d\ude00") == encode_ucs2(EMOJI)


# ---------------------------------------------------------------- part sizes
def test_seventy_units_is_one_part_without_udh():
    [seg] = segments("城" * 70, ref=7)
    assert seg.udh == b"" and seg.esm_class == 0
    assert (seg.seq, seg.total) == (1, 1)
    assert seg.payload == encode_ucs2("城" * 70) and len(seg.payload) == 140
    assert seg.short_message == seg.payload
    assert count_parts("城" * 70) == 1


def test_seventy_one_units_are_two_parts_of_67_and_4():
    segs = segments("城" * 71, ref=7)
    assert [units(s.payload) for s in segs] == [67, 4]
    assert all(s.esm_class == ESM_UDHI for s in segs)
    assert count_parts("城" * 71) == 2


def test_empty_text_is_one_empty_part():
    [seg] = segments("", ref=0)
    assert seg.short_message == b"" and seg.esm_class == 0
    assert count_parts("") == 1


def test_5000_characters_are_75_parts():
    text = "".join(chr(0x4E00 + i % 500) for i in range(5000))
    segs = segments(text, ref=200)
    assert len(segs) == 75 == count_parts(text)
    assert [units(s.payload) for s in segs] == [67] * 74 + [5000 - 74 * 67]
    assert [s.seq for s in segs] == list(range(1, 76))
    assert all(s.total == 75 for s in segs)
    assert b"".join(s.payload for s in segs) == encode_ucs2(text)


def test_udh_bytes_exact():
    segs = segments("a" * 140, ref=0xAB)
    assert [s.udh for s in segs] == [bytes([0x05, 0x00, 0x03, 0xAB, 0x03, seq]) for seq in (1, 2, 3)]
    assert segs[1].short_message[:6] == b"\x05\x00\x03\xab\x03\x02"
    assert segs[1].short_message[6:] == segs[1].payload == encode_ucs2("a" * 67)
    assert len(segs[0].short_message) == 6 + 134


def test_emoji_at_a_part_boundary_is_never_split():
    # 66 characters, then an emoji whose pair would straddle units 67/68
    text = "城" * 66 + EMOJI + "建" * 10
    segs = segments(text, ref=1)
    assert [units(s.payload) for s in segs] == [66, 12]
    assert segs[1].payload.startswith(encode_ucs2(EMOJI))
    assert count_parts(text) == 2
    for s in segs:
        assert "\ufffd" not in decode_ucs2(s.payload)


def test_all_emoji_text_parts_hold_66_units():
    text = EMOJI * 100  # 200 code units
    segs = segments(text, ref=1)
    assert [units(s.payload) for s in segs] == [66, 66, 66, 2]
    assert "".join(decode_ucs2(s.payload) for s in segs) == text
    assert count_parts(text) == 4


def test_35_emoji_fit_one_part_36_do_not():
    assert count_parts(EMOJI * 35) == 1
    assert count_parts(EMOJI * 36) == 2


def test_limits_255_parts():
    assert count_parts("a" * (255 * 67)) == 255
    assert len(segments("a" * (255 * 67), ref=3)) == 255
    with pytest.raises(SegmentError, match="256 parts"):
        segments("a" * (255 * 67 + 1), ref=3)
    assert count_parts("a" * (255 * 67 + 1)) == 256


@pytest.mark.parametrize("ref", [-1, 256, 65535])
def test_reference_must_be_8_bit(ref):
    with pytest.raises(SegmentError, match="0–255"):
        segments("hello", ref=ref)


# ---------------------------------------------------------------- decoding and UDH
def test_decode_ucs2_tolerates_odd_byte_and_lone_surrogates():
    assert decode_ucs2(b"\x00A\x00") == "A\ufffd"
    assert decode_ucs2(b"\xd8\x3d\x00A") == "\ufffdA"
    assert decode_ucs2(b"\xde\x00") == "\ufffd"
    assert decode_ucs2(b"") == ""
    assert decode_ucs2(encode_ucs2("井盖丢了" + EMOJI)) == "井盖丢了" + EMOJI


def test_parse_udh_8_bit_reference():
    info, payload = parse_udh(b"\x05\x00\x03\x2a\x02\x01" + encode_ucs2("你好"), ESM_UDHI)
    assert info == UdhInfo(ref=0x2A, total=2, seq=1, ref_bits=8)
    assert payload == encode_ucs2("你好")


def test_parse_udh_16_bit_reference():
    info, payload = parse_udh(b"\x06\x08\x04\x12\x34\x03\x02" + b"\x00A", ESM_UDHI)
    assert info == UdhInfo(ref=0x1234, total=3, seq=2, ref_bits=16)
    assert payload == b"\x00A"


def test_parse_udh_skips_other_elements():
    # application port addressing (IEI 0x05, 4 bytes) before the concatenation element
    udh = b"\x0b\x05\x04\x0b\x84\x23\xf0\x00\x03\x09\x02\x02"
    info, payload = parse_udh(udh + b"\x00B", 0x40 | 0x03)
    assert info == UdhInfo(ref=9, total=2, seq=2, ref_bits=8)
    assert payload == b"\x00B"
    # a header with no concatenation element: no info, payload after the header
    info, payload = parse_udh(b"\x04\x05\x02\x0b\x84\x00C", ESM_UDHI)
    assert info is None and payload == b"\x00C"


def test_parse_udh_without_udhi_is_all_payload():
    data = b"\x05\x00\x03\x2a\x02\x01\x00A"
    assert parse_udh(data, 0x00) == (None, data)


def test_parse_udh_header_longer_than_message_loses_nothing():
    data = b"\x20\x00\x03\x01"
    assert parse_udh(data, ESM_UDHI) == (None, data)
    assert parse_udh(b"", ESM_UDHI) == (None, b"")


# ---------------------------------------------------------------- reassembly
def test_reassembly_in_any_order_with_duplicates():
    text = "龙岗区布吉街道某小区门口的垃圾堆了三天没人清理，气味很大，" * 6
    segs = segments(text, ref=99)
    assert len(segs) == 3
    order = [segs[2], segs[0], segs[2], segs[0], segs[1]]
    assert reassemble(segs, order) == text


def test_reassembler_keeps_senders_and_references_apart():
    r = Reassembler()
    assert r.add("+8613800138000", 1, 2, 1, "甲1", T0) is None
    assert r.add("+8613900139000", 1, 2, 2, "乙2", T0) is None
    assert r.add("+8613800138000", 2, 2, 2, "丙2", T0) is None
    assert len(r) == 3
    assert r.add("+8613800138000", 1, 2, 2, "甲2", T0) == "甲1甲2"
    assert r.add("+8613900139000", 1, 2, 1, "乙1", T0) == "乙1乙2"
    assert len(r) == 1


def test_a_part_redelivered_after_completion_is_not_a_new_message():
    r = Reassembler()
    r.add("a", 5, 2, 1, "前", T0)
    assert r.add("a", 5, 2, 2, "后", T0) == "前后"
    assert r.add("a", 5, 2, 2, "后", T0 + timedelta(seconds=5)) is None
    assert len(r) == 0
    assert r.expire(T0 + timedelta(hours=1)) == []
    # after the timeout the same reference may carry a new message
    assert r.add("a", 5, 2, 1, "新", T0 + timedelta(hours=1)) is None
    assert r.add("a", 5, 2, 2, "的", T0 + timedelta(hours=1)) == "新的"


@pytest.mark.parametrize("total, seq", [(0, 1), (0, 0), (2, 3), (3, 0), (1, 1)])
def test_impossible_or_single_parts_are_messages_of_their_own(total, seq):
    r = Reassembler()
    assert r.add("a", 1, total, seq, "单独一条", T0) == "单独一条"
    assert len(r) == 0


def test_expiry_hands_back_partials():
    r = Reassembler(timeout=timedelta(minutes=10))
    r.add("+8613800138000", 7, 3, 1, "第一段", T0)
    r.add("+8613800138000", 7, 3, 3, "第三段", T0 + timedelta(minutes=1))
    r.add("+8613900139000", 8, 2, 2, "后半", T0 + timedelta(minutes=5))
    assert r.expire(T0 + timedelta(minutes=9)) == []
    assert r.expire(T0 + timedelta(minutes=10)) == [("+8613800138000", "第一段[…]第三段")]
    assert len(r) == 1
    assert r.expire(T0 + timedelta(minutes=15)) == [("+8613900139000", "[…]后半")]
    assert len(r) == 0 and r.expire(T0 + timedelta(hours=2)) == []


def test_reassembler_with_seconds_clock():
    r = Reassembler(timeout=60)
    r.add("a", 1, 2, 1, "x", 1000.0)
    assert r.expire(1059.0) == []
    assert r.expire(1060.0) == [("a", "x[…]")]


def test_byte_parts_join_a_surrogate_pair_a_phone_split():
    data = encode_ucs2("ab" + EMOJI)  # 4 units; a phone cut after the high surrogate
    r = Reassembler()
    assert r.add("a", 1, 2, 2, data[6:], T0) is None
    assert r.add("a", 1, 2, 1, data[:6], T0) == "ab" + EMOJI


# ---------------------------------------------------------------- properties
ASTRAL = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF)
BMP = st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",))
TEXTS = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.one_of(ASTRAL, BMP), min_size=60, max_size=600),
    st.text(alphabet=st.sampled_from(["城", "a", EMOJI, "\U00020000"]), min_size=60, max_size=400),
)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, ref=st.integers(0, 255), data=st.data())
def test_fuzz_segments_round_trip(text, ref, data):
    segs = segments(text, ref=ref)
    assert len(segs) == count_parts(text)
    for s in segs:
        assert len(s.payload) % 2 == 0
        assert s.short_message == s.udh + s.payload
        s.payload.decode("utf-16-be")  # strict: raises on a lone surrogate, i.e. a split pair
        if s.total > 1:
            assert s.udh == bytes([5, 0, 3, ref, s.total, s.seq]) and s.esm_class == ESM_UDHI
            assert len(s.payload) <= 134
        else:
            assert s.udh == b"" and s.esm_class == 0 and len(s.payload) <= 140
    order = data.draw(st.permutations(segs))
    if len(segs) > 1:
        order = order + [order[0]]  # a duplicate too
    assert reassemble(segs, order) == text


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), esm=st.integers(0, 255))
def test_fuzz_decode_and_parse_never_raise(payload, esm):
    text = decode_ucs2(payload)
    assert isinstance(text, str)
    info, rest = parse_udh(payload, esm)
    assert isinstance(rest, bytes)
    assert payload.endswith(rest)
    if info is not None:
        assert esm & ESM_UDHI and info.ref_bits in (8, 16)
    decode_ucs2(rest)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.text(alphabet="abcxyz城", max_size=4)),
                      max_size=25),
       seed=st.integers())
def test_fuzz_reassembler_loses_nothing(parts, seed):
    """Whatever arrives (repeats, clashes, impossible numbers), every part's text comes back,
    completed or through expire, and nothing stays behind."""
    r = Reassembler(timeout=60)
    random.Random(seed).shuffle(parts)
    out = [r.add("s", 1, total, seq, text, 0.0) for total, seq, text in parts]
    handed_back = [o for o in out if o is not None] + [text for _, text in r.expire(60.0)]
    assert len(r) == 0 and r.expire(120.0) == []
    for total, seq, text in parts:
        assert any(text in whole for whole in handed_back), (text, handed_back)


def test_a_clashing_part_is_kept_apart():
    r = Reassembler()
    r.add("a", 1, 2, 1, "甲", T0)
    assert r.add("a", 1, 2, 1, "乙", T0) is None
    assert r.add("a", 1, 2, 2, "丙", T0) == "甲丙"
    assert r.expire(T0) == [("a", "乙")]
