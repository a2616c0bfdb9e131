"""Assistant benchmark: classification latency and throughput, reply latency (message in -> reply stored and
queued, channel excluded) on SQLite, and accuracy on the held-out set.

    PYTHONPATH=src .venv/bin/python -m bench.bench_assistant
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

console = Console()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_classification() -> dict[str, float]:
    from doorstep.conversations.nlu.classifier import TEST_CSV, get_classifier, read_labelled, understand

    t0 = time.perf_counter()
    clf = get_classifier()
    load_s = time.perf_counter() - t0
    texts = [t for t, _ in read_labelled(TEST_CSV)] * 10
    now = datetime.now(UTC)
    single = []
    for text in texts:
        t = time.perf_counter()
        understand(text, now=now, classifier=clf)
        single.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    clf.predict_many(texts)
    batch_s = time.perf_counter() - t
    return {
        "load_s": load_s,
        "n": len(texts),
        "p50_ms": pct(single, 0.5),
        "p99_ms": pct(single, 0.99),
        "mean_ms": statistics.fmean(single),
        "batch_per_s": len(texts) / batch_s,
    }


SCRIPTS = [
    # (channel, sender kind, messages)
    ("whatsapp", "known", ["hi", "where is my parcel?", "when will it arrive?", "thanks", "bye", "5"]),
    ("sms", "known", ["can you deliver it next tuesday afternoon instead", "yes please"]),
    ("whatsapp", "stranger", ["where is order {n}", "{email}", "has it left the warehouse?"]),
    ("sms", "stranger", ["what's the weather like", "where is my refund for {n}", "postcode SW1A 1AA"]),
    ("whatsapp", "known", ["my item arrived damaged"]),
]


def bench_replies(conversations: int = 60) -> dict[str, float]:
    from sqlalchemy import insert

    from doorstep.bus.registry import Bus
    from doorstep.clock import FixedClock
    from doorstep.conversations.handlers import receive_message
    from doorstep.customers.tables import customers, identities
    from doorstep.db.engine import create_db_engine
    from doorstep.db.migrate import upgrade
    from doorstep.db.uow import UnitOfWork
    from doorstep.orders.tables import orders
    from doorstep.shipments.tables import shipments

    tmp = Path(tempfile.mkdtemp(prefix="bench-assistant-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    clock = FixedClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    now = clock.now()
    with engine.begin() as conn:
        for i in range(conversations):
            cid, phone = f"c{i}", f"+4477009{i:05d}"
            conn.execute(
                insert(customers).values(
                    id=cid,
                    email=f"c{i}@example.com",
                    phone=phone,
                    postcode="SW1A 1AA",
                    preferred_channels=[],
                    traits={},
                    first_seen_at=now,
                    last_seen_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(identities).values(customer_id=cid, kind="whatsapp", value=phone, first_seen_at=now)
            )
            conn.execute(
                insert(orders).values(
                    id=f"o{i}",
                    external_id=f"DS-{10000 + i}",
                    customer_id=cid,
                    status="dispatched",
                    currency="EUR",
                    total_minor=5000,
                    placed_at=now - timedelta(days=3),
                    properties={},
                    created_at=now,
                    updated_at=now,
                    ship_postcode="SW1A 1AA",
                    promised_from=now + timedelta(days=2),
                    promised_to=now + timedelta(days=2, hours=4),
                )
            )
            conn.execute(
                insert(shipments).values(
                    id=f"s{i}",
                    order_id=f"o{i}",
                    carrier="dhl",
                    tracking_number=f"JD{i:06d}",
                    status="InTransit",
                    is_return=False,
                    last_scan_at=now - timedelta(hours=5),
                    last_location="Leipzig hub",
                    created_at=now,
                    updated_at=now,
                )
            )
    bus = Bus()
    latencies: list[float] = []
    per_kind: dict[str, list[float]] = {}
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("conversations", total=conversations)
        for i in range(conversations):
            channel, who, lines = SCRIPTS[i % len(SCRIPTS)]
            sender = f"+4477009{i:05d}" if who == "known" else f"+4477001{i:05d}"
            for j, line in enumerate(lines):
                text = line.format(n=f"DS-{10000 + i}", email=f"c{i}@example.com")
                clock.advance(seconds=20)
                t = time.perf_counter()
                with UnitOfWork(engine, bus=bus, clock=clock) as uow:
                    receive_message(
                        uow,
                        channel=channel,
                        address=sender,
                        text=text,
                        provider_message_id=f"bench-{i}-{j}",
                        now=clock.now(),
                    )
                    uow.commit()
                ms = (time.perf_counter() - t) * 1000
                latencies.append(ms)
                per_kind.setdefault(who, []).append(ms)
            bar.advance(task)
    engine.dispose()
    return {
        "n": len(latencies),
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
    }


def bench_accuracy() -> dict[str, float]:
    from doorstep.conversations.nlu.classifier import TEST_CSV, get_classifier, read_labelled
    from doorstep.conversations.nlu.evaluation import evaluate_rows

    r = evaluate_rows(get_classifier(), read_labelled(TEST_CSV))
    return {
        "in_scope_accuracy": r.in_scope_accuracy,
        "out_of_scope_refused": r.out_of_scope_refused,
        "in_scope_refused": r.in_scope_refused,
        "macro_f1": r.macro_f1,
        "n_in": r.in_scope_total,
        "n_oos": r.out_of_scope_total,
    }


def main() -> None:
    console.print(
        f"assistant benchmark · {platform.processor() or platform.machine()} · nproc {os.cpu_count()}"
    )
    c = bench_classification()
    console.print(
        f"model load {c['load_s']:.2f} s; classify+entities per utterance p50 {c['p50_ms']:.2f} ms, "
        f"p99 {c['p99_ms']:.2f} ms (n={c['n']}); batch throughput {c['batch_per_s']:.0f} utterances/s"
    )
    r = bench_replies()
    console.print(
        f"reply latency (message in -> reply stored and queued, SQLite, commit included): "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms (n={r['n']})"
    )
    a = bench_accuracy()
    console.print(
        f"held-out: in-scope accuracy {a['in_scope_accuracy']:.3f} (n={a['n_in']}), out-of-scope refused "
        f"{a['out_of_scope_refused']:.3f} (n={a['n_oos']}), macro F1 {a['macro_f1']:.3f}"
    )


if __name__ == "__main__":
    main()
