"""The assistant's dialogue: pure rules. One customer message in (already understood: intent, confidence,
entities), the state so far and live order facts through a read port; out come the replies, the new state
and what should happen next (an action the customer confirmed, a handoff, a verification attempt to record,
a satisfaction score). `now` is passed in; nothing here touches the store or the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from doorstep.conversations.nlu.entities import compact_postcode
from doorstep.conversations.ports import (
    ActionRequest,
    ActionResult,
    OrderFacts,
    OrderFactsPort,
    ShipmentFacts,
)

ORDER_INTENTS = {
    "track_order",
    "delivery_eta",
    "reschedule_delivery",
    "change_delivery_address",
    "cancel_order",
    "start_return",
    "refund_status",
    "invoice_request",
}
MAX_FAILED_VERIFICATIONS = 5  # per order number and per channel address, in VERIFICATION_WINDOW
VERIFICATION_WINDOW = timedelta(hours=1)
LOW_CONFIDENCE_TURNS_BEFORE_HANDOFF = 2

STATUS_WORDS = {
    "Pending": "waiting for the carrier to pick it up",
    "InfoReceived": "packed and waiting for the carrier to collect it",
    "InTransit": "on its way",
    "OutForDelivery": "out for delivery today",
    "AttemptFail": "not delivered: the driver tried but could not deliver it",
    "AvailableForPickup": "waiting for you at the pickup point",
    "Delivered": "delivered",
    "Exception": "held up by a problem in the carrier's network",
    "Expired": "no longer being tracked by the carrier",
}
ORDER_STEP_WORDS = {
    "placed": "received and waiting to be prepared",
    "paid": "paid and waiting to be prepared",
    "picked": "being picked in the warehouse",
    "packed": "packed and about to leave the warehouse",
    "dispatched": "dispatched",
    "out_for_delivery": "out for delivery",
    "delivered": "delivered",
    "invoiced": "delivered and invoiced",
    "cancelled": "cancelled",
    "refunded": "refunded",
}
RETURN_WORDS = {
    "requested": "requested and waiting for approval",
    "approved": "approved",
    "rejected": "not accepted",
    "label_issued": "approved: the return label has been sent",
    "in_transit": "on its way back to us",
    "received": "received at our warehouse; the refund is being prepared",
    "refunded": "refunded",
    "exchange_shipped": "exchanged: the replacement has been sent",
}
NEGATIVE_WORDS = re.compile(
    r"\b(furious|livid|disgust\w*|unacceptable|useless|rubbish|appalled|pathetic|scam|fraud\w*|hopeless|"
    r"disgrace\w*|outrage\w*|ridiculous|joke|worst|terrible|awful|horrible|incompetent|sue|lawyer|"
    r"fuck\w*|shit\w*|crap)\b",
    re.IGNORECASE,
)
YES = re.compile(
    r"^\s*(y|yes|yeah|yep|yup|ok|okay|sure|please do|do it|go ahead|confirm(ed)?|correct|that's right|"
    r"yes please|sounds good|perfect)\b",
    re.IGNORECASE,
)
NO = re.compile(
    r"^\s*(n|no|nope|nah|don'?t|do not|cancel that|stop|never ?mind|not now|wait)\b", re.IGNORECASE
)
RATING = re.compile(r"^\s*([1-5])(?:\s*(?:/|out of)\s*5)?\s*(?:stars?)?\s*[.!]?\s*$", re.IGNORECASE)
RATING_WORDS = {
    "terrible": 1,
    "bad": 2,
    "poor": 2,
    "ok": 3,
    "okay": 3,
    "fine": 3,
    "good": 4,
    "great": 5,
    "excellent": 5,
    "perfect": 5,
    "amazing": 5,
}

SENSITIVE_KINDS = [
    ("fraud", re.compile(r"\b(fraud|didn'?t (place|order)|not my order|scam|hacked)\b", re.I)),
    (
        "not_received",
        re.compile(
            r"\b(delivered|says delivered|marked)\b.*\b(not|never|no|nothing|haven'?t)\b|"
            r"\b(stolen|took my (parcel|package))\b|\bnot my house\b|\bwrong (house|address)\b",
            re.I,
        ),
    ),
    (
        "damaged",
        re.compile(
            r"\b(damag\w*|broken|broke|smash\w*|crack\w*|crush\w*|dent\w*|scratch\w*|shatter\w*|"
            r"wet|ripped|torn|faulty|defective|doesn'?t work|won'?t (turn|switch) on|snapped)\b",
            re.I,
        ),
    ),
    (
        "missing_item",
        re.compile(r"\b(missing|not in the box|only (half|\d|one|two)|didn'?t get all|gone)\b", re.I),
    ),
    (
        "wrong_item",
        re.compile(
            r"\b(wrong|someone else|different|not what i ordered|isn'?t what i ordered|instead of)\b", re.I
        ),
    ),
]
REDIRECT_KINDS = [
    (
        "pickup_point",
        re.compile(r"\b(pick ?up|collect\w*|locker|parcel ?shop|post office|collection point)\b", re.I),
    ),
    ("neighbour", re.compile(r"\b(neighbou?r|next door|number \d+)\b", re.I)),
    (
        "safe_place",
        re.compile(
            r"\b(leave|safe ?place|porch|garage|shed|behind|back door|doormat|bin|front door|gate)\b", re.I
        ),
    ),
]
EXCHANGE = re.compile(r"\b(exchange|swap|replace|different (size|colou?r)|bigger|smaller|size \d+)\b", re.I)
RETURN_REASONS = [
    ("fit.too_small", re.compile(r"\b(too (small|tight|short)|smaller than|bigger one|larger)\b", re.I)),
    ("fit.too_big", re.compile(r"\b(too (big|large|loose|long)|smaller one)\b", re.I)),
    ("fit.other", re.compile(r"\b(doesn'?t fit|does not fit|wrong fit|fit)\b", re.I)),
    ("preference.changed_mind", re.compile(r"\b(changed my mind|don'?t (like|want|need)|no longer)\b", re.I)),
]
HELP_LINE = "I can tell you where your order is and when it arrives, change the delivery, start a return, check a refund or send an invoice."


@dataclass
class DialogueState:
    """Everything the assistant remembers between messages (stored as JSON on the conversation)."""

    order_id: str | None = None  # the order under discussion: what "it" means
    order_number: str | None = None
    customer_id: str | None = None  # known from the channel identity or verification
    verified_customer_id: str | None = None  # whose orders may be disclosed
    verified_order_id: str | None = None  # a signed tracking link verifies one order
    email: str | None = None
    postcode: str | None = None
    awaiting: str | None = None  # order_number | verification | confirm | date | address | satisfaction
    pending_intent: str | None = None
    pending_action: dict[str, Any] | None = None
    last_text: str | None = None
    low_confidence_streak: int = 0
    contact_reason: str | None = None  # the first substantive intent
    problem_kind: str | None = None
    is_handed_off: bool = False
    asked_satisfaction: bool = False
    is_closed: bool = False
    turns: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DialogueState:
        state = cls()
        for key, value in (data or {}).items():
            if hasattr(state, key):
                setattr(state, key, value)
        return state

    def is_verified_for(self, order: OrderFacts) -> bool:
        return self.verified_order_id == order.id or (
            self.verified_customer_id is not None and self.verified_customer_id == order.customer_id
        )


@dataclass(frozen=True)
class Handoff:
    reason: str  # asked | complaint | negative_sentiment | low_confidence | sensitive:<kind> | action_failed | verification_locked
    summary: str
    urgency: int  # 0 normal, 1 soon, 2 urgent


@dataclass(frozen=True)
class VerificationAttempt:
    keys: list[str]  # what it counts against: order number and channel address
    is_success: bool


@dataclass
class Turn:
    replies: list[str]
    state: DialogueState
    intent: str
    action: ActionRequest | None = None  # confirmed by the customer: perform it, then call `after_action`
    handoff: Handoff | None = None
    verification: VerificationAttempt | None = None
    satisfaction: int | None = None
    is_resolved: bool = False  # the conversation ends here
    facts_order_id: str | None = None  # the order whose data the replies disclose
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One understood customer message."""

    text: str
    intent: str
    confidence: float
    entities: dict[str, Any]
    is_low_confidence: bool = False


class Dialogue:
    """Runs one turn. `channel_address` is who wrote (phone, email, chat session) for rate limits."""

    def __init__(self, facts: OrderFactsPort, *, brand: str = "our shop"):
        self.facts = facts
        self.brand = brand

    # ---- entry point -------------------------------------------------------------------------------------
    def respond(
        self, state: DialogueState, msg: Message, *, now: datetime, channel_address: str = ""
    ) -> Turn:
        state.turns += 1
        state.last_text = msg.text
        self._remember_entities(state, msg)
        if state.is_handed_off:
            return Turn([], state, msg.intent)  # a person has it: the bot stays quiet
        if state.awaiting == "satisfaction":
            score = parse_rating(msg.text)
            if score is not None:
                state.awaiting = None
                state.is_closed = True
                return Turn(
                    ["Thank you for your feedback. Have a good day!"],
                    state,
                    msg.intent,
                    satisfaction=score,
                    is_resolved=True,
                )
            state.awaiting = None
        if state.awaiting == "confirm" and state.pending_action:
            if YES.search(msg.text):
                action = ActionRequest.from_dict(state.pending_action)
                state.pending_action = None
                state.awaiting = None
                return Turn([], state, msg.intent, action=action)
            if NO.search(msg.text):
                state.pending_action = None
                state.awaiting = None
                return Turn(
                    ["OK, I haven't changed anything. Anything else I can help with?"], state, msg.intent
                )
            state.pending_action = None
            state.awaiting = None
        if _is_strongly_negative(msg.text) and msg.intent not in ("thanks", "goodbye"):
            return self._handoff(
                state, msg, "complaint" if msg.intent == "complaint" else "negative_sentiment", urgency=2
            )
        slot_turn = self._fill_slot(state, msg, now=now, channel_address=channel_address)
        if slot_turn is not None:
            return slot_turn
        return self._route(state, msg, msg.intent, now=now, channel_address=channel_address)

    def after_action(self, state: DialogueState, action: ActionRequest, result: ActionResult) -> Turn:
        """The message after an action: what was done, or a handoff when it needs a person."""
        if result.needs_person:
            return self._handoff(
                state,
                None,
                "action_failed",
                urgency=1,
                intent=_intent_of_action(action.kind),
                note=f"customer confirmed: {describe_action(action)}; {result.detail}",
                reply_prefix=result.detail,
            )
        if result.is_done:
            return Turn(
                [f"Done: {result.detail} Anything else I can help with?"],
                state,
                _intent_of_action(action.kind),
                facts_order_id=action.order_id,
            )
        return Turn(
            [f"Sorry, I couldn't do that: {result.detail} Anything else?"],
            state,
            _intent_of_action(action.kind),
            facts_order_id=action.order_id,
        )

    # ---- slots ---------------------------------------------------------------------------------------------
    def _remember_entities(self, state: DialogueState, msg: Message) -> None:
        e = msg.entities
        if e.get("order_number") and e["order_number"] != state.order_number:
            state.order_number = e["order_number"]
            state.order_id = None  # a new order is under discussion
        if e.get("email"):
            state.email = e["email"]
        if e.get("postcode"):
            state.postcode = e["postcode"]

    def _fill_slot(
        self, state: DialogueState, msg: Message, *, now: datetime, channel_address: str
    ) -> Turn | None:
        """Answers to a question the assistant asked: the message may be just the missing piece."""
        awaiting, intent = state.awaiting, state.pending_intent
        if awaiting is None or intent is None:
            return None
        e = msg.entities
        substantive = msg.intent not in ("out_of_scope", "greeting", "thanks") and not msg.is_low_confidence
        if awaiting == "order_number" and e.get("order_number"):
            state.awaiting = None
            return self._route(state, msg, intent, now=now, channel_address=channel_address)
        if awaiting == "verification" and (
            e.get("email") or e.get("postcode") or _looks_like_postcode(msg.text)
        ):
            if not e.get("email") and not e.get("postcode"):
                state.postcode = msg.text.strip()
            state.awaiting = None
            return self._route(state, msg, intent, now=now, channel_address=channel_address)
        if awaiting == "date" and e.get("date"):
            state.awaiting = None
            return self._route(state, msg, intent, now=now, channel_address=channel_address)
        if awaiting == "address" and not substantive:
            state.awaiting = None
            return self._confirm(
                state,
                ActionRequest(
                    "redirect",
                    state.order_id or "",
                    state.order_number or "",
                    {"kind": "address", "address": msg.text.strip()},
                ),
            )
        if substantive and msg.intent != intent:
            state.awaiting = None  # the customer moved on; route the new request
            state.pending_intent = None
            return None
        if awaiting in ("order_number", "verification", "date") and not substantive:
            return Turn([_ask(awaiting)], state, intent)
        state.awaiting = None
        return self._route(state, msg, intent, now=now, channel_address=channel_address)

    # ---- routing -------------------------------------------------------------------------------------------
    def _route(
        self, state: DialogueState, msg: Message, intent: str, *, now: datetime, channel_address: str
    ) -> Turn:
        if intent == "out_of_scope":
            state.low_confidence_streak += 1
            if state.low_confidence_streak >= LOW_CONFIDENCE_TURNS_BEFORE_HANDOFF:
                return self._handoff(state, msg, "low_confidence", urgency=1)
            return Turn(
                [
                    "Sorry, I can't help with that here. "
                    + HELP_LINE
                    + ' Or I can pass you to a person: just say "agent".'
                ],
                state,
                intent,
            )
        state.low_confidence_streak = 0
        if intent not in ("greeting", "thanks", "goodbye") and state.contact_reason is None:
            state.contact_reason = intent
        if intent == "greeting":
            return Turn([f"Hi! This is {self.brand}'s assistant. {HELP_LINE} How can I help?"], state, intent)
        if intent == "thanks":
            return Turn(["You're welcome! Is there anything else I can help with?"], state, intent)
        if intent == "goodbye":
            if not state.asked_satisfaction:
                state.asked_satisfaction = True
                state.awaiting = "satisfaction"
                return Turn(
                    ["Before you go: how happy are you with this chat, from 1 (not at all) to 5 (very)?"],
                    state,
                    intent,
                )
            state.is_closed = True
            return Turn(["Goodbye, and thanks for contacting us!"], state, intent, is_resolved=True)
        if intent == "talk_to_human":
            return self._handoff(state, msg, "asked", urgency=1)
        if intent == "complaint":
            return self._handoff(state, msg, "complaint", urgency=2)
        if intent == "report_problem":
            kind = problem_kind(msg.text)
            state.problem_kind = kind
            return self._handoff(state, msg, f"sensitive:{kind}", urgency=2)
        if intent in ORDER_INTENTS:
            return self._order_intent(state, msg, intent, now=now, channel_address=channel_address)
        return Turn(["Sorry, I can't help with that here. " + HELP_LINE], state, intent)

    def _order_intent(
        self, state: DialogueState, msg: Message, intent: str, *, now: datetime, channel_address: str
    ) -> Turn:
        order = self._order_under_discussion(state)
        if order is None and state.order_number is None:
            candidates = (
                self.facts.recent_orders(state.verified_customer_id) if state.verified_customer_id else []
            )
            if len(candidates) == 1:
                order = candidates[0]
                state.order_id, state.order_number = order.id, order.number
            else:
                state.awaiting, state.pending_intent = "order_number", intent
                if candidates:
                    numbers = ", ".join(o.number for o in candidates)
                    return Turn([f"Which order is it about? Your recent orders: {numbers}."], state, intent)
                return Turn([_ask("order_number")], state, intent)
        # Verification comes before we even say whether an order exists.
        if order is None or not state.is_verified_for(order):
            verdict = self._verify(state, order, now=now, channel_address=channel_address)
            if isinstance(verdict, Turn):
                verdict.intent = intent
                if verdict.handoff is None:
                    state.awaiting, state.pending_intent = "verification", intent
                return verdict
            order, attempt = verdict
            answer = self._answer(state, msg, intent, order, now=now)
            answer.verification = attempt
            return answer
        return self._answer(state, msg, intent, order, now=now)

    def _order_under_discussion(self, state: DialogueState) -> OrderFacts | None:
        if state.order_id:
            order = self.facts.get_order(state.order_id)
            if order is not None:
                return order
        if state.order_number:
            order = self.facts.find_order(state.order_number)
            if order is not None and state.is_verified_for(order):
                state.order_id = order.id
            return order
        return None

    def _verify(
        self, state: DialogueState, order: OrderFacts | None, *, now: datetime, channel_address: str
    ) -> Turn | tuple[OrderFacts, VerificationAttempt]:
        keys = [f"order:{(state.order_number or '').upper()}"] + (
            [f"address:{channel_address}"] if channel_address else []
        )
        if (
            self.facts.failed_verifications(keys=keys, since=now - VERIFICATION_WINDOW)
            >= MAX_FAILED_VERIFICATIONS
        ):
            state.awaiting = None
            return self._handoff(
                state,
                None,
                "verification_locked",
                urgency=1,
                reply_prefix="There have been too many attempts to check these details, so I've "
                "paused checks for an hour.",
            )
        if not state.email and not state.postcode:
            state.awaiting = "verification"
            return Turn([_ask("verification")], state, state.pending_intent or "")
        matches = order is not None and _matches(order, email=state.email, postcode=state.postcode)
        if not matches:
            state.email = state.postcode = None
            state.awaiting = "verification"
            return Turn(
                [
                    "Sorry, those details don't match an order with that number. Please check the order "
                    "number and the email address or postcode you used when ordering."
                ],
                state,
                state.pending_intent or "",
                verification=VerificationAttempt(keys, is_success=False),
            )
        assert order is not None
        state.verified_customer_id = order.customer_id
        state.customer_id = order.customer_id
        state.order_id = order.id
        state.awaiting = None
        state.pending_intent = None
        return order, VerificationAttempt(keys, is_success=True)

    # ---- answers from live data ----------------------------------------------------------------------------
    def _answer(
        self, state: DialogueState, msg: Message, intent: str, order: OrderFacts, *, now: datetime
    ) -> Turn:
        state.pending_intent = None
        state.order_id, state.order_number = order.id, order.number
        if intent in ("track_order", "delivery_eta"):
            return Turn(
                [describe_order(order, now=now) + " Anything else I can help with?"],
                state,
                intent,
                facts_order_id=order.id,
            )
        if intent == "refund_status":
            return Turn([describe_returns(order)], state, intent, facts_order_id=order.id)
        if intent == "cancel_order":
            if order.status == "cancelled":
                return Turn(
                    [f"Order {order.number} is already cancelled."], state, intent, facts_order_id=order.id
                )
            if order.is_dispatched:
                return Turn(
                    [
                        f"Order {order.number} has already left our warehouse, so it can't be cancelled now. "
                        "Once it arrives you can send it back for a refund: just ask me to start a return."
                    ],
                    state,
                    intent,
                    facts_order_id=order.id,
                )
            return self._confirm(
                state,
                ActionRequest("cancel", order.id, order.number),
                f"Shall I cancel order {order.number}? Please answer yes or no.",
            )
        if intent == "start_return":
            if not order.is_delivered:
                return Turn(
                    [
                        f"Order {order.number} hasn't been delivered yet. Once it arrives you can start a "
                        "return here."
                    ],
                    state,
                    intent,
                    facts_order_id=order.id,
                )
            resolution = "exchange" if EXCHANGE.search(msg.text) else "refund"
            reason = next((code for code, rx in RETURN_REASONS if rx.search(msg.text)), "other")
            request = ActionRequest(
                "start_return",
                order.id,
                order.number,
                {"resolution": resolution, "reason_code": reason, "note": msg.text[:300]},
            )
            return self._confirm(state, request)
        if intent == "invoice_request":
            return self._confirm(
                state, ActionRequest("resend_invoice", order.id, order.number, {"email": order.email})
            )
        if intent == "reschedule_delivery":
            if order.is_delivered:
                return Turn(
                    [f"Order {order.number} has already been delivered."],
                    state,
                    intent,
                    facts_order_id=order.id,
                )
            when = msg.entities if msg.entities.get("date") else None
            if when is None:
                state.awaiting, state.pending_intent = "date", intent
                return Turn([_ask("date")], state, intent, facts_order_id=order.id)
            params = {
                "date": when["date"],
                "window_from": when["window_from"],
                "window_to": when["window_to"],
                "part_of_day": when.get("part_of_day"),
            }
            return self._confirm(state, ActionRequest("reschedule", order.id, order.number, params))
        if intent == "change_delivery_address":
            if order.is_delivered:
                return Turn(
                    [f"Order {order.number} has already been delivered."],
                    state,
                    intent,
                    facts_order_id=order.id,
                )
            kind = next((k for k, rx in REDIRECT_KINDS if rx.search(msg.text)), None)
            if kind is None:
                state.awaiting, state.pending_intent = "address", intent
                return Turn(
                    [
                        "What's the new delivery address? Please write it in one message (street, town, "
                        "postcode)."
                    ],
                    state,
                    intent,
                    facts_order_id=order.id,
                )
            return self._confirm(
                state,
                ActionRequest(
                    "redirect", order.id, order.number, {"kind": kind, "instructions": msg.text[:300]}
                ),
            )
        return Turn(["Sorry, I can't help with that here. " + HELP_LINE], state, intent)

    def _confirm(self, state: DialogueState, request: ActionRequest, question: str | None = None) -> Turn:
        state.pending_action = request.as_dict()
        state.awaiting = "confirm"
        text = question or f"Shall I {describe_action(request)}? Please answer yes or no."
        return Turn([text], state, _intent_of_action(request.kind), facts_order_id=request.order_id or None)

    # ---- handoff -------------------------------------------------------------------------------------------
    def _handoff(
        self,
        state: DialogueState,
        msg: Message | None,
        reason: str,
        *,
        urgency: int,
        intent: str | None = None,
        note: str | None = None,
        reply_prefix: str | None = None,
    ) -> Turn:
        state.is_handed_off = True
        state.awaiting = None
        intent = intent or (msg.intent if msg else state.pending_intent or "talk_to_human")
        if state.contact_reason is None and intent not in ("greeting", "thanks", "goodbye", "out_of_scope"):
            state.contact_reason = intent
        summary = summarise(state, reason=reason, intent=intent, note=note)
        lead = (
            "I'm sorry about this. "
            if reason in ("complaint", "negative_sentiment") or reason.startswith("sensitive")
            else ""
        )
        text = (
            f"{reply_prefix + ' ' if reply_prefix else ''}{lead}I'm passing you to a colleague who will reply "
            "here; they can see our conversation, so you won't need to repeat yourself."
        )
        return Turn([text], state, intent, handoff=Handoff(reason, summary, urgency))


# ---- plain words ---------------------------------------------------------------------------------------------
def parse_rating(text: str) -> int | None:
    m = RATING.match(text)
    if m:
        return int(m.group(1))
    word = text.strip().lower().rstrip("!.")
    return RATING_WORDS.get(word)


def problem_kind(text: str) -> str:
    return next((kind for kind, rx in SENSITIVE_KINDS if rx.search(text)), "other")


def _is_strongly_negative(text: str) -> bool:
    hits = len(NEGATIVE_WORDS.findall(text))
    shouting = sum(1 for w in text.split() if len(w) > 3 and w.isupper()) >= 3 or text.count("!") >= 3
    return hits >= 2 or (hits >= 1 and shouting)


def _looks_like_postcode(text: str) -> bool:
    return bool(re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9 -]{2,8}[A-Za-z0-9]\s*", text)) and any(
        c.isdigit() for c in text
    )


def _matches(order: OrderFacts, *, email: str | None, postcode: str | None) -> bool:
    if email and order.email and email.strip().lower() == order.email.strip().lower():
        return True
    if postcode:
        wanted = compact_postcode(postcode)
        return any(p and compact_postcode(p) == wanted for p in (order.postcode, order.customer_postcode))
    return False


def _ask(slot: str) -> str:
    return {
        "order_number": "Sure. What's your order number? You'll find it in your order confirmation.",
        "verification": "To keep your details safe, please tell me the email address or the delivery postcode "
        "on the order.",
        "date": 'Which day suits you? For example "Friday morning" or "next Tuesday afternoon".',
    }[slot]


def _intent_of_action(kind: str) -> str:
    return {
        "reschedule": "reschedule_delivery",
        "redirect": "change_delivery_address",
        "start_return": "start_return",
        "cancel": "cancel_order",
        "resend_invoice": "invoice_request",
    }.get(kind, kind)


def fmt_day(at: datetime) -> str:
    return f"{at:%a} {at.day} {at:%b}"


def fmt_window(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    if end is None or start.date() != end.date():
        return fmt_day(start) + (f" to {fmt_day(end)}" if end is not None else "")
    if (start.hour, start.minute) == (0, 0) and end.hour == 23:
        return fmt_day(start)
    return f"{fmt_day(start)}, {start:%H:%M}–{end:%H:%M}"


def describe_action(request: ActionRequest) -> str:
    p = request.params
    if request.kind == "reschedule":
        window = fmt_window(datetime.fromisoformat(p["window_from"]), datetime.fromisoformat(p["window_to"]))
        return f"move the delivery of order {request.order_number} to {window}"
    if request.kind == "redirect":
        kind = p.get("kind")
        if kind == "address":
            return f"deliver order {request.order_number} to {p.get('address')}"
        where = {
            "pickup_point": "a pickup point near you",
            "neighbour": "a neighbour",
            "safe_place": "a safe place",
        }.get(str(kind), str(kind))
        extra = f' (your note: "{p["instructions"]}")' if p.get("instructions") else ""
        return f"ask the carrier to deliver order {request.order_number} to {where}{extra}"
    if request.kind == "start_return":
        what = "an exchange" if p.get("resolution") == "exchange" else "a return for a refund"
        return f"start {what} for order {request.order_number}"
    if request.kind == "cancel":
        return f"cancel order {request.order_number}"
    if request.kind == "resend_invoice":
        to = f" to {mask_email(p['email'])}" if p.get("email") else ""
        return f"email the invoice for order {request.order_number}{to}"
    return request.kind


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _main_shipment(order: OrderFacts) -> ShipmentFacts | None:
    outbound = [s for s in order.shipments]
    return outbound[-1] if outbound else None


def describe_order(order: OrderFacts, *, now: datetime) -> str:
    """The order's state in plain words, from live data only."""
    shipment = _main_shipment(order)
    if order.status == "cancelled":
        return f"Order {order.number} was cancelled."
    if shipment is None:
        words = ORDER_STEP_WORDS.get(order.status, order.status)
        text = f"Order {order.number} (placed {fmt_day(order.placed_at)}) is {words}."
        if order.promised_from:
            text += f" We promised delivery {fmt_window(order.promised_from, order.promised_to)}."
        return text
    words = STATUS_WORDS.get(shipment.status, shipment.status)
    parts = [
        f"Order {order.number} is {words} with {shipment.carrier.upper()} (tracking {shipment.tracking_number})."
    ]
    if shipment.status == "Delivered":
        when = shipment.delivered_at
        if when:
            parts.append(f"It was delivered on {fmt_day(when)} at {when:%H:%M}.")
        if shipment.proof_recipient:
            parts.append(f"It was signed for by {shipment.proof_recipient}.")
        if shipment.has_proof_photo:
            parts.append("The driver took a photo at the door; you can see it on your tracking page.")
        return " ".join(parts)
    if shipment.last_scan_at:
        where = f" at {shipment.last_location}" if shipment.last_location else ""
        parts.append(f"Last scan: {fmt_day(shipment.last_scan_at)} {shipment.last_scan_at:%H:%M}{where}.")
    promised_from = shipment.promised_from or order.promised_from
    promised_to = shipment.promised_to or order.promised_to
    if shipment.predicted_from:
        is_late = promised_to is not None and (shipment.predicted_to or shipment.predicted_from) > promised_to
        if is_late:
            reason = f" ({shipment.delay_reason})" if shipment.delay_reason else ""
            parts.append(
                f"It's running late{reason}: we now expect it "
                f"{fmt_window(shipment.predicted_from, shipment.predicted_to)} instead of "
                f"{fmt_window(promised_from, promised_to)}."
            )
        else:
            parts.append(f"We expect it {fmt_window(shipment.predicted_from, shipment.predicted_to)}.")
    elif promised_from:
        parts.append(f"Promised delivery: {fmt_window(promised_from, promised_to)}.")
        if shipment.delay_reason:
            parts.append(f"There is a delay: {shipment.delay_reason}.")
    return " ".join(parts)


def describe_returns(order: OrderFacts) -> str:
    if not order.returns:
        return (
            f"I can't see a return for order {order.number} yet. If you'd like to send something back, "
            "just ask me to start a return."
        )
    lines = []
    for r in order.returns:
        words = RETURN_WORDS.get(r.status, r.status)
        text = (
            f"Your {r.resolution} for order {order.number} (requested {fmt_day(r.requested_at)}) is {words}"
        )
        if r.status == "refunded" and r.refund_minor is not None:
            text += (
                f": {r.refund_minor / 100:.2f} {r.currency or ''} was refunded on {fmt_day(r.updated_at)}; "
                "banks usually show it within 3 to 5 working days"
            )
        elif r.status in ("received",):
            text += f" (since {fmt_day(r.updated_at)})"
        lines.append(text + ".")
    return " ".join(lines)


def summarise(state: DialogueState, *, reason: str, intent: str, note: str | None = None) -> str:
    """A short summary for the agent who takes over."""
    bits = [f"Handoff: {reason.replace('_', ' ')}.", f"Intent: {intent.replace('_', ' ')}."]
    if state.problem_kind:
        bits.append(f"Problem: {state.problem_kind.replace('_', ' ')}.")
    if state.order_number:
        verified = "verified" if state.verified_customer_id or state.verified_order_id else "not verified"
        bits.append(f"Order {state.order_number} ({verified}).")
    else:
        bits.append("No order number given.")
    if note:
        bits.append(note[0].upper() + note[1:] + ".")
    if state.last_text:
        bits.append(f'Last message: "{state.last_text[:200]}"')
    return " ".join(bits)


SUGGESTIONS = {
    "damaged": "I'm so sorry your order arrived damaged. Could you send a photo of the item and the box? As soon as "
    "I have it I'll arrange a replacement or a full refund, whichever you prefer.",
    "missing_item": "I'm sorry an item is missing. I've checked with the warehouse and will send the missing item "
    "now; you don't need to return anything.",
    "wrong_item": "Sorry for the mix-up. We'll send the right item today and a free return label for the wrong one.",
    "not_received": "I'm sorry you haven't got your parcel although it shows as delivered. I've opened an "
    "investigation with the carrier; could you check with neighbours and any safe place meanwhile?",
    "fraud": "Thank you for telling us. I've put the order on hold and passed it to our payments team; they will "
    "contact you within one working day.",
    "complaint": "I'm sorry about your experience; thank you for telling us. I'd like to put this right: ",
    "talk_to_human": "Hi, I'm here to help. What can I do for you?",
}


def suggested_replies(
    *,
    intent: str | None,
    problem_kind: str | None,
    handoff_reason: str | None,
    order: OrderFacts | None,
    now: datetime,
) -> list[str]:
    """Answers an agent can send as they are or edit: from the intent and the order's live data."""
    out: list[str] = []
    if problem_kind and problem_kind in SUGGESTIONS:
        out.append(SUGGESTIONS[problem_kind])
    if handoff_reason in ("complaint", "negative_sentiment"):
        out.append(SUGGESTIONS["complaint"])
    if order is not None:
        if intent in (
            "track_order",
            "delivery_eta",
            "reschedule_delivery",
            "change_delivery_address",
            None,
            "talk_to_human",
            "complaint",
            "report_problem",
        ):
            out.append(describe_order(order, now=now))
        if intent in ("refund_status", "start_return") or order.returns:
            out.append(describe_returns(order))
        if intent == "invoice_request":
            out.append(f"I've just sent the invoice for order {order.number} to your email address.")
        if intent == "cancel_order":
            out.append(
                f"I've cancelled order {order.number}; the refund goes back to your original payment "
                "method within 3 to 5 working days."
                if not order.is_dispatched
                else f"Order {order.number} has already left our warehouse; once it arrives you can return it "
                "for free."
            )
    if not out:
        out.append(SUGGESTIONS["talk_to_human"])
    return out
