from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from doorstep.orders.chain import StepRefused, check_manual_step, current_step
from doorstep.shipments.delivery import (
    ChangeRefused,
    InvalidChange,
    ProofInput,
    ShipmentState,
    Slot,
    SlotFull,
    allowed_kinds,
    capabilities_for,
    eta_window,
    load_capabilities,
    mask_phone,
    validate_change,
    validate_failure,
    validate_proof,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CAPS = load_capabilities()


def state(status: str = "InTransit", carrier: str = "ups", **kw) -> ShipmentState:
    return ShipmentState("s1", carrier, status, "London", **kw)


def slot(hours_ahead: float, **kw) -> Slot:
    values = {"carrier": "ups", "region": "London", "capacity": 3, "booked": 0}
    values.update(kw)
    start = NOW + timedelta(hours=hours_ahead)
    return Slot("slot1", starts_at=start, ends_at=start + timedelta(hours=2), **values)


def test_allowed_kinds_follow_state_and_carrier() -> None:
    ups, dhl, royal = (capabilities_for(CAPS, c) for c in ("ups", "DHL", "royalmail"))
    assert allowed_kinds(state(), ups) == ["slot", "pickup_point", "safe_place", "neighbour", "instructions"]
    assert allowed_kinds(state("OutForDelivery"), ups) == ["instructions"]
    assert allowed_kinds(state("OutForDelivery", "dhl"), dhl) == [
        "slot",
        "pickup_point",
        "safe_place",
        "neighbour",
        "instructions",
    ]
    assert allowed_kinds(state(carrier="royalmail"), royal) == ["safe_place", "neighbour", "instructions"]
    assert allowed_kinds(state("Delivered"), ups) == []
    assert allowed_kinds(state(is_return=True), ups) == []


def test_slot_rules_cutoff_area_and_capacity() -> None:
    ups = capabilities_for(CAPS, "ups")
    ok = validate_change("slot", {"slot_id": "slot1"}, shipment=state(), caps=ups, now=NOW, slot=slot(2))
    assert ok["starts_at"] == (NOW + timedelta(hours=2)).isoformat()
    with pytest.raises(ChangeRefused, match="too soon"):
        validate_change("slot", {"slot_id": "slot1"}, shipment=state(), caps=ups, now=NOW, slot=slot(1.99))
    with pytest.raises(ChangeRefused, match="another carrier or area"):
        validate_change(
            "slot", {"slot_id": "slot1"}, shipment=state(), caps=ups, now=NOW, slot=slot(5, region="Leeds")
        )
    with pytest.raises(SlotFull):
        validate_change(
            "slot", {"slot_id": "slot1"}, shipment=state(), caps=ups, now=NOW, slot=slot(5, booked=3)
        )
    with pytest.raises(InvalidChange) as info:
        validate_change("slot", {"slot_id": "nope"}, shipment=state(), caps=ups, now=NOW, slot=None)
    assert info.value.extra["field"] == "detail.slot_id"


@pytest.mark.parametrize(
    ("kind", "detail", "field"),
    [
        ("teleport", {}, "kind"),
        ("neighbour", {"name": "Ann"}, "detail.house"),
        ("neighbour", {"name": "Ann", "house": "3", "phone": "1"}, "detail.phone"),
        ("safe_place", {"place": "other"}, "detail.note"),
        ("pickup_point", {"point_id": 7, "name": "Shop"}, "detail.point_id"),
        ("instructions", {"text": "   "}, "detail.text"),
    ],
)
def test_bad_details_name_the_field(kind: str, detail: dict, field: str) -> None:
    with pytest.raises(InvalidChange) as info:
        validate_change(kind, detail, shipment=state(), caps=capabilities_for(CAPS, "ups"), now=NOW)
    assert info.value.extra["field"] == field


def test_control_characters_are_stripped() -> None:
    cleaned = validate_change(
        "instructions",
        {"text": "Ring\x00 twice\x1b"},
        shipment=state(),
        caps=capabilities_for(CAPS, "ups"),
        now=NOW,
    )
    assert cleaned == {"text": "Ring twice"}


def test_eta_windows_grow_with_the_sequence() -> None:
    departed = datetime(2026, 11, 23, 8, 3, tzinfo=UTC)
    assert eta_window(departed, 1) == (
        datetime(2026, 11, 23, 8, 5, tzinfo=UTC),
        datetime(2026, 11, 23, 8, 45, tzinfo=UTC),
    )
    assert eta_window(departed, 3)[0] == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)  # 8:03 + 25 + 2 × 12 - 20
    with pytest.raises(ValueError):
        eta_window(departed, 0)


def test_phone_is_masked() -> None:
    assert mask_phone("+447700900123") == "+44 ••••••• 123"
    assert mask_phone(None) == ""
    assert "900" not in mask_phone("07700 900123")


def test_proof_and_failure_rules() -> None:
    validate_proof(ProofInput("Maya", False, True, 51.5, -0.1), assignment_status="departed")
    validate_proof(ProofInput(None, True, False, None, None), assignment_status="assigned")
    cases = [
        (ProofInput("Maya", False, False, None, None), "photo"),
        (ProofInput(None, False, True, None, None), "recipient_name"),
        (ProofInput("M", True, False, 91.0, 0.0), "latitude"),
        (ProofInput("M", True, False, 1.0, None), "latitude"),
    ]
    for proof, field in cases:
        with pytest.raises(InvalidChange) as info:
            validate_proof(proof, assignment_status="departed")
        assert info.value.extra["field"] == field
    with pytest.raises(ChangeRefused):
        validate_proof(ProofInput("M", True, False, None, None), assignment_status="delivered")
    with pytest.raises(InvalidChange):
        validate_failure("other", " ", assignment_status="departed")
    validate_failure("not_home", None, assignment_status="departed")


def test_manual_chain_steps() -> None:
    placed = {"placed": NOW - timedelta(hours=1)}
    assert check_manual_step("paid", reached=placed, order_status="placed", at=NOW, now=NOW) is True
    assert (
        check_manual_step("paid", reached=placed | {"paid": NOW}, order_status="paid", at=NOW, now=NOW)
        is False
    )
    with pytest.raises(StepRefused, match="needs 'paid' first"):
        check_manual_step("picked", reached=placed, order_status="placed", at=NOW, now=NOW)
    with pytest.raises(StepRefused, match="future"):
        check_manual_step(
            "paid", reached=placed, order_status="placed", at=NOW + timedelta(seconds=1), now=NOW
        )
    with pytest.raises(StepRefused, match="cancelled"):
        check_manual_step("paid", reached=placed, order_status="cancelled", at=NOW, now=NOW)
    assert current_step({"placed": NOW, "delivered": NOW - timedelta(days=1), "paid": NOW}) == "delivered"
