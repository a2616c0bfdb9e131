"""The carrier webhook sender loop (delivery changes go out here, never inside a request)."""

from __future__ import annotations

import time

from doorstep.bus.timers import RepeatingTask
from doorstep.context import AppContext
from doorstep.shipments.handlers_lastmile import ensure_demo_slots
from doorstep.shipments.outbound import send_due
from doorstep.shipments.ratelimit import prune

SEND_INTERVAL_S = 2.0


PRUNE_EVERY_S = 600.0


class _Round:
    """One pass of the loop: send due carrier webhooks; every ten minutes, drop old rate-limit windows (and,
    in demo mode, keep a week of delivery slots open)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.next_prune = 0.0

    def __call__(self) -> None:
        send_due(self.ctx)
        if time.monotonic() >= self.next_prune:
            with self.ctx.engine.begin() as conn:
                prune(conn, now=self.ctx.clock.now())
            if self.ctx.settings.demo:
                ensure_demo_slots(self.ctx)
            self.next_prune = time.monotonic() + PRUNE_EVERY_S


def start(ctx: AppContext) -> RepeatingTask | None:
    if not ctx.settings.in_process_worker:
        return None  # tests call send_due themselves
    return RepeatingTask("doorstep-carrier-sender", _Round(ctx), interval_s=SEND_INTERVAL_S).start()
