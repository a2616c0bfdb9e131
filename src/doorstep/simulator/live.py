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
import threading
import time
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
MAX_ATTEMPTS = 8
BACKOFF_MAX_S = 10.0
PATHS = {
    "segment": "/v1/batch",
    "aftership": "/webhooks/aftership",
    "twilio": "/webhooks/twilio",
    "emails": "/webhooks/email",
    "feedback": "/api/v1/feedback",
}


@dataclass
class LiveStats:
    sent: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    first_rejections: list[str] = field(default_factory=list)
    sim_time: float = 0.0

    def add(self, bucket: dict[str, int], kind: str, n: int = 1) -> None:
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
    feedback_key: str = ""  # a secret API key for the feedback endpoint, when it needs one
    paths: dict[str, str] = field(default_factory=lambda: dict(PATHS))


class Sender:
    """Posts one item at a time to the server, signed, with retries; never raises for a rejected item."""

    def __init__(self, targets: Targets, *, client: httpx.Client | None = None, stats: LiveStats | None = None,
                 now: Callable[[], float] = time.time, stop: threading.Event | None = None):
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
        response = self._post("segment", content=body, headers={"content-type": "application/json"},
                              auth=(self.targets.write_key, ""), n=len(events))
        if response is not None and response.status_code == 200:
            rejected = response.json().get("rejected") or []
            if rejected:
                self.stats.add(self.stats.rejected, "segment", len(rejected))
                self.stats.add(self.stats.sent, "segment", len(events) - len(rejected))
                self._note_rejection("segment", str(rejected[0].get("detail")))
            else:
                self.stats.add(self.stats.sent, "segment", len(events))

    def aftership(self, body: dict[str, Any]) -> None:
        if not self._configured("aftership", self.targets.aftership_secret, "DOORSTEP_AFTERSHIP_WEBHOOK_SECRET"):
            return
        # `ts` is when AfterShip sends the webhook: now, for the server; the scans keep their simulated times
        raw = orjson.dumps({**body, "ts": int(self.now())})
        headers = {"content-type": "application/json",
                   "aftership-hmac-sha256": hmac_sha256_b64(self.targets.aftership_secret, raw)}
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
        headers = {"content-type": "application/json"}
        if self.targets.feedback_key:
            headers["authorization"] = f"Bearer {self.targets.feedback_key}"
        self._simple("feedback", self._post("feedback", content=orjson.dumps(row), headers=headers))

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

    def _post(self, kind: str, *, content: bytes, headers: dict[str, str], auth: tuple[str, str] | None = None,
              n: int = 1) -> httpx.Response | None:
        if kind in self.missing:
            self.stats.add(self.stats.skipped, kind, n)
            return None
        url = self.base + self.targets.paths[kind]
        delay = 0.25
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.stop.is_set():
                return None
            try:
                response = self.client.post(url, content=content, headers=headers, auth=auth)
            except httpx.TransportError as exc:
                if attempt == MAX_ATTEMPTS:
                    raise ServerUnreachable(f"{url}: {type(exc).__name__} after {attempt} attempts: is the server running?") from exc
                self.stats.retries += 1
                self.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            status = response.status_code
            if status == 404 or status == 405:
                self.missing.add(kind)
                log.warning("live simulator: %s answered %s; this server has no %s endpoint yet, skipping %s items",
                            url, status, kind, kind)
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(float(value), 60.0)
    except ValueError:
        return None


def wait_for_server(base_url: str, *, timeout_s: float = 60.0, stop: threading.Event | None = None,
                    client: httpx.Client | None = None) -> bool:
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
) -> LiveStats:
    """Sends every item of `timeline` (in time order) when the simulated clock reaches it."""
    stop = stop or sender.stop
    stats = sender.stats
    pending: list[dict[str, Any]] = []
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
                pending = []
            stop.wait(min(0.5, max(0.005, (t - now) * pace)))
            if stop.is_set():
                break
        if stop.is_set():
            break
        stats.sim_time = float(t)
        if kind == "segment":
            pending.append(payload)
            if len(pending) >= SEGMENT_BATCH_EVENTS:
                sender.segment(pending)
                pending = []
            continue
        if pending:  # the shop's events reach the server before the carrier's or the customer's about them
            sender.segment(pending)
            pending = []
        if kind == "aftership":
            sender.aftership(payload)
        elif kind == "twilio":
            sender.twilio(payload)
        elif kind == "emails":
            sender.email(payload)
        elif kind == "feedback":
            sender.feedback(payload)
        else:
            stats.add(stats.skipped, kind)
        if on_progress is not None and time.monotonic() - last_progress > 0.2:
            last_progress = time.monotonic()
            on_progress(stats)
    if pending and not stop.is_set():
        sender.segment(pending)
    if on_progress is not None:
        on_progress(stats)
    return stats
