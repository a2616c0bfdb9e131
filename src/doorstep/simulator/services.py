"""The live demo: when settings.demo is on, the boutique streams into this very server from a background thread.

The simulated clock starts six days in the past and runs at DEMO_SPEED until it reaches now, so within a
minute there is history (customers, orders, parcels moving, messages, feedback); from then on the shop lives
in real time. The world is seeded from the hour it starts, so restarting within the hour replays the same
events, which the server deduplicates.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from doorstep.context import AppContext

log = logging.getLogger("doorstep.simulator.demo")

DEMO_HISTORY_DAYS = 6  # enough for parcels to arrive and surveys and reviews to come back
DEMO_FUTURE_DAYS = 24  # the world runs on in real time for this long after catching up
DEMO_SPEED = 8640.0  # six simulated days a minute: the history arrives in about a minute (server permitting)


class DemoSimulator:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="doorstep-demo-simulator", daemon=True)
        self.stats: Any = None
        self.error: BaseException | None = None

    def start(self) -> DemoSimulator:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._stream()
        except Exception as exc:  # a demo must never take the server down
            self.error = exc
            log.exception("demo simulator stopped")

    def _stream(self) -> None:
        from doorstep.simulator.live import Sender, Targets, stream, wait_for_server
        from doorstep.simulator.profile import load_profile
        from doorstep.simulator.world import generate

        settings = self.ctx.settings
        base_url = settings.public_base_url
        if not wait_for_server(base_url, timeout_s=120, stop=self.stop):
            if not self.stop.is_set():
                log.warning("demo simulator: %s/healthz never answered; not streaming", base_url)
            return
        profile = load_profile(settings.demo_profile)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = (now - timedelta(days=DEMO_HISTORY_DAYS)).date()
        end = start + timedelta(days=DEMO_HISTORY_DAYS + DEMO_FUTURE_DAYS)
        rate = profile.orders / max(1, (profile.end - profile.start).days)
        seed = int(now.timestamp()) // 3600 % 1_000_000
        world = generate(
            profile, orders=max(1, int(rate * (end - start).days)), seed=seed, start=start, end=end
        )
        api_key = self._review_key()
        targets = Targets(
            base_url=base_url,
            write_key=settings.dev_write_key,
            aftership_secret=settings.aftership_webhook_secret,
            twilio_auth_token=settings.twilio_auth_token,
            email_secret=getattr(settings, "inbound_email_secret", ""),
            api_key=api_key,
            secret_key=settings.secret_key,  # survey links are signed exactly as the follow-up message signs them
        )
        sender = Sender(targets, stop=self.stop)
        log.info(
            "demo simulator: streaming %s (%d orders, seed %d) from %s at %gx",
            profile.name,
            world.orders,
            seed,
            start,
            DEMO_SPEED,
        )
        try:
            # the clock starts at the world's first day; browsing from before it is left out, so the first
            # seconds show orders and parcels rather than a backlog of old visits
            first = world.plan.start_epoch
            timeline = (item for item in world.timeline() if item[0] >= first)
            self.stats = stream(timeline, sender, speed=DEMO_SPEED, stop=self.stop, sim_start=first)
        finally:
            sender.close()
            self._revoke()

    def _review_key(self) -> str:
        """A secret key (orders:write) for importing the simulated reviews, revoked when the demo stops."""
        from doorstep.security.keys import create_key

        with self.ctx.engine.begin() as conn:
            key = create_key(
                conn,
                kind="secret",
                scopes=["orders:write"],
                name="demo simulator reviews",
                now=datetime.now(UTC),
            )
        return key

    def _revoke(self) -> None:
        from sqlalchemy import update

        from doorstep.security.tables import api_keys

        with self.ctx.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.name == "demo simulator reviews", api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )


def start(ctx: AppContext) -> DemoSimulator | None:
    if not ctx.settings.demo:
        return None
    return DemoSimulator(ctx).start()
