"""Tracking ingest end to end: each webhook format through HTTP, the log, the worker and the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.factories import secret_key
from tests.helpers import AppUnderTest, running_app
from tests.support_tracking import (
    add_order,
    aftership_body,
    aftership_headers,
    aftership_tracking,
    checkpoint,
    generic_headers,
    karrio_body,
    karrio_event,
    karrio_headers,
    tracking_settings,
)

from doorstep.bus.messages import EVENT_TYPES, Envelope
from doorstep.clock import FixedClock
from doorstep.ingest.tables import event_log
from doorstep.orders.events import OrderPlaced
from doorstep.shipments.repository import ShipmentRepository
from doorstep.shipments.tables import shipments, tracking_events

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SHIPMENT_EVENTS = [
    "ShipmentCreated",
    "ShipmentStatusChanged",
    "ShipmentDispatched",
    "ShipmentOutForDelivery",
    "ShipmentDelivered",
    "DeliveryAttemptFailed",
    "ShipmentReadyForPickup",
    "ShipmentPredictedLate",
    "ShipmentReturnedToSender",
]


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[AppUnderTest]:
    clock = FixedClock(NOW)
    with running_app(make_settings(tmp_path, database_url, **tracking_settings()), clock) as running:
        running.captured = []  # type: ignore[attr-defined]
        for name in SHIPMENT_EVENTS:
            running.ctx.bus.subscribe(
                EVENT_TYPES[name],
                f"test.capture.{name}",
                lambda env, ctx, sink=running.captured: sink.append(env),
            )  # type: ignore[attr-defined]
        yield running


def captured(app: AppUnderTest, kind: str | None = None) -> list[Envelope]:
    return [e for e in app.captured if kind is None or e.event_type == kind]  # type: ignore[attr-defined]


def count(app: AppUnderTest, table: Any) -> int:
    with app.ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def shipment(app: AppUnderTest, number: str) -> Any:
    with app.ctx.engine.connect() as conn:
        return ShipmentRepository(conn).get_by_tracking(number)


def post_aftership(app: AppUnderTest, tracking: dict[str, Any], **kw: Any) -> Any:
    body = aftership_body(tracking, ts=kw.pop("ts", NOW), **kw)
    return app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))


# ---- AfterShip ---------------------------------------------------------------------------------------------


def test_aftership_webhook_creates_shipment_for_order_and_projects_scans(app: AppUnderTest) -> None:
    order_id, customer_id = add_order(
        app.ctx.engine, external_id="1001", now=NOW, promised_to=NOW + timedelta(days=2)
    )
    tracking = aftership_tracking(
        "JD0001",
        [
            checkpoint(NOW - timedelta(hours=20), "InfoReceived"),
            checkpoint(NOW - timedelta(hours=10), "InTransit", "InTransit_002", "Picked up"),
            checkpoint(
                NOW - timedelta(hours=2), "InTransit", "InTransit_003", "Arrived at hub", city="Wakefield"
            ),
        ],
        order_number="1001",
    )

    response = post_aftership(app, tracking)
    assert response.status_code == 200, response.text
    assert response.json()["duplicate"] is False
    assert count(app, shipments) == 0  # nothing projected inside the request
    app.drain()

    s = shipment(app, "JD0001")
    assert s is not None
    assert (s.order_id, s.customer_id, s.carrier, s.status.value, s.subtag) == (
        order_id,
        customer_id,
        "dhl",
        "InTransit",
        "InTransit_003",
    )
    assert s.promised_to == NOW + timedelta(days=2)
    assert s.dispatched_at == NOW - timedelta(hours=10)
    assert s.last_location == "Wakefield, West Yorkshire, LS1 4AP, GB"
    assert [e.raw_code for e in s.timeline] == ["RAW-InfoReceived", "RAW-InTransit", "RAW-InTransit"]
    assert s.timeline[0].latitude == 53.8 and s.timeline[0].country == "GB"
    assert (
        s.predicted_to is not None
        and s.predicted_from is not None
        and s.predicted_by in ("prior", "model", "baseline")
    )
    assert [e.event_type for e in captured(app)].count("ShipmentCreated") == 1
    assert len(captured(app, "ShipmentDispatched")) == 1
    changes = [
        (e.payload["previous_status"], e.payload["status"]) for e in captured(app, "ShipmentStatusChanged")
    ]
    assert changes == [("Pending", "InfoReceived"), ("InfoReceived", "InTransit")]  # hub to hub: no event
    assert all(e.payload["order_id"] == order_id for e in captured(app))


def test_aftership_bad_missing_stale_signature_and_replay_are_refused(app: AppUnderTest) -> None:
    tracking = aftership_tracking(
        "JD0002", [checkpoint(NOW - timedelta(hours=1), "InTransit")], order_number="9"
    )
    body = aftership_body(tracking, ts=NOW, event_id="evt-1")

    wrong = app.client.post(
        "/webhooks/aftership", content=body, headers=aftership_headers(body, "not-the-secret")
    )
    missing = app.client.post(
        "/webhooks/aftership", content=body, headers={"content-type": "application/json"}
    )
    stale_body = aftership_body(tracking, ts=NOW - timedelta(hours=25), event_id="evt-2")
    stale = app.client.post("/webhooks/aftership", content=stale_body, headers=aftership_headers(stale_body))
    tampered = body.replace(b"JD0002", b"JD0003")
    forged = app.client.post("/webhooks/aftership", content=tampered, headers=aftership_headers(body))

    assert [r.status_code for r in (wrong, missing, stale, forged)] == [401, 401, 401, 401]
    assert "stale" in stale.json()["detail"]
    assert missing.headers["content-type"] == "application/problem+json"
    assert count(app, event_log) == 0

    first = app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))
    replay = app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))
    assert (first.json()["duplicate"], replay.json()["duplicate"]) == (False, True)
    assert count(app, event_log) == 1
    app.drain()
    assert count(app, tracking_events) == 1


def test_aftership_malformed_payload_names_the_field_and_stores_nothing(app: AppUnderTest) -> None:
    cps = [
        checkpoint(NOW - timedelta(hours=3), "InTransit"),
        checkpoint(NOW - timedelta(hours=1), "InTransit"),
    ]
    del cps[1]["checkpoint_time"]
    response = post_aftership(app, aftership_tracking("JD0004", cps, order_number="1"))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("msg.checkpoints[1].checkpoint_time:")
    assert response.json()["errors"][0]["field"] == "msg.checkpoints[1].checkpoint_time"

    bad_tag = aftership_tracking("JD0004", [checkpoint(NOW, "Teleported")])
    assert post_aftership(app, bad_tag).json()["detail"].startswith("msg.checkpoints[0].tag:")
    body = b'{"event": "tracking_update", "event_id": "x", "ts": 1'
    broken = app.client.post("/webhooks/aftership", content=body, headers=aftership_headers(body))
    assert broken.status_code == 422 and "malformed JSON" in broken.json()["detail"]
    no_number = aftership_tracking("", [checkpoint(NOW, "InTransit")])
    assert post_aftership(app, no_number).json()["detail"] == "msg.tracking_number: required"
    assert count(app, event_log) == 0


def test_out_of_order_and_duplicate_scans(app: AppUnderTest) -> None:
    add_order(app.ctx.engine, external_id="1002", now=NOW, promised_to=NOW + timedelta(days=1))
    delivered = checkpoint(
        NOW - timedelta(hours=1), "Delivered", "Delivered_005", "Left with neighbour at 12"
    )
    post_aftership(app, aftership_tracking("JD0005", [delivered], order_number="1002"))
    app.drain()
    # the earlier scans arrive late, in a second delivery that repeats the delivered scan
    late = aftership_tracking(
        "JD0005",
        [
            checkpoint(NOW - timedelta(hours=30), "InTransit", "InTransit_002"),
            checkpoint(NOW - timedelta(hours=5), "OutForDelivery"),
            delivered,
        ],
        order_number="1002",
    )
    post_aftership(app, late)
    app.drain()

    s = shipment(app, "JD0005")
    assert (s.status.value, s.subtag) == ("Delivered", "Delivered_005")
    assert [e.status.value for e in s.timeline] == ["InTransit", "OutForDelivery", "Delivered"]
    assert count(app, tracking_events) == 3  # the repeated delivered scan was skipped
    assert s.dispatched_at == NOW - timedelta(hours=30)
    assert len(captured(app, "ShipmentDelivered")) == 1
    assert captured(app, "ShipmentDelivered")[0].payload["is_late"] is False
    assert captured(app, "ShipmentOutForDelivery") == []  # an old scan does not announce anything
    statuses = [e.payload["status"] for e in captured(app, "ShipmentStatusChanged")]
    assert statuses == ["Delivered"]


def test_unknown_tracking_number_is_kept_and_attached_later(app: AppUnderTest) -> None:
    key = secret_key(app.ctx.engine, now=NOW, scopes=["shipments:write"])
    body = orjson.dumps(
        {
            "events": [
                {
                    "carrier": "dhl",
                    "tracking_number": "ORPH1",
                    "occurred_at": (NOW - timedelta(hours=8)).isoformat(),
                    "code": "PU",
                    "message": "Picked up",
                    "location": {"city": "Bradford", "country": "GB"},
                },
            ]
        }
    )
    response = app.client.post(
        "/api/v1/tracking-events",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    app.drain()
    assert count(app, shipments) == 0
    with app.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(
                tracking_events.c.shipment_id,
                tracking_events.c.status,
                tracking_events.c.subtag,
                tracking_events.c.raw_code,
            )
        ).all()
    assert [tuple(r) for r in rows] == [(None, "InTransit", "InTransit_002", "PU")]

    order_id, _ = add_order(app.ctx.engine, external_id="1003", now=NOW, promised_to=NOW + timedelta(days=2))
    post_aftership(
        app,
        aftership_tracking(
            "ORPH1", [checkpoint(NOW - timedelta(hours=1), "OutForDelivery")], order_number="1003"
        ),
    )
    app.drain()
    s = shipment(app, "ORPH1")
    assert s.order_id == order_id
    assert [e.status.value for e in s.timeline] == ["InTransit", "OutForDelivery"]
    assert s.status.value == "OutForDelivery"
    assert s.dispatched_at == NOW - timedelta(hours=8)
    with app.ctx.engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(tracking_events)
                .where(tracking_events.c.shipment_id.is_(None))
            ).scalar_one()
            == 0
        )
    ofd = captured(app, "ShipmentOutForDelivery")
    assert len(ofd) == 1 and ofd[0].payload["eta_to"] is not None


def test_webhook_naming_an_order_not_yet_known_links_when_the_order_arrives(app: AppUnderTest) -> None:
    post_aftership(
        app,
        aftership_tracking(
            "JD0006", [checkpoint(NOW - timedelta(hours=2), "InTransit")], order_number="2001"
        ),
    )
    app.drain()
    s = shipment(app, "JD0006")
    assert (s.order_id, s.order_ref) == (None, "2001")
    order_id, customer_id = add_order(
        app.ctx.engine, external_id="2001", now=NOW, promised_to=NOW + timedelta(days=3)
    )
    with app.ctx.uow() as uow:
        uow.publish(
            OrderPlaced(
                occurred_at=NOW,
                order_id=order_id,
                customer_id=customer_id,
                external_id="2001",
                total="49.99",
                currency="GBP",
            )
        )
        uow.commit()
    app.drain()
    s = shipment(app, "JD0006")
    assert (s.order_id, s.customer_id, s.promised_to) == (order_id, customer_id, NOW + timedelta(days=3))


# ---- Karrio ------------------------------------------------------------------------------------------------


def test_karrio_tracker_updated_with_carrier_codes(app: AppUnderTest) -> None:
    add_order(app.ctx.engine, external_id="3001", now=NOW, promised_to=NOW + timedelta(days=2))
    body = karrio_body(
        "KR0001",
        [
            karrio_event(NOW - timedelta(hours=9), "PU", "Shipment picked up"),
            karrio_event(NOW - timedelta(hours=1), "NH", "Recipient not at home"),
        ],
        status="delivery_failed",
        order_id="3001",
    )
    response = app.client.post("/webhooks/karrio", content=body, headers=karrio_headers(body))
    assert response.status_code == 200, response.text
    again = app.client.post("/webhooks/karrio", content=body, headers=karrio_headers(body))
    assert again.json()["duplicate"] is True
    app.drain()
    s = shipment(app, "KR0001")
    assert (s.carrier, s.status.value, s.subtag) == ("dhl", "AttemptFail", "AttemptFail_002")
    assert [e.raw_code for e in s.timeline] == ["PU", "NH"]
    assert len(captured(app, "DeliveryAttemptFailed")) == 1
    assert captured(app, "DeliveryAttemptFailed")[0].payload["reason"] == "Recipient not at home"


def test_karrio_signatures(app: AppUnderTest) -> None:
    body = karrio_body("KR0002", [karrio_event(NOW, None, "In transit", status="in_transit")])
    assert (
        app.client.post("/webhooks/karrio", content=body, headers=karrio_headers(body, "wrong")).status_code
        == 401
    )
    assert app.client.post("/webhooks/karrio", content=body).status_code == 401
    legacy = app.client.post(
        "/webhooks/karrio", content=body, headers={"x-event-id": "karrio-webhook-secret-for-tests"}
    )
    assert legacy.status_code == 200
    stale = karrio_body(
        "KR0003", [karrio_event(NOW, None, "x", status="in_transit")], created_at=NOW - timedelta(days=2)
    )
    assert (
        app.client.post("/webhooks/karrio", content=stale, headers=karrio_headers(stale)).status_code == 401
    )
    bad = karrio_body("KR0004", [{"description": "no date"}])
    response = app.client.post("/webhooks/karrio", content=bad, headers=karrio_headers(bad))
    assert response.status_code == 422 and response.json()["detail"].startswith("data.events[0].date:")
    assert count(app, event_log) == 1


# ---- generic JSON and CSV -------------------------------------------------------------------------------


def test_generic_endpoint_auth_and_validation(app: AppUnderTest) -> None:
    event = {
        "carrier": "acme",
        "tracking_number": "G1",
        "occurred_at": NOW.isoformat(),
        "status": "in_transit",
    }
    body = orjson.dumps({"events": [event]})
    reader = secret_key(app.ctx.engine, now=NOW, scopes=["shipments:read"])
    no_scope = app.client.post(
        "/api/v1/tracking-events", content=body, headers={"authorization": f"Bearer {reader}"}
    )
    assert no_scope.status_code == 403
    assert app.client.post("/api/v1/tracking-events", content=body).status_code == 401
    stale = app.client.post(
        "/api/v1/tracking-events",
        content=body,
        headers=generic_headers(body, now=NOW - timedelta(minutes=10)),
    )
    assert stale.status_code == 401 and "stale" in stale.json()["detail"]
    unknown_code = orjson.dumps({"events": [event, {**event, "status": None, "code": "ZZ"}]})
    response = app.client.post(
        "/api/v1/tracking-events", content=unknown_code, headers=generic_headers(unknown_code, now=NOW)
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("events[1].code: unknown code 'ZZ' for carrier 'acme'")
    wrong_subtag = orjson.dumps({"events": [{**event, "subtag": "left_with_neighbour"}]})
    response = app.client.post(
        "/api/v1/tracking-events", content=wrong_subtag, headers=generic_headers(wrong_subtag, now=NOW)
    )
    assert response.status_code == 422 and response.json()["detail"].startswith("events[0].subtag:")
    assert count(app, event_log) == 0
    ok = app.client.post("/api/v1/tracking-events", content=body, headers=generic_headers(body, now=NOW))
    assert ok.status_code == 200 and ok.json()["events"] == 1


def test_csv_upload(app: AppUnderTest) -> None:
    add_order(app.ctx.engine, external_id="4001", now=NOW, promised_to=NOW + timedelta(days=1))
    text = (
        "carrier,tracking_number,occurred_at,status,subtag,code,message,city,country,order_id\n"
        f"dpd,C1,{(NOW - timedelta(hours=6)).isoformat()},,,02,Collected,Leeds,GB,4001\n"
        f"dpd,C1,{(NOW - timedelta(hours=1)).isoformat()},Delivered,left_with_neighbour,,At no. 12,Leeds,GB,4001\n"
    ).encode()
    headers = {**generic_headers(text, now=NOW), "content-type": "text/csv"}
    response = app.client.post("/api/v1/tracking-events.csv", content=text, headers=headers)
    assert response.status_code == 200, response.text
    app.drain()
    s = shipment(app, "C1")
    assert (s.status.value, s.subtag, s.order_ref) == ("Delivered", "Delivered_005", "4001")
    assert len(captured(app, "ShipmentDelivered")) == 1
    bad = b"carrier,tracking_no,occurred_at\ndpd,C2,2026-11-23T08:00:00Z\n"
    response = app.client.post(
        "/api/v1/tracking-events.csv",
        content=bad,
        headers={**generic_headers(bad, now=NOW), "content-type": "text/csv"},
    )
    assert response.status_code == 422 and "tracking_no" in response.json()["detail"]


def test_delivered_late_and_predicted_late(app: AppUnderTest) -> None:
    add_order(app.ctx.engine, external_id="5001", now=NOW, promised_to=NOW - timedelta(hours=4))
    post_aftership(
        app,
        aftership_tracking(
            "JD0009",
            [
                checkpoint(NOW - timedelta(hours=40), "InTransit"),
                checkpoint(NOW - timedelta(hours=1), "Delivered"),
            ],
            order_number="5001",
        ),
    )
    add_order(app.ctx.engine, external_id="5002", now=NOW, promised_to=NOW + timedelta(hours=3))
    post_aftership(
        app,
        aftership_tracking(
            "JD0010", [checkpoint(NOW - timedelta(hours=1), "InTransit")], order_number="5002"
        ),
    )
    app.drain()
    delivered = captured(app, "ShipmentDelivered")
    assert [(e.payload["is_late"], e.payload["delay_hours"]) for e in delivered] == [(True, 3.0)]
    late = captured(app, "ShipmentPredictedLate")
    assert len(late) == 1  # the untrained prior expects ~2 days of transit: a 3-hour promise will break
    assert late[0].payload["shipment_id"] == shipment(app, "JD0010").id
    assert late[0].payload["delay_hours"] > 0


def test_read_api_shows_the_timeline_and_needs_a_scope(app: AppUnderTest) -> None:
    post_aftership(
        app,
        aftership_tracking(
            "JD0011",
            [
                checkpoint(NOW - timedelta(hours=3), "InTransit", "InTransit_002"),
                checkpoint(
                    NOW - timedelta(hours=1),
                    "AvailableForPickup",
                    "AvailableForPickup_001",
                    city="Leeds Locker",
                ),
            ],
            order_number="6001",
        ),
    )
    app.drain()
    reader = secret_key(app.ctx.engine, now=NOW, scopes=["shipments:read"])
    writer = secret_key(app.ctx.engine, now=NOW, scopes=["ingest"])
    found = app.client.get(
        "/api/v1/shipments",
        params={"tracking_number": "JD0011"},
        headers={"authorization": f"Bearer {reader}"},
    )
    assert found.status_code == 200, found.text
    item = found.json()["items"][0]
    assert (item["status"], item["subtag_name"]) == ("AvailableForPickup", "at_pickup_point")
    assert item["pickup_deadline"].startswith("2026-11-30T08:00:00")
    assert [e["subtag_name"] for e in item["timeline"]] == ["accepted_by_carrier", "at_pickup_point"]
    one = app.client.get(f"/api/v1/shipments/{item['id']}", headers={"authorization": f"Bearer {reader}"})
    assert one.json()["tracking_number"] == "JD0011"
    assert (
        app.client.get(
            f"/api/v1/shipments/{item['id']}", headers={"authorization": f"Bearer {writer}"}
        ).status_code
        == 403
    )
    assert (
        app.client.get("/api/v1/shipments/nope", headers={"authorization": f"Bearer {reader}"}).status_code
        == 404
    )
    assert len(captured(app, "ShipmentReadyForPickup")) == 1


def test_order_updated_with_a_tracking_number_creates_the_shipment_and_adopts_scans(
    app: AppUnderTest,
) -> None:
    from doorstep.orders.events import OrderUpdated

    body = orjson.dumps(
        {
            "events": [
                {
                    "carrier": "dpd",
                    "tracking_number": "OU1",
                    "status": "InTransit",
                    "occurred_at": (NOW - timedelta(hours=5)).isoformat(),
                }
            ]
        }
    )
    app.client.post("/api/v1/tracking-events", content=body, headers=generic_headers(body, now=NOW))
    app.drain()
    assert count(app, shipments) == 0
    order_id, customer_id = add_order(
        app.ctx.engine, external_id="8001", now=NOW, promised_to=NOW + timedelta(days=2)
    )
    with app.ctx.uow() as uow:
        uow.publish(
            OrderUpdated(
                occurred_at=NOW,
                order_id=order_id,
                customer_id=customer_id,
                changes={"tracking_number": "OU1"},
            )
        )
        uow.commit()
    app.drain()
    s = shipment(app, "OU1")
    assert (s.carrier, s.order_id, s.status.value, len(s.timeline)) == ("dpd", order_id, "InTransit", 1)
    assert s.predicted_to is not None
    assert [e.payload["order_id"] for e in captured(app, "ShipmentCreated")] == [order_id]


def test_batch_projection_of_many_rows_matches_one_at_a_time(app: AppUnderTest) -> None:
    from doorstep.bus.registry import HandlerContext
    from doorstep.shipments.handlers import project_log_rows

    cps = [
        checkpoint(NOW - timedelta(hours=h), tag)
        for h, tag in ((9, "InTransit"), (4, "OutForDelivery"), (1, "Delivered"))
    ]
    for number in ("B1", "B2"):
        for upto in (1, 2, 3):
            post_aftership(app, aftership_tracking(number, cps[:upto], order_number=f"o-{number}"))
    with app.ctx.engine.connect() as conn, conn.begin():
        rows = conn.execute(select(event_log).order_by(event_log.c.id)).all()
        from doorstep.db.uow import UnitOfWork

        uow = UnitOfWork(None, bus=app.ctx.bus, clock=app.ctx.clock, conn=conn)
        touched = project_log_rows(
            rows,
            HandlerContext(
                uow=uow, clock=app.ctx.clock, settings=app.ctx.settings, services=app.ctx.services
            ),
        )
        uow.flush_events()
    assert sorted(s.tracking_number for s in touched) == ["B1", "B2"]
    for number in ("B1", "B2"):
        s = shipment(app, number)
        assert s.status.value == "Delivered"
        assert [e.status.value for e in s.timeline] == ["InTransit", "OutForDelivery", "Delivered"]
    assert count(app, tracking_events) == 6


def test_edd_revise_without_new_checkpoints_updates_the_carrier_estimate(app: AppUnderTest) -> None:
    cps = [checkpoint(NOW - timedelta(hours=3), "InTransit")]
    post_aftership(app, aftership_tracking("E1", cps, order_number="9001"))
    app.drain()
    revised = aftership_tracking("E1", cps, order_number="9001")
    revised["aftership_estimated_delivery_date"] = {
        "estimated_delivery_date": "2026-11-26",
        "confidence_score": None,
    }
    assert post_aftership(app, revised, event="edd_revise").status_code == 200
    app.drain()
    s = shipment(app, "E1")
    assert s.carrier_estimate == datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC)
    assert count(app, tracking_events) == 1
