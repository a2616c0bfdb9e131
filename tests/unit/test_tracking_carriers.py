"""Carrier adapters and code tables: field mapping, code tables extensible from a folder, errors naming fields."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support_tracking import checkpoint

from doorstep.shipments.carriers import aftership, generic, karrio
from doorstep.shipments.carriers.codes import load_tables
from doorstep.shipments.errors import BadSignature, InvalidTrackingPayload
from doorstep.shipments.model import Status

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_aftership_checkpoint_fields() -> None:
    cp = checkpoint(
        datetime(2026, 11, 22, 10, 30, tzinfo=UTC), "Delivered", "Delivered_005", "Left with neighbour"
    )
    cp["checkpoint_time"] = "2026-11-22T11:30:00+01:00"
    del cp["country_region"]
    cp["country_iso3"] = "DEU"
    parsed = aftership.parse_tracking(
        {
            "slug": "DHL",
            "tracking_number": "X1",
            "order_id": "o-9",
            "checkpoints": [cp],
            "destination_country_region": "GBR",
        }
    )
    scan = parsed.scans[0]
    assert (parsed.carrier, parsed.order_ref, parsed.destination_region) == ("dhl", "o-9", "GB")
    assert scan.occurred_at == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert (scan.status, scan.subtag, scan.raw_code) == (Status.DELIVERED, "Delivered_005", "RAW-Delivered")
    assert (scan.city, scan.region, scan.country, scan.postcode) == (
        "Leeds",
        "West Yorkshire",
        "DE",
        "LS1 4AP",
    )
    assert (scan.latitude, scan.longitude) == (53.8, -1.55)


def test_aftership_signature_and_freshness() -> None:
    body = b'{"a": 1}'
    aftership.verify("s", body, aftership.hmac_sha256_b64("s", body))
    with pytest.raises(BadSignature):
        aftership.verify("s", body, aftership.hmac_sha256_b64("t", body))
    with pytest.raises(BadSignature, match="future"):
        aftership.check_envelope(
            {"event": "tracking_update", "event_id": "e", "ts": NOW.timestamp() + 3600, "msg": {}}, now=NOW
        )
    with pytest.raises(InvalidTrackingPayload, match=r"^ts:"):
        aftership.check_envelope({"event": "tracking_update", "event_id": "e", "ts": "yesterday"}, now=NOW)
    assert (
        aftership.check_envelope(
            {"event": "tracking_pending_time", "event_id": "e", "ts": NOW.timestamp()}, now=NOW
        )[0]
        == "tracking_pending_time"
    )


def test_karrio_times_codes_and_fallbacks() -> None:
    tables = load_tables()
    parsed = karrio.parse_tracker(
        {
            "tracking_number": "K1",
            "carrier_name": "DHL Express",
            "status": "out_for_delivery",
            "estimated_delivery": "2026-11-24",
            "events": [
                {"date": "2026-11-22", "time": "08:15 AM", "code": "AF", "description": "At facility"},
                {"date": "2026-11-22", "time": "17:00", "code": "??", "description": "Something"},
                {"date": "2026-11-23", "time": "07:00", "code": None, "description": "With courier"},
            ],
        },
        tables,
    )
    assert parsed.carrier == "dhl"  # "DHL Express" -> alias dhl_express -> dhl
    assert parsed.carrier_estimate == datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    assert [(s.status, s.subtag) for s in parsed.scans] == [
        (Status.IN_TRANSIT, "InTransit_003"),  # from the dhl table
        (Status.IN_TRANSIT, None),  # unknown code, not the newest: progress
        (Status.OUT_FOR_DELIVERY, None),  # newest: the tracker's status
    ]
    assert parsed.scans[0].occurred_at == datetime(2026, 11, 22, 8, 15, tzinfo=UTC)


def test_code_tables_extend_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "carrier: acme\naliases: [acme_express]\ncodes:\n  X1: {status: in_transit, subtag: arrived_at_hub}\n"
        "  '09': Delivered\n"
    )
    (tmp_path / "dhl.yaml").write_text(
        "carrier: dhl\ncodes:\n  NB: {status: Delivered, subtag: Delivered_001}\n"
    )
    tables = load_tables(tmp_path)
    assert tables.lookup("acme_express", "X1").status is Status.IN_TRANSIT  # type: ignore[union-attr]
    assert tables.lookup("acme_express", "X1").subtag == "InTransit_003"  # type: ignore[union-attr]
    assert tables.lookup("acme", "09").status is Status.DELIVERED  # type: ignore[union-attr]
    assert tables.lookup("dhl", "NB").subtag == "Delivered_001"  # type: ignore[union-attr]  # overridden
    assert tables.lookup("dhl", "PU").status is Status.IN_TRANSIT  # type: ignore[union-attr]  # kept
    (tmp_path / "bad.yaml").write_text("carrier: bad\ncodes:\n  Z: {status: Teleported}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: code 'Z': unknown status"):
        load_tables(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        load_tables(tmp_path / "missing")


def test_generic_events_are_all_or_nothing_and_name_the_field() -> None:
    tables = load_tables()
    good = {"carrier": "dhl", "tracking_number": "G1", "occurred_at": "2026-11-23T08:00:00Z", "code": "NB"}
    parsed = generic.parse_events({"events": [good]}, tables)
    assert (parsed[0].scans[0].status, parsed[0].scans[0].subtag) == (Status.DELIVERED, "Delivered_005")
    for bad, field in [
        ({**good, "occurred_at": "yesterday"}, "events[1].occurred_at"),
        ({**good, "tracking_number": None}, "events[1].tracking_number"),
        ({**good, "code": None}, "events[1].status"),
        ({**good, "location": {"latitude": "north"}}, "events[1].location.latitude"),
    ]:
        with pytest.raises(InvalidTrackingPayload) as caught:
            generic.parse_events({"events": [good, bad]}, tables)
        assert caught.value.extra["errors"][0]["field"] == field
    with pytest.raises(InvalidTrackingPayload, match="at most 1000"):
        generic.events_of({"events": [good] * 1001})
