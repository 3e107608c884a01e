"""Who may be texted; numbers as the SMSC wants them and gives them."""
from __future__ import annotations

import pytest

from sms.numbers import (
    NPI_ISDN,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_NATIONAL,
    TON_UNKNOWN,
    SmppAddress,
    Target,
    from_smsc,
    msisdn,
    smpp_address,
    sms_target,
)


@pytest.mark.parametrize("text", ["13800138000", "+86 138-0013-8000", "8613800138000", "+8613800138000",
                                  "008613800138000", " 138 0013 8000 "])
def test_mobile_is_textable(text):
    assert sms_target(text) == Target("+8613800138000", True, "mobile number")


def test_other_mobile_prefixes():
    for number in ("19912345678", "16612345678", "17012345678"):
        target = sms_target(number)
        assert target.textable and target.e164 == "+86" + number


@pytest.mark.parametrize("text", ["0755-83000000", "075583000000", "+86 755 8300 0000"])
def test_landline_is_not_textable(text):
    assert sms_target(text) == Target("+8675583000000", False, "not a mobile number")


def test_toll_free_is_not_textable():
    target = sms_target("400-810-1234")
    assert not target.textable and target.why == "not a mobile number"


@pytest.mark.parametrize("text, digits", [("12319", "12319"), ("95588", "95588"), ("10086", "10086"),
                                          ("10657120012345", "10657120012345"), ("1065 7120 0123 4567", "1065712001234567"),
                                          ("106900001234", "106900001234"), ("+8612319", "12319"),
                                          ("+86 95588", "95588"), ("0086106571234", "106571234")])
def test_service_numbers_are_recognised_and_not_textable(text, digits):
    assert sms_target(text) == Target(digits, False, "service number")


@pytest.mark.parametrize("text", ["garbage", "", "   ", "138001380", "+86 abc", "1" * 40, "12319" * 20])
def test_garbage_is_not_textable_with_a_reason(text):
    target = sms_target(text)
    assert target.textable is False and target.e164 is None
    assert target.why and ("not a" in target.why or "too long" in target.why)


def test_forty_digits_says_too_long():
    assert "too long" in sms_target("1" * 40).why


def test_foreign_mobile_is_not_textable_from_a_cn_account():
    target = sms_target("+852 9123 4567")
    assert target.e164 == "+85291234567" and not target.textable and "+86" in target.why


def test_msisdn_national_digits_for_cn():
    assert msisdn("+8613800138000") == "13800138000"
    assert smpp_address("+8613800138000") == SmppAddress("13800138000", TON_NATIONAL, NPI_ISDN)
    assert smpp_address("+85291234567") == SmppAddress("85291234567", TON_INTERNATIONAL, NPI_ISDN)


@pytest.mark.parametrize("bad", ["13800138000", "12319", "", "+86abc", "+" + "1" * 20])
def test_msisdn_refuses_what_is_not_e164(bad):
    with pytest.raises(ValueError, match="not an E.164 number"):
        msisdn(bad)


@pytest.mark.parametrize("addr, ton", [("8613800138000", TON_INTERNATIONAL), ("8613800138000", TON_UNKNOWN),
                                       ("+8613800138000", TON_UNKNOWN), ("13800138000", TON_NATIONAL),
                                       ("13800138000", TON_UNKNOWN), (b"8613800138000", TON_INTERNATIONAL),
                                       ("008613800138000", TON_UNKNOWN), ("13800138000\x00", TON_UNKNOWN),
                                       ("13800138000", TON_INTERNATIONAL)])  # mislabelled: national digits
def test_from_smsc_forms(addr, ton):
    assert from_smsc(addr, ton, NPI_ISDN) == "+8613800138000"


@pytest.mark.parametrize("addr, ton", [("12319", TON_UNKNOWN), ("10657120012345", TON_UNKNOWN),
                                       ("8612319", TON_INTERNATIONAL), ("CMCC", TON_ALPHANUMERIC),
                                       ("13800138000", TON_ALPHANUMERIC), ("", TON_UNKNOWN),
                                       ("garbage", TON_UNKNOWN), ("1" * 40, TON_UNKNOWN), (b"\xff\xfe", TON_UNKNOWN)])
def test_from_smsc_not_a_citizen_number(addr, ton):
    assert from_smsc(addr, ton, NPI_ISDN) is None


def test_from_smsc_landline_sender_is_kept():
    assert from_smsc("8675583000000", TON_INTERNATIONAL, NPI_ISDN) == "+8675583000000"


def test_round_trip_destination_and_source():
    e164 = sms_target("138-0013-8000").e164
    address = smpp_address(e164)
    assert from_smsc(address.addr, address.ton, address.npi) == e164
