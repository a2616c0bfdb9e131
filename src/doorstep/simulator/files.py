"""Writing a world to files in the exact shapes Doorstep's endpoints take, chunk by chunk, in parallel.

Layout of DIR (every file is UTF-8; JSONL has one JSON document per line; times are ISO 8601 UTC):

- segment_batches.jsonl   one body for POST /v1/batch per line: {"batch": [<=100 Segment calls]}
- aftership_webhooks.jsonl one body for POST /webhooks/aftership per line (sign it: header aftership-hmac-sha256)
- twilio_inbound.jsonl    one Twilio inbound-message webhook per line, as a flat object of its form fields
                          (POST it form-encoded to /webhooks/twilio with X-Twilio-Signature)
- email_inbound.jsonl     one inbound-parse JSON body (Postmark field names) per line for POST /webhooks/email
- chat_messages.jsonl     web-chat messages in Doorstep's canonical inbound-message shape
- feedback.csv            surveys and reviews
- truth_shipments.csv, truth_contacts.csv, truth_orders.csv   the ground truth
- customers.csv, products.csv, manifest.json

Chunks are built in worker processes (each from its own seed, so the bytes do not depend on how many run)
and written in order by this process.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from doorstep.simulator.world import Chunk, Plan, build_chunk

SEGMENT_BATCH_EVENTS = 100  # well under the 500 KB batch limit with simulated events of ~1 KB

FEEDBACK_COLUMNS = ["feedback_id", "kind", "order_id", "customer_id", "email", "rating", "csat", "nps", "comment",
                    "product_id", "locale", "submitted_at"]
TRUTH_SHIPMENT_COLUMNS = ["order_id", "customer_id", "carrier", "tracking_number", "lane", "destination_country",
                          "peak", "placed_at", "dispatched_at", "promised_from", "promised_to", "first_attempt_at",
                          "delivered_at", "outcome", "delayed", "delay_days", "late", "late_hours",
                          "failed_first_attempt", "attempts", "lost", "damaged", "returned_to_sender",
                          "dispatch_late"]
TRUTH_CONTACT_COLUMNS = ["contact_id", "message_id", "order_id", "customer_id", "channel", "sent_at", "cause", "owner",
                         "is_follow_up", "language", "text"]
TRUTH_ORDER_COLUMNS = ["order_id", "customer_id", "placed_at", "total", "currency", "items", "delivered", "on_time",
                       "contacted", "contacts", "returned", "return_reason", "csat", "nps", "review_rating", "happy",
                       "perfect", "fell_off_at", "fell_off_reason", "owner"]
CUSTOMER_COLUMNS = ["user_id", "name", "email", "phone", "locale", "timezone", "country", "region", "city", "postcode",
                    "line1", "preferred_channel", "marketing_consent", "whatsapp_opt_in"]
PRODUCT_COLUMNS = ["product_id", "sku", "name", "category", "price", "currency"]

FILES = {
    "segment": "segment_batches.jsonl",
    "aftership": "aftership_webhooks.jsonl",
    "twilio": "twilio_inbound.jsonl",
    "emails": "email_inbound.jsonl",
    "messages": "chat_messages.jsonl",
    "feedback": "feedback.csv",
    "truth_shipments": "truth_shipments.csv",
    "truth_contacts": "truth_contacts.csv",
    "truth_orders": "truth_orders.csv",
}
CSV_COLUMNS = {
    "feedback": FEEDBACK_COLUMNS,
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
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue().encode()


def serialise_chunk(chunk: Chunk) -> tuple[dict[str, bytes], dict[str, int]]:
    """A chunk's bytes per output file, each stream in simulated-time order, plus item counts."""
    out: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    dumps = orjson.dumps
    segment = sorted(chunk.segment, key=lambda item: item[0])
    parts = []
    for i in range(0, len(segment), SEGMENT_BATCH_EVENTS):
        parts.append(dumps({"batch": [event for _t, event in segment[i:i + SEGMENT_BATCH_EVENTS]]}))
    out["segment"] = b"\n".join(parts) + b"\n" if parts else b""
    counts["segment_events"] = len(segment)
    counts["segment_batches"] = len(parts)
    for name in ("aftership", "twilio", "emails", "messages"):
        items = sorted(getattr(chunk, name), key=lambda item: item[0])
        out[name] = b"".join(dumps(payload) + b"\n" for _t, payload in items)
        counts[name] = len(items)
    feedback = [row for _t, row in sorted(chunk.feedback, key=lambda item: item[0])]
    out["feedback"] = _csv_bytes(feedback, FEEDBACK_COLUMNS)
    counts["feedback"] = len(feedback)
    for name in ("truth_shipments", "truth_contacts", "truth_orders"):
        rows = getattr(chunk, name)
        out[name] = _csv_bytes(rows, CSV_COLUMNS[name])
        counts[name] = len(rows)
    return out, counts


_PLAN: Plan | None = None


def _work(k: int) -> tuple[int, dict[str, bytes], dict[str, int]]:
    assert _PLAN is not None
    data, counts = serialise_chunk(build_chunk(_PLAN, k))
    return k, data, counts


def write_files(
    plan: Plan,
    out: Path,
    *,
    processes: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> WriteResult:
    """Writes the world of `plan` under `out` (created if needed). `on_progress(orders_done)` after each chunk."""
    global _PLAN
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    processes = processes or min(os.cpu_count() or 1, 4)
    result = WriteResult(out=out, orders=plan.orders)
    handles = {name: open(out / filename, "wb", buffering=8 * 1024 * 1024) for name, filename in FILES.items()}  # noqa: SIM115
    try:
        for name, columns in CSV_COLUMNS.items():
            handles[name].write((",".join(columns) + "\n").encode())
        _PLAN = plan
        chunks = range(plan.chunk_count)
        if processes > 1 and plan.chunk_count > 1:
            context = multiprocessing.get_context("fork")
            with context.Pool(processes) as pool:
                for k, data, counts in pool.imap(_work, chunks, chunksize=1):
                    _write_chunk(handles, data, counts, result, plan, k, on_progress)
        else:
            for k in chunks:
                _k, data, counts = _work(k)
                _write_chunk(handles, data, counts, result, plan, k, on_progress)
    finally:
        _PLAN = None
        for handle in handles.values():
            handle.close()
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
            "feedback": "feedback CSV import",
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _write_chunk(handles: dict[str, Any], data: dict[str, bytes], counts: dict[str, int], result: WriteResult,
                 plan: Plan, k: int, on_progress: Callable[[int], None] | None) -> None:
    for name, payload in data.items():
        handles[name].write(payload)
        result.bytes_written += len(payload)
    for name, value in counts.items():
        result.counts[name] = result.counts.get(name, 0) + value
    if on_progress is not None:
        on_progress(min(plan.orders, (k + 1) * plan.chunk_orders))


def _write_reference(plan: Plan, out: Path) -> None:
    with open(out / "customers.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CUSTOMER_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for c in range(plan.customer_count):
            info = plan.customer(c)
            info = {**info, "phone": info["phone"] or "", "marketing_consent": int(info["marketing_consent"]),
                    "whatsapp_opt_in": int(info["whatsapp_opt_in"])}
            writer.writerow(info)
    with open(out / "products.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PRODUCT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, name in enumerate(plan.product_names):
            writer.writerow({
                "product_id": f"P{i + 1:05d}", "sku": f"SKU-{i + 1:05d}", "name": name,
                "category": plan.categories[int(plan.product_category[i])],
                "price": f"{int(plan.product_price_minor[i]) / 100:.2f}", "currency": plan.profile.currency,
            })
