"""Background loop firing due timers (follow-up surveys and any other scheduled domain event)."""

from __future__ import annotations

from doorstep.bus.timers import RepeatingTask, fire_due
from doorstep.context import AppContext

TIMER_INTERVAL_S = 5.0


def start(ctx: AppContext) -> RepeatingTask | None:
    if not ctx.settings.in_process_worker or "timer_loop" in ctx.services:
        return None  # tests and `doorstep worker`-only setups fire timers by hand / elsewhere
    task = RepeatingTask("doorstep-timers", lambda: fire_due(ctx), interval_s=TIMER_INTERVAL_S)
    ctx.services["timer_loop"] = task
    return task.start()
