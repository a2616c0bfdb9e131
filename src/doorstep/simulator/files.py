"""Writing a world to files in the exact shapes Doorstep's endpoints take, chunk by chunk, in parallel.

Layout of DIR (every file is UTF-8; JSONL has one JSON document per line; times are ISO 8601 UTC):

- segment_batches.jsonl   one body for POST /v1/batch per line: {"batch": [<=100 Segment calls]}
- aftership_webhooks.jsonl one body for POST /webhooks/aftership per line (sign it: header aftership-hmac-sha256)
- twilio_inbound.jsonl    one Twilio inbound-message webhook per line, as a flat object of its form fields
                          (POST it form-encoded to /webhooks/twilio with X-Twilio-Signature)
- email_inbound.jsonl     one inbound-parse JSON body (Postmark field names) per line for POST /webhooks/email
- chat_messages.jsonl     web-chat messages in Doorstep's canonical inbound-message shape
- feedback.csv            surveys and reviews together, with the customer and locale (for analysis)
- reviews.csv             reviews only, exactly as POST /api/v1/reviews.csv takes them
                          (order_id,rating,comment,submitted_at,external_id; order_id = the shop's order number)
- surveys.jsonl           survey answers {order_id, csat, nps, comment, submitted_at, external_id}: POST csat,
                          nps and comment as a form to the order's signed survey link /s/<token>
- truth_shipments.csv, truth_contacts.csv, truth_orders.csv   the ground truth
- customers.csv, products.csv, manifest.json

Chunks are built in worker processes (each from its own seed, so the bytes do not depend on how many run),
and each worker appends its chunk to the files when its turn comes, so the files are in chunk order and the
bytes never cross a pipe.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from doorstep.simulator.world import Chunk, Plan, build_chunk

SEGMENT_BATCH_EVENTS = 100  # well under the 500 KB batch limit with simulated events of ~1 KB

FEEDBACK_COLUMNS = [
    "feedback_id",
    "kind",
    "order_id",
    "customer_id",
    "email",
    "rating",
    "csat",
    "nps",
    "comment",
    "product_id",
    "locale",
    "submitted_at",
]
TRUTH_SHIPMENT_COLUMNS = [
    "order_id",
    "customer_id",
    "carrier",
    "tracking_number",
    "lane",
    "destination_country",
    "peak",
    "placed_at",
    "dispatched_at",
    "promised_from",
    "promised_to",
    "first_attempt_at",
    "delivered_at",
    "outcome",
    "delayed",
    "delay_days",
    "late",
    "late_hours",
    "failed_first_attempt",
    "attempts",
    "lost",
    "damaged",
    "returned_to_sender",
    "dispatch_late",
]
TRUTH_CONTACT_COLUMNS = [
    "contact_id",
    "message_id",
    "order_id",
    "customer_id",
    "channel",
    "sent_at",
    "cause",
    "owner",
    "is_follow_up",
    "language",
    "text",
]
TRUTH_ORDER_COLUMNS = [
    "order_id",
    "customer_id",
    "placed_at",
    "total",
    "currency",
    "items",
    "delivered",
    "on_time",
    "contacted",
    "contacts",
    "returned",
    "return_reason",
    "csat",
    "nps",
    "review_rating",
    "happy",
    "perfect",
    "fell_off_at",
    "fell_off_reason",
    "owner",
]
CUSTOMER_COLUMNS = [
    "user_id",
    "name",
    "email",
    "phone",
    "locale",
    "timezone",
    "country",
    "region",
    "city",
    "postcode",
    "line1",
    "preferred_channel",
    "marketing_consent",
    "whatsapp_opt_in",
]
PRODUCT_COLUMNS = ["product_id", "sku", "name", "category", "price", "currency"]

FILES = {
    "segment": "segment_batches.jsonl",
    "aftership": "aftership_webhooks.jsonl",
    "twilio": "twilio_inbound.jsonl",
    "emails": "email_inbound.jsonl",
    "messages": "chat_messages.jsonl",
    "feedback": "feedback.csv",
    "reviews": "reviews.csv",
    "surveys": "surveys.jsonl",
    "truth_shipments": "truth_shipments.csv",
    "truth_contacts": "truth_contacts.csv",
    "truth_orders": "truth_orders.csv",
}
REVIEW_COLUMNS = ["order_id", "rating", "comment", "submitted_at", "external_id"]  # POST /api/v1/reviews.csv
CSV_COLUMNS = {
    "feedback": FEEDBACK_COLUMNS,
    "reviews": REVIEW_COLUMNS,
    "truth_shipments": TRUTH_SHIPMENT_COLUMNS,
    "truth_contacts": TRUTH_CONTACT_COLUMNS,
    "truth_orders": TRUTH_ORDER_COLUMNS,
}


@dataclass
class WriteResult:
    out: Path
    orders: int
    counts: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0


def _csv_bytes(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    pick = operator.itemgetter(*columns)  # csv.writer on tuples: several times faster than DictWriter
    csv.writer(buffer, lineterminator="\n").writerows(map(pick, rows))
    return buffer.getvalue().encode()


def serialise_chunk(chunk: Chunk) -> tuple[dict[str, bytes], dict[str, int]]:
    """A chunk's bytes per output file, each stream in simulated-time order, plus item counts."""
    out: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    dumps = orjson.dumps
    segment = sorted(chunk.segment, key=lambda item: item[0])
    parts = []
    for i in range(0, len(segment), SEGMENT_BATCH_EVENTS):
        parts.append(dumps({"batch": [event for _t, event in segment[i : i + SEGMENT_BATCH_EVENTS]]}))
    out["segment"] = b"\n".join(parts) + b"\n" if parts else b""
    counts["segment_events"] = len(segment)
    counts["segment_batches"] = len(parts)
    updates = sorted(chunk.aftership, key=lambda item: item[0])
    out["aftership"] = b"".join([update.dumps() for _t, update in updates])
    counts["aftership"] = len(updates)
    for name in ("twilio", "emails", "messages"):
        items = sorted(getattr(chunk, name), key=lambda item: item[0])
        out[name] = b"".join([dumps(payload, option=orjson.OPT_APPEND_NEWLINE) for _t, payload in items])
        counts[name] = len(items)
    feedback = [row for _t, row in sorted(chunk.feedback, key=lambda item: item[0])]
    out["feedback"] = _csv_bytes(feedback, FEEDBACK_COLUMNS)
    counts["feedback"] = len(feedback)
    reviews = [review_row(row) for row in feedback if row["kind"] == "review"]
    out["reviews"] = _csv_bytes(reviews, REVIEW_COLUMNS)
    counts["reviews"] = len(reviews)
    surveys = [survey_answer(row) for row in feedback if row["kind"] == "survey"]
    out["surveys"] = b"".join([dumps(answer, option=orjson.OPT_APPEND_NEWLINE) for answer in surveys])
    counts["surveys"] = len(surveys)
    for name in ("truth_shipments", "truth_contacts", "truth_orders"):
        rows = getattr(chunk, name)
        out[name] = _csv_bytes(rows, CSV_COLUMNS[name])
        counts[name] = len(rows)
    return out, counts


def review_row(row: dict[str, Any]) -> dict[str, Any]:
    """A review as the review CSV import takes it (order_id is the shop's order number)."""
    return {
        "order_id": row["order_id"],
        "rating": row["rating"],
        "comment": row["comment"],
        "submitted_at": row["submitted_at"],
        "external_id": row["feedback_id"],
    }


def survey_answer(row: dict[str, Any]) -> dict[str, Any]:
    """A survey answer: POST csat, nps, comment as a form to the order's signed survey link /s/<token>."""
    return {
        "order_id": row["order_id"],
        "csat": row["csat"],
        "nps": row["nps"],
        "comment": row["comment"],
        "submitted_at": row["submitted_at"],
        "external_id": row["feedback_id"],
    }


_PLAN: Plan | None = None
_OUT: Path | None = None
_TURN: Any = None  # multiprocessing.Value: the chunk whose turn it is to be appended
_TURN_CHANGED: Any = None  # multiprocessing.Condition guarding _TURN


def _work(k: int) -> tuple[int, dict[str, bytes], dict[str, int]]:
    assert _PLAN is not None
    data, counts = serialise_chunk(build_chunk(_PLAN, k))
    return k, data, counts


def _work_and_append(k: int) -> tuple[int, int, dict[str, int]]:
    """In a worker: build chunk k, wait for its turn, append its bytes to the files itself (so the bytes never
    cross a pipe), then pass the turn on. Appends happen strictly in chunk order."""
    assert _OUT is not None
    _k, data, counts = _work(k)
    with _TURN_CHANGED:
        _TURN_CHANGED.wait_for(lambda: _TURN.value == k)
        written = 0
        for name, payload in data.items():
            if payload:
                with open(_OUT / FILES[name], "ab") as handle:
                    handle.write(payload)
                written += len(payload)
        _TURN.value = k + 1
        _TURN_CHANGED.notify_all()
    return k, written, counts


def write_files(
    plan: Plan,
    out: Path,
    *,
    processes: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> WriteResult:
    """Writes the world of `plan` under `out` (created if needed). `on_progress(orders_done)` after each chunk."""
    global _PLAN, _OUT, _TURN, _TURN_CHANGED
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    processes = processes or min(os.cpu_count() or 1, 4)
    result = WriteResult(out=out, orders=plan.orders)
    for name, filename in FILES.items():
        header = (",".join(CSV_COLUMNS[name]) + "\n").encode() if name in CSV_COLUMNS else b""
        (out / filename).write_bytes(header)
    _PLAN, _OUT = plan, out
    try:
        chunks = range(plan.chunk_count)
        if processes > 1 and plan.chunk_count > 1:
            context = multiprocessing.get_context("fork")
            _TURN = context.Value("q", 0, lock=False)
            _TURN_CHANGED = context.Condition()
            with context.Pool(processes) as pool:
                for k, written, counts in pool.imap(_work_and_append, chunks, chunksize=1):
                    result.bytes_written += written
                    _count(result, counts, plan, k, on_progress)
        else:
            handles = {
                name: open(out / filename, "ab", buffering=8 * 1024 * 1024)  # noqa: SIM115 - closed in the finally below
                for name, filename in FILES.items()
            }
            try:
                for k in chunks:
                    _k, data, counts = _work(k)
                    for name, payload in data.items():
                        handles[name].write(payload)
                        result.bytes_written += len(payload)
                    _count(result, counts, plan, k, on_progress)
            finally:
                for handle in handles.values():
                    handle.close()
    finally:
        _PLAN = _OUT = _TURN = _TURN_CHANGED = None
    _write_reference(plan, out)
    result.seconds = time.perf_counter() - started
    manifest = {
        "profile": plan.profile.name,
        "seed": plan.seed,
        "orders": plan.orders,
        "customers": plan.customer_count,
        "start": plan.start.isoformat(),
        "days": plan.days,
        "files": FILES | {"customers": "customers.csv", "products": "products.csv"},
        "counts": dict(sorted(result.counts.items())),
        "endpoints": {
            "segment": "POST /v1/batch (Basic auth: write key as user name), one line = one body",
            "aftership": "POST /webhooks/aftership, header aftership-hmac-sha256 = base64 HMAC-SHA256(body, secret)",
            "twilio": "POST /webhooks/twilio form-encoded, header X-Twilio-Signature",
            "emails": "POST /webhooks/email JSON, Authorization: Bearer <inbound email secret>",
            "reviews": "POST /api/v1/reviews.csv (text/csv, Authorization: Bearer <secret key with orders:write>)",
            "surveys": "POST /s/<signed token for the order> form fields csat, nps, comment",
        },
    }
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return result


def _count(
    result: WriteResult, counts: dict[str, int], plan: Plan, k: int, on_progress: Callable[[int], None] | None
) -> None:
    for name, value in counts.items():
        result.counts[name] = result.counts.get(name, 0) + value
    if on_progress is not None:
        on_progress(min(plan.orders, (k + 1) * plan.chunk_orders))


def _write_reference(plan: Plan, out: Path) -> None:
    with open(out / "customers.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=CUSTOMER_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for c in range(plan.customer_count):
            info = plan.customer(c)
            info = {
                **info,
                "phone": info["phone"] or "",
                "marketing_consent": int(info["marketing_consent"]),
                "whatsapp_opt_in": int(info["whatsapp_opt_in"]),
            }
            writer.writerow(info)
    with open(out / "products.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PRODUCT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, name in enumerate(plan.product_names):
            writer.writerow(
                {
                    "product_id": f"P{i + 1:05d}",
                    "sku": f"SKU-{i + 1:05d}",
                    "name": name,
                    "category": plan.categories[int(plan.product_category[i])],
                    "price": f"{int(plan.product_price_minor[i]) / 100:.2f}",
                    "currency": plan.profile.currency,
                }
            )
