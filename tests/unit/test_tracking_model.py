"""The shipment rules: ordering, duplicates, terminal states, milestones, prediction and detection events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
from doorstep.shipments.model import (
    Prediction,
    Shipment,
    Status,
    TrackingEvent,
    normalise_subtag,
    subtag_name,
)

T0 = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)


def scan(
    hours: float, status: Status, subtag: str | None = None, message: str = "", city: str = "Leeds"
) -> TrackingEvent:
    return TrackingEvent(
        carrier="dhl",
        tracking_number="TN1",
        occurred_at=T0 + timedelta(hours=hours),
        status=status,
        subtag=subtag,
        message=message or status.value,
        city=city,
    )


def new_shipment(**kw: object) -> Shipment:
    s = Shipment.create(
        id="s1",
        carrier="dhl",
        tracking_number="TN1",
        now=T0,
        order_id="o1",
        customer_id="c1",
        promised_to=T0 + timedelta(hours=72),
        **kw,
    )  # type: ignore[arg-type]
    return s


def types(s: Shipment) -> list[str]:
    return [type(e).__name__ for e in s.events]


def test_create_records_shipment_created() -> None:
    s = new_shipment()
    assert s.status is Status.PENDING
    assert isinstance(s.events[0], ShipmentCreated)
    assert s.events[0].key == "order:o1"


def test_scans_in_order_move_status_and_emit_milestones() -> None:
    s = new_shipment()
    s.events.clear()
    assert s.record(scan(1, Status.INFO_RECEIVED), now=T0)
    assert s.record(scan(5, Status.IN_TRANSIT, "InTransit_002"), now=T0)
    assert s.status is Status.IN_TRANSIT
    assert s.dispatched_at == T0 + timedelta(hours=5)
    assert types(s) == ["ShipmentStatusChanged", "ShipmentDispatched", "ShipmentStatusChanged"]
    changed = s.events[-1]
    assert isinstance(changed, ShipmentStatusChanged)
    assert (changed.previous_status, changed.status, changed.subtag) == (
        "InfoReceived",
        "InTransit",
        "InTransit_002",
    )


def test_late_old_scan_never_moves_status_back_but_joins_the_timeline() -> None:
    s = new_shipment()
    s.record(scan(30, Status.OUT_FOR_DELIVERY), now=T0)
    s.events.clear()
    changed = s.record(scan(10, Status.IN_TRANSIT), now=T0)
    assert changed is False
    assert s.status is Status.OUT_FOR_DELIVERY
    assert [e.status for e in s.timeline] == [Status.IN_TRANSIT, Status.OUT_FOR_DELIVERY]
    assert s.dispatched_at == T0 + timedelta(hours=10)  # the milestone takes the earlier scan
    assert s.last_scan_at == T0 + timedelta(hours=30)
    assert not any(isinstance(e, ShipmentStatusChanged) for e in s.events)


def test_delivered_is_terminal_against_late_and_stray_scans() -> None:
    s = new_shipment()
    s.record(scan(40, Status.DELIVERED, "Delivered_001"), now=T0)
    s.events.clear()
    assert s.record(scan(20, Status.IN_TRANSIT), now=T0) is False  # older, arriving late
    assert s.record(scan(41, Status.IN_TRANSIT), now=T0) is False  # newer stray scan after delivery
    assert s.status is Status.DELIVERED
    assert s.events == [] or all(not isinstance(e, ShipmentStatusChanged) for e in s.events)
    assert s.record(scan(50, Status.EXCEPTION, "Exception_010", "returning"), now=T0) is True
    assert isinstance(s.events[-1], ShipmentReturnedToSender)


def test_duplicate_scan_changes_nothing() -> None:
    s = new_shipment()
    s.record(scan(5, Status.IN_TRANSIT), now=T0)
    before = (s.status, s.scan_count, len(s.timeline), len(s.events))
    assert s.record(scan(5, Status.IN_TRANSIT), now=T0) is False
    assert (s.status, s.scan_count, len(s.timeline), len(s.events)) == before


def test_delivered_late_reports_delay() -> None:
    s = new_shipment()
    s.record(scan(80, Status.DELIVERED, "Delivered_005"), now=T0)
    delivered = [e for e in s.events if isinstance(e, ShipmentDelivered)]
    assert len(delivered) == 1
    assert delivered[0].is_late is True
    assert delivered[0].delay_hours == 8.0
    assert delivered[0].subtag == "Delivered_005"
    assert subtag_name("Delivered_005") == "left_with_neighbour"


def test_delivered_on_time_is_not_late() -> None:
    s = new_shipment()
    s.record(scan(70, Status.DELIVERED), now=T0)
    delivered = next(e for e in s.events if isinstance(e, ShipmentDelivered))
    assert (delivered.is_late, delivered.delay_hours) == (False, 0.0)


def test_attempt_pickup_and_out_for_delivery_events() -> None:
    s = new_shipment()
    s.record(scan(10, Status.OUT_FOR_DELIVERY), now=T0)
    s.record(scan(12, Status.ATTEMPT_FAIL, "AttemptFail_002", "nobody home"), now=T0)
    s.record(scan(20, Status.AVAILABLE_FOR_PICKUP, "AvailableForPickup_001", city="Leeds Locker"), now=T0)
    kinds = {type(e) for e in s.events}
    assert {
        ShipmentOutForDelivery,
        DeliveryAttemptFailed,
        ShipmentReadyForPickup,
        ShipmentDispatched,
    } <= kinds
    ready = next(e for e in s.events if isinstance(e, ShipmentReadyForPickup))
    assert ready.pickup_deadline == T0 + timedelta(hours=20, days=7)
    assert s.first_attempt_at == T0 + timedelta(hours=12)
    failed = next(e for e in s.events if isinstance(e, DeliveryAttemptFailed))
    assert failed.reason == "nobody home"


def _prediction(hours: float) -> Prediction:
    at = T0 + timedelta(hours=hours)
    return Prediction(
        expected_at=at,
        window_from=at - timedelta(hours=4),
        window_to=at + timedelta(hours=4),
        confidence=0.8,
        source="model",
    )


def test_predicted_late_fires_once_before_the_promise_breaks_and_rearms() -> None:
    s = new_shipment()
    s.record(scan(5, Status.IN_TRANSIT), now=T0)
    s.events.clear()
    s.apply_prediction(_prediction(60), now=T0 + timedelta(hours=6))
    assert s.events == []
    s.apply_prediction(_prediction(90), now=T0 + timedelta(hours=7))
    late = [e for e in s.events if isinstance(e, ShipmentPredictedLate)]
    assert len(late) == 1 and late[0].delay_hours == 18.0 and late[0].confidence == 0.8
    s.apply_prediction(_prediction(95), now=T0 + timedelta(hours=8))
    assert len([e for e in s.events if isinstance(e, ShipmentPredictedLate)]) == 1  # not again
    s.apply_prediction(_prediction(60), now=T0 + timedelta(hours=9))
    s.apply_prediction(_prediction(90), now=T0 + timedelta(hours=10))
    assert len([e for e in s.events if isinstance(e, ShipmentPredictedLate)]) == 2  # re-armed
    assert s.predicted_to == T0 + timedelta(hours=94)


def test_predicted_late_not_emitted_after_promise_already_broken() -> None:
    s = new_shipment()
    s.apply_prediction(_prediction(90), now=T0 + timedelta(hours=73))
    assert not any(isinstance(e, ShipmentPredictedLate) for e in s.events)


def test_stalled_then_lost_each_once_per_silence() -> None:
    s = new_shipment()
    s.record(scan(5, Status.IN_TRANSIT), now=T0)
    s.events.clear()
    s.check_time(now=T0 + timedelta(hours=5 + 47))
    assert s.events == []
    s.check_time(now=T0 + timedelta(hours=5 + 48))
    assert types(s) == ["ShipmentStalled"]
    stalled = s.events[0]
    assert isinstance(stalled, ShipmentStalled) and stalled.hours_since_scan == 48.0
    s.check_time(now=T0 + timedelta(hours=5 + 60))
    assert types(s) == ["ShipmentStalled"]
    s.check_time(now=T0 + timedelta(hours=5 + 7 * 24))
    assert types(s) == ["ShipmentStalled", "ShipmentProbablyLost"]
    s.check_time(now=T0 + timedelta(hours=5 + 8 * 24))
    assert types(s) == ["ShipmentStalled", "ShipmentProbablyLost"]
    # a new scan re-arms both
    s.record(scan(5 + 8 * 24, Status.IN_TRANSIT, "InTransit_003"), now=T0)
    s.events.clear()
    s.check_time(now=T0 + timedelta(hours=5 + 8 * 24 + 49))
    assert types(s) == ["ShipmentStalled"]


def test_lost_when_far_past_the_predicted_window() -> None:
    s = new_shipment()
    s.record(scan(5, Status.OUT_FOR_DELIVERY), now=T0)
    s.apply_prediction(_prediction(10), now=T0)
    s.events.clear()
    s.check_time(now=T0 + timedelta(hours=14 + 48))
    lost = [e for e in s.events if isinstance(e, ShipmentProbablyLost)]
    assert len(lost) == 1 and "past the predicted window" in lost[0].reason


def test_delivered_shipment_is_never_stalled() -> None:
    s = new_shipment()
    s.record(scan(5, Status.DELIVERED), now=T0)
    s.events.clear()
    s.check_time(now=T0 + timedelta(days=30))
    assert s.events == []


def test_subtag_normalisation() -> None:
    assert normalise_subtag("left_with_neighbour", Status.DELIVERED) == "Delivered_005"
    assert normalise_subtag("Exception_012", Status.EXCEPTION) == "Exception_012"
    assert normalise_subtag(None, Status.EXCEPTION) is None
    with pytest.raises(ValueError, match="does not belong"):
        normalise_subtag("Delivered_005", Status.IN_TRANSIT)
    with pytest.raises(ValueError, match="unknown subtag"):
        normalise_subtag("teleported", Status.IN_TRANSIT)
    assert Status.parse("in_transit") is Status.IN_TRANSIT
    assert Status.parse("FAILED ATTEMPT") is Status.ATTEMPT_FAIL
    with pytest.raises(ValueError):
        Status.parse("lost in space")


def test_hours_in_status() -> None:
    s = new_shipment()
    s.record(scan(0, Status.INFO_RECEIVED), now=T0)
    s.record(scan(10, Status.IN_TRANSIT), now=T0)
    s.record(scan(30, Status.OUT_FOR_DELIVERY), now=T0)
    assert s.hours_in_status(until=T0 + timedelta(hours=32)) == {
        "InfoReceived": 10.0,
        "InTransit": 20.0,
        "OutForDelivery": 2.0,
    }
