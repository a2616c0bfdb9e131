"""The Segment-compatible HTTP Tracking API: /v1/identify, track, page, screen, group, alias, batch.

SDKs work unchanged by pointing their host here. The edge authenticates the write key, validates, appends to
the log and answers; projection into profiles and orders happens in the worker.
"""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from doorstep.context import AppContext, get_ctx
from doorstep.db.group_commit import GroupCommitter
from doorstep.ingest.errors import BadWriteKey, IngestError, PayloadTooLarge
from doorstep.ingest.log import LogEntry, append
from doorstep.ingest.segment import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Accepted,
    Rejected,
    parse_time,
    validate_event,
)
from doorstep.security.keys import find_key

router = APIRouter(tags=["ingest"])

WRITE_KEY_CACHE_TTL_S = 30.0


def _check_write_key(ctx: AppContext, key: str | None) -> None:
    if not key:
        raise BadWriteKey(
            "no write key: send it as the Basic-auth user name, or as `writeKey` in the body"
        )
    cache: dict[str, tuple[float, bool]] = ctx.cache.setdefault("write_keys", {})
    hit = cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        with ctx.read_engine.connect() as conn:
            row = find_key(conn, key)
        is_valid = row is not None and row.kind in ("write", "secret") and "ingest" in (row.scopes or []) or (
            row is not None and row.kind == "secret" and "admin" in (row.scopes or [])
        )
        hit = (time.monotonic() + WRITE_KEY_CACHE_TTL_S, bool(is_valid))
        cache[key] = hit
    if not hit[1]:
        raise BadWriteKey("the write key is unknown or revoked: copy it from `doorstep keys list` or create one")


def _basic_user(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(auth[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        raise IngestError("Authorization: malformed Basic credentials") from None
    return decoded.split(":", 1)[0] or None


async def _read_json(request: Request, limit: int, limit_name: str) -> tuple[Any, int]:
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"request is {len(body)} bytes; the limit is {limit_name}", limit_bytes=limit)
    if not body:
        raise IngestError("empty body: send a JSON object")
    try:
        return orjson.loads(body), len(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"malformed JSON: {exc}") from None


async def _store(ctx: AppContext, accepted: list[Accepted], received_at: Any) -> int:
    """Appends and returns how many were new; durable (committed) when it returns."""
    entries = [
        LogEntry("segment", a.message_id, a.type, a.name, a.partition_key, a.occurred_at, a.payload)
        for a in accepted
    ]

    def write(conn: Connection) -> int:
        return append(conn, entries, received_at=received_at)

    writer: GroupCommitter | None = ctx.services.get("log_writer")
    if writer is not None:  # shares one commit with concurrent requests
        new = await writer.submit(write)
    else:
        new = await run_in_threadpool(_write_alone, ctx, write)
    wake = ctx.services.get("wake_worker")
    if wake is not None and new:
        wake()
    return new


def _write_alone(ctx: AppContext, write: Any) -> int:
    with ctx.engine.begin() as conn:
        return int(write(conn))


def _count(ctx: AppContext, name: str, value: int = 1) -> None:
    metrics = ctx.services.get("metrics")
    if metrics is not None:
        metrics.count(name, value)


async def _single(request: Request, event_type: str) -> JSONResponse:
    ctx = get_ctx(request)
    event, size = await _read_json(request, MAX_EVENT_BYTES, "32 KB per event")
    key = _basic_user(request) or (event.get("writeKey") if isinstance(event, dict) else None)
    _check_write_key(ctx, key)
    received_at = ctx.clock.now()
    result = validate_event(
        event,
        index=0,
        received_at=received_at,
        forced_type=event_type,
        max_future_skew=timedelta(seconds=ctx.settings.max_future_skew_s),
        size_bytes=size,
    )
    if isinstance(result, Rejected):
        _count(ctx, "rejected")
        raise IngestError(result.detail, errors=result.errors)
    new = await _store(ctx, [result], received_at)
    _count(ctx, "accepted")
    _count(ctx, "duplicates", 1 - new)
    return JSONResponse({"success": True})


@router.post("/v1/identify", summary="Segment identify")
async def identify(request: Request) -> JSONResponse:
    return await _single(request, "identify")


@router.post("/v1/track", summary="Segment track")
async def track(request: Request) -> JSONResponse:
    return await _single(request, "track")


@router.post("/v1/page", summary="Segment page")
async def page(request: Request) -> JSONResponse:
    return await _single(request, "page")


@router.post("/v1/screen", summary="Segment screen")
async def screen(request: Request) -> JSONResponse:
    return await _single(request, "screen")


@router.post("/v1/group", summary="Segment group")
async def group(request: Request) -> JSONResponse:
    return await _single(request, "group")


@router.post("/v1/alias", summary="Segment alias")
async def alias(request: Request) -> JSONResponse:
    return await _single(request, "alias")


@router.post("/v1/batch", summary="Segment batch (also /v1/import)")
@router.post("/v1/import", include_in_schema=False)
async def batch(request: Request) -> JSONResponse:
    started = time.perf_counter()
    ctx = get_ctx(request)
    body, _size = await _read_json(request, MAX_BATCH_BYTES, "500 KB per batch")
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise IngestError("batch: expected an object with a `batch` array of events", errors=[
            {"field": "batch", "message": "required array"}
        ])
    _check_write_key(ctx, _basic_user(request) or body.get("writeKey"))
    received_at = ctx.clock.now()
    errors: list[dict[str, str]] = []
    batch_sent_at = parse_time(body.get("sentAt"), "sentAt", errors)
    if errors:
        raise IngestError(f"sentAt: {errors[0]['message']}", errors=errors)
    skew = timedelta(seconds=ctx.settings.max_future_skew_s)
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    for index, event in enumerate(body["batch"]):
        size = len(orjson.dumps(event)) if isinstance(event, dict) and len(body["batch"]) > 1 else None
        result = validate_event(
            event,
            index=index,
            received_at=received_at,
            batch_sent_at=batch_sent_at,
            max_future_skew=skew,
            size_bytes=size,
        )
        (accepted if isinstance(result, Accepted) else rejected).append(result)  # type: ignore[arg-type]
    rejected_view = [
        {"index": r.index, "messageId": r.message_id, "errors": r.errors, "detail": r.detail} for r in rejected
    ]
    if not accepted and rejected:
        _count(ctx, "rejected", len(rejected))
        raise IngestError(
            f"all {len(rejected)} events were rejected; first: {rejected[0].detail}", rejected=rejected_view
        )
    new = await _store(ctx, accepted, received_at) if accepted else 0
    _count(ctx, "accepted", len(accepted))
    _count(ctx, "duplicates", len(accepted) - new)
    _count(ctx, "rejected", len(rejected))
    response: dict[str, Any] = {"success": True, "accepted": len(accepted), "duplicates": len(accepted) - new}
    if rejected:
        response["rejected"] = rejected_view
    elapsed_ms = (time.perf_counter() - started) * 1000
    return JSONResponse(response, headers={"Server-Timing": f"app;dur={elapsed_ms:.2f}"})
