"""Custom actions of the Northwind demo bot (rasa-sdk).

Run in-process by Frontdesk (``actions.module: actions`` in bot.yml) or as an action server:
``python -m rasa_sdk --actions actions`` from this folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

ORDER_NUMBER = re.compile(r"(?<![\d.,])(\d{4,6})(?![\d.,])")
PERSON = {"title": "Talk to a person", "payload": "I want to talk to a person"}


def load_orders() -> dict[str, dict[str, Any]]:
    path = os.environ.get("FRONTDESK_DEMO_ORDERS") or Path(__file__).with_name("orders.json")
    with open(path, encoding="utf-8") as fh:
        orders: dict[str, dict[str, Any]] = json.load(fh)
    return orders


def find_order_number(tracker: Tracker) -> str | None:
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "order_number" and entity.get("value"):
            return str(entity["value"])
    match = ORDER_NUMBER.search(tracker.latest_message.get("text") or "")
    if match:
        return match.group(1)
    slot = tracker.get_slot("order_number")
    return str(slot) if slot else None


def describe(number: str, order: dict[str, Any]) -> str:
    items = ", ".join(order.get("items", [])) or "your items"
    status = order.get("status")
    if status == "shipped":
        return (
            f"Order {number} ({items}) has shipped with {order['carrier']}, tracking number "
            f"{order['tracking']}. It should arrive by {order['estimated_delivery']}."
        )
    if status == "delivered":
        carrier, day = order["carrier"], order["delivered_on"]
        return f"Order {number} ({items}) was delivered by {carrier} on {day}."
    if status == "processing":
        return (
            f"Order {number} ({items}) is being processed in our warehouse and will ship by "
            f"{order['ships_by']}. You'll get an email with the tracking link as soon as it leaves."
        )
    if status == "cancelled":
        return f"Order {number} ({items}) was cancelled. {order.get('refund', '')}".strip()
    return f"Order {number} is in status '{status}'."


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        number = find_order_number(tracker)
        if number is None:
            dispatcher.utter_message(
                text="I can look that up for you. What's your order number? "
                "It's the 4-digit number in your order confirmation email, e.g. 1042."
            )
            return []
        order = load_orders().get(number)
        if order is None:
            dispatcher.utter_message(
                text=f"I couldn't find an order with the number {number}. Could you double-check "
                "it in your confirmation email?",
                buttons=[PERSON],
            )
            return [SlotSet("order_number", None)]
        dispatcher.utter_message(text=describe(number, order))
        return [SlotSet("order_number", number)]
