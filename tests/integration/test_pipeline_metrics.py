"""/metrics (Prometheus) and structured JSON logs."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import make_settings
from tests.factories import secret_key, segment_event, write_key
from tests.helpers import running_app
from tests.support_pipeline import (
    ProbeHappened,
    create_probe_tables,
    probe_cleanup,  # noqa: F401 - the fixture
    publish_probes,
)

from doorstep.clock import FixedClock
from doorstep.logs import JsonFormatter, configure_logging


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.usefixtures("probe_cleanup")
def test_metrics_show_ingest_counts_log_lag_and_outbox_state(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    settings = make_settings(
        tmp_path,
        database_url,
        max_attempts=1,
        extra_handler_modules=["tests.support_pipeline"],
        extra={"probe_broken_keys": "probe:bad"},
    )
    with running_app(settings, clock) as app:
        create_probe_tables(app.ctx.engine)
        wk = write_key(app.ctx.engine, now=clock.now())
        admin = secret_key(app.ctx.engine, now=clock.now(), scopes=["admin"])
        basic = {"Authorization": "Basic " + base64.b64encode(f"{wk}:".encode()).decode()}
        batch = {"batch": [segment_event(), segment_event(), {"type": "track", "event": "x"}]}  # 1 has no id
        assert app.client.post("/v1/batch", json=batch, headers=basic).status_code == 200
        assert app.client.post("/v1/batch", json=batch, headers=basic).status_code == 200
        publish_probes(
            app.ctx.engine,
            app.ctx.bus,
            clock,
            [
                ProbeHappened(occurred_at=clock.now(), probe_key="bad", seq=1),
                ProbeHappened(occurred_at=clock.now(), probe_key="good", seq=1),
            ],
        )
        scrape = {"Authorization": f"Bearer {admin}"}

        before = app.client.get("/metrics", headers=scrape)
        app.drain()
        after = app.client.get("/metrics", headers=scrape)
        anonymous = app.client.get("/metrics")

    assert before.status_code == 200, before.text
    assert before.headers["content-type"].startswith("text/plain")
    first = _samples(before.text)
    assert first[("doorstep_ingest_events_total", (("outcome", "accepted"),))] == 4
    assert first[("doorstep_ingest_events_total", (("outcome", "duplicates"),))] == 2
    assert first[("doorstep_ingest_events_total", (("outcome", "rejected"),))] == 2
    assert first[("doorstep_log_lag_events", ())] == 2
    assert first[("doorstep_outbox_rows", (("status", "pending"),))] == 2
    assert first[("doorstep_dead_letters", ())] == 0
    assert ("doorstep_deliveries_total", (("outcome", "handled"),)) not in first
    second = _samples(after.text)
    assert second[("doorstep_log_lag_events", ())] == 0
    assert second[("doorstep_outbox_rows", (("status", "pending"),))] == 0
    assert second[("doorstep_outbox_rows", (("status", "done"),))] == 1
    assert second[("doorstep_dead_letters", ())] == 1
    assert second[("doorstep_deliveries_total", (("outcome", "handled"),))] == 1
    assert second[("doorstep_deliveries_total", (("outcome", "dead"),))] == 1
    assert anonymous.status_code == 401  # the scrape needs a key with the admin scope


def test_json_logs_are_one_object_per_line_with_extras_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("doorstep.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("delivered %d events", 3, extra={"handler": "probe.record", "attempt": 2})
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "doorstep.test.json"
    assert first["msg"] == "delivered 3 events"
    assert (first["handler"], first["attempt"]) == ("probe.record", 2)
    assert first["ts"].endswith("+00:00")
    assert "exc" not in first
    assert second["level"] == "error" and "ValueError: bad value" in second["exc"]


def test_configure_logging_puts_one_json_handler_on_the_root(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("INFO", json=True)
        logging.getLogger("doorstep.test").info("hello", extra={"order_id": "o1"})
        logging.getLogger("doorstep.test").debug("not shown")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    lines = capsys.readouterr().err.splitlines()
    assert [orjson.loads(line)["msg"] for line in lines] == ["hello"]
    assert orjson.loads(lines[0])["order_id"] == "o1"
