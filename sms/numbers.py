"""Who may be texted, and numbers as the SMSC wants them and gives them.

`sms_target` decides whether a number can receive a text: only mobile numbers of the home
region's country (+86 for CN: the hotline's SMS account is a domestic one). Service numbers
(12319, 95588, 10086, 1065…/106… SMS service codes), which phonenumbers does not take as
valid numbers, are recognised explicitly, also behind +86 / 0086, and are never texted.

SMPP addresses: a +86 destination goes as its 11 national digits with TON national (2) and
NPI ISDN/E.164 (1), another country's as its international digits with TON international (1).
MO source addresses come as "8613800138000", "+8613800138000" or "13800138000".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from hotline.phone import InvalidPhoneNumber, normalise

# SMPP 3.4 §5.2.5 / §5.2.6
TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_NETWORK_SPECIFIC, TON_ALPHANUMERIC = 0, 1, 2, 3, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1

MAX_INPUT = 64  # characters; longer text is no phone number, whatever it holds
# 5-digit hotlines and carrier numbers (12319, 12345, 10086, 95588), 6-digit 96xxxx-style
# hotlines, 10xxxxxx codes up to 8 digits, and 106… SMS service codes up to 20 digits
SERVICE_NUMBER = re.compile(r"^(?:1\d{4}|10\d{3,6}|9\d{4,5}|106\d{2,17})$")
_SEPARATORS = re.compile(r"[\s\-().]")
_COUNTRY_PREFIX = re.compile(r"^(?:\+86|0086|86)")


@dataclass(frozen=True)
class Target:
    e164: str | None   # "+8613800138000"; the digits of a service number; None when no number
    textable: bool
    why: str           # "mobile number" when textable, else why not


@dataclass(frozen=True)
class SmppAddress:
    addr: str          # what goes in destination_addr
    ton: int
    npi: int


def _service_digits(digits: str) -> str | None:
    """The service number in the digits, also behind a +86 / 0086 / 86 prefix, else None."""
    if SERVICE_NUMBER.match(digits):
        return digits
    bare = _COUNTRY_PREFIX.sub("", digits, count=1)
    if bare != digits and SERVICE_NUMBER.match(bare):
        return bare
    return None


def sms_target(text: str, region: str = "CN") -> Target:
    """Whether a text can go to this number, the number normalised, and why not."""
    raw = (text or "").strip()
    if len(raw) > MAX_INPUT:
        return Target(None, False, f"not a phone number: {len(raw)} characters is too long")
    digits = _SEPARATORS.sub("", raw)
    service = _service_digits(digits)
    if service is not None:
        return Target(service, False, "service number")
    try:
        number = normalise(raw, region)
    except InvalidPhoneNumber as exc:
        return Target(None, False, str(exc))
    if number.is_service:
        return Target(number.e164, False, "service number")
    if not number.is_mobile:
        return Target(number.e164, False, "not a mobile number")
    home = phonenumbers.country_code_for_region(region.upper())
    if phonenumbers.parse(number.e164).country_code != home:
        return Target(number.e164, False, f"not a +{home} mobile number: the SMS channel texts +{home} mobiles only")
    return Target(number.e164, True, "mobile number")


def smpp_address(e164: str) -> SmppAddress:
    """The destination as the SMSC wants it: +86 numbers as national digits (TON 2, NPI 1),
    others as international digits without "+" (TON 1, NPI 1). ValueError for anything
    that is not an E.164 number (a service number is never a destination)."""
    if not re.fullmatch(r"\+[1-9]\d{6,14}", e164 or ""):
        raise ValueError(f"{e164!r} is not an E.164 number (+ and 7 to 15 digits)")
    parsed = phonenumbers.parse(e164)
    if parsed.country_code == 86:
        return SmppAddress(phonenumbers.national_significant_number(parsed), TON_NATIONAL, NPI_ISDN)
    return SmppAddress(e164[1:], TON_INTERNATIONAL, NPI_ISDN)


def msisdn(e164: str) -> str:
    """destination_addr for an E.164 number: "13800138000" for +8613800138000 (TON/NPI: `smpp_address`)."""
    return smpp_address(e164).addr


def from_smsc(addr: str | bytes, ton: int, npi: int, region: str = "CN") -> str | None:
    """The E.164 number of an MO source address, or None when it is no citizen's number
    (a service number, an alphanumeric sender, garbage).

    TON international: the digits carry their country code ("8613800138000"); if that gives
    no valid number the digits are tried as national ones, since SMSCs do mislabel. Otherwise
    "+86…", "0086…", "86" + 11 digits and national digits are all understood. NPI is not needed.
    """
    if isinstance(addr, (bytes, bytearray)):
        addr = bytes(addr).decode("ascii", "replace")
    text = (addr or "").replace("\x00", "").strip()
    if ton == TON_ALPHANUMERIC or not text or len(text) > MAX_INPUT:
        return None
    digits = _SEPARATORS.sub("", text)
    if not re.fullmatch(r"\+?\d{3,20}", digits) or _service_digits(digits.lstrip("+")) is not None:
        return None
    candidates = [digits]
    if ton == TON_INTERNATIONAL and not digits.startswith("+"):
        candidates = ["+" + digits, digits]
    for candidate in candidates:
        try:
            number = normalise(candidate, region)
        except InvalidPhoneNumber:
            continue
        if not number.is_service:
            return number.e164
    return None
