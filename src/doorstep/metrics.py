"""Prometheus metrics: counters kept by the process, pipeline gauges read from the store at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from doorstep.bus.tables import outbox
from doorstep.ingest.tables import event_log, log_offsets


class Metrics:
    def __init__(self, engine: Engine):
        self.registry = CollectorRegistry()
        self.ingest = Counter(
            "doorstep_ingest_events", "Inbound events by outcome", ["outcome"], registry=self.registry
        )
        self.counters: dict[str, Counter] = {}
        self.registry.register(_PipelineCollector(engine))

    def count(self, outcome: str, value: int = 1) -> None:
        if value:
            self.ingest.labels(outcome=outcome).inc(value)

    def delivered(self, outcome: str, count: int = 1) -> None:
        """Outbox deliveries by outcome: handled, retried, dead."""
        self.counter("doorstep_deliveries", "Outbox deliveries to handlers by outcome", ["outcome"]).labels(
            outcome=outcome
        ).inc(count)

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        """A named counter other domains can share (created once)."""
        if name not in self.counters:
            self.counters[name] = Counter(name, documentation, labels, registry=self.registry)
        return self.counters[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PipelineCollector:
    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Any:
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(event_log.c.id))).scalar() or 0
            done = (
                conn.execute(
                    select(log_offsets.c.position).where(log_offsets.c.consumer == "projector")
                ).scalar()
                or 0
            )
            by_status: dict[str, int] = {
                status: count
                for status, count in conn.execute(
                    select(outbox.c.status, func.count()).group_by(outbox.c.status)
                )
            }
            oldest = conn.execute(
                select(func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
            ).scalar()
        lag = GaugeMetricFamily("doorstep_log_lag_events", "Inbound events not yet projected")
        lag.add_metric([], max(0, last - done))
        yield lag
        pending = GaugeMetricFamily("doorstep_outbox_rows", "Outbox rows by status", labels=["status"])
        for status in ("pending", "relayed", "done", "dead"):
            pending.add_metric([status], by_status.get(status, 0))
        yield pending
        dead = GaugeMetricFamily("doorstep_dead_letters", "Dead-lettered deliveries waiting for a person")
        dead.add_metric([], by_status.get("dead", 0))
        yield dead
        if oldest is not None:
            from doorstep.clock import utcnow

            age = GaugeMetricFamily("doorstep_outbox_oldest_pending_seconds", "Age of the oldest pending row")
            age.add_metric([], (utcnow() - oldest).total_seconds())
            yield age
