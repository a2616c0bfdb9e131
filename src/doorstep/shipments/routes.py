"""Tracking ingest edges: AfterShip and Karrio webhooks, Doorstep's generic JSON endpoint and CSV upload.

Each edge authenticates (signature in constant time, or a secret key with shipments:write), validates the
whole body (a 4xx names the first bad field and nothing is stored), appends to the event log and answers.
The worker projects the log into shipments (handlers.project_*).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from doorstep.context import AppContext, get_ctx
from doorstep.errors import Forbidden, Unauthenticated
from doorstep.ingest.log import LogEntry, append
from doorstep.security.model import Scope
from doorstep.security.signatures import constant_time_equals, timestamped_signature
from doorstep.shipments.carriers import aftership, generic, karrio
from doorstep.shipments.carriers.common import invalid
from doorstep.shipments.errors import BadSignature, PayloadTooLarge, WebhookNotConfigured
from doorstep.shipments.handlers import code_tables

router = APIRouter(tags=["tracking"])

MAX_BODY_BYTES = 2 * 1024 * 1024  # a tracking with hundreds of checkpoints, or 1,000 generic events
SIGNATURE_TOLERANCE_S = 300  # generic endpoint: signed timestamps older than this are replays
TIMESTAMP_HEADER = "x-doorstep-timestamp"
SIGNATURE_HEADER = "x-doorstep-signature"


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes")
    if not body:
        raise invalid("body", "empty: send a JSON object")
    return body


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid("body", f"malformed JSON: {exc}") from None


async def _append(ctx: AppContext, entry: LogEntry) -> bool:
    """Appends one entry; durable (committed) when it returns. Shares a commit with concurrent requests when
    the pipeline's group committer (`services["log_writer"]`) is there."""
    received_at = ctx.clock.now()

    def write(conn: Connection) -> int:
        return append(conn, [entry], received_at=received_at)

    writer = ctx.services.get("log_writer")
    if writer is not None:
        new = await writer.submit(write)
    else:
        new = await run_in_threadpool(_write_alone, ctx, write)
    wake = ctx.services.get("wake_worker")
    if wake is not None and new:
        wake()
    return bool(new)


def _write_alone(ctx: AppContext, write: Any) -> int:
    with ctx.engine.begin() as conn:
        return int(write(conn))


def _answer(new: bool, **extra: Any) -> JSONResponse:
    return JSONResponse({"accepted": True, "duplicate": not new, **extra})


@router.post("/webhooks/aftership", summary="AfterShip tracking webhook (tracking_update, edd_revise)")
async def aftership_webhook(request: Request) -> JSONResponse:
    ctx = get_ctx(request)
    secret = ctx.settings.aftership_webhook_secret
    if not secret:
        raise WebhookNotConfigured(
            "AfterShip webhook secret is not set: set DOORSTEP_AFTERSHIP_WEBHOOK_SECRET"
        )
    body = await _body(request)
    aftership.verify(secret, body, request.headers.get(aftership.SIGNATURE_HEADER))
    data = _json(body)
    event, event_id, sent_at = aftership.check_envelope(data, now=ctx.clock.now())
    key = "aftership"
    if event in aftership.TRACKING_EVENTS:
        parsed = aftership.parse_tracking(data["msg"])  # validate everything before storing anything
        key = f"tracking:{parsed.carrier}:{parsed.tracking_number}"
    entry = LogEntry("aftership", event_id, event[:32], None, key, sent_at, data)
    new = await _append(ctx, entry)
    return _answer(new, event_id=event_id)


@router.post("/webhooks/karrio", summary="Karrio tracker webhook (tracker.updated)")
async def karrio_webhook(request: Request) -> JSONResponse:
    ctx = get_ctx(request)
    secret = ctx.settings.karrio_webhook_secret
    if not secret:
        raise WebhookNotConfigured("Karrio webhook secret is not set: set DOORSTEP_KARRIO_WEBHOOK_SECRET")
    body = await _body(request)
    karrio.verify(
        secret,
        body,
        request.headers.get(karrio.SIGNATURE_HEADER),
        request.headers.get(karrio.LEGACY_SECRET_HEADER),
    )
    data = _json(body)
    event, message_id, sent_at = karrio.check_envelope(data, body, now=ctx.clock.now())
    key = "karrio"
    if event in karrio.TRACKER_EVENTS:
        parsed = karrio.parse_tracker(data["data"], code_tables(ctx))
        key = f"tracking:{parsed.carrier}:{parsed.tracking_number}"
    entry = LogEntry("karrio", message_id, event[:32], None, key, sent_at, data)
    new = await _append(ctx, entry)
    return _answer(new)


def _authorise_generic(ctx: AppContext, request: Request, body: bytes) -> None:
    """A secret API key with shipments:write, or an HMAC signature with DOORSTEP_TRACKING_WEBHOOK_SECRET:
    X-Doorstep-Timestamp (unix seconds) and X-Doorstep-Signature (hex HMAC-SHA256 of "{timestamp}.{body}")."""
    from doorstep.security.deps import _principal_from_key

    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        principal = _principal_from_key(ctx, auth[7:].strip())
        if principal is None:
            raise Unauthenticated(
                "the API key is unknown or revoked; create one with `doorstep keys create "
                "--scope shipments:write`"
            )
        if not principal.has_scope(Scope.WRITE_SHIPMENTS):
            raise Forbidden(f"{principal.name} may not post tracking events: it needs scope shipments:write")
        return
    signature = request.headers.get(SIGNATURE_HEADER)
    stamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise BadSignature(
            "send `Authorization: Bearer <secret key with shipments:write>`, or sign the body: "
            "X-Doorstep-Timestamp and X-Doorstep-Signature"
        )
    secret = ctx.settings.tracking_webhook_secret
    if not secret:
        raise WebhookNotConfigured(
            "signed tracking events need DOORSTEP_TRACKING_WEBHOOK_SECRET; or use an API key"
        )
    try:
        ts = int(stamp)
    except ValueError:
        raise BadSignature(f"{TIMESTAMP_HEADER}: {stamp!r} is not unix seconds") from None
    now_s = ctx.clock.now().timestamp()
    if abs(now_s - ts) > SIGNATURE_TOLERANCE_S:
        raise BadSignature(
            f"{TIMESTAMP_HEADER}: signed {int(now_s - ts)} s ago; the limit is "
            f"{SIGNATURE_TOLERANCE_S} s (stale or replayed)"
        )
    expected = timestamped_signature(secret, ts, body)
    sent = signature.strip().removeprefix("v1=").removeprefix("sha256=")
    if not constant_time_equals(expected, sent):
        raise BadSignature(f"{SIGNATURE_HEADER} does not match the body signed with the tracking secret")


async def _store_generic(ctx: AppContext, events: list[dict[str, Any]], digest: str) -> tuple[bool, int, int]:
    payload = {"events": events}
    parsed = generic.parse_events(payload, code_tables(ctx))  # all or nothing: raises naming the field
    first = parsed[0]
    key = f"tracking:{first.carrier}:{first.tracking_number}" if len(parsed) == 1 else "tracking:batch"
    entry = LogEntry("tracking", f"sha256:{digest}", "tracking_events", None, key, ctx.clock.now(), payload)
    return await _append(ctx, entry), sum(len(p.scans) for p in parsed), len(parsed)


@router.post("/api/v1/tracking-events", summary="Post carrier scans in Doorstep's generic JSON format")
async def post_tracking_events(request: Request) -> JSONResponse:
    """Body: `{"events": [{carrier, tracking_number, occurred_at, status | code, subtag?, message?, location?,
    order_id?, ...}]}`, at most 1,000 events; see doorstep.shipments.carriers.generic for every field.
    Authenticate with a secret key (scope shipments:write) or an HMAC signature. Re-sending the same body is
    answered as a duplicate; a scan already known is skipped."""
    ctx = get_ctx(request)
    body = await _body(request)
    _authorise_generic(ctx, request, body)
    events = generic.events_of(_json(body))
    new, scans, trackings = await _store_generic(ctx, events, hashlib.sha256(body).hexdigest())
    return _answer(new, events=scans, tracking_numbers=trackings)


@router.post("/api/v1/tracking-events.csv", summary="Upload carrier scans as CSV")
async def post_tracking_csv(request: Request) -> JSONResponse:
    """A header row then one scan per row; columns: carrier, tracking_number, occurred_at, status, subtag,
    code, message, city, region, country, postcode, latitude, longitude, order_id, service,
    estimated_delivery. Up to 1,000 rows per request (larger files: `doorstep shipments import-csv`)."""
    ctx = get_ctx(request)
    body = await _body(request)
    _authorise_generic(ctx, request, body)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid("body", "CSV must be UTF-8 text") from None
    events = generic.csv_to_events(text)
    generic.events_of({"events": events})
    new, scans, trackings = await _store_generic(ctx, events, hashlib.sha256(body).hexdigest())
    return _answer(new, events=scans, tracking_numbers=trackings)
