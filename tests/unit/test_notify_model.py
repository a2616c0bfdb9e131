"""The notification rules without a database: journeys, quiet hours, channel choice, error classes."""

from __future__ import annotations

import datetime as dt

import pytest

from doorstep.notifications.errors import JourneyInvalid
from doorstep.notifications.journeys import default_source, event_fields, parse_source
from doorstep.notifications.model import (
    classify_http,
    is_consented,
    keyword_consent,
    local_day_start,
    locale_of,
    next_attempt_at,
    parse_journey,
    plan_channels,
    quiet_until,
    reason_gone,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_default_journey_covers_every_story_step() -> None:
    journey, _ = parse_source(default_source())
    triggers = {r.trigger for r in journey.rules if r.is_enabled}
    assert triggers == {
        "order_confirmed",
        "dispatched",
        "driver_departed",
        "out_for_delivery",
        "predicted_late",
        "failed_attempt",
        "ready_for_pickup",
        "pickup_reminder",
        "delivered",
        "delivery_changed",
        "return_approved",
        "return_label",
        "return_received",
        "refund_issued",
        "survey",
    }
    reminder = next(r for r in journey.rules if r.trigger == "pickup_reminder")
    assert reminder.delay_s == 48 * 3600
    assert {r.trigger for r in journey.rules if r.is_urgent} == {"driver_departed", "out_for_delivery"}


def test_condition_and_dedupe_key_of_predicted_late() -> None:
    journey, _ = parse_source(default_source())
    [rule] = journey.rules_for("ShipmentPredictedLate")
    payload = {"shipment_id": "s1", "delay_hours": 4.0, "predicted_to": "2026-11-27T12:00:00+00:00"}
    assert not rule.matches(payload)
    assert rule.matches({**payload, "delay_hours": 4.5})
    assert rule.dedupe_key("ShipmentPredictedLate", payload) == "predicted_late:s1:2026-11-27T12:00:00+00:00"


def test_state_hash_ignores_event_id_and_time() -> None:
    journey, _ = parse_source(default_source())
    [rule] = journey.rules_for("DeliveryChanged")
    a = {
        "event_id": "e1",
        "occurred_at": "2026-11-23T09:00:00+00:00",
        "shipment_id": "s",
        "kind": "slot",
        "detail": {"date": "x"},
    }
    b = {**a, "event_id": "e2", "occurred_at": "2026-11-23T09:05:00+00:00"}
    c = {**a, "detail": {"date": "y"}}
    assert rule.dedupe_key("DeliveryChanged", a) == rule.dedupe_key("DeliveryChanged", b)
    assert rule.dedupe_key("DeliveryChanged", a) != rule.dedupe_key("DeliveryChanged", c)


@pytest.mark.parametrize(
    ("journey", "field"),
    [
        ({"rules": [{"trigger": "a", "on": "Nope"}]}, "rules[0].on"),
        ({"rules": [{"trigger": "a", "on": "OrderPlaced", "topic": "spam"}]}, "rules[0].topic"),
        ({"rules": [{"trigger": "a", "on": "OrderPlaced", "dedupe": "{nope}"}]}, "rules[0].dedupe"),
        (
            {"rules": [{"trigger": "a", "on": "OrderPlaced", "cancel_if": {"shipment_status": ["Lost"]}}]},
            "rules[0].cancel_if.shipment_status[0]",
        ),
        (
            {
                "rules": [
                    {"trigger": "a", "on": "ShipmentPredictedLate", "when": {"delay_hours": {"about": 4}}}
                ]
            },
            "rules[0].when.delay_hours.about",
        ),
        ({"rules": [{"trigger": "a", "on": "OrderPlaced", "delay": {"hours": -1}}]}, "rules[0].delay"),
        (
            {"quiet_hours": {"start": "25:00"}, "rules": [{"trigger": "a", "on": "OrderPlaced"}]},
            "quiet_hours.start",
        ),
        ({"channels": ["pigeon"], "rules": [{"trigger": "a", "on": "OrderPlaced"}]}, "channels[0]"),
        ({"daily_cap": 0, "rules": [{"trigger": "a", "on": "OrderPlaced"}]}, "daily_cap"),
        ({"rules": []}, "rules"),
    ],
)
def test_invalid_journeys_name_the_field(journey: dict, field: str) -> None:
    with pytest.raises(JourneyInvalid) as err:
        parse_journey(journey, event_fields=event_fields())
    assert err.value.extra["field"] == field
    assert err.value.http_status == 422


def test_quiet_hours_cross_midnight_in_local_time() -> None:
    berlin_2330 = dt.datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
    assert quiet_until(berlin_2330, tz_name="Europe/Berlin", start="21:00", end="08:00") == dt.datetime(
        2026, 11, 24, 7, 0, tzinfo=UTC
    )
    berlin_0630 = dt.datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
    assert quiet_until(berlin_0630, tz_name="Europe/Berlin", start="21:00", end="08:00") == dt.datetime(
        2026, 11, 24, 7, 0, tzinfo=UTC
    )
    assert quiet_until(NOW, tz_name="Europe/Berlin", start="21:00", end="08:00") is None
    assert (
        quiet_until(NOW, tz_name="Nowhere/Invalid", start="13:00", end="14:00") is None
    )  # unknown zone -> UTC
    assert quiet_until(NOW, tz_name="Europe/Berlin", start="13:00", end="14:00") == dt.datetime(
        2026, 11, 23, 13, 0, tzinfo=UTC
    )


def test_local_day_starts_at_local_midnight() -> None:
    assert local_day_start(NOW, "Asia/Tokyo") == dt.datetime(
        2026, 11, 22, 15, 0, tzinfo=UTC
    )  # 21:00 in Tokyo


def test_channel_plan_follows_order_consent_and_availability() -> None:
    addresses = {"email": "m@example.com", "sms": "+491", "whatsapp": "+491"}
    choices, reason = plan_channels(
        order=["whatsapp", "sms", "email"],
        addresses=addresses,
        consents={("sms", "service"): False},
        topic="service",
        available={"sms", "email", "outbox"},
    )
    assert [c.channel for c in choices] == ["email"] and reason is None  # no whatsapp provider, sms said no
    choices, reason = plan_channels(
        order=["sms"],
        addresses=addresses,
        consents={("sms", "service"): False},
        topic="service",
        available={"sms"},
    )
    assert (choices, reason) == ([], "opted_out")
    choices, reason = plan_channels(
        order=["messenger"], addresses=addresses, consents={}, topic="service", available={"messenger"}
    )
    assert (choices, reason) == ([], "no_channel")
    assert not is_consented({}, "email", "marketing") and is_consented({}, "email", "service")


def test_reason_gone_and_keywords_and_locale() -> None:
    assert reason_gone(
        cancel_if_shipment_status=["Delivered"],
        cancel_if_order_status=[],
        shipment_status="Delivered",
        order_status=None,
    )
    assert (
        reason_gone(
            cancel_if_shipment_status=["Delivered"],
            cancel_if_order_status=[],
            shipment_status="InTransit",
            order_status=None,
        )
        is None
    )
    assert (
        keyword_consent(" stop ") is False
        and keyword_consent("STOPALL") is False
        and keyword_consent("Unsubscribe") is False
    )
    assert keyword_consent("start") is True and keyword_consent("stop sending me the wrong size") is None
    assert (
        locale_of("de-AT", supported=("en", "de")) == "de" and locale_of("fr", supported=("en", "de")) == "en"
    )


def test_http_errors_are_classed_and_retry_after_honoured() -> None:
    assert classify_http(503, retry_after=None, body="", now=NOW).is_transient
    limited = classify_http(429, retry_after="120", body="", now=NOW)
    assert limited.is_transient and limited.retry_after_s == 120
    dated = classify_http(429, retry_after="Mon, 23 Nov 2026 12:01:00 GMT", body="", now=NOW)
    assert dated.retry_after_s == 60
    assert not classify_http(400, retry_after=None, body="invalid To", now=NOW).is_transient
    assert next_attempt_at(NOW, attempt=3, base_s=2, max_s=600, retry_after_s=None) == NOW + dt.timedelta(
        seconds=8
    )
    assert next_attempt_at(NOW, attempt=1, base_s=2, max_s=600, retry_after_s=30) == NOW + dt.timedelta(
        seconds=30
    )
    assert next_attempt_at(NOW, attempt=20, base_s=2, max_s=600, retry_after_s=None) == NOW + dt.timedelta(
        seconds=600
    )
