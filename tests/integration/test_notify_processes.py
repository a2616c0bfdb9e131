"""The notification sender beside the worker in processes of their own: `doorstep worker` runs a sender (unless
--no-sender) that shares the queue with the API's sender, each message handed over once; `doorstep serve`
with DOORSTEP_PIPELINE_PROCESS runs worker and sender in a child process instead of API threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select
from tests.conftest import make_settings
from tests.support_notify import add_customer, add_order, messages, order_placed, publish
from tests.support_processes import stop_process, wait_for

from doorstep.app import build_context, create_app
from doorstep.clock import SystemClock
from doorstep.db.engine import create_db_engine
from doorstep.ids import new_id
from doorstep.notifications.services import Sender
from doorstep.notifications.tables import delivery_attempts, notification_preferences, notifications

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def reader(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url, for_reads=True)
    yield engine
    engine.dispose()


def _start_worker(database_url: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")},
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "DOORSTEP_DATABASE_URL": database_url,
        "DOORSTEP_ENV": "test",
        "DOORSTEP_VAR_DIR": str(tmp_path / "var"),
        "DOORSTEP_WORKER_POLL_INTERVAL_S": "0.02",
        "DOORSTEP_LOG_JSON": "false",
        "DOORSTEP_SECRET_KEY": "test-secret-key-with-enough-length-0123456789",
    }
    log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:  # the child keeps its own fd
        proc = subprocess.Popen(
            [sys.executable, "-m", "doorstep", "worker", *args],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, log_path


def _queue(engine: Engine, customer_id: str, n: int) -> list[str]:
    """`n` urgent messages due now (urgent: no quiet hours, no daily cap, whatever the hour of the run)."""
    now = datetime.now(UTC)
    ids = [new_id() for _ in range(n)]
    with engine.begin() as conn:
        conn.execute(
            insert(notifications),
            [
                {
                    "id": i,
                    "customer_id": customer_id,
                    "order_id": None,
                    "trigger": "order_confirmed",
                    "channel": "auto",
                    "locale": "en",
                    "status": "queued",
                    "dedupe_key": f"test:{i}",
                    "attempts": 0,
                    "topic": "service",
                    "created_at": now,
                    "scheduled_for": now,
                    "detail": {"event": {"customer_id": customer_id}, "is_urgent": True},
                }
                for i in ids
            ],
        )
    return ids


def _statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(notifications.c.status, func.count()).group_by(notifications.c.status))
        return {status: int(n) for status, n in rows}


def _attempts_per_message(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(delivery_attempts.c.notification_id, func.count()).group_by(
                delivery_attempts.c.notification_id
            )
        )
        return {i: int(n) for i, n in rows}


def test_a_worker_process_sender_and_an_api_sender_hand_each_message_over_once(
    tmp_path: Path, database_url: str, reader: Engine
) -> None:
    settings = make_settings(tmp_path, database_url)
    ctx = build_context(settings, clock=SystemClock())
    customer_id = add_customer(ctx.engine)
    api_sent: list[str] = []
    ctx.services["on_notification_sent"] = lambda message: api_sent.append(message.notification_id)
    api_sender = Sender(ctx, name="api-sender")
    worker, log_path = _start_worker(database_url, tmp_path)
    try:
        first = _queue(ctx.engine, customer_id, 25)
        # the worker process alone is running: it sends these
        wait_for(lambda: _statuses(reader).get("sent") == 25, timeout_s=60, what="the worker's sender")
        api_sender.start()
        queued = list(first)
        for _ in range(40):  # both senders running; each chunk goes to whichever claims it first
            queued += _queue(ctx.engine, customer_id, 25)
            time.sleep(0.03)
        wait_for(
            lambda: _statuses(reader).get("sent") == len(queued), timeout_s=120, what="every message sent"
        )
    finally:
        api_sender.close()
        stop_process(worker)
        ctx.engine.dispose()
        ctx.read_engine.dispose()
    assert _statuses(reader) == {"sent": len(queued)}
    per_message = _attempts_per_message(reader)
    assert per_message == dict.fromkeys(queued, 1)  # one hand-over each, none twice
    assert len(api_sent) == len(set(api_sent))
    worker_sent = len(queued) - len(api_sent)
    assert not set(first) & set(api_sent)
    assert worker_sent >= 25 and api_sent, (worker_sent, len(api_sent), log_path.read_text()[-2000:])


def test_a_busy_sender_claims_its_next_pass_as_it_records_and_gives_back_what_it_will_not_send(
    tmp_path: Path, database_url: str
) -> None:
    """Under load a pass records its outcomes and claims the next pass's messages in one transaction (one turn
    of SQLite's write lock a pass, not two). A sender that closes with such claims gives them back, so another
    sender sends them at once rather than when their lease ends."""
    ctx = build_context(make_settings(tmp_path, database_url), clock=SystemClock())
    customer_id = add_customer(ctx.engine)
    queued = _queue(ctx.engine, customer_id, 150)
    busy = Sender(ctx, name="busy")

    assert busy.send_due(limit=100) == 100
    assert _statuses(ctx.engine) == {"sent": 100, "queued": 50}
    rest = set(queued) - set(_attempts_per_message(ctx.engine))
    assert set(busy.claimed) == rest  # claimed by the record transaction, for the next pass
    with ctx.engine.connect() as conn:
        owners = conn.execute(
            select(notifications.c.lease_owner, func.count())
            .where(notifications.c.status == "queued")
            .group_by(notifications.c.lease_owner)
        ).all()
    assert owners == [("busy", 50)]
    other = Sender(ctx, name="other")
    assert other.send_due() == 0  # leased to the busy sender

    assert busy.send_due(limit=100) == 50  # the next pass sends what it claimed
    assert busy.claimed == []  # and found nothing more
    more = _queue(ctx.engine, customer_id, 120)
    assert busy.send_due(limit=100) == 100
    assert len(busy.claimed) == 20
    busy.close()  # 20 claimed, never to be sent by it
    assert other.send_due() == 20
    other.close()
    assert _statuses(ctx.engine) == {"sent": 270}
    assert _attempts_per_message(ctx.engine) == dict.fromkeys(queued + more, 1)
    ctx.engine.dispose()
    ctx.read_engine.dispose()


def test_a_worker_started_with_no_sender_sends_nothing(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    ctx = build_context(settings, clock=SystemClock())
    customer_id = add_customer(ctx.engine)
    worker, log_path = _start_worker(sqlite_url, tmp_path, "--no-sender")
    try:
        wait_for(lambda: "worker started" in log_path.read_text(), timeout_s=60, what="the worker to start")
        ids = _queue(ctx.engine, customer_id, 5)
        time.sleep(1.5)  # many poll intervals of a sender, had one been started
        assert _statuses(ctx.engine) == {"queued": 5}
    finally:
        stop_process(worker)
    assert Sender(ctx).send_due() == 5  # they were due: a sender would have sent them
    assert set(_attempts_per_message(ctx.engine)) == set(ids)
    ctx.engine.dispose()
    ctx.read_engine.dispose()


def test_serve_with_a_pipeline_process_delivers_from_the_child(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, in_process_worker=True, pipeline_process=True)
    app = create_app(settings, clock=SystemClock())
    ctx = app.state.ctx
    customer_id = add_customer(ctx.engine, timezone="UTC")
    order_id = add_order(ctx.engine, customer_id)
    with ctx.engine.begin() as conn:  # quiet hours off, whatever the hour of the run
        conn.execute(
            insert(notification_preferences).values(
                customer_id=customer_id, quiet_start="00:00", quiet_end="00:00", updated_at=datetime.now(UTC)
            )
        )
    with TestClient(app):
        pipeline = ctx.services["pipeline_process"]
        assert pipeline.process.is_alive() and pipeline.process.pid != os.getpid()
        assert "notification_sender" not in ctx.services  # no sender thread in the API process
        publish(ctx, order_placed(order_id, customer_id, at=datetime.now(UTC), external_id="#7"))

        def sent() -> bool:
            rows = messages(ctx.read_engine)
            return bool(rows) and all(r.status == "sent" for r in rows)

        wait_for(sent, timeout_s=60, what="the pipeline process to queue and send")
        [row] = messages(ctx.read_engine)
        assert (row.trigger, row.channel) == ("order_confirmed", "outbox")
    assert not pipeline.process.is_alive()  # stopped with the app
    assert pipeline.process.exitcode == 0


def test_a_sender_only_worker_sends_and_delivers_no_events(tmp_path: Path, sqlite_url: str) -> None:
    from doorstep.bus.tables import outbox

    settings = make_settings(tmp_path, sqlite_url)
    ctx = build_context(settings, clock=SystemClock())
    customer_id = add_customer(ctx.engine)
    order_id = add_order(ctx.engine, customer_id)
    publish(ctx, order_placed(order_id, customer_id, at=datetime.now(UTC)))  # outbox rows for the handlers
    proc, log_path = _start_worker(sqlite_url, tmp_path, "--sender-only")
    try:
        ids = _queue(ctx.engine, customer_id, 5)
        wait_for(lambda: _statuses(ctx.engine).get("sent") == 5, timeout_s=60, what="the sender")
        time.sleep(0.5)  # a worker, had one been started, would have taken the outbox rows meanwhile
        with ctx.engine.connect() as conn:
            pending = conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status != "done"))
            assert pending.scalar_one() > 0
    finally:
        stop_process(proc)
    assert set(_attempts_per_message(ctx.engine)) == set(ids)
    assert "outbox worker: no" in log_path.read_text()
    ctx.engine.dispose()
    ctx.read_engine.dispose()
