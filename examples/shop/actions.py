"""Custom actions of the Northwind Goods demo bot (rasa-sdk).

Frontdesk runs them in-process (``actions.module: actions`` in bot.yml), or they can be served
by a rasa-sdk action server started from this folder: ``python -m rasa_sdk --actions actions``.

Only rasa_sdk and the standard library are imported. The "orders database" is
``orders.json`` next to this file (or the file named by ``FRONTDESK_DEMO_ORDERS``), re-read on
every call so edits show up without a restart.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

ORDERS_ENV = "FRONTDESK_DEMO_ORDERS"
# 4 to 6 digits standing on their own: not part of a longer number, a price or a date.
ORDER_NUMBER = re.compile(r"(?<!\d)(?<!\d[.,])(\d{4,6})(?![.,]?\d)")
PERSON = {"title": "Talk to a person", "payload": "I want to talk to a person"}
# Our own names, so the answer does not depend on the process's locale.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def load_orders() -> dict[str, dict[str, Any]]:
    """Order number -> order, from ``$FRONTDESK_DEMO_ORDERS`` or ``orders.json`` here."""
    path = os.environ.get(ORDERS_ENV) or Path(__file__).parent / "orders.json"
    with open(path, encoding="utf-8") as fh:
        orders: dict[str, dict[str, Any]] = json.load(fh)
    return orders


def _clean(value: Any) -> str | None:
    """``"#1042"``, ``1042`` or ``"1042"`` -> ``"1042"``; anything without digits -> None."""
    if value is None or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    return digits or None


def find_order_number(tracker: Tracker) -> str | None:
    """The order number: the slot, else an ``order_number`` entity, else one in the text."""
    number = _clean(tracker.get_slot("order_number"))
    if number:
        return number
    latest = tracker.latest_message or {}
    for entity in latest.get("entities") or []:
        if entity.get("entity") == "order_number":
            number = _clean(entity.get("value"))
            if number:
                return number
    match = ORDER_NUMBER.search(latest.get("text") or "")
    return match.group(1) if match else None


def _day(iso: str | None) -> str | None:
    """``"2026-11-25"`` -> ``"Wednesday, 25 November"`` (the text itself if not a date)."""
    if not iso:
        return None
    try:
        day = date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{WEEKDAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]}"


def _items(order: dict[str, Any]) -> str:
    items = [str(i) for i in order.get("items") or []]
    if not items:
        return "your items"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe(number: str, order: dict[str, Any]) -> str:
    """A friendly sentence or three about ``order``."""
    name = order.get("customer")
    hello = f", {name}" if name else ""
    items = _items(order)
    status = str(order.get("status", "")).lower()
    carrier = order.get("carrier") or "our carrier"
    eta = _day(order.get("estimated_delivery"))

    if status == "shipped":
        text = f"Good news{hello}! Order {number} has shipped with {carrier}"
        if order.get("tracking"):
            text += f", tracking number {order['tracking']}"
        text += "."
        if eta:
            text += f" It should arrive by {eta}."
        return text + f" In the parcel: {items}."
    if status == "delivered":
        day = order.get("delivered_on") or order.get("estimated_delivery")
        when = f" on {day}" if day else ""
        return (
            f"Order {number} ({items}) was delivered by {carrier}{when}. If you can't find it, "
            "check with your neighbours and the carrier's safe-place note; if it still hasn't "
            "turned up after 24 hours, our team will open a claim with the carrier for you."
        )
    if status == "processing":
        ships = _day(order.get("ships_by"))
        text = f"Thanks for your patience{hello}! Order {number} ({items}) is being packed"
        text += f" in our warehouse and will ship by {ships}." if ships else " in our warehouse."
        if eta:
            text += f" Expected delivery: {eta}."
        return text + " You'll get an email with the tracking link as soon as it leaves us."
    if status == "cancelled":
        text = f"Order {number} ({items}) was cancelled."
        amount, refunded = order.get("refund_amount"), _day(order.get("refunded_on"))
        if amount and refunded:
            text += (
                f" {amount} was refunded to your original payment method on {refunded}; "
                "card refunds can take 3–5 working days to show on your statement."
            )
        elif order.get("refund"):
            text += f" {order['refund']}"
        else:
            text += " If you paid already, the refund goes back to your original payment method."
        return text
    return f"Order {number} ({items}) has the status '{status or 'unknown'}'."


class ActionOrderStatus(Action):
    """Looks up an order in the demo orders database and tells the customer where it is."""

    def name(self) -> str:
        return "action_order_status"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        number = find_order_number(tracker)
        if number is None:
            dispatcher.utter_message(
                text="Happy to check that for you! What's your order number? It's the 4-digit "
                "number in your order confirmation email, for example 1042."
            )
            return []
        order = load_orders().get(number)
        if order is None:
            dispatcher.utter_message(
                text=f"Hmm, I couldn't find an order with the number {number}. Could you "
                "double-check it in your confirmation email? It's 4 digits, like 1042. If it "
                "still doesn't work, a member of our team can look it up for you.",
                buttons=[PERSON],
            )
            return [SlotSet("order_number", None)]
        dispatcher.utter_message(text=describe(number, order))
        return [SlotSet("order_number", number)]
