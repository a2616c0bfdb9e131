"""The assistant's dialogue, turn by turn, on fake order facts (no store, no network)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from doorstep.conversations.model import Dialogue, DialogueState, Message, Turn
from doorstep.conversations.nlu.classifier import get_classifier
from doorstep.conversations.nlu.entities import extract
from doorstep.conversations.ports import ActionResult, OrderFacts, ReturnFacts, ShipmentFacts

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


@dataclass
class FakeFacts:
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    lookups: int = 0

    def find_order(self, number: str) -> OrderFacts | None:
        self.lookups += 1
        return next((o for o in self.orders.values() if o.number.upper() == number.upper().lstrip("#")), None)

    def get_order(self, order_id: str) -> OrderFacts | None:
        return self.orders.get(order_id)

    def recent_orders(self, customer_id: str, *, limit: int = 5) -> list[OrderFacts]:
        return [o for o in self.orders.values() if o.customer_id == customer_id][:limit]

    def failed_verifications(self, *, keys: list[str], since: datetime) -> int:
        return max((self.failures.get(k, 0) for k in keys), default=0)


def in_transit_order(**changes: object) -> OrderFacts:
    shipment = ShipmentFacts(
        id="s1",
        carrier="dhl",
        tracking_number="JD0001",
        status="InTransit",
        promised_from=datetime(2026, 11, 25, 9, tzinfo=UTC),
        promised_to=datetime(2026, 11, 25, 13, tzinfo=UTC),
        predicted_from=datetime(2026, 11, 26, 9, tzinfo=UTC),
        predicted_to=datetime(2026, 11, 26, 13, tzinfo=UTC),
        delay_reason="missed connection at the hub",
        last_scan_at=datetime(2026, 11, 22, 21, 5, tzinfo=UTC),
        last_location="Leipzig hub",
        dispatched_at=datetime(2026, 11, 21, 8, tzinfo=UTC),
    )
    order = OrderFacts(
        id="o1",
        number="DS-10293",
        customer_id="c1",
        status="dispatched",
        placed_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
        email="maya@example.com",
        postcode="SW1A 1AA",
        shipments=[shipment],
    )
    return replace(order, **changes)  # type: ignore[arg-type]


class Chat:
    """Drives a dialogue as the handler does: classify, respond, perform confirmed actions."""

    def __init__(
        self, facts: FakeFacts, state: DialogueState | None = None, action_result: ActionResult | None = None
    ):
        self.dialogue = Dialogue(facts, brand="Test Shop")
        self.state = state or DialogueState()
        self.performed: list[object] = []
        self.action_result = action_result or ActionResult(True, "your delivery is moved.")

    def say(self, text: str) -> Turn:
        p = get_classifier().predict(text)
        msg = Message(
            text=text,
            intent=p.intent,
            confidence=p.confidence,
            entities=extract(text, now=NOW),
            is_low_confidence=p.is_low_confidence,
        )
        turn = self.dialogue.respond(self.state, msg, now=NOW, channel_address="chat:s1")
        if turn.action is not None:
            self.performed.append(turn.action)
            after = self.dialogue.after_action(turn.state, turn.action, self.action_result)
            after.replies = turn.replies + after.replies
            return after
        return turn


@pytest.fixture
def facts() -> FakeFacts:
    order = in_transit_order()
    return FakeFacts(orders={order.id: order})


def test_asks_for_the_order_number_then_verification_before_disclosing(facts: FakeFacts) -> None:
    chat = Chat(facts)
    first = chat.say("where is my parcel?")
    assert first.intent == "track_order"
    assert first.replies == ["Sure. What's your order number? You'll find it in your order confirmation."]
    second = chat.say("DS-10293")
    assert "email address or the delivery postcode" in second.replies[0]
    assert "Leipzig" not in " ".join(second.replies)  # nothing disclosed before verification
    assert second.facts_order_id is None
    third = chat.say("maya@example.com")
    text = third.replies[0]
    assert text.startswith("Order DS-10293 is on its way with DHL (tracking JD0001).")
    assert "Last scan: Sun 22 Nov 21:05 at Leipzig hub." in text
    assert "running late (missed connection at the hub): we now expect it Thu 26 Nov, 09:00–13:00" in text
    assert third.verification is not None and third.verification.is_success
    assert chat.state.verified_customer_id == "c1"


def test_it_means_the_order_under_discussion(facts: FakeFacts) -> None:
    chat = Chat(facts)
    chat.say("where is order DS-10293")
    chat.say("postcode sw1a1aa")
    turn = chat.say("when will it arrive?")
    assert turn.intent == "delivery_eta"
    assert "Order DS-10293" in turn.replies[0]


def test_wrong_details_are_refused_and_counted(facts: FakeFacts) -> None:
    chat = Chat(facts)
    chat.say("where is order DS-10293")
    turn = chat.say("someone@else.com")
    assert turn.replies[0].startswith("Sorry, those details don't match")
    assert turn.verification is not None and not turn.verification.is_success
    assert turn.verification.keys == ["order:DS-10293", "address:chat:s1"]
    assert chat.state.verified_customer_id is None
    assert turn.facts_order_id is None


def test_unknown_order_number_gets_the_same_answer_as_wrong_details(facts: FakeFacts) -> None:
    chat = Chat(facts)
    chat.say("where is order DS-99999")
    turn = chat.say("maya@example.com")
    assert turn.replies[0].startswith("Sorry, those details don't match")


def test_verification_is_rate_limited(facts: FakeFacts) -> None:
    facts.failures["order:DS-10293"] = 5
    chat = Chat(facts)
    turn = chat.say("where is order DS-10293 my email is maya@example.com")  # right details, but locked
    assert turn.handoff is not None and turn.handoff.reason == "verification_locked"
    assert "too many attempts" in turn.replies[0]
    assert chat.state.verified_customer_id is None


def test_channel_identity_verifies_and_picks_the_only_order(facts: FakeFacts) -> None:
    chat = Chat(facts, DialogueState(verified_customer_id="c1", customer_id="c1"))
    turn = chat.say("where's my order")
    assert turn.replies[0].startswith("Order DS-10293 is on its way")


def test_channel_identity_of_another_customer_does_not_verify(facts: FakeFacts) -> None:
    chat = Chat(facts, DialogueState(verified_customer_id="someone-else"))
    chat.say("track my order")
    turn = chat.say("DS-10293")
    assert "email address or the delivery postcode" in turn.replies[0]


def test_reschedule_is_confirmed_before_it_happens_and_after(facts: FakeFacts) -> None:
    chat = Chat(facts, DialogueState(verified_customer_id="c1"))
    ask = chat.say("I won't be home, can you deliver another day")
    assert ask.replies == ['Which day suits you? For example "Friday morning" or "next Tuesday afternoon".']
    confirm = chat.say("next tuesday afternoon")
    assert confirm.replies == [
        "Shall I move the delivery of order DS-10293 to Tue 24 Nov, 12:00–17:00? Please answer yes or no."
    ]
    assert chat.performed == []  # nothing happens before the customer says yes
    done = chat.say("yes please")
    assert len(chat.performed) == 1
    assert chat.performed[0].kind == "reschedule"  # type: ignore[attr-defined]
    assert chat.performed[0].params["window_from"] == "2026-11-24T12:00:00+00:00"  # type: ignore[attr-defined]
    assert done.replies == ["Done: your delivery is moved. Anything else I can help with?"]


def test_saying_no_changes_nothing(facts: FakeFacts) -> None:
    chat = Chat(facts, DialogueState(verified_customer_id="c1"))
    chat.say("can you deliver it tomorrow morning instead")
    turn = chat.say("no")
    assert chat.performed == []
    assert turn.replies == ["OK, I haven't changed anything. Anything else I can help with?"]


def test_cancel_after_dispatch_is_refused_without_action(facts: FakeFacts) -> None:
    chat = Chat(facts, DialogueState(verified_customer_id="c1"))
    turn = chat.say("please cancel my order")
    assert "already left our warehouse" in turn.replies[0]
    assert chat.state.pending_action is None


def test_cancel_before_dispatch_asks_then_acts() -> None:
    order = in_transit_order(status="paid", shipments=[])
    chat = Chat(
        FakeFacts(orders={order.id: order}),
        DialogueState(verified_customer_id="c1"),
        action_result=ActionResult(True, "order DS-10293 is cancelled."),
    )
    assert chat.say("cancel my order").replies == ["Shall I cancel order DS-10293? Please answer yes or no."]
    assert chat.say("yes").replies == ["Done: order DS-10293 is cancelled. Anything else I can help with?"]
    assert [a.kind for a in chat.performed] == ["cancel"]  # type: ignore[attr-defined]


def test_action_that_needs_a_person_hands_off_with_the_request(facts: FakeFacts) -> None:
    chat = Chat(
        facts,
        DialogueState(verified_customer_id="c1"),
        action_result=ActionResult(False, "I can't do this automatically yet.", needs_person=True),
    )
    chat.say("leave it with my neighbour please")
    turn = chat.say("yes")
    assert turn.handoff is not None and turn.handoff.reason == "action_failed"
    assert (
        "Customer confirmed: ask the carrier to deliver order DS-10293 to a neighbour" in turn.handoff.summary
    )


def test_refund_status_from_live_returns() -> None:
    ret = ReturnFacts(
        id="r1",
        status="refunded",
        resolution="refund",
        refund_minor=5999,
        currency="EUR",
        requested_at=datetime(2026, 11, 10, tzinfo=UTC),
        updated_at=datetime(2026, 11, 18, tzinfo=UTC),
    )
    order = in_transit_order(status="delivered", returns=[ret])
    chat = Chat(FakeFacts(orders={order.id: order}), DialogueState(verified_customer_id="c1"))
    turn = chat.say("where is my refund")
    assert turn.replies[0].startswith(
        "Your refund for order DS-10293 (requested Tue 10 Nov) is refunded: "
        "59.99 EUR was refunded on Wed 18 Nov"
    )


def test_handoff_when_asked(facts: FakeFacts) -> None:
    turn = Chat(facts).say("can I speak to a person")
    assert turn.handoff is not None and turn.handoff.reason == "asked"


def test_complaint_and_strong_negative_sentiment_hand_off(facts: FakeFacts) -> None:
    assert Chat(facts).say("I want to make a formal complaint").handoff.reason == "complaint"  # type: ignore[union-attr]
    chat = Chat(facts)
    msg = Message(
        text="WHERE IS MY ORDER this is USELESS and RIDICULOUS!!!",
        intent="track_order",
        confidence=0.9,
        entities={},
    )
    angry = chat.dialogue.respond(chat.state, msg, now=NOW)
    assert angry.handoff is not None and angry.handoff.reason == "negative_sentiment"
    assert angry.handoff.urgency == 2


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("my item arrived damaged", "damaged"),
        ("an item is missing from my order", "missing_item"),
        ("you sent me the wrong item", "wrong_item"),
        ("it says delivered but I never got it", "not_received"),
        ("I didn't place this order, fraud", "fraud"),
    ],
)
def test_sensitive_problems_hand_off_with_a_summary(facts: FakeFacts, text: str, kind: str) -> None:
    chat = Chat(facts)
    turn = chat.say(text)
    assert turn.handoff is not None
    assert turn.handoff.reason == f"sensitive:{kind}"
    assert turn.handoff.summary.startswith(
        f"Handoff: sensitive:{kind.replace('_', ' ')}. Intent: report problem. Problem: {kind.replace('_', ' ')}."
    )


def test_out_of_scope_is_refused_and_two_in_a_row_hand_off(facts: FakeFacts) -> None:
    chat = Chat(facts)
    first = chat.say("what's the weather like in paris")
    assert first.intent == "out_of_scope"
    assert first.replies[0].startswith("Sorry, I can't help with that here.")
    assert first.handoff is None
    second = chat.say("tell me a joke")
    assert second.handoff is not None and second.handoff.reason == "low_confidence"


def test_one_satisfaction_question_at_the_end(facts: FakeFacts) -> None:
    chat = Chat(facts)
    ask = chat.say("bye")
    assert "from 1 (not at all) to 5 (very)" in ask.replies[0]
    done = chat.say("4")
    assert done.satisfaction == 4 and done.is_resolved
    assert chat.state.asked_satisfaction


def test_delivered_order_mentions_proof(facts: FakeFacts) -> None:
    shipment = ShipmentFacts(
        id="s1",
        carrier="ups",
        tracking_number="1Z",
        status="Delivered",
        delivered_at=datetime(2026, 11, 22, 10, 41, tzinfo=UTC),
        proof_recipient="M. Jones",
        has_proof_photo=True,
    )
    order = in_transit_order(status="delivered", shipments=[shipment])
    chat = Chat(FakeFacts(orders={order.id: order}), DialogueState(verified_customer_id="c1"))
    text = chat.say("has my order arrived?").replies[0]
    assert "It was delivered on Sun 22 Nov at 10:41. It was signed for by M. Jones." in text
    assert "photo" in text


def test_state_round_trips_through_json(facts: FakeFacts) -> None:
    chat = Chat(facts)
    chat.say("where is order DS-10293")
    restored = DialogueState.from_json(chat.state.to_json())
    assert restored == chat.state
    assert NOW - timedelta(0) == NOW
