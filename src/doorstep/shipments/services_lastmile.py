"""The carrier webhook sender loop (delivery changes go out here, never inside a request)."""

from __future__ import annotations

from doorstep.bus.timers import RepeatingTask
from doorstep.context import AppContext
from doorstep.shipments.outbound import send_due

SEND_INTERVAL_S = 2.0


def start(ctx: AppContext) -> RepeatingTask | None:
    if not ctx.settings.in_process_worker:
        return None  # tests call send_due themselves
    return RepeatingTask("doorstep-carrier-sender", lambda: send_due(ctx), interval_s=SEND_INTERVAL_S).start()
