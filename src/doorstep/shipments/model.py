"""Shipments: normalised statuses, the scan timeline and the rules that move a shipment along it.

Pure rules: no I/O, no clock. `now` and ids come in as arguments so every rule is deterministic in a test.

The ordering rules, in one place:
- the timeline is ordered by when a scan happened (`occurred_at`), not by when it arrived;
- only the newest scan decides the status, so an old scan arriving late never moves the status backwards;
- Delivered is terminal: a later scan other than an Exception (e.g. a return) does not undo it;
- a duplicate scan changes nothing (the store rejects a second row with the same `dedupe_key`, and `record`
  ignores a scan already on the timeline).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import TypedDict

from doorstep.bus.messages import DomainEvent
from doorstep.shipments.events import (
    DeliveryAttemptFailed,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentOutForDelivery,
    ShipmentPredictedLate,
    ShipmentProbablyLost,
    ShipmentReadyForPickup,
    ShipmentReturnedToSender,
    ShipmentStalled,
    ShipmentStatusChanged,
)


class Status(StrEnum):
    """The nine normalised statuses (AfterShip's tags, which most aggregators map to)."""

    PENDING = "Pending"
    INFO_RECEIVED = "InfoReceived"
    IN_TRANSIT = "InTransit"
    OUT_FOR_DELIVERY = "OutForDelivery"
    ATTEMPT_FAIL = "AttemptFail"
    DELIVERED = "Delivered"
    AVAILABLE_FOR_PICKUP = "AvailableForPickup"
    EXCEPTION = "Exception"
    EXPIRED = "Expired"

    @classmethod
    def parse(cls, value: str) -> Status:
        """Accepts the tag in any case and with or without separators: "in_transit", "InTransit", "IN TRANSIT"."""
        exact = _STATUS_BY_VALUE.get(value)
        if exact is not None:
            return exact
        key = "".join(ch for ch in value.lower() if ch.isalnum())
        status = _STATUS_BY_KEY.get(key)
        if status is None:
            raise ValueError(f"unknown status {value!r}: use one of {', '.join(s.value for s in cls)}")
        return status


_STATUS_BY_KEY = {s.value.lower(): s for s in Status} | {"failedattempt": Status.ATTEMPT_FAIL}
_STATUS_BY_VALUE = {s.value: s for s in Status}

# Statuses after which the parcel is on its way (the first such scan is the dispatch).
MOVING = frozenset(
    {
        Status.IN_TRANSIT,
        Status.OUT_FOR_DELIVERY,
        Status.ATTEMPT_FAIL,
        Status.AVAILABLE_FOR_PICKUP,
        Status.DELIVERED,
    }
)
TERMINAL = frozenset({Status.DELIVERED, Status.EXPIRED})

# AfterShip-style subtag codes and the readable names Doorstep uses in messages and on the tracking page.
SUBTAG_NAMES: dict[str, str] = {
    "Pending_001": "pending",
    "InfoReceived_001": "info_received",
    "InTransit_001": "in_transit",
    "InTransit_002": "accepted_by_carrier",
    "InTransit_003": "arrived_at_hub",
    "InTransit_004": "arrived_in_destination_country",
    "InTransit_005": "customs_cleared",
    "InTransit_006": "in_customs",
    "InTransit_007": "departed_hub",
    "InTransit_008": "problem_resolved",
    "InTransit_009": "forwarded_to_new_address",
    "OutForDelivery_001": "out_for_delivery",
    "OutForDelivery_003": "customer_contacted",
    "OutForDelivery_004": "delivery_appointment_scheduled",
    "AttemptFail_001": "failed_attempt",
    "AttemptFail_002": "recipient_not_available",
    "AttemptFail_003": "business_closed",
    "Delivered_001": "delivered",
    "Delivered_002": "picked_up_by_customer",
    "Delivered_003": "signed_by_customer",
    "Delivered_004": "delivered_cash_collected",
    "Delivered_005": "left_with_neighbour",
    "Delivered_006": "left_in_safe_place",
    "AvailableForPickup_001": "at_pickup_point",
    "Exception_001": "exception",
    "Exception_002": "customer_moved",
    "Exception_003": "refused_by_recipient",
    "Exception_004": "delayed_customs",
    "Exception_005": "delayed_external_factors",
    "Exception_006": "held_for_payment",
    "Exception_007": "incorrect_address",
    "Exception_008": "pickup_missed",
    "Exception_009": "rejected_by_carrier",
    "Exception_010": "returning_to_sender",
    "Exception_011": "returned_to_sender",
    "Exception_012": "damaged",
    "Exception_013": "lost",
    "Expired_001": "expired",
}
SUBTAG_BY_NAME: dict[str, str] = {name: code for code, name in SUBTAG_NAMES.items()}
RETURN_SUBTAGS = frozenset({"Exception_010", "Exception_011"})


def subtag_name(code: str | None) -> str | None:
    """The readable name of a subtag code: "Delivered_005" -> "left_with_neighbour"."""
    if code is None:
        return None
    return SUBTAG_NAMES.get(code, code)


def normalise_subtag(value: str | None, status: Status) -> str | None:
    """A subtag given as a code ("Delivered_005") or a readable name ("left_with_neighbour") -> its code.

    A subtag of another status is refused (ValueError): "Delivered_005" cannot qualify an InTransit scan.
    """
    if not value:
        return None
    code = value if value in SUBTAG_NAMES else SUBTAG_BY_NAME.get(value.strip().lower())
    if code is None:
        if "_" in value and value.split("_", 1)[0] in {s.value for s in Status}:
            code = value  # a code from a newer taxonomy: keep it as sent
        else:
            raise ValueError(
                f"unknown subtag {value!r}: use a code such as Delivered_005 or a name such as "
                "left_with_neighbour"
            )
    if not code.startswith(status.value + "_"):
        raise ValueError(f"subtag {value!r} does not belong to status {status.value}")
    return code


class _Ids(TypedDict):
    shipment_id: str
    order_id: str | None
    customer_id: str | None


@dataclass(frozen=True)
class TrackingEvent:
    """One carrier scan, normalised. The raw code is kept as the carrier sent it."""

    carrier: str
    tracking_number: str
    occurred_at: datetime
    status: Status
    subtag: str | None = None
    raw_code: str | None = None
    message: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    postcode: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    source: str = "tracking"

    @cached_property
    def dedupe_key(self) -> str:
        """Identity of a scan across deliveries and sources: the same scan sent twice is one row."""
        detail = f"{self.raw_code or ''}|{self.message or ''}|{self.city or ''}|{self.postcode or ''}"
        digest = hashlib.sha1(detail.encode()).hexdigest()[:16]
        return f"{self.carrier}:{self.tracking_number}:{self.occurred_at.isoformat()}:{self.status.value}:{digest}"

    @property
    def location(self) -> str | None:
        parts = [p for p in (self.city, self.region, self.postcode, self.country) if p]
        return ", ".join(parts) or None


@dataclass(frozen=True)
class Prediction:
    """A predicted delivery window. `confidence` is the share of held-out deliveries that landed inside
    windows like this one (measured, not assumed)."""

    expected_at: datetime
    window_from: datetime
    window_to: datetime
    confidence: float
    source: str  # model | baseline | carrier


@dataclass(frozen=True)
class DetectionPolicy:
    """When silence means trouble. Hours without a scan, per status, before a shipment counts as stalled."""

    stalled_after_h: dict[str, float] = field(
        default_factory=lambda: {
            Status.PENDING.value: 72.0,
            Status.INFO_RECEIVED.value: 48.0,
            Status.IN_TRANSIT.value: 48.0,
            Status.OUT_FOR_DELIVERY.value: 12.0,
            Status.ATTEMPT_FAIL.value: 48.0,
            Status.EXCEPTION.value: 72.0,
        }
    )
    lost_after_silence_h: float = 7 * 24.0  # a week without a scan
    lost_after_estimate_h: float = 48.0  # or two days past the end of the predicted window
    pickup_hold_days: int = 7  # pickup points usually hold a parcel this long before returning it


DEFAULT_POLICY = DetectionPolicy()


@dataclass
class Shipment:
    """A parcel on its way to a customer (or back, when `is_return`)."""

    id: str
    carrier: str
    tracking_number: str
    status: Status
    created_at: datetime
    updated_at: datetime
    order_id: str | None = None
    customer_id: str | None = None
    order_ref: str | None = None  # the shop's order number as a carrier webhook named it, for later matching
    service: str | None = None
    is_return: bool = False
    subtag: str | None = None
    origin_region: str | None = None
    destination_region: str | None = None
    destination_postcode: str | None = None
    promised_from: datetime | None = None
    promised_to: datetime | None = None
    predicted_from: datetime | None = None
    predicted_to: datetime | None = None
    predicted_at: datetime | None = None  # the expected moment inside the window
    predicted_confidence: float | None = None
    predicted_by: str | None = None
    carrier_estimate: datetime | None = None  # the carrier's own estimated delivery date, when it gives one
    delay_reason: str | None = None
    dispatched_at: datetime | None = None
    first_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_scan_at: datetime | None = None
    last_location: str | None = None
    status_since: datetime | None = None
    pickup_deadline: datetime | None = None
    scan_count: int = 0
    alerts: set[str] = field(default_factory=set)  # detection events already emitted, so each fires once
    timeline: list[TrackingEvent] = field(default_factory=list)  # loaded on demand, ordered by occurred_at
    events: list[DomainEvent] = field(default_factory=list)
    _seen: set[str] | None = field(default=None, repr=False, compare=False)

    # ---- creation ---------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        id: str,
        carrier: str,
        tracking_number: str,
        now: datetime,
        order_id: str | None = None,
        customer_id: str | None = None,
        order_ref: str | None = None,
        service: str | None = None,
        is_return: bool = False,
        origin_region: str | None = None,
        destination_region: str | None = None,
        destination_postcode: str | None = None,
        promised_from: datetime | None = None,
        promised_to: datetime | None = None,
    ) -> Shipment:
        if not carrier or not tracking_number:
            raise ValueError("a shipment needs a carrier and a tracking number")
        shipment = cls(
            id=id,
            carrier=carrier,
            tracking_number=tracking_number,
            status=Status.PENDING,
            created_at=now,
            updated_at=now,
            order_id=order_id,
            customer_id=customer_id,
            order_ref=order_ref,
            service=service,
            is_return=is_return,
            origin_region=origin_region,
            destination_region=destination_region,
            destination_postcode=destination_postcode,
            promised_from=promised_from,
            promised_to=promised_to,
            status_since=now,
        )
        shipment.events.append(
            ShipmentCreated(
                occurred_at=now, carrier=carrier, tracking_number=tracking_number, **shipment._ids()
            )
        )
        return shipment

    def _ids(self) -> _Ids:
        return {"shipment_id": self.id, "order_id": self.order_id, "customer_id": self.customer_id}

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_active(self) -> bool:
        """Still on its way: time-based checks (stalled, lost) apply."""
        return not self.is_terminal and not (
            self.status == Status.EXCEPTION and self.subtag in RETURN_SUBTAGS
        )

    # ---- the order link and the promise -----------------------------------------------------------------

    def link_order(
        self,
        *,
        order_id: str,
        customer_id: str | None,
        promised_from: datetime | None,
        promised_to: datetime | None,
    ) -> None:
        """Attaches the shipment to its order (matched later by order number or tracking number)."""
        self.order_id = order_id
        self.customer_id = customer_id
        if promised_from is not None or promised_to is not None:
            self.set_promise(promised_from=promised_from, promised_to=promised_to)

    def set_promise(self, *, promised_from: datetime | None, promised_to: datetime | None) -> None:
        if promised_from and promised_to and promised_from > promised_to:
            raise ValueError(
                f"promised window ends ({promised_to:%Y-%m-%d %H:%M}) before it starts "
                f"({promised_from:%Y-%m-%d %H:%M})"
            )
        self.promised_from = promised_from
        self.promised_to = promised_to

    # ---- scans --------------------------------------------------------------------------------------------

    def record(self, scan: TrackingEvent, *, now: datetime, policy: DetectionPolicy = DEFAULT_POLICY) -> bool:
        """Adds a scan to the timeline; returns True when it changed the status (a new subtag of the same
        status updates `subtag` without an event).

        Only the newest scan decides the status: an older one arriving late fills in the timeline and the
        milestones (dispatched, first attempt) but never moves the status back. Delivered stays delivered
        unless an Exception (a return, damage) follows it.
        """
        if self._seen is None:
            self._seen = {s.dedupe_key for s in self.timeline}
        key = scan.dedupe_key
        if key in self._seen:
            return False
        self._seen.add(key)
        self._insert(scan)
        self.scan_count += 1
        self.updated_at = now
        self._milestones(scan)

        is_newest = self.last_scan_at is None or scan.occurred_at >= self.last_scan_at
        if not is_newest:
            return False
        self.last_scan_at = scan.occurred_at
        if scan.location:
            self.last_location = scan.location
        if self.status == Status.DELIVERED and scan.status not in (Status.DELIVERED, Status.EXCEPTION):
            return False  # terminal: a carrier's stray in-transit scan after delivery does not undo it
        if scan.status == self.status:
            self.subtag = scan.subtag  # a finer step of the same status (hub to hub): no event
            return False
        self._change_status(scan, now=now, policy=policy)
        return True

    def _insert(self, scan: TrackingEvent) -> None:
        if not self.timeline or self.timeline[-1].occurred_at <= scan.occurred_at:
            self.timeline.append(scan)
            return
        index = len(self.timeline)
        while index > 0 and self.timeline[index - 1].occurred_at > scan.occurred_at:
            index -= 1
        self.timeline.insert(index, scan)

    def _milestones(self, scan: TrackingEvent) -> None:
        at = scan.occurred_at
        if scan.status in MOVING and (self.dispatched_at is None or at < self.dispatched_at):
            is_first = self.dispatched_at is None
            self.dispatched_at = at
            if is_first and "dispatched" not in self.alerts:
                self.alerts.add("dispatched")
                self.events.append(
                    ShipmentDispatched(occurred_at=at, promised_to=self.promised_to, **self._ids())
                )
        if scan.status == Status.ATTEMPT_FAIL and (
            self.first_attempt_at is None or at < self.first_attempt_at
        ):
            self.first_attempt_at = at
        if scan.status == Status.DELIVERED and (self.delivered_at is None or at < self.delivered_at):
            self.delivered_at = at

    def _change_status(self, scan: TrackingEvent, *, now: datetime, policy: DetectionPolicy) -> None:
        previous = self.status
        self.status = scan.status
        self.subtag = scan.subtag
        self.status_since = scan.occurred_at
        at = scan.occurred_at
        ids = self._ids()
        self.events.append(
            ShipmentStatusChanged(
                occurred_at=at,
                status=scan.status.value,
                previous_status=previous.value,
                subtag=scan.subtag,
                location=scan.location,
                **ids,
            )
        )
        if scan.status == Status.OUT_FOR_DELIVERY:
            self.events.append(ShipmentOutForDelivery(occurred_at=at, **ids))
        elif scan.status == Status.ATTEMPT_FAIL:
            self.events.append(DeliveryAttemptFailed(occurred_at=at, reason=scan.message, **ids))
        elif scan.status == Status.AVAILABLE_FOR_PICKUP:
            self.pickup_deadline = at + timedelta(days=policy.pickup_hold_days)
            self.events.append(
                ShipmentReadyForPickup(
                    occurred_at=at, location=scan.location, pickup_deadline=self.pickup_deadline, **ids
                )
            )
        elif scan.status == Status.EXCEPTION and scan.subtag in RETURN_SUBTAGS:
            if "returned" not in self.alerts:
                self.alerts.add("returned")
                self.events.append(ShipmentReturnedToSender(occurred_at=at, reason=scan.message, **ids))
        elif scan.status == Status.DELIVERED and "delivered" not in self.alerts:
            self.alerts.add("delivered")
            delivered_at = self.delivered_at or at
            delay_h = 0.0
            if self.promised_to is not None and delivered_at > self.promised_to:
                delay_h = round((delivered_at - self.promised_to).total_seconds() / 3600, 2)
            self.events.append(
                ShipmentDelivered(
                    occurred_at=at,
                    delivered_at=delivered_at,
                    is_late=delay_h > 0,
                    delay_hours=delay_h,
                    subtag=scan.subtag,
                    **ids,
                )
            )

    # ---- prediction ---------------------------------------------------------------------------------------

    def apply_prediction(self, prediction: Prediction, *, now: datetime) -> None:
        """Stores the predicted window; warns once (ShipmentPredictedLate) when it breaks the promise, before
        the promise is broken. Back on time re-arms the warning."""
        if self.is_terminal:
            return
        self.predicted_from = prediction.window_from
        self.predicted_to = prediction.window_to
        self.predicted_at = prediction.expected_at
        self.predicted_confidence = prediction.confidence
        self.predicted_by = prediction.source
        # an out-for-delivery event recorded by this same update carries the fresh window
        self.events[:] = [
            replace(e, eta_from=prediction.window_from, eta_to=prediction.window_to)
            if isinstance(e, ShipmentOutForDelivery) and e.eta_from is None
            else e
            for e in self.events
        ]
        if self.promised_to is None:
            return
        is_late = prediction.expected_at > self.promised_to
        if not is_late:
            self.alerts.discard("predicted_late")
            if self.delay_reason and self.delay_reason.startswith("predicted"):
                self.delay_reason = None
            return
        if "predicted_late" in self.alerts or now > self.promised_to:
            return  # already warned, or the promise is already broken (then it is no longer a prediction)
        self.alerts.add("predicted_late")
        delay_h = round((prediction.expected_at - self.promised_to).total_seconds() / 3600, 2)
        reason = self._delay_reason()
        self.delay_reason = reason
        self.events.append(
            ShipmentPredictedLate(
                occurred_at=now,
                promised_to=self.promised_to,
                predicted_from=prediction.window_from,
                predicted_to=prediction.window_to,
                delay_hours=delay_h,
                confidence=prediction.confidence,
                reason=reason,
                **self._ids(),
            )
        )

    def _delay_reason(self) -> str:
        if self.status == Status.EXCEPTION and self.subtag:
            return f"predicted late: {subtag_name(self.subtag)}"
        if self.status == Status.ATTEMPT_FAIL:
            return "predicted late: delivery attempt failed"
        return f"predicted late: slow progress while {self.status.value}"

    # ---- time-based checks ----------------------------------------------------------------------------

    def check_time(self, *, now: datetime, policy: DetectionPolicy = DEFAULT_POLICY) -> None:
        """Stalled (no scan for the status's limit) and probably lost (a week of silence, or two days past the
        predicted window). Each fires once per silence: a new scan re-arms them."""
        if not self.is_active:
            return
        since = self.last_scan_at or self.created_at
        silence_h = (now - since).total_seconds() / 3600
        ids = self._ids()
        stall_key = f"stalled:{self.status.value}:{since.isoformat()}"
        limit_h = policy.stalled_after_h.get(self.status.value)
        if limit_h is not None and silence_h >= limit_h and stall_key not in self.alerts:
            self._forget("stalled:")
            self.alerts.add(stall_key)
            self.events.append(
                ShipmentStalled(
                    occurred_at=now, status=self.status.value, hours_since_scan=round(silence_h, 2), **ids
                )
            )
        lost_key = f"lost:{since.isoformat()}"
        if lost_key in self.alerts:
            return
        reason = None
        if silence_h >= policy.lost_after_silence_h:
            reason = (
                f"no scan for {silence_h / 24:.1f} days (limit {policy.lost_after_silence_h / 24:g} days)"
            )
        elif self.predicted_to is not None and now - self.predicted_to >= timedelta(
            hours=policy.lost_after_estimate_h
        ):
            past_h = (now - self.predicted_to).total_seconds() / 3600
            reason = (
                f"{past_h:.0f} hours past the predicted window (limit {policy.lost_after_estimate_h:g} hours)"
            )
        if reason is not None:
            self._forget("lost:")
            self.alerts.add(lost_key)
            self.events.append(ShipmentProbablyLost(occurred_at=now, reason=reason, **ids))

    def _forget(self, prefix: str) -> None:
        self.alerts = {a for a in self.alerts if not a.startswith(prefix)}

    def hours_in_status(self, *, until: datetime) -> dict[str, float]:
        """Time spent in each status along the timeline, up to `until` (a model feature)."""
        spent: dict[str, float] = {}
        scans = [s for s in self.timeline if s.occurred_at <= until]
        for current, following in zip(scans, [*scans[1:], None], strict=True):
            end = following.occurred_at if following is not None else until
            hours = max((end - current.occurred_at).total_seconds() / 3600, 0.0)
            spent[current.status.value] = spent.get(current.status.value, 0.0) + hours
        return spent

    def snapshot(self) -> Shipment:
        """A copy without pending events, for read models and tests."""
        return replace(self, events=[], timeline=list(self.timeline), alerts=set(self.alerts), _seen=None)
