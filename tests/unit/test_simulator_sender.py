"""The live sender against fake provider endpoints (httpx.MockTransport): signatures, retries, skips."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl

import httpx
import orjson

from doorstep.security.signatures import hmac_sha256_b64, twilio_signature
from doorstep.simulator.live import LiveStats, Sender, Targets, stream

SECRET = "s3cret"


def _sender(handler, **kw) -> Sender:  # type: ignore[no-untyped-def]
    targets = Targets(
        base_url="http://doorstep.test",
        write_key="wk_1",
        aftership_secret=SECRET,
        twilio_auth_token=SECRET,
        **kw,
    )
    return Sender(
        targets, client=httpx.Client(transport=httpx.MockTransport(handler)), now=lambda: 1_800_000_000.0
    )


def test_aftership_webhook_is_signed_over_the_exact_body_and_stamped_now() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    sender = _sender(handler)
    sender.aftership({"event": "tracking_update", "event_id": "e1", "msg": {"slug": "dhl"}, "ts": 1})

    request = seen[0]
    assert request.url.path == "/webhooks/aftership"
    assert request.headers["aftership-hmac-sha256"] == hmac_sha256_b64(SECRET, request.content)
    assert orjson.loads(request.content)["ts"] == 1_800_000_000
    assert sender.stats.sent == {"aftership": 1}


def test_twilio_form_carries_a_valid_signature_for_the_public_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="<Response/>")

    form = {
        "MessageSid": "SM1",
        "From": "whatsapp:+4915112345678",
        "To": "whatsapp:+4934112345678",
        "Body": "wo ist mein paket?",
        "NumMedia": "0",
    }
    _sender(handler).twilio(form)

    params = parse_qsl(seen[0].content.decode())
    assert dict(params) == form
    assert seen[0].headers["x-twilio-signature"] == twilio_signature(
        SECRET, "http://doorstep.test/webhooks/twilio", params
    )


def test_busy_server_is_retried_until_it_accepts() -> None:
    answers = iter(
        [
            httpx.Response(503),
            httpx.Response(429, headers={"retry-after": "0"}),
            httpx.Response(200, json={"success": True, "accepted": 2, "duplicates": 0}),
        ]
    )

    sender = _sender(lambda request: next(answers))
    sender.segment([{"type": "track"}, {"type": "track"}])

    assert sender.stats.sent == {"segment": 2}
    assert sender.stats.retries == 2
    assert sender.stats.rejected == {}


def test_missing_endpoint_is_noted_once_and_skipped() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(404, json={"detail": f"no such endpoint: POST {request.url.path}"})

    sender = _sender(handler, api_key="sk_1")
    for _ in range(3):
        sender.feedback(
            {
                "kind": "review",
                "order_id": "o1",
                "rating": 5,
                "comment": "",
                "submitted_at": "x",
                "feedback_id": "rev-1",
            }
        )

    assert calls == ["/api/v1/reviews.csv"]
    assert sender.stats.skipped == {"reviews": 3}
    assert sender.stats.sent == {}


def test_a_survey_for_an_unknown_order_is_one_rejection_not_a_missing_endpoint() -> None:
    from doorstep.orders.model import order_id_for
    from doorstep.security.links import verify

    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404, json={"detail": "this survey is no longer available"})

    sender = _sender(handler, secret_key="k" * 40)
    row = {"kind": "survey", "order_id": "ML-1-100001", "csat": 4, "nps": 8, "comment": "ok"}
    sender.feedback(row)
    sender.feedback(row)

    assert len(paths) == 2 and "surveys" not in sender.missing
    assert verify("k" * 40, "survey", paths[0].removeprefix("/s/")) == order_id_for("ML-1-100001")
    assert sender.stats.rejected == {"surveys": 2}


def test_rejections_are_counted_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, json={"detail": "bad signature"})

    sender = _sender(handler)
    sender.aftership({"event": "tracking_update", "ts": 1})

    assert len(calls) == 1
    assert sender.stats.rejected == {"aftership": 1}
    assert "bad signature" in sender.stats.first_rejections[0]


def test_segment_partial_rejections_are_counted() -> None:
    sender = _sender(
        lambda request: httpx.Response(
            200,
            json={
                "success": True,
                "accepted": 1,
                "duplicates": 0,
                "rejected": [{"index": 1, "detail": "type: bad"}],
            },
        )
    )
    sender.segment([{"type": "track"}, {"type": "nope"}])

    assert sender.stats.sent == {"segment": 1}
    assert sender.stats.rejected == {"segment": 1}


def test_stream_sends_an_order_before_the_carrier_scans_of_it() -> None:
    order: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/batch":
            order.append(f"batch:{len(orjson.loads(request.content)['batch'])}")
            return httpx.Response(200, json={"success": True})
        order.append(request.url.path)
        return httpx.Response(200)

    completed = {"type": "track", "event": "Order Completed", "properties": {"order_id": "o1"}}
    timeline = [
        (100, "segment", {"n": 1}),
        (101, "aftership", {"msg": {"order_id": "o0"}, "ts": 101}),
        (102, "segment", completed),
        (103, "aftership", {"msg": {"order_id": "o1"}, "ts": 103}),
        (104, "segment", {"n": 3}),
        (105, "twilio", {"MessageSid": "SM1"}),
    ]
    stats = stream(iter(timeline), _sender(handler), speed=1e9, real_now=lambda: 1e12, lanes=1)

    # a scan of another order does not hold the shop's batch back; a scan of o1 waits for o1's order
    assert order == ["/webhooks/aftership", "batch:2", "/webhooks/aftership", "/webhooks/twilio", "batch:1"]
    assert isinstance(stats, LiveStats) and stats.sim_time == 105


def test_parallel_lanes_keep_each_shipments_order() -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        with lock:
            seen.append((body["msg"]["tracking_number"], body["n"]))
        return httpx.Response(200)

    timeline = [
        (i, "aftership", {"msg": {"tracking_number": f"T{i % 3}"}, "n": i, "ts": i}) for i in range(60)
    ]
    stats = stream(iter(timeline), _sender(handler), speed=1e9, real_now=lambda: 1e12, lanes=4)

    assert stats.sent == {"aftership": 60}
    for number in ("T0", "T1", "T2"):
        ns = [n for t, n in seen if t == number]
        assert ns == sorted(ns) and len(ns) == 20


def test_stream_never_runs_ahead_of_the_real_clock() -> None:
    sent: list[int] = []
    stop = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content)["ts"])
        return httpx.Response(200)

    sender = _sender(handler)
    sender.stop = stop
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    # the second item lies an hour after "now": with the clock capped it must wait, and the stop ends it
    stream(
        iter([(10, "aftership", {"ts": 10}), (3_610, "aftership", {"ts": 3_610})]),
        sender,
        speed=1e9,
        stop=stop,
        real_now=lambda: 10.0,
    )
    timer.cancel()

    assert sent == [1_800_000_000]
