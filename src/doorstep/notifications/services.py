"""The sender: claims due queued messages with a lease, decides (reason gone? consent? quiet hours? cap?
which channel?), renders, hands the message to the channel adapter OUTSIDE any transaction, then records
the outcome: sent, retry with backoff, failed (then the next channel), or suppressed with a reason.

`start(ctx)` runs it in a background thread; `send_due(ctx, now=...)` runs one pass (tests, benchmark).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from doorstep.context import AppContext
from doorstep.db.engine import background_commits
from doorstep.ids import new_id
from doorstep.notifications.channels import (
    SESSION_WINDOW_S,
    Channel,
    OutgoingMessage,
    build_channels,
    provider_configured,
)
from doorstep.notifications.errors import TemplateInvalid
from doorstep.notifications.journeys import JourneyStore
from doorstep.notifications.model import (
    MAX_SEND_ATTEMPTS,
    ChannelChoice,
    SendOutcome,
    local_day_start,
    locale_of,
    next_attempt_at,
    plan_channels,
    quiet_until,
    reason_gone,
)
from doorstep.notifications.repository import CustomerProfile, NotificationRepository
from doorstep.notifications.templates import LOCALES, build_context, render_message

log = logging.getLogger("doorstep.notifications")

LEASE_S = 60.0  # a sender that dies mid-send gives its claims back after this
BATCH_SIZE = 100  # per pass: one claim transaction and one record transaction for up to this many
POLL_INTERVAL_S = 0.02
# Idle, a sender looks for due messages this often: rarely where the journey handler of its own process wakes it
# after each commit (`doorstep serve`, `doorstep worker`), often where nothing can (`doorstep worker
# --sender-only`: messages are queued by a worker in another process).
WOKEN_IDLE_S = POLL_INTERVAL_S * 5
UNWOKEN_IDLE_S = POLL_INTERVAL_S


@dataclass
class Prepared:
    notification_id: str
    message: OutgoingMessage
    channel: Channel
    attempts: int


def channels_of(ctx: AppContext) -> dict[str, Channel]:
    channels = ctx.services.get("notification_channels")
    if channels is None:
        channels = ctx.services["notification_channels"] = build_channels(ctx.settings)
    return channels


def journeys_of(ctx: AppContext) -> JourneyStore:
    store = ctx.services.get("notification_journeys")
    if store is None:
        store = ctx.services["notification_journeys"] = JourneyStore()
    return store


def register(ctx: AppContext) -> None:
    channels_of(ctx)
    journeys_of(ctx)


# ---- deciding -------------------------------------------------------------------------------------------


def _only_outbox(ctx: AppContext) -> bool:
    """With no provider set up (development, `make run`), every message goes to the outbox channel."""
    return not any(provider_configured(ctx.settings).values())


def _plan(
    ctx: AppContext, row: Any, profile: CustomerProfile, journey_channels: tuple[str, ...]
) -> tuple[list[ChannelChoice], str | None]:
    detail = row.detail or {}
    tried = set(detail.get("tried", []))
    if row.trigger == "conversation_reply":
        channel = row.channel
        if channel == "chat":
            return [ChannelChoice("chat", row.to_address or "")], None
        if profile.consents.get((channel, "service")) is False:
            return [], "opted_out"  # they texted STOP: no reply either (carriers block it anyway)
        if _only_outbox(ctx):
            return [ChannelChoice("outbox", row.to_address or "")], None
        if channel in channels_of(ctx) and row.to_address:
            return [ChannelChoice(channel, row.to_address)], None
        return [], "no_channel"
    order = profile.channel_order or profile.preferred_channels or list(journey_channels)
    if _only_outbox(ctx):
        choices, reason = plan_channels(
            order=order,
            addresses=profile.addresses,
            consents=profile.consents,
            topic=row.topic or "service",
            available={"email", "sms", "whatsapp", "messenger", "webhook"},
            exclude=tried,
        )
        if not choices and reason == "opted_out":
            return [], reason
        address = choices[0].address if choices else profile.id
        return [ChannelChoice("outbox", address)], None
    addresses = dict(profile.addresses)
    addresses.setdefault("outbox", profile.id)
    return plan_channels(
        order=order,
        addresses=addresses,
        consents=profile.consents,
        topic=row.topic or "service",
        available=set(channels_of(ctx)),
        exclude=tried,
    )


@dataclass
class Batch:
    """What a pass knows up front about the messages it claimed, loaded in a few queries, and the row
    changes it will write back in a few executemany statements."""

    rows: dict[str, Any]
    profiles: dict[str, CustomerProfile]
    orders: dict[str, dict[str, Any]]
    shipments: dict[str, dict[str, Any]]
    sent_times: dict[str, list[datetime]]
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    in_batch: dict[str, int] = field(default_factory=dict)  # prepared in this pass, per customer (daily cap)

    @classmethod
    def load(cls, repo: NotificationRepository, ids: list[str], now: datetime) -> Batch:
        rows = repo.rows(ids)
        customer_ids = [r.customer_id for r in rows.values() if r.customer_id]
        since = now - timedelta(hours=26)  # covers any local day, in every time zone
        return cls(
            rows=rows,
            profiles=repo.profiles(customer_ids),
            orders=repo.orders_by_id([r.order_id for r in rows.values()]),
            shipments=repo.shipments_by_id([r.shipment_id for r in rows.values()]),
            sent_times=repo.sent_times_since(customer_ids, since),
        )

    def sent_today(self, profile: CustomerProfile, now: datetime) -> int:
        day_start = local_day_start(now, profile.timezone)
        return sum(1 for t in self.sent_times.get(profile.id, []) if t >= day_start) + self.in_batch.get(
            profile.id, 0
        )


def _sender_only(row: Any, repo: NotificationRepository) -> CustomerProfile | None:
    """A reply to someone no profile holds: what the sender knows is the address they wrote from, and whether
    that address texted STOP."""
    if row.trigger != "conversation_reply":
        return None
    consents = {}
    if row.channel in ("sms", "whatsapp") and repo.is_address_opted_out(row.channel, row.to_address or ""):
        consents[(row.channel, "service")] = False
    return CustomerProfile(
        id="",
        name=None,
        locale=None,
        timezone=None,
        preferred_channels=[],
        addresses={row.channel: row.to_address} if row.to_address else {},
        consents=consents,
    )


def _prepare_one(
    ctx: AppContext, repo: NotificationRepository, batch: Batch, notification_id: str, now: datetime
) -> Prepared | None:
    """Decides one claimed message: reason gone, quiet hours, daily cap, channel; renders it."""
    row = batch.rows.get(notification_id)
    if row is None or row.status != "queued":
        return None
    detail = dict(row.detail or {})
    is_reply = row.trigger == "conversation_reply"
    is_urgent = bool(detail.get("is_urgent")) or is_reply

    def change(**values: Any) -> None:
        batch.changes.append((notification_id, values))

    def finish(status: str, reason: str | None, **extra: Any) -> None:
        values: dict[str, Any] = {
            "status": status,
            "suppression_reason": reason,
            "lease_owner": None,
            "lease_until": None,
            "detail": {**detail, **extra},
        }
        if status == "failed":
            values["failed_at"] = now
        change(**values)

    profile = batch.profiles.get(row.customer_id) if row.customer_id else _sender_only(row, repo)
    if profile is None:
        finish("suppressed", "no_channel", note="customer no longer exists")
        return None
    order = batch.orders.get(row.order_id) if row.order_id else None
    shipment = batch.shipments.get(row.shipment_id) if row.shipment_id else None
    if not is_reply:
        cancel_if = detail.get("cancel_if") or {}
        gone = reason_gone(
            cancel_if_shipment_status=cancel_if.get("shipment_status") or [],
            cancel_if_order_status=cancel_if.get("order_status") or [],
            shipment_status=(shipment or {}).get("status"),
            order_status=(order or {}).get("status"),
        )
        if gone:
            finish("suppressed", "cancelled_reason_gone", why=gone)
            return None
    journey = journeys_of(ctx).current(repo.conn)
    if not is_urgent:
        until = quiet_until(
            now,
            tz_name=profile.timezone,
            start=profile.quiet_start or journey.quiet_start,
            end=profile.quiet_end or journey.quiet_end,
        )
        if until is not None:
            change(
                scheduled_for=until,
                suppression_reason="quiet_hours",
                lease_owner=None,
                lease_until=None,
                detail={**detail, "held_until": until.isoformat()},
            )
            return None
        cap = profile.daily_cap or journey.daily_cap
        if batch.sent_today(profile, now) >= cap:
            finish("suppressed", "daily_cap", cap=cap)
            return None
    choices, reason = _plan(ctx, row, profile, journey.channels)
    if not choices:
        finish("suppressed", reason or "no_channel")
        return None
    choice = choices[0]
    channel_impl = channels_of(ctx)[choice.channel]
    locale = locale_of(profile.locale or row.locale, supported=LOCALES)
    topic = row.topic or "service"
    context = build_context(
        ctx.settings,
        trigger=row.trigger,
        channel=choice.channel,
        locale=locale,
        topic=topic,
        customer=profile.as_dict(),
        order=order,
        shipment=shipment,
        event=detail.get("event") or {},
        proof=repo.latest_proof(row.shipment_id) if row.trigger == "delivered" else None,
        text=row.body_text if is_reply else None,
    )
    try:
        rendered = render_message(row.trigger, choice.channel, locale, context)
    except TemplateInvalid as exc:
        finish("failed", None, error=exc.detail)
        return None
    last_inbound = profile.last_inbound.get(choice.channel)
    message = OutgoingMessage(
        notification_id=notification_id,
        channel=choice.channel,
        to=choice.address,
        text=rendered.text,
        subject=rendered.subject,
        html=rendered.html,
        locale=locale,
        trigger=row.trigger,
        topic=topic,
        customer_id=profile.id,
        order_id=row.order_id,
        unsubscribe_url=context["unsubscribe_url"] if profile.id else None,  # no profile to keep a choice on
        whatsapp_template=rendered.whatsapp_template,
        is_in_session=last_inbound is not None and (now - last_inbound).total_seconds() < SESSION_WINDOW_S,
        is_reply=is_reply,
        created_at=row.created_at,
    )
    if not is_reply:
        batch.in_batch[profile.id] = batch.in_batch.get(profile.id, 0) + 1
    change(
        channel=choice.channel,
        to_address=choice.address,
        locale=locale,
        subject=rendered.subject or None,
        body_text=rendered.text,
        body_html=rendered.html,
        suppression_reason=None,
        detail={**detail, "planned": [c.channel for c in choices]},
    )
    return Prepared(notification_id, message, channel_impl, row.attempts or 0)


# ---- recording ------------------------------------------------------------------------------------------


def _record(
    ctx: AppContext, prepared: Prepared, outcome: SendOutcome, *, started_at: datetime, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The delivery attempt row, the message's changes, and whether to fall back to the next channel."""
    attempt = prepared.attempts + 1
    kind = "sent" if outcome.is_sent else ("transient" if outcome.is_transient else "permanent")
    attempt_row = {
        "notification_id": prepared.notification_id,
        "channel": prepared.message.channel,
        "attempt": attempt,
        "outcome": kind,
        "http_status": outcome.http_status,
        "provider_message_id": outcome.provider_message_id,
        "error": outcome.error,
        "retry_after_s": int(outcome.retry_after_s) if outcome.retry_after_s is not None else None,
        "started_at": started_at,
        "finished_at": now,
    }
    if outcome.is_sent:
        return (
            attempt_row,
            {
                "status": "sent",
                "sent_at": now,
                "attempts": attempt,
                "provider_message_id": outcome.provider_message_id,
                "lease_owner": None,
                "lease_until": None,
                "last_error": None,
            },
            False,
        )
    if outcome.is_transient and attempt < MAX_SEND_ATTEMPTS:
        retry_at = next_attempt_at(
            now,
            attempt=attempt,
            base_s=max(ctx.settings.retry_base_s, 0.0),
            max_s=max(ctx.settings.retry_max_s, 0.0),
            retry_after_s=outcome.retry_after_s,
        )
        return (
            attempt_row,
            {
                "attempts": attempt,
                "last_error": outcome.error,
                "lease_owner": None,
                "lease_until": None,
                "scheduled_for": retry_at,
            },
            False,
        )
    return (
        attempt_row,
        {
            "status": "failed",
            "failed_at": now,
            "attempts": attempt,
            "last_error": outcome.error,
            "lease_owner": None,
            "lease_until": None,
        },
        True,
    )


def queue_fallback(repo: NotificationRepository, notification_id: str, *, now: datetime) -> str | None:
    """After a permanent failure on one channel, the same message is queued again for the next channel."""
    row = repo.get(notification_id)
    if row is None or row.trigger == "conversation_reply" or row.channel == "outbox":
        return None
    detail = dict(row.detail or {})
    tried = [*detail.get("tried", []), row.channel]
    planned = [c for c in detail.get("planned", []) if c not in tried]
    if not planned:
        return None
    fallback_id = new_id()
    is_new = repo.add_queued(
        id=fallback_id,
        customer_id=row.customer_id,
        order_id=row.order_id,
        shipment_id=row.shipment_id,
        trigger=row.trigger,
        channel=planned[0],
        locale=row.locale,
        topic=row.topic,
        dedupe_key=f"{row.dedupe_key}>{planned[0]}"[:300],
        created_at=now,
        scheduled_for=now,
        event_occurred_at=row.event_occurred_at,
        fallback_of=row.fallback_of or row.id,
        detail={**{k: v for k, v in detail.items() if k not in ("planned", "held_until")}, "tried": tried},
    )
    return fallback_id if is_new else None


# ---- the loop -------------------------------------------------------------------------------------------


class Sender:
    def __init__(self, ctx: AppContext, *, name: str | None = None, woken: bool = True):
        """`woken`: the journey handler runs in this process and wakes the sender after its commits."""
        self.ctx = ctx
        self.name = name or f"sender-{new_id()[-8:]}"
        self.idle_s = WOKEN_IDLE_S if woken else UNWOKEN_IDLE_S
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorstep-send")
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="doorstep-sender", daemon=True)
        # claimed by the last pass's record transaction for the next pass (see _send_due); given back on close
        self.claimed: list[str] = []

    def send_due(self, *, now: datetime | None = None, limit: int = BATCH_SIZE) -> int:
        """One pass: claim (one transaction), prepare (reads only), send (no transaction open), record the
        decisions and the outcomes (one transaction, which also claims for the next pass, so a busy sender takes
        the write lock once a pass). Returns how many messages were claimed. A sender that dies
        between sending and recording leaves its claims to expire, and they are sent again: delivery is at least
        once. For the same reason its commits do not wait for the disk (db.engine.background_commits)."""
        with background_commits():
            return self._send_due(now=now, limit=limit)

    def _send_due(self, *, now: datetime | None, limit: int) -> int:
        ctx = self.ctx
        now = now or ctx.clock.now()
        ids, self.claimed = self.claimed, []
        if not ids:
            with ctx.read_engine.connect() as conn:  # a cheap look first: no write lock while idle
                if not NotificationRepository(conn).has_due(now=now):
                    return 0
            with ctx.engine.begin() as conn:
                ids = NotificationRepository(conn).claim_due(
                    now=now, limit=limit, owner=self.name, lease_s=LEASE_S
                )
            if not ids:
                return 0
        # Prepared (profiles, rules, rendering) outside the write transaction: the claim's lease keeps the rows
        # ours, and on SQLite the single write lock is then held only to claim and to record, not while
        # templates render, so the outbox worker in another process is not kept waiting.
        prepared: list[Prepared] = []
        with ctx.read_engine.connect() as conn:
            repo = NotificationRepository(conn)
            batch = Batch.load(repo, ids, now)
            for notification_id in ids:
                item = _prepare_one(ctx, repo, batch, notification_id, now)
                if item is not None:
                    prepared.append(item)
        outcomes = []
        hook = ctx.services.get("on_notification_sent")
        for item in prepared:  # no transaction is open while we talk to providers
            outcome = self._send_with_timeout(item, now=now)
            outcomes.append(_record(ctx, item, outcome, started_at=now, now=max(ctx.clock.now(), now)))
            if hook is not None and outcome.is_sent:
                hook(item.message)
        if batch.changes or outcomes:
            # the decisions (channel, rendered text, suppressions, quiet-hour holds) and the outcomes in one
            # transaction: a sent message's row is written once, not once before and once after sending. Until
            # it commits the claim's lease keeps the rows ours; a sender that dies before it sends them again.
            with ctx.engine.begin() as conn:
                repo = NotificationRepository(conn)
                repo.add_attempts([a for a, _, _ in outcomes])
                # a row's decisions, then its outcome (which wins where both set a column): one UPDATE a row
                merged: dict[str, dict[str, Any]] = {}
                for notification_id, decided in batch.changes:
                    merged.setdefault(notification_id, {}).update(decided)
                for a, changes, _ in outcomes:
                    merged.setdefault(a["notification_id"], {}).update(changes)
                repo.update_many(list(merged.items()))
                for a, _, falls_back in outcomes:
                    if falls_back:
                        queue_fallback(repo, a["notification_id"], now=a["finished_at"])
                # and the next pass's claim: under load a pass then takes the write lock once, not twice
                self.claimed = repo.claim_due(now=now, limit=limit, owner=self.name, lease_s=LEASE_S)
        return len(ids)

    def _send_with_timeout(self, item: Prepared, *, now: datetime) -> SendOutcome:
        if getattr(item.channel, "is_local", False):
            try:
                return item.channel.send(item.message, now=now)
            except Exception as exc:
                log.exception("channel %s raised", item.message.channel)
                return SendOutcome(is_sent=False, is_transient=True, error=f"{type(exc).__name__}: {exc}")
        timeout = (
            self.ctx.settings.outbound_timeout_s + 5
        )  # adapters time out themselves; this is the backstop
        future = self.pool.submit(item.channel.send, item.message, now=now)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            return SendOutcome(is_sent=False, is_transient=True, error=f"no answer within {timeout:g} s")
        except Exception as exc:  # an adapter bug must not kill the loop; the message is retried
            log.exception("channel %s raised", item.message.channel)
            return SendOutcome(is_sent=False, is_transient=True, error=f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                n = self.send_due(now=self.ctx.clock.now())
            except Exception:
                log.exception("sender pass failed")
                n = 0
                self.stop.wait(1.0)
            if n == 0 and self.wake.wait(self.idle_s):
                self.wake.clear()  # woken after a handler's commit (see notifications.handlers): look now

    def start(self) -> Sender:
        self.ctx.services["wake_sender"] = self.wake.set
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=10)
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.claimed and not self.thread.is_alive():  # claimed for a pass that will not run: give back
            with self.ctx.engine.begin() as conn:
                NotificationRepository(conn).release_claims(self.claimed, owner=self.name)
            self.claimed = []


def sender_of(ctx: AppContext) -> Sender:
    sender = ctx.services.get("notification_sender")
    if sender is None:
        sender = ctx.services["notification_sender"] = Sender(ctx)
    return sender


def send_due(
    ctx: AppContext, now: datetime | None = None, *, limit: int = BATCH_SIZE, max_rounds: int = 100
) -> int:
    """Sends everything due at `now` (repeating passes until nothing is claimed); returns how many were claimed."""
    total = 0
    for _ in range(max_rounds):
        n = sender_of(ctx).send_due(now=now, limit=limit)
        total += n
        if n == 0:
            break
    return total


def start(ctx: AppContext) -> Sender | None:
    if ctx.settings.env == "test" and not ctx.settings.in_process_worker:
        return None  # tests drive the sender by hand with send_due(ctx, now)
    if "pipeline_process" in ctx.services:
        return None  # the pipeline process (app.PipelineProcess) runs the sender beside the worker
    return sender_of(ctx).start()


__all__ = ["Sender", "queue_fallback", "send_due", "start", "timedelta"]
