"""Phone-number normalisation with phonenumbers.

Citizens' numbers are stored in E.164. Short service numbers (12319, 95588, 106…
SMS service codes) are not valid numbers to phonenumbers; they are recognised here
and kept as they are, flagged as service numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

_SERVICE = re.compile(r"^(1\d{4}|9\d{4}|106\d{2,17})$")  # 12319, 95588, 10690…


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we can call or text back."""


@dataclass(frozen=True)
class PhoneNumber:
    e164: str  # "+8613800138000", or the digits of a service number
    is_mobile: bool
    is_service: bool = False

    @property
    def national(self) -> str:
        if self.is_service:
            return self.e164
        return phonenumbers.format_number(phonenumbers.parse(self.e164), phonenumbers.PhoneNumberFormat.NATIONAL)


def normalise(text: str, region: str = "CN") -> PhoneNumber:
    """Parse what a caller, an SMSC or a form gives us; raise InvalidPhoneNumber if it is not a number."""
    raw = (text or "").strip()
    digits = re.sub(r"[\s\-().]", "", raw)
    if _SERVICE.match(digits):
        return PhoneNumber(digits, is_mobile=False, is_service=True)
    if digits.startswith("0086"):
        digits = "+86" + digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = "+" + digits
    try:
        parsed = phonenumbers.parse(digits, region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{raw!r} is not a valid phone number")
    kind = phonenumbers.number_type(parsed)
    is_mobile = kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    return PhoneNumber(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), is_mobile)


@dataclass(frozen=True)
class NumberFacts:
    """What an agent sees of a caller's number: as dialled locally, and where it is from."""

    e164: str | None
    display: str
    region: str = ""       # 广东省深圳市
    carrier: str = ""      # 中国移动
    is_mobile: bool = False


def describe(text: str | None, region: str = "CN") -> NumberFacts:
    """The number formatted, with its region and carrier (phonenumbers' data, in Chinese)."""
    if not text:
        return NumberFacts(None, "未知号码")
    try:
        number = normalise(text, region)
    except InvalidPhoneNumber:
        return NumberFacts(None, text[:40])
    if number.is_service:
        return NumberFacts(number.e164, number.e164)
    from phonenumbers import carrier, geocoder   # loaded on first use: large tables
    parsed = phonenumbers.parse(number.e164)
    return NumberFacts(number.e164, number.national, geocoder.description_for_number(parsed, "zh"),
                       carrier.name_for_number(parsed, "zh"), number.is_mobile)
