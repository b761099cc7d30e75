"""Personal data is replaced before indexing; the company's own contact details stay."""

from __future__ import annotations

import pytest

from retrieval.redact import RedactionRules, Redactor, luhn_ok


def test_emails_phones_and_cards_are_replaced() -> None:
    redact = Redactor()
    assert redact("mail jane.doe+x@mail.example.com today") == "mail [EMAIL] today"
    assert redact("call me on (415) 555-2671 or +44 20 7946 0958") == (
        "call me on [PHONE] or [PHONE]"
    )
    assert redact("card 4111 1111 1111 1111 exp 12/27") == "card [CARD] exp 12/27"
    assert redact("card 4111-1111-1111-1111.") == "card [CARD]."


def test_numbers_that_are_not_personal_data_stay() -> None:
    redact = Redactor()
    # fails the Luhn check: an account reference, not a card
    assert redact("ref 4111 1111 1111 1112") == "ref 4111 1111 1111 1112"
    for text in ("order total $1,250.00 on 2024-03-05", "room 12 at 14:30", "zip 94107"):
        assert redact(text) == text


def test_order_numbers_only_with_a_configured_pattern() -> None:
    text = "my order NW-123456 is late"
    assert Redactor()(text) == text
    assert Redactor(RedactionRules(order_number=r"NW-\d{6}"))(text) == "my order [ORDER] is late"


def test_the_company_s_own_contacts_are_kept_however_written() -> None:
    rules = RedactionRules(keep=("Help@Northwind.example", "+1 800 555 0100"))
    redact = Redactor(rules)
    text = "write to help@northwind.example or call 800-555-0100, not me at 415 555 2671"
    assert redact(text) == (
        "write to help@northwind.example or call 800-555-0100, not me at [PHONE]"
    )
    assert redact("or bob@northwind.example") == "or [EMAIL]"


def test_bad_rules_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        RedactionRules(order_number="NW-(")
    with pytest.raises(ValueError, match="ISO 3166"):
        RedactionRules(phone_region="Narnia")


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
