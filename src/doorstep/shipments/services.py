"""Long-lived pieces of the shipments domain: code tables, the ETA predictor, and the periodic checks loop."""

from __future__ import annotations

import logging
import threading
from typing import Any

from doorstep.context import AppContext
from doorstep.shipments.carriers.codes import cached_tables
from doorstep.shipments.eta import EtaPredictor, load_predictor

log = logging.getLogger("doorstep.shipments")


def register(ctx: AppContext) -> None:
    ctx.services["carrier_codes"] = cached_tables(str(ctx.settings.carrier_codes_dir or ""))
    try:
        ctx.services["eta"] = load_predictor(ctx.settings.var_dir)
    except (ValueError, KeyError, OSError) as exc:
        log.warning(
            "ETA model not loaded (%s); predicting with the baseline until `doorstep models train eta`", exc
        )
        ctx.services["eta"] = EtaPredictor()


class CheckLoop:
    """Runs handlers.run_checks every `interval_s` (first run after one interval) until closed."""

    def __init__(self, ctx: AppContext, interval_s: float):
        self.ctx = ctx
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="doorstep-shipment-checks", daemon=True)

    def _run(self) -> None:
        from doorstep.shipments.handlers import run_checks

        while not self.stop.wait(self.interval_s):
            try:
                counts = run_checks(self.ctx)
                if counts["events"]:
                    log.info("shipment checks: %(checked)d active, %(events)d events", counts)
            except Exception:
                log.exception("shipment checks failed; trying again next round")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def start(ctx: AppContext) -> Any:
    interval = ctx.settings.shipment_check_interval_s
    if interval <= 0:
        return None
    loop = CheckLoop(ctx, interval)
    loop.thread.start()
    return loop
