"""Personal data out of past chats before anything is indexed or trained on.

Emails, phone numbers (``phonenumbers``), payment card numbers (Luhn-checked, so an order
total or a date is not taken for one) and, where the company configures a pattern, its order
numbers become ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` and ``[ORDER]``. The company's own
contact details (its support address, its hotline) are listed in ``keep`` and stay: an
agent reply that says "write to help@shop.example" is worth reusing as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
ORDER = "[ORDER]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def luhn_ok(digits: str) -> bool:
    """The payment-card check digit test."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class RedactionRules:
    """What counts as personal data for one company."""

    order_number: str | None = None
    """A regular expression for the company's order numbers, e.g. ``NW-\\d{6}``; none by default
    (a bare number is too often a quantity or a price to remove blindly)."""
    keep: tuple[str, ...] = ()
    """The company's own emails and phone numbers: never redacted (emails compared
    case-insensitively, phone numbers however they are written)."""
    phone_region: str = "US"
    """Where numbers without a country code are assumed to be from (ISO 3166 code)."""
    _order: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.order_number is not None:
            try:
                compiled = re.compile(self.order_number)
            except re.error as exc:
                raise ValueError(
                    f"order number pattern {self.order_number!r} is not a regular expression: {exc}"
                ) from None
            object.__setattr__(self, "_order", compiled)
        if phonenumbers.country_code_for_region(self.phone_region.upper()) == 0:
            raise ValueError(
                f"phone region: expected an ISO 3166 country code like 'US' or 'GB', "
                f"got {self.phone_region!r}"
            )


class Redactor:
    """``redactor(text)`` -> the text with personal data replaced by placeholders."""

    def __init__(self, rules: RedactionRules | None = None) -> None:
        self.rules = rules or RedactionRules()
        self._keep_text = {k.strip().lower() for k in self.rules.keep if "@" in k}
        region = self.rules.phone_region.upper()
        self._keep_phones = {_e164(k, region) for k in self.rules.keep if "@" not in k} - {None}

    def __call__(self, text: str) -> str:
        text = _EMAIL.sub(lambda m: m[0] if m[0].lower() in self._keep_text else EMAIL, text)
        if self.rules._order is not None:
            text = self.rules._order.sub(ORDER, text)
        text = _CARD.sub(lambda m: CARD if luhn_ok(_digits(m[0])) else m[0], text)
        return self._phones(text)

    def _phones(self, text: str) -> str:
        if not any(ch.isdigit() for ch in text):
            return text  # the common case, and the matcher is not cheap
        matches = phonenumbers.PhoneNumberMatcher(
            text, self.rules.phone_region.upper(), leniency=phonenumbers.Leniency.POSSIBLE
        )
        spans = [(m.start, m.end) for m in matches if _format(m.number) not in self._keep_phones]
        for start, end in reversed(spans):
            text = text[:start] + PHONE + text[end:]
        return text


def _format(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _e164(text: str, region: str) -> str | None:
    try:
        return _format(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return None


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
