"""The Segment-compatible HTTP Tracking API: /v1/identify, track, page, screen, group, alias, batch.

SDKs work unchanged by pointing their host here. The edge authenticates the write key, validates, appends to
the log and answers; projection into profiles and orders happens in the worker.
"""

from __future__ import annotations

import base64
import time
import zlib
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, select, tuple_
from starlette.concurrency import run_in_threadpool

from doorstep.context import AppContext, get_ctx
from doorstep.db.group_commit import GroupCommitter
from doorstep.ingest.errors import BadWriteKey, IngestError, PayloadTooLarge, ReplayedMessageId
from doorstep.ingest.log import LogEntry, append
from doorstep.ingest.segment import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Accepted,
    Rejected,
    parse_time,
    replay_fingerprint,
    validate_event,
)
from doorstep.ingest.tables import event_log
from doorstep.security.keys import find_key

router = APIRouter(tags=["ingest"])

SOURCE = "segment"
WRITE_KEY_CACHE_TTL_S = 30.0
WRITE_KEY_CACHE_MAX = (
    10_000  # unknown keys are cached too; a flood of random keys must not grow memory forever
)


def _check_write_key(ctx: AppContext, key: str | None) -> None:
    if not key:
        raise BadWriteKey(
            "no write key: send it as the Basic-auth user name, or as `writeKey` in the body",
            errors=[{"field": "writeKey", "message": "required"}],
        )
    cache: dict[str, tuple[float, bool]] = ctx.cache.setdefault("write_keys", {})
    hit = cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        with ctx.read_engine.connect() as conn:
            row = find_key(conn, key)
        is_valid = (
            row is not None and row.kind in ("write", "secret") and "ingest" in (row.scopes or [])
        ) or (row is not None and row.kind == "secret" and "admin" in (row.scopes or []))
        hit = (time.monotonic() + WRITE_KEY_CACHE_TTL_S, bool(is_valid))
        if len(cache) >= WRITE_KEY_CACHE_MAX:
            cache.clear()
        cache[key] = hit
    if not hit[1]:
        raise BadWriteKey(
            "the write key is unknown or revoked: create one with `doorstep keys create --kind write`",
            errors=[{"field": "writeKey", "message": "unknown or revoked"}],
        )


def _basic_user(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise IngestError(
            "Authorization: malformed Basic credentials; send base64 of '<write key>:'",
            errors=[{"field": "Authorization", "message": "malformed Basic credentials"}],
        ) from None
    return decoded.split(":", 1)[0] or None


def _too_large(size: int | str, limit: int, limit_name: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request is {size} bytes; the limit is {limit_name}: split it into smaller calls",
        limit=limit_name,
        limit_bytes=limit,
    )


async def _read_body(request: Request, limit: int, limit_name: str) -> bytes:
    """The body, read no further than the limit (a huge upload is refused before it is held in memory).

    gzip and deflate bodies (rudder-sdk-python and Segment's `gzip=True` send gzip) are inflated, again no
    further than the limit: the limits apply to the JSON, so a small bomb cannot expand past them.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(length, limit, limit_name)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit}", limit, limit_name)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise IngestError(
            f"Content-Encoding {encoding!r} is not supported: send identity, gzip or deflate",
            errors=[{"field": "Content-Encoding", "message": "must be identity, gzip or deflate"}],
        )
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise IngestError(f"body is not valid {encoding}: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise _too_large(f"more than {limit} (inflated)", limit, limit_name)
    return inflated


async def _read_json(request: Request, limit: int, limit_name: str) -> tuple[Any, int]:
    body = await _read_body(request, limit, limit_name)
    if not body.strip():
        raise IngestError("empty body: send a JSON object", errors=[{"field": "", "message": "empty body"}])
    try:
        return orjson.loads(body), len(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(
            f"malformed JSON: {exc}", errors=[{"field": "", "message": f"malformed JSON: {exc}"}]
        ) from None


def _replays(conn: Connection, accepted: list[Accepted]) -> list[Accepted]:
    """The accepted calls whose messageId is already stored with different content (not a retry)."""
    stored: dict[str, dict[str, Any]] = {}
    ids = [a.message_id for a in accepted]
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(event_log.c.message_id, event_log.c.payload).where(
                tuple_(event_log.c.source, event_log.c.message_id).in_(
                    [(SOURCE, i) for i in ids[start : start + 500]]
                )
            )
        ).all()
        stored.update({row.message_id: row.payload for row in rows})
    return [
        a
        for a in accepted
        if a.message_id in stored
        and replay_fingerprint(stored[a.message_id]) != replay_fingerprint(a.payload)
    ]


async def _store(
    ctx: AppContext, accepted: list[Accepted], received_at: datetime
) -> tuple[int, list[Accepted]]:
    """Appends the calls; returns how many were new and the ones refused as replays. Durable (committed)
    when it returns.

    A call whose messageId is stored already is a retry when its content matches (counted as a duplicate)
    and a replay when it differs (refused, never stored over the first)."""
    entries = [
        LogEntry(SOURCE, a.message_id, a.type, a.name, a.partition_key, a.occurred_at, a.payload)
        for a in accepted
    ]

    def write(conn: Connection) -> tuple[int, list[Accepted]]:
        new = append(conn, entries, received_at=received_at)
        return new, (_replays(conn, accepted) if new < len(accepted) else [])

    writer: GroupCommitter | None = ctx.services.get("log_writer")
    if writer is not None:  # shares one commit (one fsync) with concurrent requests
        new, replays = await writer.submit(write)
    else:
        new, replays = await run_in_threadpool(_write_alone, ctx, write)
    wake = ctx.services.get("wake_worker")
    if wake is not None and new:
        wake()
    return new, replays


def _write_alone(ctx: AppContext, write: Any) -> Any:
    with ctx.engine.begin() as conn:
        return write(conn)


def _dedupe_in_batch(accepted: list[Accepted]) -> tuple[list[Accepted], list[Accepted], int]:
    """Within one batch the first call with a messageId wins: identical repeats are duplicates, different
    ones are replays."""
    first: dict[str, Accepted] = {}
    kept: list[Accepted] = []
    replays: list[Accepted] = []
    duplicates = 0
    for a in accepted:
        seen = first.get(a.message_id)
        if seen is None:
            first[a.message_id] = a
            kept.append(a)
        elif replay_fingerprint(seen.payload) == replay_fingerprint(a.payload):
            duplicates += 1
        else:
            replays.append(a)
    return kept, replays, duplicates


def _replay_error(message_id: str) -> dict[str, str]:
    return {
        "field": "messageId",
        "message": f"{message_id!r} was already used for a different call; give each call its own messageId",
    }


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
    new, replays = await _store(ctx, [result], received_at)
    if replays:
        _count(ctx, "rejected")
        error = _replay_error(result.message_id)
        raise ReplayedMessageId(f"messageId: {error['message']}", errors=[error])
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
        raise IngestError(
            "batch: expected an object with a `batch` array of events",
            errors=[{"field": "batch", "message": "required array"}],
        )
    _check_write_key(ctx, _basic_user(request) or body.get("writeKey"))
    received_at = ctx.clock.now()
    errors: list[dict[str, str]] = []
    batch_sent_at = parse_time(body.get("sentAt"), "sentAt", errors)
    if errors:
        raise IngestError(f"sentAt: {errors[0]['message']}", errors=errors)
    skew = timedelta(seconds=ctx.settings.max_future_skew_s)
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    positions: dict[int, int] = {}  # id(accepted call) -> its index in the batch
    # Segment lets a batch carry `context` and `integrations` for all its calls; a call's own values win.
    shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict) and body[k]}
    for index, event in enumerate(body["batch"]):
        size = len(orjson.dumps(event)) if isinstance(event, dict) else None
        if shared and isinstance(event, dict):
            event = {
                **event,
                **{
                    k: {**v, **(event[k] if isinstance(event.get(k), dict) else {})}
                    for k, v in shared.items()
                    if event.get(k) is None or isinstance(event.get(k), dict)
                },
            }
        result = validate_event(
            event,
            index=index,
            received_at=received_at,
            batch_sent_at=batch_sent_at,
            max_future_skew=skew,
            size_bytes=size,
        )
        if isinstance(result, Accepted):
            accepted.append(result)
            positions[id(result)] = index
        else:
            rejected.append(result)
    unique, replays, _in_batch_duplicates = _dedupe_in_batch(accepted)
    new, stored_replays = (await _store(ctx, unique, received_at)) if unique else (0, [])
    for replay in replays + stored_replays:
        rejected.append(
            Rejected(positions[id(replay)], replay.message_id, [_replay_error(replay.message_id)])
        )
    rejected.sort(key=lambda r: r.index)
    accepted_count = len(accepted) - len(replays) - len(stored_replays)
    duplicates = accepted_count - new
    rejected_view = [
        {"index": r.index, "messageId": r.message_id, "errors": r.errors, "detail": r.detail}
        for r in rejected
    ]
    _count(ctx, "rejected", len(rejected))
    if accepted_count == 0 and rejected:
        raise IngestError(
            f"all {len(rejected)} events were rejected; first: batch[{rejected[0].index}] {rejected[0].detail}",
            errors=[
                {"field": f"batch[{r.index}].{e['field']}".rstrip("."), "message": e["message"]}
                for r in rejected
                for e in r.errors
            ][:100],
            rejected=rejected_view,
        )
    _count(ctx, "accepted", accepted_count)
    _count(ctx, "duplicates", duplicates)
    response: dict[str, Any] = {"success": True, "accepted": accepted_count, "duplicates": duplicates}
    if rejected:
        response["rejected"] = rejected_view
    elapsed_ms = (time.perf_counter() - started) * 1000  # the benchmark reads server-side latency from this
    return JSONResponse(response, headers={"Server-Timing": f"app;dur={elapsed_ms:.2f}"})
