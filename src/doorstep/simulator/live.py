"""Live mode: stream a world into a running Doorstep through its public endpoints, on an accelerated clock.

The simulated clock starts at the world's first event and runs `speed` times faster than real time (1440:
one simulated day per real minute), but never ahead of the real clock, because a server refuses events from
the future: once it catches up with now, the world unfolds in real time. Every item goes through the public
API a real integration would use, signed as the provider signs it:

- Segment calls, batched, to POST /v1/batch (write key as Basic-auth user)
- AfterShip tracking_update webhooks to POST /webhooks/aftership (aftership-hmac-sha256)
- Twilio inbound SMS/WhatsApp to POST /webhooks/twilio (X-Twilio-Signature over the public URL)
- inbound email to POST /webhooks/email (Bearer secret)
- survey answers and reviews to the feedback endpoint, when the server has one

An endpoint that answers 404 is noted once and its items are skipped; 429 and 5xx answers and connection
errors are retried with backoff (honouring Retry-After), so a busy server slows the stream instead of losing it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from doorstep.security.signatures import hmac_sha256_b64, twilio_signature
from doorstep.simulator.errors import ServerUnreachable

log = logging.getLogger("doorstep.simulator.live")

SEGMENT_BATCH_EVENTS = 100
LANES = 4  # concurrent senders for webhooks; each shipment or sender address always uses the same lane
_STATS_LOCK = threading.Lock()
MAX_ATTEMPTS = 8
BACKOFF_MAX_S = 10.0
PATHS = {
    "segment": "/v1/batch",
    "aftership": "/webhooks/aftership",
    "twilio": "/webhooks/twilio",
    "emails": "/webhooks/email",
    "reviews": "/api/v1/reviews.csv",
    "surveys": "/s/{token}",
}
SURVEY_PURPOSE = "survey"  # doorstep.feedback.api.SURVEY_PURPOSE: survey links are signed for it


@dataclass
class LiveStats:
    sent: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    first_rejections: list[str] = field(default_factory=list)
    sim_time: float = 0.0

    def add(self, bucket: dict[str, int], kind: str, n: int = 1) -> None:
        with _STATS_LOCK:  # lanes count from several threads
            bucket[kind] = bucket.get(kind, 0) + n

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass
class Targets:
    base_url: str
    write_key: str
    aftership_secret: str = ""
    twilio_auth_token: str = ""
    email_secret: str = ""
    api_key: str = ""  # a secret API key with orders:write, for the review CSV import
    secret_key: str = (
        ""  # the server's DOORSTEP_SECRET_KEY, to sign survey links as its follow-up messages do
    )
    paths: dict[str, str] = field(default_factory=lambda: dict(PATHS))


class Sender:
    """Posts one item at a time to the server, signed, with retries; never raises for a rejected item."""

    def __init__(
        self,
        targets: Targets,
        *,
        client: httpx.Client | None = None,
        stats: LiveStats | None = None,
        now: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
    ):
        self.targets = targets
        self.base = targets.base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=30.0)
        self.stats = stats or LiveStats()
        self.now = now
        self.stop = stop or threading.Event()
        self.missing: set[str] = set()
        self.unconfigured_noted: set[str] = set()

    def close(self) -> None:
        self.client.close()

    # ---- kinds ----------------------------------------------------------------------------------------------
    def segment(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        body = orjson.dumps({"batch": events})
        response = self._post(
            "segment",
            content=body,
            headers={"content-type": "application/json"},
            auth=(self.targets.write_key, ""),
            n=len(events),
        )
        if response is not None and response.status_code == 200:
            rejected = response.json().get("rejected") or []
            if rejected:
                self.stats.add(self.stats.rejected, "segment", len(rejected))
                self.stats.add(self.stats.sent, "segment", len(events) - len(rejected))
                self._note_rejection("segment", str(rejected[0].get("detail")))
            else:
                self.stats.add(self.stats.sent, "segment", len(events))

    def aftership(self, body: dict[str, Any]) -> None:
        if not self._configured(
            "aftership", self.targets.aftership_secret, "DOORSTEP_AFTERSHIP_WEBHOOK_SECRET"
        ):
            return
        # `ts` is when AfterShip sends the webhook: now, for the server; the scans keep their simulated times
        raw = orjson.dumps({**body, "ts": int(self.now())})
        headers = {
            "content-type": "application/json",
            "aftership-hmac-sha256": hmac_sha256_b64(self.targets.aftership_secret, raw),
        }
        self._simple("aftership", self._post("aftership", content=raw, headers=headers))

    def twilio(self, form: dict[str, str]) -> None:
        if not self._configured("twilio", self.targets.twilio_auth_token, "DOORSTEP_TWILIO_AUTH_TOKEN"):
            return
        url = self.base + self.targets.paths["twilio"]
        signature = twilio_signature(self.targets.twilio_auth_token, url, form.items())
        headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
        self._simple("twilio", self._post("twilio", content=urlencode(form).encode(), headers=headers))

    def email(self, fields: dict[str, Any]) -> None:
        if not self._configured("emails", self.targets.email_secret, "DOORSTEP_INBOUND_EMAIL_SECRET"):
            return
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.targets.email_secret}"}
        self._simple("emails", self._post("emails", content=orjson.dumps(fields), headers=headers))

    def feedback(self, row: dict[str, Any]) -> None:
        """A survey answer through the order's signed survey page, or a review through the CSV import."""
        if row["kind"] == "survey":
            if not self._configured("surveys", self.targets.secret_key, "DOORSTEP_SECRET_KEY"):
                return
            from doorstep.orders.model import order_id_for
            from doorstep.security.links import sign

            token = sign(self.targets.secret_key, SURVEY_PURPOSE, order_id_for(row["order_id"]))
            form = {"csat": str(row["csat"]), "nps": str(row["nps"]), "comment": row["comment"]}
            self._simple(
                "surveys",
                self._post(
                    "surveys",
                    content=urlencode(form).encode(),
                    path_args={"token": token},
                    headers={"content-type": "application/x-www-form-urlencoded"},
                ),
            )
            return
        if not self._configured(
            "reviews", self.targets.api_key, "--api-key (a secret key with orders:write)"
        ):
            return
        from doorstep.simulator.files import REVIEW_COLUMNS, _csv_bytes, review_row

        body = (",".join(REVIEW_COLUMNS) + "\n").encode() + _csv_bytes([review_row(row)], REVIEW_COLUMNS)
        response = self._post(
            "reviews",
            content=body,
            headers={"content-type": "text/csv", "authorization": f"Bearer {self.targets.api_key}"},
        )
        if response is not None and response.status_code < 300:
            errors = response.json().get("errors") or []
            if errors:
                self.stats.add(self.stats.rejected, "reviews")
                self._note_rejection("reviews", str(errors[0]))
            else:
                self.stats.add(self.stats.sent, "reviews")

    # ---- plumbing -------------------------------------------------------------------------------------------
    def _configured(self, kind: str, secret: str, env: str) -> bool:
        if secret:
            return True
        if kind not in self.unconfigured_noted:
            self.unconfigured_noted.add(kind)
            log.warning("live simulator: no secret for %s (set %s); skipping those items", kind, env)
        self.stats.add(self.stats.skipped, kind)
        return False

    def _simple(self, kind: str, response: httpx.Response | None) -> None:
        if response is not None and response.status_code < 300:
            self.stats.add(self.stats.sent, kind)

    def _note_rejection(self, kind: str, detail: str) -> None:
        if len(self.stats.first_rejections) < 20:
            self.stats.first_rejections.append(f"{kind}: {detail}")
            log.warning("live simulator: %s item rejected: %s", kind, detail)

    def _post(
        self,
        kind: str,
        *,
        content: bytes,
        headers: dict[str, str],
        auth: tuple[str, str] | None = None,
        n: int = 1,
        path_args: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        if kind in self.missing:
            self.stats.add(self.stats.skipped, kind, n)
            return None
        url = self.base + self.targets.paths[kind].format(**(path_args or {}))
        delay = 0.25
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.stop.is_set():
                return None
            try:
                response = (
                    self.client.post(url, content=content, headers=headers, auth=auth)
                    if auth
                    else self.client.post(url, content=content, headers=headers)
                )
            except httpx.TransportError as exc:
                if attempt == MAX_ATTEMPTS:
                    raise ServerUnreachable(
                        f"{url}: {type(exc).__name__} after {attempt} attempts: is the server running?"
                    ) from exc
                self.stats.retries += 1
                self.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            status = response.status_code
            if (status == 404 and _no_such_endpoint(response)) or status == 405:
                self.missing.add(kind)
                log.warning(
                    "live simulator: %s answered %s; this server has no %s endpoint yet, skipping %s items",
                    url,
                    status,
                    kind,
                    kind,
                )
                self.stats.add(self.stats.skipped, kind, n)
                return None
            if status == 429 or status >= 500:
                self.stats.retries += 1
                retry_after = _retry_after(response)
                self.stop.wait(retry_after if retry_after is not None else delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if status >= 400:
                self.stats.add(self.stats.rejected, kind, n)
                self._note_rejection(kind, f"HTTP {status}: {response.text[:300]}")
                return None
            return response
        self.stats.add(self.stats.rejected, kind, n)
        self._note_rejection(kind, f"gave up after {MAX_ATTEMPTS} attempts (server busy)")
        return None


def _no_such_endpoint(response: httpx.Response) -> bool:
    """A 404 for the path itself, not for one item (an order the server does not know yet)."""
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        return True
    return detail in ("Not Found", "") or detail.startswith("no such endpoint")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(float(value), 60.0)
    except ValueError:
        return None


def wait_for_server(
    base_url: str,
    *,
    timeout_s: float = 60.0,
    stop: threading.Event | None = None,
    client: httpx.Client | None = None,
) -> bool:
    """True once GET /healthz answers; False if `stop` is set or the timeout passes first."""
    stop = stop or threading.Event()
    own = client is None
    client = client or httpx.Client(timeout=2.0)
    deadline = time.monotonic() + timeout_s
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if client.get(base_url.rstrip("/") + "/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            stop.wait(0.2)
        return False
    finally:
        if own:
            client.close()


class Lanes:
    """A few sender threads, each with a bounded queue: items with the same key keep their order, different
    keys go out in parallel, and a full queue blocks the producer (backpressure)."""

    def __init__(self, count: int, stop: threading.Event):
        self.stop = stop
        self.queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=200) for _ in range(count)]
        self.threads = [
            threading.Thread(target=self._run, args=(q,), name=f"doorstep-sim-lane-{i}", daemon=True)
            for i, q in enumerate(self.queues)
        ]
        self.errors: list[BaseException] = []
        for thread in self.threads:
            thread.start()

    def submit(self, key: str, fn: Callable[[Any], None], payload: Any) -> None:
        lane = self.queues[zlib.crc32(key.encode()) % len(self.queues)]
        while not self.stop.is_set():
            try:
                lane.put((fn, payload), timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self, lane: queue.Queue[Any]) -> None:
        while True:
            item = lane.get()
            try:
                if item is None:
                    return
                if not self.stop.is_set():
                    fn, payload = item
                    fn(payload)
            except BaseException as exc:  # reported by close(); the stream stops
                self.errors.append(exc)
                self.stop.set()
            finally:
                lane.task_done()

    def close(self) -> None:
        for lane in self.queues:
            lane.put(None)
        for thread in self.threads:
            thread.join(timeout=60)
        if self.errors:
            raise self.errors[0]


def _lane_key(kind: str, payload: Any) -> str:
    if kind == "aftership":
        return str(payload.get("msg", {}).get("tracking_number", ""))
    if kind in ("twilio", "emails"):
        return str(payload.get("From", ""))
    return str(payload.get("order_id", ""))


def stream(
    timeline: Iterable[tuple[int, str, Any]],
    sender: Sender,
    *,
    speed: float,
    stop: threading.Event | None = None,
    cap_at_now: bool = True,
    real_now: Callable[[], float] = time.time,
    on_progress: Callable[[LiveStats], None] | None = None,
    sim_start: float | None = None,
    lanes: int = LANES,
) -> LiveStats:
    """Sends every item of `timeline` (in time order) when the simulated clock reaches it. Segment batches go
    out from this thread; webhooks through `lanes` parallel senders (1: all from this thread, in order)."""
    stop = stop or sender.stop
    stats = sender.stats
    handlers: dict[str, Callable[[Any], None]] = {
        "aftership": sender.aftership,
        "twilio": sender.twilio,
        "emails": sender.email,
        "feedback": sender.feedback,
    }
    pool = Lanes(lanes, stop) if lanes > 1 else None
    try:
        _run(
            timeline,
            sender,
            handlers,
            pool,
            stats,
            speed=speed,
            stop=stop,
            cap_at_now=cap_at_now,
            real_now=real_now,
            on_progress=on_progress,
            sim_start=sim_start,
        )
    finally:
        if pool is not None:
            pool.close()
    if on_progress is not None:
        on_progress(stats)
    return stats


def _run(
    timeline: Iterable[tuple[int, str, Any]],
    sender: Sender,
    handlers: dict[str, Callable[[Any], None]],
    pool: Lanes | None,
    stats: LiveStats,
    *,
    speed: float,
    stop: threading.Event,
    cap_at_now: bool,
    real_now: Callable[[], float],
    on_progress: Callable[[LiveStats], None] | None,
    sim_start: float | None,
) -> None:
    pending: list[dict[str, Any]] = []
    pending_orders: set[str] = set()
    t0 = time.monotonic()
    start: float | None = sim_start
    last_progress = 0.0

    def sim_clock() -> tuple[float, float]:
        """(simulated now, real seconds per simulated second at this moment)."""
        assert start is not None
        value = start + (time.monotonic() - t0) * speed
        if cap_at_now:
            now = real_now()
            if value >= now:
                return now, 1.0  # caught up: the world unfolds in real time
        return value, 1.0 / speed

    for t, kind, payload in timeline:
        if stop.is_set():
            break
        if start is None:
            start = float(t)
        while True:
            now, pace = sim_clock()
            if t <= now:
                break
            if pending:
                sender.segment(pending)
                pending, pending_orders = [], set()
            stop.wait(min(0.5, max(0.005, (t - now) * pace)))
            if stop.is_set():
                break
        if stop.is_set():
            break
        stats.sim_time = float(t)
        if kind == "segment":
            pending.append(payload)
            if payload.get("event") == "Order Completed":
                pending_orders.add(str(payload.get("properties", {}).get("order_id")))
            if len(pending) >= SEGMENT_BATCH_EVENTS:
                sender.segment(pending)
                pending, pending_orders = [], set()
            continue
        if pending and kind == "aftership" and str(payload.get("msg", {}).get("order_id")) in pending_orders:
            sender.segment(pending)  # the shop's order reaches the server before the carrier's scans of it
            pending, pending_orders = [], set()
        fn = handlers.get(kind)
        if fn is None:
            stats.add(stats.skipped, kind)
        elif pool is not None:
            pool.submit(_lane_key(kind, payload), fn, payload)
        else:
            fn(payload)
        if on_progress is not None and time.monotonic() - last_progress > 0.2:
            last_progress = time.monotonic()
            on_progress(stats)
    if pending and not stop.is_set():
        sender.segment(pending)
