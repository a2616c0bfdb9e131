"""Synthetic delivery history, deterministic for a seed: for tests, benchmarks and `doorstep models train eta
--synthetic N`. Labelled as synthetic wherever it is used; it is not evidence about any real carrier.

The world: three carriers with different speeds and spreads, lanes between regions (longer lanes take
longer), no sorting on Sundays, a share of parcels held at a hub (the "missing scan" that makes them late),
failed first attempts that add a day. Promises are the carrier's advertised days from dispatch.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from doorstep.shipments.model import Shipment, Status, TrackingEvent

CARRIERS = {  # slug: (mean hours per lane step, spread, advertised days)
    "dhl": (20.0, 0.25, 2),
    "dpd": (16.0, 0.20, 2),
    "royal_mail": (26.0, 0.40, 3),
}
REGIONS = ["GB-LND", "GB-MAN", "GB-LDS", "GB-GLA", "GB-BRS", "GB-CDF"]
DISTANCE = {  # lane steps between regions (1 = same region)
    (a, b): 1 + (abs(i - j) + 1) // 2 for i, a in enumerate(REGIONS) for j, b in enumerate(REGIONS)
}


def generate(n: int, *, seed: int = 7, start: datetime | None = None, days: int = 120) -> list[Shipment]:
    """`n` delivered shipments dispatched over `days` days, each with its full scan timeline."""
    rng = random.Random(seed)
    start = start or datetime(2026, 6, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        carrier = rng.choice(list(CARRIERS))
        mean_h, spread, advertised_days = CARRIERS[carrier]
        origin = rng.choice(REGIONS[:2])
        destination = rng.choice(REGIONS)
        created = start + timedelta(minutes=rng.randrange(days * 24 * 60))
        dispatched = created + timedelta(hours=rng.uniform(2, 20))
        if dispatched.weekday() == 6:  # nothing leaves on Sunday
            dispatched += timedelta(days=1)
        steps = DISTANCE[(origin, destination)]
        transit_h = sum(max(mean_h * rng.lognormvariate(0, spread), 4.0) for _ in range(steps))
        is_held = rng.random() < 0.12
        if is_held:
            transit_h += rng.uniform(20, 60)
        promised_to = (dispatched + timedelta(days=advertised_days + steps - 1)).replace(hour=21, minute=0)
        s = Shipment.create(
            id=f"hist-{seed}-{i:06d}",
            carrier=carrier,
            tracking_number=f"SIM{seed}{i:07d}",
            now=created,
            order_id=None,
            origin_region=origin,
            destination_region=destination,
            service="express" if rng.random() < 0.3 else "standard",
            promised_to=promised_to,
        )
        if s.service == "express":
            transit_h *= 0.75
        scans: list[tuple[datetime, Status, str | None]] = [
            (created, Status.INFO_RECEIVED, None),
            (dispatched, Status.IN_TRANSIT, "InTransit_002"),
        ]
        arrive = dispatched + timedelta(hours=transit_h)
        hubs = steps + (0 if is_held else 1)
        for h in range(1, hubs + 1):  # a held parcel misses a hub scan
            scans.append(
                (dispatched + timedelta(hours=transit_h * h / (hubs + 1)), Status.IN_TRANSIT, "InTransit_003")
            )
        out_for_delivery = arrive.replace(hour=7, minute=rng.randrange(0, 59))
        if out_for_delivery < arrive:
            out_for_delivery += timedelta(days=1)
        if out_for_delivery.weekday() == 6:
            out_for_delivery += timedelta(days=1)
        if rng.random() < 0.08:  # failed first attempt, delivered next day
            scans.append((out_for_delivery, Status.OUT_FOR_DELIVERY, None))
            scans.append((out_for_delivery + timedelta(hours=5), Status.ATTEMPT_FAIL, "AttemptFail_002"))
            out_for_delivery += timedelta(days=1)
        scans.append((out_for_delivery, Status.OUT_FOR_DELIVERY, None))
        delivered = out_for_delivery + timedelta(hours=rng.uniform(1, 9))
        scans.append((delivered, Status.DELIVERED, "Delivered_001"))
        for at, status, subtag in sorted(scans, key=lambda x: x[0]):
            s.record(
                TrackingEvent(
                    carrier=carrier,
                    tracking_number=s.tracking_number,
                    occurred_at=at,
                    status=status,
                    subtag=subtag,
                    message=status.value,
                    source="simulated",
                ),
                now=at,
            )
        s.events.clear()
        out.append(s)
    return out
