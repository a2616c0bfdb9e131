"""The Segment spec at the edge: validation, clock-skew correction, replay fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doorstep.ingest.segment import (
    Accepted,
    Rejected,
    corrected_timestamp,
    replay_fingerprint,
    validate_event,
)

RECEIVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def check(event: object, **kwargs: object) -> Accepted | Rejected:
    return validate_event(event, index=0, received_at=RECEIVED, max_future_skew=DAY, **kwargs)  # type: ignore[arg-type]


def test_skew_correction_follows_the_spec() -> None:
    # device clock 2 h fast: recorded 10:58 device time, sent 11:00 device time, received 09:00 true time
    result = corrected_timestamp(
        timestamp=datetime(2026, 11, 23, 10, 58, tzinfo=UTC),
        sent_at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
        received_at=RECEIVED,
    )

    assert result == datetime(2026, 11, 23, 8, 58, tzinfo=UTC)


def test_without_sent_at_the_timestamp_is_taken_as_is_and_without_timestamp_receive_time() -> None:
    ts = datetime(2026, 11, 20, tzinfo=UTC)
    assert corrected_timestamp(timestamp=ts, sent_at=None, received_at=RECEIVED) == ts
    assert corrected_timestamp(timestamp=None, sent_at=None, received_at=RECEIVED) == RECEIVED


def test_batch_level_sent_at_corrects_each_event() -> None:
    result = check(
        {"type": "track", "event": "X", "userId": "u", "timestamp": "2026-11-23T10:58:00Z"},
        batch_sent_at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
    )

    assert isinstance(result, Accepted)
    assert result.occurred_at == datetime(2026, 11, 23, 8, 58, tzinfo=UTC)
    assert result.payload["originalTimestamp"] == "2026-11-23T10:58:00+00:00"
    assert result.payload["timestamp"] == "2026-11-23T08:58:00+00:00"
    assert result.payload["receivedAt"] == RECEIVED.isoformat()


def test_unknown_fields_are_kept_and_write_key_is_not() -> None:
    result = check({"type": "track", "event": "X", "userId": "u", "writeKey": "wk", "shopTier": {"level": 3}})

    assert isinstance(result, Accepted)
    assert result.payload["shopTier"] == {"level": 3}
    assert "writeKey" not in result.payload


def test_far_future_timestamp_is_rejected_naming_the_field() -> None:
    result = check({"type": "track", "event": "X", "userId": "u", "timestamp": "2026-11-30T00:00:00Z"})

    assert isinstance(result, Rejected)
    assert result.errors[0]["field"] == "timestamp"
    assert "in the future" in result.errors[0]["message"]


def test_missing_identity_wrong_types_and_names_are_each_named() -> None:
    result = check({"type": "track", "properties": [1], "context": {"traits": "x"}, "timestamp": 5})

    assert isinstance(result, Rejected)
    fields = {e["field"] for e in result.errors}
    assert fields == {"userId", "properties", "context.traits", "event", "timestamp"}


def test_forced_type_mismatch_is_rejected() -> None:
    result = check({"type": "identify", "userId": "u"}, forced_type="track")

    assert isinstance(result, Rejected)
    assert {"field": "type", "message": "must be 'track' on this endpoint"} in result.errors


def test_alias_and_group_need_their_ids() -> None:
    alias = check({"type": "alias", "anonymousId": "a"})
    group = check({"type": "group", "userId": "u", "groupId": ""})

    assert isinstance(alias, Rejected) and {e["field"] for e in alias.errors} == {"previousId", "userId"}
    assert isinstance(group, Rejected) and [e["field"] for e in group.errors] == ["groupId"]


def test_oversize_event_is_rejected_naming_the_limit() -> None:
    result = check({"type": "track", "event": "X", "userId": "u"}, size_bytes=40_000)

    assert isinstance(result, Rejected)
    assert "32 KB per event" in result.detail


def test_message_id_is_assigned_when_missing_or_empty_and_numbers_become_strings() -> None:
    missing = check({"type": "page", "anonymousId": "a", "messageId": "  "})
    numeric = check({"type": "page", "anonymousId": "a", "messageId": 42})

    assert isinstance(missing, Accepted) and missing.message_id.startswith("ds-")
    assert isinstance(numeric, Accepted) and numeric.message_id == "42"


def test_partition_key_prefers_user_id() -> None:
    both = check({"type": "page", "anonymousId": "a", "userId": "u"})
    anon = check({"type": "page", "anonymousId": "a"})

    assert isinstance(both, Accepted) and both.partition_key == "user:u"
    assert isinstance(anon, Accepted) and anon.partition_key == "anon:a"


def test_replay_fingerprint_ignores_send_and_receive_times_only() -> None:
    first = check({"type": "track", "event": "X", "userId": "u", "messageId": "m", "timestamp": "2026-11-23T08:00:00Z",
                   "sentAt": "2026-11-23T08:01:00Z"})
    retry = validate_event(
        {"type": "track", "event": "X", "userId": "u", "messageId": "m", "timestamp": "2026-11-23T08:00:00Z",
         "sentAt": "2026-11-23T08:05:00Z"},
        index=0, received_at=RECEIVED + timedelta(minutes=4), max_future_skew=DAY,
    )
    other = check({"type": "track", "event": "Y", "userId": "u", "messageId": "m", "timestamp": "2026-11-23T08:00:00Z"})

    assert isinstance(first, Accepted) and isinstance(retry, Accepted) and isinstance(other, Accepted)
    assert replay_fingerprint(first.payload) == replay_fingerprint(retry.payload)
    assert replay_fingerprint(first.payload) != replay_fingerprint(other.payload)
